//! Events another server makes: the join or leave it asks this server to prepare
//! (`make_join`, `make_leave`),
//! accepting a signed event it sends into the room (a join through `send_join`, the events of
//! its transactions) once [`crate::federation::intake`] has checked its hashes and
//! signatures, and starting a room this server joins through another server.

use ruma::events::TimelineEventType;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedUserId, RoomId,
    RoomVersionId, UserId,
};

use super::super::members::MembershipRecord;
use super::super::pdu::{Pdu, StoredPdu};
use super::super::snapshot::{self, Drafted, StateDiff, Stored};
use super::super::timeline::{NewEvent, RoomRecord, content_field};
use super::{Draft, Position};
use crate::error::{Error, Result};
use crate::storage::{Batch, Table, keys};

impl Draft<'_> {
    /// Starts a room this server joins through another server: the room's state as that
    /// server gave it (`state`, among `events`, which also hold the auth chain), kept as
    /// outliers, the room's first snapshot, its current state, and the memberships of other
    /// servers' users. `extremities` and `depth` are where the join goes. The state holds at a
    /// timeline position of its own, just before the join's. A room this server had and left
    /// (no local user is joined) starts again the same way: its state becomes the one given,
    /// its timeline and history stay, and what happened while no one here was in it is not
    /// fetched.
    pub async fn seed(
        &mut self,
        room_id: &RoomId,
        version: RoomVersionId,
        events: Vec<StoredPdu>,
        state: &[OwnedEventId],
        (extremities, depth): (Vec<OwnedEventId>, u64),
    ) -> Result<()> {
        self.lock(room_id).await;
        let own = self.timeline.server_name.clone();
        let earlier = self.room(room_id)?;
        if earlier.is_some() && self.timeline.server_in_room(room_id, &own)? {
            return Err(Error::forbidden("This server has the room already"));
        }
        let store = &*self.timeline.store;
        let (short, band) = match &earlier {
            Some(record) => (record.short, None),
            // Positions for the history before the join, which is fetched later (newest
            // first, so downwards from the top of the band).
            None => {
                let band =
                    store.commit_many(super::super::history::BAND, &mut |_| Ok(Batch::new()))?;
                (store.next_count()?, Some(band))
            }
        };
        let at = store.next_count()?;
        let history = match &earlier {
            Some(record) => record.history,
            None => band.map(|band| super::super::history::History::new(band, at)),
        };
        if earlier.is_some() {
            // The state as it was when this server left goes: what was given replaces it.
            for ((kind, state_key), _) in self.timeline.current_state(short)? {
                self.also
                    .delete(Table::RoomState, keys::room_state(short, &kind, &state_key));
            }
        }
        for event in events {
            if self.timeline.position(&event.event_id)?.is_none() {
                self.also
                    .put_json(Table::Outliers, event.event_id.as_bytes(), &event)?;
            }
            self.outliers.insert(event.event_id.clone(), event);
        }
        let mut map = StateDiff::new();
        for event_id in state {
            let event = self
                .outliers
                .get(event_id)
                .ok_or_else(|| Error::internal(format!("state event {event_id} not given")))?;
            let parsed = Pdu::from_stored(event)?;
            let Some(state_key) = parsed.state_key else {
                continue;
            };
            let kind = parsed.kind.to_string();
            self.also.put(
                Table::RoomState,
                keys::room_state(short, &kind, &state_key),
                event_id.as_bytes(),
            );
            self.also.put(
                Table::StateHistory,
                keys::state_history(short, &kind, &state_key, at),
                event_id.as_bytes(),
            );
            if parsed.kind == TimelineEventType::RoomMember
                && let Ok(user) = OwnedUserId::try_from(state_key.as_str())
                && user.server_name() != own
                && let Some(membership) = content_field(&event.pdu, "membership")
            {
                let record = MembershipRecord {
                    membership: membership.to_owned(),
                    count: at,
                    forgotten: false,
                };
                self.also.put_json(
                    Table::RoomUsers,
                    keys::room_user(room_id.as_str(), user.as_str()),
                    &record,
                )?;
                self.members.insert(
                    (room_id.to_owned(), user),
                    (membership.to_owned(), Position::Stored(at)),
                );
            }
            self.state
                .insert((short, kind.clone(), state_key.clone()), event_id.clone());
            map.insert((kind, state_key), Some(event_id.clone()));
        }
        let snapshot = store.next_count()?;
        let layer = {
            let stored = Stored { store, short };
            let layers = Drafted {
                planned: &self.snapshots,
                below: &stored,
            };
            snapshot::plan(&layers, None, map, snapshot)?
        };
        self.snapshots.insert(snapshot, (short, layer));
        let bump = earlier.as_ref().map_or(0, |record| record.bump);
        self.rooms.insert(
            room_id.to_owned(),
            RoomRecord {
                short,
                version,
                extremities,
                last_depth: depth,
                snapshot,
                bump,
                history,
            },
        );
        self.seeded.push(room_id.to_owned());
        Ok(())
    }

    /// The unsigned membership event (`join` or `leave`) of `user` (of another server) on top
    /// of the room's current state, refused when the authorization rules would refuse it.
    pub async fn membership_template(
        &mut self,
        room_id: &RoomId,
        user: &UserId,
        membership: &str,
    ) -> Result<(RoomVersionId, CanonicalJsonObject)> {
        let event = NewEvent {
            kind: TimelineEventType::RoomMember,
            content: serde_json::value::to_raw_value(
                &serde_json::json!({"membership": membership}),
            )
            .map_err(|e| Error::internal(e.to_string()))?,
            state_key: Some(user.to_string()),
        };
        let (record, object) = self.template(room_id, user, &event).await?;
        // Checked as it stands, under a stand-in id (the other server signs it, which fixes
        // its id).
        let stand_in = StoredPdu {
            event_id: OwnedEventId::try_from("$membership-template")
                .map_err(|e| Error::internal(e.to_string()))?,
            room_id: room_id.to_owned(),
            pdu: object.clone(),
            transaction: None,
        };
        self.authorize(&record, &Pdu::from_stored(&stand_in)?, None)?;
        Ok((record.version, object))
    }

    /// Adds the signatures of other servers on a drafted event of this server (an invite the
    /// invitee's server signed) to it.
    pub fn add_signatures(
        &mut self,
        event_id: &EventId,
        signed: &CanonicalJsonObject,
    ) -> Result<()> {
        let own = self.timeline.server_name.to_string();
        let index = *self
            .events
            .get(event_id)
            .ok_or_else(|| Error::internal("no such drafted event"))?;
        let Some(CanonicalJsonValue::Object(theirs)) = signed.get("signatures") else {
            return Err(Error::bad_json("The event came back without signatures"));
        };
        let built = &mut self.built[index];
        let Some(CanonicalJsonValue::Object(ours)) = built.stored.pdu.get_mut("signatures") else {
            return Err(Error::internal("a drafted event without signatures"));
        };
        for (server, signatures) in theirs {
            if *server != own {
                ours.insert(server.clone(), signatures.clone());
            }
        }
        Ok(())
    }

    /// Adds an event of another server to the room; `false` when the room has it already. It
    /// must follow the room's extremities, or one earlier event of the room (made before this
    /// server's latest events reached its server), and pass the authorization rules against
    /// the state it was made on and against the current state. With `forward`, the other
    /// servers in the room are sent the event too (a join this server was asked to make).
    pub async fn receive(
        &mut self,
        room_id: &RoomId,
        event_id: OwnedEventId,
        pdu: CanonicalJsonObject,
        forward: bool,
    ) -> Result<bool> {
        self.lock(room_id).await;
        let record = self
            .room(room_id)?
            .ok_or_else(|| Error::not_found("Unknown room"))?;
        if self.get(&event_id)?.is_some() {
            return Ok(false);
        }
        let stored = StoredPdu {
            event_id,
            room_id: room_id.to_owned(),
            pdu,
            transaction: None,
        };
        let parsed = Pdu::from_stored(&stored)?;
        let before = self.state_made_on(&record, &parsed.prev_events)?;
        let event_id = stored.event_id.clone();
        let servers = self.accept(record, stored, before, None).await?;
        if forward {
            self.send_to(&event_id, servers);
        }
        Ok(true)
    }

    /// The snapshot of the state an event with these `prev_events` was made on: `None` for
    /// the room's current state.
    fn state_made_on(
        &mut self,
        record: &RoomRecord,
        prev_events: &[OwnedEventId],
    ) -> Result<Option<u64>> {
        let mut prev = prev_events.to_vec();
        prev.sort();
        prev.dedup();
        let mut extremities = record.extremities.clone();
        extremities.sort();
        if prev == extremities {
            return Ok(None);
        }
        let short = record.short;
        let [first, rest @ ..] = prev.as_slice() else {
            return Err(Error::bad_json("An event with no previous events"));
        };
        let first_state = self.state_after(short, first)?;
        if rest.is_empty() {
            return Ok(Some(first_state));
        }
        // An event that merges a fork: made on the resolution of the states after each of
        // its previous events.
        let mut after = vec![first_state];
        for event_id in rest {
            after.push(self.state_after(short, event_id)?);
        }
        let stored = Stored {
            store: &*self.timeline.store,
            short,
        };
        let layers = Drafted {
            planned: &self.snapshots,
            below: &stored,
        };
        let states = after
            .iter()
            .map(|id| snapshot::state(&layers, *id))
            .collect::<Result<Vec<_>>>()?;
        let rules = super::super::pdu::rules(&record.version)?;
        let resolved =
            super::super::resolution::resolve(&rules, &states, &|id| self.get_parsed(id))?;
        let id = self.timeline.store.next_count()?;
        let layer = snapshot::plan(
            &layers,
            Some(first_state),
            snapshot::diff(&states[0], &resolved),
            id,
        )?;
        self.snapshots.insert(id, (short, layer));
        Ok(Some(id))
    }

    /// The snapshot of the state after an event of the room, drafted or stored.
    fn state_after(&self, short: u64, event_id: &EventId) -> Result<u64> {
        if let Some(index) = self.events.get(event_id) {
            return Ok(self.built[*index].state.1);
        }
        let unknown = || Error::forbidden(format!("Unknown previous event {event_id}"));
        let (room, count) = self.timeline.position(event_id)?.ok_or_else(unknown)?;
        if room != short {
            return Err(unknown());
        }
        match snapshot::of_event(&*self.timeline.store, short, count)? {
            Some((_, after)) => Ok(after),
            None => Err(Error::forbidden(format!(
                "The state after {event_id} is not known to this server"
            ))),
        }
    }
}

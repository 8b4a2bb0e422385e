//! Drafts: events built one after another, each against the state the ones before it made,
//! then written with all their indices in one store commit. A room's creation, an upgrade (the
//! old room's tombstone together with the whole new room) and a redaction (with the rewrite of
//! the event it redacts) are drafts, so a crash leaves each of them whole or absent; a single
//! send is a draft of one event.
//!
//! A draft holds the lock of every room it writes to until it is committed or dropped, so the
//! state it was built against cannot change under it. Dropping a draft writes nothing, and a
//! send that is refused leaves the draft as it was.

use std::collections::{BTreeSet, HashMap};

use http::StatusCode;
use ruma::api::error::ErrorKind;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::{
    CanonicalJsonObject, DeviceId, EventId, OwnedEventId, OwnedRoomId, OwnedServerName,
    OwnedUserId, RoomId, RoomVersionId, ServerName, UserId,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::OwnedMutexGuard;

use self::write::{Built, Position, Relation};
use super::members::MembershipRecord;
use super::notifications::Notified;
use super::pdu::{self, Pdu, StoredPdu, Transaction};
use super::relations::Child;
use super::snapshot::{self, Drafted, Layer, StateDiff, Stored};
use super::timeline::{BUMP_EVENT_TYPES, NewEvent, RoomRecord, Timeline, check_content};
use crate::admin::audit::Record;
use crate::error::{Error, Result};
use crate::storage::{Batch, StoreExt, Table, keys};

mod receive;
mod write;

/// The snapshots an event gets ([`Draft::plan_state`]).
struct StatePlan {
    /// The state the event was made on, and the state after it.
    before: u64,
    after: u64,
    /// The room's current state after the event.
    current: u64,
    /// What the event changes in the room's current state: its own key, for an event made on
    /// the current state; what resolving the fork it makes changes, for one made on an
    /// earlier state.
    changes: StateDiff,
    /// New layers: snapshot id → layer.
    layers: Vec<(u64, Layer)>,
}

pub struct Draft<'a> {
    timeline: &'a Timeline,
    locks: Vec<(OwnedRoomId, OwnedMutexGuard<()>)>,
    /// The records of the rooms the draft writes to, as it leaves them.
    rooms: HashMap<OwnedRoomId, RoomRecord>,
    /// (short room id, type, state key) → event id: state the draft changes.
    state: HashMap<(u64, String, String), OwnedEventId>,
    /// Event id → index in `built`.
    events: HashMap<OwnedEventId, usize>,
    /// (room, user) → membership the draft gives the user.
    members: HashMap<(OwnedRoomId, OwnedUserId), (String, Position)>,
    /// (short room id, thread root) → index in `built` of the thread's latest drafted event.
    threads: HashMap<(u64, OwnedEventId), usize>,
    /// Snapshot id → (short room id, layer): state snapshots the drafted events make.
    snapshots: HashMap<u64, (u64, Layer)>,
    /// Events of other servers the draft stores without a place in a timeline.
    outliers: HashMap<OwnedEventId, StoredPdu>,
    /// Rooms whose memberships the draft writes from another server's state.
    seeded: Vec<OwnedRoomId>,
    built: Vec<Built>,
    also: Batch,
    /// The `origin_server_ts` an appservice gave its bridged events (timestamp massaging).
    ts: Option<u64>,
}

impl Timeline {
    /// An empty draft of events on this timeline.
    pub fn draft(&self) -> Draft<'_> {
        Draft {
            timeline: self,
            locks: Vec::new(),
            rooms: HashMap::new(),
            state: HashMap::new(),
            events: HashMap::new(),
            members: HashMap::new(),
            threads: HashMap::new(),
            snapshots: HashMap::new(),
            outliers: HashMap::new(),
            seeded: Vec::new(),
            built: Vec::new(),
            also: Batch::new(),
            ts: None,
        }
    }
}

impl Draft<'_> {
    /// Gives the events sent from now on this `origin_server_ts` instead of the clock's (an
    /// appservice's `ts`, for bridged history).
    pub fn set_origin_server_ts(&mut self, ts: Option<u64>) {
        self.ts = ts;
    }

    /// Takes the room's lock for the rest of the draft (once: later calls return at once).
    pub async fn lock(&mut self, room_id: &RoomId) {
        if self.locks.iter().any(|(locked, _)| locked == room_id) {
            return;
        }
        let guard = self.timeline.room_lock(room_id).lock_owned().await;
        self.locks.push((room_id.to_owned(), guard));
    }

    /// The room's record as the draft leaves it.
    pub fn room(&self, room_id: &RoomId) -> Result<Option<RoomRecord>> {
        match self.rooms.get(room_id) {
            Some(record) => Ok(Some(record.clone())),
            None => self.timeline.room(room_id),
        }
    }

    /// An event, drafted or stored.
    pub fn get(&self, event_id: &EventId) -> Result<Option<StoredPdu>> {
        match self.events.get(event_id) {
            Some(index) => Ok(Some(self.built[*index].stored.clone())),
            None => match self.outliers.get(event_id) {
                Some(outlier) => Ok(Some(outlier.clone())),
                None => self.timeline.get(event_id),
            },
        }
    }

    fn get_parsed(&self, event_id: &EventId) -> Option<Pdu> {
        match self.events.get(event_id) {
            Some(index) => Some(self.built[*index].parsed.clone()),
            None => match self.outliers.get(event_id) {
                Some(outlier) => Pdu::from_stored(outlier).ok(),
                None => self.timeline.get_parsed(event_id),
            },
        }
    }

    /// The event id of a piece of state, as the draft leaves it.
    fn state_event_id(
        &self,
        short: u64,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<OwnedEventId>> {
        // A send's draft changes no state before its own event: no overlay key to build.
        if !self.state.is_empty()
            && let Some(id) = self
                .state
                .get(&(short, event_type.to_owned(), state_key.to_owned()))
        {
            return Ok(Some(id.clone()));
        }
        self.timeline.state_event_id(short, event_type, state_key)
    }

    /// A piece of state, as the draft leaves it.
    pub fn state_event(
        &self,
        short: u64,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<StoredPdu>> {
        match self.state_event_id(short, event_type, state_key)? {
            Some(id) => self.get(&id),
            None => Ok(None),
        }
    }

    /// A user's membership in a room and since when they hold it, as the draft leaves it.
    fn membership(&self, room_id: &RoomId, user: &UserId) -> Result<Option<(String, Position)>> {
        if !self.members.is_empty()
            && let Some(drafted) = self.members.get(&(room_id.to_owned(), user.to_owned()))
        {
            return Ok(Some(drafted.clone()));
        }
        let stored: Option<MembershipRecord> = self.timeline.store.get_json(
            Table::UserRooms,
            &keys::user_room(user.as_str(), room_id.as_str()),
        )?;
        Ok(stored
            .filter(|r| !r.forgotten)
            .map(|r| (r.membership, Position::Stored(r.count))))
    }

    /// The users joined to the room, as the draft leaves it.
    fn joined_members(&self, room_id: &RoomId) -> Result<Vec<OwnedUserId>> {
        let mut joined: BTreeSet<OwnedUserId> =
            self.timeline.joined_members(room_id)?.into_iter().collect();
        for ((room, user), (membership, _)) in &self.members {
            if room == room_id {
                if membership == "join" {
                    joined.insert(user.clone());
                } else {
                    joined.remove(user);
                }
            }
        }
        Ok(joined.into_iter().collect())
    }

    /// Creates a room with its `m.room.create` event and returns its id. In room version 12
    /// the id is derived from the create event; before, it is random on this server.
    pub async fn create(
        &mut self,
        creator: &UserId,
        version: RoomVersionId,
        content: serde_json::Map<String, serde_json::Value>,
    ) -> Result<OwnedRoomId> {
        let timeline = self.timeline;
        let rules = pdu::rules(&version)?;
        let mut content = content;
        content.insert("room_version".into(), version.as_str().into());
        if !rules.authorization.use_room_create_sender {
            content.insert("creator".into(), creator.as_str().into());
        }
        let content_raw = serde_json::value::to_raw_value(&content)
            .map_err(|e| Error::internal(format!("create content: {e}")))?;
        check_content(&TimelineEventType::RoomCreate, &content_raw)?;

        let room_id_field = if rules.authorization.room_create_event_id_as_room_id {
            None
        } else {
            let local =
                crate::random::string(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", 18);
            Some(
                OwnedRoomId::try_from(format!("!{local}:{}", timeline.server_name))
                    .map_err(|e| Error::internal(format!("room id: {e}")))?,
            )
        };
        let mut object = pdu_object(
            room_id_field.as_deref(),
            creator,
            &TimelineEventType::RoomCreate,
            &content_raw,
            Some(""),
            (Vec::new(), Vec::new(), 1),
            timeline.create_ts(),
        )?;
        let event_id = timeline.sign(&mut object, &rules)?;
        let room_id = match room_id_field {
            Some(id) => id,
            None => OwnedRoomId::try_from(format!("!{}", &event_id.as_str()[1..]))
                .map_err(|e| Error::internal(format!("room id from create event: {e}")))?,
        };
        let stored = StoredPdu {
            event_id,
            room_id: room_id.clone(),
            pdu: object,
            transaction: None,
        };
        let parsed = Pdu::from_stored(&stored)?;
        ruma::state_res::check_state_independent_auth_rules(
            &rules.authorization,
            &parsed,
            |id: &EventId| self.get_parsed(id),
        )
        .map_err(Error::forbidden)?;

        let in_use = || {
            Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::RoomInUse,
                "Room already exists",
            )
        };
        if self.locks.iter().any(|(locked, _)| *locked == room_id) {
            return Err(in_use());
        }
        self.lock(&room_id).await;
        if self.room(&room_id)?.is_some() {
            return Err(in_use());
        }
        let record = RoomRecord {
            short: timeline.store.next_count()?,
            version,
            extremities: Vec::new(),
            last_depth: 0,
            snapshot: 0,
            bump: 0,
            history: None,
        };
        self.add(record, (stored, parsed), None, None, Vec::new())?;
        Ok(room_id)
    }

    /// Builds and authorises an event from a local user (sent in `transaction`, if any) on top
    /// of the room as the draft leaves it; returns its event id.
    pub async fn send(
        &mut self,
        room_id: &RoomId,
        sender: &UserId,
        event: NewEvent,
        transaction: Option<(&DeviceId, &str)>,
    ) -> Result<OwnedEventId> {
        let timeline = self.timeline;
        let (record, mut object) = self.template(room_id, sender, &event).await?;
        let rules = pdu::rules(&record.version)?;
        let event_id = timeline.sign(&mut object, &rules)?;
        let stored = StoredPdu {
            event_id: event_id.clone(),
            room_id: room_id.to_owned(),
            pdu: object,
            transaction: transaction.map(|(device, txn)| Transaction {
                device_id: device.to_owned(),
                txn_id: txn.to_owned(),
            }),
        };
        let transaction = transaction
            .map(|(device, txn)| keys::transaction(sender.as_str(), device.as_str(), txn));
        let servers = self.accept(record, stored, None, transaction).await?;
        self.send_to(&event_id, servers);
        Ok(event_id)
    }

    /// The unsigned PDU of an event from `sender` on top of the room as the draft leaves it
    /// (its `prev_events`, `auth_events` and depth filled in), with the room's record. Takes
    /// the room's lock; refuses content the authorization rules cannot read.
    pub async fn template(
        &mut self,
        room_id: &RoomId,
        sender: &UserId,
        event: &NewEvent,
    ) -> Result<(RoomRecord, CanonicalJsonObject)> {
        let timeline = self.timeline;
        self.lock(room_id).await;
        let record = self
            .room(room_id)?
            .ok_or_else(|| Error::not_found("Unknown room"))?;
        let short = record.short;
        let rules = pdu::rules(&record.version)?;
        check_content(&event.kind, &event.content)?;
        if event.state_key.is_none() {
            let content: serde_json::Value =
                serde_json::from_str(event.content.get()).unwrap_or_default();
            super::relations::check(timeline, short, sender, &event.kind.to_string(), &content)?;
        }

        let auth_types = ruma::state_res::auth_types_for_event(
            &event.kind,
            sender,
            event.state_key.as_deref(),
            &event.content,
            &rules.authorization,
        )
        .map_err(|e| Error::bad_json(format!("Invalid event: {e}")))?;
        let mut auth_events = Vec::new();
        for (event_type, state_key) in &auth_types {
            if let Some(id) = self.state_event_id(short, &event_type.to_string(), state_key)? {
                auth_events.push(id);
            }
        }
        if rules.authorization.room_create_event_id_as_room_id {
            // v12: the create event is implied by the room id, never listed.
        } else if let Some(create) = self.state_event_id(short, "m.room.create", "")?
            && !auth_events.contains(&create)
        {
            auth_events.push(create);
        }
        let object = pdu_object(
            Some(room_id),
            sender,
            &event.kind,
            &event.content,
            event.state_key.as_deref(),
            (
                record.extremities.clone(),
                auth_events,
                record.last_depth + 1,
            ),
            self.ts.unwrap_or_else(crate::now_ms),
        )?;
        Ok((record, object))
    }

    /// Authorises a signed event and adds it to the draft, with the users it notifies; returns
    /// the other servers in the room (but the event's own). It must pass against the state it
    /// was made on (`before`; `None`: the current state) and against the room's current state
    /// as the draft leaves it.
    async fn accept(
        &mut self,
        record: RoomRecord,
        stored: StoredPdu,
        before: Option<u64>,
        transaction: Option<Vec<u8>>,
    ) -> Result<Vec<OwnedServerName>> {
        let short = record.short;
        let parsed = Pdu::from_stored(&stored)?;
        if let Some(before) = before {
            self.authorize(&record, &parsed, Some(before))?;
        }
        self.authorize(&record, &parsed, None)?;
        let room_id = stored.room_id.clone();
        let joined = self.joined_members(&room_id)?;
        let has_body = super::timeline::content_field(&stored.pdu, "body").is_some();
        let candidates = super::notifications::candidates(&joined, &parsed, has_body, |user| {
            Ok(self
                .state_event(short, "m.room.member", user.as_str())?
                .and_then(|m| m.content()["displayname"].as_str().map(str::to_owned)))
        })?;
        let power = super::state::power_levels(&record, |kind| self.state_event(short, kind, ""))?;
        let notified = self
            .timeline
            .notified(&stored, joined.len() as u64, power, candidates)
            .await?;
        let servers = servers_to_tell(&joined, &parsed, &self.timeline.server_name);
        self.add(record, (stored, parsed), before, transaction, notified)?;
        Ok(servers)
    }

    /// Checks an event against the authorization rules: on its own and its auth events, and
    /// against the state of snapshot `at` (`None`: the room's current state as the draft
    /// leaves it).
    fn authorize(&self, record: &RoomRecord, parsed: &Pdu, at: Option<u64>) -> Result<()> {
        let short = record.short;
        let stored = Stored {
            store: &*self.timeline.store,
            short,
        };
        let layers = Drafted {
            planned: &self.snapshots,
            below: &stored,
        };
        let state_id = |event_type: &str, state_key: &str| match at {
            Some(at) => snapshot::lookup(&layers, at, event_type, state_key),
            None => self.state_event_id(short, event_type, state_key),
        };
        let rules = pdu::rules(&record.version)?;
        ruma::state_res::check_state_independent_auth_rules(
            &rules.authorization,
            parsed,
            |id: &EventId| self.get_parsed(id),
        )
        .map_err(Error::forbidden)?;
        ruma::state_res::check_state_dependent_auth_rules(
            &rules.authorization,
            parsed,
            |event_type: &StateEventType, state_key: &str| {
                state_id(&event_type.to_string(), state_key)
                    .ok()
                    .flatten()
                    .and_then(|id| self.get_parsed(&id))
            },
        )
        .map_err(Error::forbidden)
    }

    /// Adds a built and authorised event to the draft, with what it changes in the room.
    /// `before` is the snapshot of the state it was made on, if not the room's current one.
    /// Every read comes before the first change, so a failure leaves the draft as it was.
    fn add(
        &mut self,
        mut record: RoomRecord,
        (stored, parsed): (StoredPdu, Pdu),
        before: Option<u64>,
        transaction: Option<Vec<u8>>,
        notified: Vec<Notified>,
    ) -> Result<()> {
        let index = self.built.len();
        let short = record.short;
        let room_id = stored.room_id.clone();
        let mut replaces = None;
        let mut member = None;
        let mut audited = None;
        if parsed.kind == TimelineEventType::RoomCreate {
            audited = Some(("room_create", room_id.to_string()));
        }
        if let Some(state_key) = &parsed.state_key {
            replaces = self.state_event_id(short, &parsed.kind.to_string(), state_key)?;
            if parsed.kind == TimelineEventType::RoomMember {
                #[derive(Deserialize)]
                struct Membership {
                    membership: String,
                }
                let new: Membership = serde_json::from_str(parsed.content.get())
                    .map_err(|e| Error::bad_json(format!("Invalid membership: {e}")))?;
                let user = OwnedUserId::try_from(state_key.as_str())
                    .map_err(|_| Error::bad_json("A member event's state key is a user id"))?;
                // A profile change (join to join) is no new membership: it keeps its position,
                // so that `/sync` does not treat the room as newly joined.
                let held = self.membership(&room_id, &user)?;
                audited = membership_action(
                    held.as_ref().map(|(held, _)| held.as_str()),
                    &new.membership,
                    parsed.sender == user,
                )
                .map(|action| (action, user.to_string()));
                let since = match held {
                    Some((held, since)) if held == new.membership => since,
                    _ => Position::Drafted(index),
                };
                member = Some((user, new.membership, since));
            }
        }
        let relation = if parsed.state_key.is_none() {
            self.relation(short, &stored, &parsed)?
        } else {
            None
        };
        let appservices = self.timeline.appservices.interested(
            &room_id,
            &parsed.sender,
            parsed.state_key.as_deref(),
            &|| self.joined_members(&room_id),
            &|| super::alias::aliases_of(&*self.timeline.store, &room_id),
        )?;
        let state = self.plan_state(&record, &parsed, &stored.event_id, before)?;
        let media = {
            let content = stored.content();
            let kind = parsed.kind.to_string();
            crate::media::references::media_ids(self.timeline.server_name.as_str(), &content)
                .into_iter()
                .map(|id| {
                    let avatar = crate::media::references::shows_as_avatar(&kind, &content, &id);
                    (id, avatar)
                })
                .collect()
        };

        // What took effect in the room's state: a fork's resolution may keep the event's own
        // change out, and change other state.
        let took_effect = parsed.state_key.as_ref().is_some_and(|key| {
            state.changes.get(&(parsed.kind.to_string(), key.clone()))
                == Some(&Some(stored.event_id.clone()))
        });
        if !took_effect {
            member = None;
        }
        let mut resolved_members = Vec::new();
        for ((kind, key), id) in &state.changes {
            let Some(id) = id else { continue };
            self.state
                .insert((short, kind.clone(), key.clone()), id.clone());
            if kind == "m.room.member"
                && *id != stored.event_id
                && let Some(event) = self.get(id)?
                && let Some(membership) = super::timeline::content_field(&event.pdu, "membership")
                && let Ok(user) = OwnedUserId::try_from(key.as_str())
            {
                let membership = membership.to_owned();
                self.members.insert(
                    (room_id.clone(), user.clone()),
                    (membership.clone(), Position::Drafted(index)),
                );
                resolved_members.push((user, membership));
            }
        }
        let membership = member.map(|(user, membership, since)| {
            self.members
                .insert((room_id.clone(), user), (membership.clone(), since));
            (membership, since)
        });
        if let Some(relation) = &relation
            && relation.child.rel_type == "m.thread"
        {
            self.threads.insert((short, relation.parent.clone()), index);
        }
        // The event's `prev_events` are extremities no more (a local event names them all).
        record
            .extremities
            .retain(|extremity| !parsed.prev_events.contains(extremity));
        record.extremities.push(stored.event_id.clone());
        record.last_depth = record.last_depth.max(u64::from(parsed.depth));
        for (id, layer) in state.layers {
            self.snapshots.insert(id, (short, layer));
        }
        record.snapshot = state.current;
        self.rooms.insert(room_id, record);
        self.events.insert(stored.event_id.clone(), index);
        self.built.push(Built {
            stored,
            parsed,
            short,
            replaces,
            membership,
            relation,
            media,
            transaction,
            notified,
            unindexes: None,
            audited,
            appservices,
            state: (state.before, state.after),
            changes: state.changes,
            resolved_members,
            destinations: Vec::new(),
        });
        Ok(())
    }

    /// The state snapshots of `event` and of the room after it, and the layers to write for
    /// them. `before` is the snapshot of the state the event was made on (`None`: the room's
    /// current state, as for every local event).
    fn plan_state(
        &self,
        record: &RoomRecord,
        parsed: &Pdu,
        event_id: &EventId,
        before: Option<u64>,
    ) -> Result<StatePlan> {
        let short = record.short;
        let store = &*self.timeline.store;
        let stored = Stored { store, short };
        let mut planned: HashMap<u64, (u64, Layer)> = HashMap::new();
        let mut current = record.snapshot;
        let mut before = before.unwrap_or(current);
        let layer_on = |base: u64,
                        change: StateDiff,
                        planned: &mut HashMap<u64, (u64, Layer)>|
         -> Result<u64> {
            let id = store.next_count()?;
            let drafted = Drafted {
                planned: &*planned,
                below: &stored,
            };
            let layers = Drafted {
                planned: &self.snapshots,
                below: &drafted,
            };
            let layer = snapshot::plan(&layers, (base != 0).then_some(base), change, id)?;
            planned.insert(id, (short, layer));
            Ok(id)
        };
        let (after, change) = match &parsed.state_key {
            None => (before, StateDiff::new()),
            Some(state_key) => {
                if current == 0 && parsed.kind != TimelineEventType::RoomCreate {
                    // A room from before snapshots: its first one holds the whole state so far.
                    let mut state: StateDiff = self
                        .timeline
                        .current_state(short)?
                        .into_iter()
                        .map(|(key, id)| (key, Some(id)))
                        .collect();
                    for ((room, event_type, key), id) in &self.state {
                        if *room == short {
                            state.insert((event_type.clone(), key.clone()), Some(id.clone()));
                        }
                    }
                    let id = layer_on(0, state, &mut planned)?;
                    if before == 0 {
                        before = id;
                    }
                    current = id;
                }
                let change = StateDiff::from([(
                    (parsed.kind.to_string(), state_key.clone()),
                    Some(event_id.to_owned()),
                )]);
                (layer_on(before, change.clone(), &mut planned)?, change)
            }
        };
        let (current, changes) = if before == current {
            let current = if change.is_empty() { current } else { after };
            (current, change)
        } else {
            // An event made on an earlier state (another server's, sent before it had this
            // server's latest events): the room's state is now the resolution of the state
            // after it and the state the room had.
            let drafted = Drafted {
                planned: &planned,
                below: &stored,
            };
            let layers = Drafted {
                planned: &self.snapshots,
                below: &drafted,
            };
            let ours = snapshot::state(&layers, current)?;
            let theirs = snapshot::state(&layers, after)?;
            let fetch = |id: &EventId| {
                if id == event_id {
                    Some(parsed.clone())
                } else {
                    self.get_parsed(id)
                }
            };
            let rules = pdu::rules(&record.version)?;
            let resolved = super::resolution::resolve(&rules, &[ours.clone(), theirs], &fetch)?;
            let changes = snapshot::diff(&ours, &resolved);
            if changes.is_empty() {
                (current, changes)
            } else {
                (layer_on(current, changes.clone(), &mut planned)?, changes)
            }
        };
        Ok(StatePlan {
            before,
            after,
            current,
            changes,
            layers: planned
                .into_iter()
                .map(|(id, (_, layer))| (id, layer))
                .collect(),
        })
    }

    /// The relation an event declares, if any, with its thread's latest event before it.
    fn relation(&self, short: u64, stored: &StoredPdu, parsed: &Pdu) -> Result<Option<Relation>> {
        let content: serde_json::Value =
            serde_json::from_str(parsed.content.get()).unwrap_or_default();
        let Some((rel_type, parent)) = super::relations::relation_of(&content) else {
            return Ok(None);
        };
        let thread_before = if rel_type == "m.thread" {
            match self.threads.get(&(short, parent.clone())) {
                Some(earlier) => Some(Position::Drafted(*earlier)),
                None => self
                    .timeline
                    .store
                    .get(
                        Table::ThreadRoots,
                        &keys::thread_root(short, parent.as_str()),
                    )?
                    .and_then(|v| keys::trailing_u64(&v))
                    .map(Position::Stored),
            }
        } else {
            None
        };
        let child = Child {
            event_id: stored.event_id.clone(),
            kind: parsed.kind.to_string(),
            sender: parsed.sender.to_string(),
            key: (rel_type == "m.annotation")
                .then(|| content["m.relates_to"]["key"].as_str().map(str::to_owned))
                .flatten(),
            rel_type,
        };
        Ok(Some(Relation {
            parent,
            child,
            thread_before,
        }))
    }

    /// Writes to commit together with the drafted events (an alias, a rewritten event).
    /// Makes the drafted redaction `redaction` take `target` out of the search index, in the
    /// redaction's own commit and at its position in the search outbox.
    pub fn unindex(&mut self, redaction: &EventId, target: &EventId) {
        if let Some(index) = self.events.get(redaction) {
            self.built[*index].unindexes = Some(target.to_owned());
        }
    }

    /// Queues a drafted event for other servers, in its own commit.
    pub fn send_to(&mut self, event_id: &EventId, servers: Vec<OwnedServerName>) {
        if let Some(index) = self.events.get(event_id) {
            self.built[*index].destinations = servers;
        }
    }

    pub fn also(&mut self) -> &mut Batch {
        &mut self.also
    }

    /// Writes every drafted event with its indices, the rooms' records and what was added
    /// with [`Draft::also`], in one store commit; then wakes whoever the events concern.
    pub fn commit(self) -> Result<()> {
        let Draft {
            timeline,
            locks,
            rooms,
            built,
            snapshots,
            seeded,
            also,
            ..
        } = self;
        if built.is_empty() {
            return if also.is_empty() {
                Ok(())
            } else {
                timeline.store.write(also)
            };
        }
        let mut also = Some(also);
        // The request's address and user agent (read only when an event is audited; a
        // message is not); each event's sender is its actor.
        let origin = built
            .iter()
            .any(|event| event.audited.is_some())
            .then(crate::admin::audit::current_request);
        let mut audited: Vec<Record> = built
            .iter()
            .filter_map(|event| {
                let (action, target) = event.audited.as_ref()?;
                let origin = origin.as_ref()?.acting_as(&event.parsed.sender);
                let mut details = serde_json::json!({"room_id": event.stored.room_id});
                if *action != "room_create" {
                    details["event_id"] = event.stored.event_id.as_str().into();
                }
                Some(origin.record(action, target, details))
            })
            .collect();
        // Entries for the events go into the events' own commit: the chain is held across it.
        let mut chain = (!audited.is_empty()).then(|| timeline.audit.chain());
        let first = timeline
            .store
            .commit_many(built.len() as u64, &mut |first| {
                // What was added besides the events goes first: the events' own writes win
                // where both touch a key (a seeded room's state names the joining user's
                // earlier invite; the join after it is the state).
                let mut batch = also.take().unwrap_or_default();
                let mut rooms = rooms.clone();
                for (index, event) in built.iter().enumerate() {
                    let count = first + index as u64;
                    timeline.activity.record(&event.stored.room_id, count);
                    timeline.activity.record_sent(&event.parsed.sender, count);
                    event.write(&mut batch, count, first)?;
                    if BUMP_EVENT_TYPES.contains(&event.parsed.kind.to_string().as_str())
                        && let Some(record) = rooms.get_mut(&event.stored.room_id)
                    {
                        record.bump = count;
                    }
                }
                for (room_id, record) in &rooms {
                    batch.put_json(Table::Rooms, room_id.as_bytes(), record)?;
                }
                for (id, (short, layer)) in &snapshots {
                    snapshot::write(&mut batch, *short, *id, layer)?;
                }
                if let Some(chain) = chain.as_mut() {
                    for record in audited.drain(..) {
                        chain.append(&mut batch, record)?;
                    }
                }
                Ok(batch)
            })?;
        if let Some(chain) = chain {
            chain.written();
        }
        for room_id in &seeded {
            timeline.member_cache.drop_room(room_id);
        }
        for event in &built {
            if let Some((user, record)) = event.membership_record(first) {
                timeline
                    .member_cache
                    .changed(&event.stored.room_id, user, &record);
            }
            // Memberships a fork's resolution changed: the room's cache is rebuilt.
            if !event.resolved_members.is_empty() {
                timeline.member_cache.drop_room(&event.stored.room_id);
            }
        }
        drop(locks);
        timeline.watchers.wake_workers();
        if built.iter().any(|event| !event.destinations.is_empty()) {
            timeline.watchers.wake_federation();
        }
        timeline.pushers.work.queued(built.iter().flat_map(|event| {
            event
                .notified
                .iter()
                .flat_map(|n| n.pushers.iter().copied())
        }));
        for room_id in rooms.keys() {
            timeline.wake_room(room_id)?;
        }
        // The target of a membership change hears of it even when it no longer concerns
        // them as a member (a kick, a ban).
        for event in &built {
            if event.membership.is_some()
                && let Some(target) = event.parsed.state_key.as_deref()
                && let Ok(target) = <&UserId>::try_from(target)
            {
                timeline.watchers.wake(target);
            }
        }
        Ok(())
    }
}

/// The servers that hear of an event: those of the room's joined members and of the user a
/// membership event is about, but this server and the event's own.
fn servers_to_tell(joined: &[OwnedUserId], parsed: &Pdu, own: &ServerName) -> Vec<OwnedServerName> {
    let target = parsed
        .state_key
        .as_deref()
        .filter(|_| parsed.kind == TimelineEventType::RoomMember)
        .and_then(|key| <&UserId>::try_from(key).ok());
    let servers: BTreeSet<&ServerName> = joined
        .iter()
        .map(|user| user.server_name())
        .chain(target.map(UserId::server_name))
        .filter(|server| *server != own && *server != parsed.sender.server_name())
        .collect();
    servers.into_iter().map(ToOwned::to_owned).collect()
}

/// The audit action of a membership change from `held` to `new`, if it is one the log
/// records; `own` when the user changes their own membership.
fn membership_action(held: Option<&str>, new: &str, own: bool) -> Option<&'static str> {
    match (held, new) {
        (_, "invite") if held != Some("invite") => Some("invite"),
        (_, "ban") if held != Some("ban") => Some("ban"),
        (Some("ban"), "leave") => Some("unban"),
        (Some("join" | "invite" | "knock"), "leave") if !own => Some("kick"),
        _ => None,
    }
}

/// An unsigned PDU in the federation format, without `hashes` and `signatures`; `dag` is its
/// `prev_events`, `auth_events` and depth.
fn pdu_object(
    room_id: Option<&RoomId>,
    sender: &UserId,
    kind: &TimelineEventType,
    content: &RawValue,
    state_key: Option<&str>,
    dag: (Vec<OwnedEventId>, Vec<OwnedEventId>, u64),
    origin_server_ts: u64,
) -> Result<CanonicalJsonObject> {
    let (prev_events, auth_events, depth) = dag;
    let mut json = serde_json::json!({
        "auth_events": auth_events,
        "content": serde_json::from_str::<serde_json::Value>(content.get())
            .map_err(|e| Error::bad_json(format!("Invalid content: {e}")))?,
        "depth": depth,
        "origin_server_ts": origin_server_ts,
        "prev_events": prev_events,
        "sender": sender,
        "type": kind.to_string(),
    });
    if let Some(room_id) = room_id {
        json["room_id"] = room_id.as_str().into();
    }
    if let Some(state_key) = state_key {
        json["state_key"] = state_key.into();
    }
    serde_json::from_value::<CanonicalJsonObject>(json)
        .map_err(|e| Error::bad_json(format!("Event is not canonical JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::membership_action;

    #[test]
    fn membership_changes_map_to_audit_actions() {
        let cases = [
            (None, "invite", false, Some("invite")),
            (Some("leave"), "invite", false, Some("invite")),
            (Some("invite"), "invite", false, None),
            (Some("join"), "ban", false, Some("ban")),
            (None, "ban", false, Some("ban")),
            (Some("ban"), "leave", false, Some("unban")),
            (Some("join"), "leave", false, Some("kick")),
            (Some("invite"), "leave", false, Some("kick")),
            (Some("join"), "leave", true, None),
            (Some("invite"), "leave", true, None),
            (Some("invite"), "join", true, None),
            (Some("join"), "join", true, None),
        ];
        for (held, new, own, expected) in cases {
            assert_eq!(
                membership_action(held, new, own),
                expected,
                "{held:?} → {new} (own: {own})"
            );
        }
    }
}

//! Room state as stored: the current state of each room, the value each piece of state had at
//! any timeline position, the state changes between two positions, the state before and after
//! each event, and the power levels the authorization rules read from it.
//!
//! Two views of history, for two readers: the per-key history by timeline position is what
//! this server showed its clients at each point (`/sync` and `/messages` compare positions);
//! the snapshots per event ([`super::snapshot`]) are the state the DAG gives each event,
//! which federation and the authorization of received events need.

use ruma::events::room::power_levels::RoomPowerLevels;
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use super::pdu::{self, Pdu, StoredPdu};
use super::snapshot::{self, StateMap};
use super::timeline::{RoomRecord, Timeline, content_field};
use crate::error::{Error, Result};
use crate::storage::{Direction, KeyRange, Table, keys};

/// The state event types (with an empty state key) an invitee or knocker is shown of a room,
/// and another server is given with an invite of one of its users.
pub const INVITE_STATE_TYPES: [&str; 7] = [
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

/// A state change recorded per event, so state at any point can be rebuilt.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(super) struct StateChange {
    pub event_type: String,
    pub state_key: String,
    pub event_id: OwnedEventId,
    pub replaces: Option<OwnedEventId>,
}

impl Timeline {
    /// The event id of a piece of current state.
    pub fn state_event_id(
        &self,
        short: u64,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<OwnedEventId>> {
        match self.store.get(
            Table::RoomState,
            &keys::room_state(short, event_type, state_key),
        )? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .ok()
                .and_then(|s| OwnedEventId::try_from(s).ok())
                .map(Some)
                .ok_or_else(|| Error::internal("corrupt room state entry")),
        }
    }

    /// A piece of current state, parsed.
    pub fn state_event(
        &self,
        short: u64,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<StoredPdu>> {
        match self.state_event_id(short, event_type, state_key)? {
            None => Ok(None),
            Some(id) => self.get(&id),
        }
    }

    /// The event id a piece of state had at timeline position `count` (after the event with
    /// that count was applied).
    pub fn state_id_at(
        &self,
        short: u64,
        event_type: &str,
        state_key: &str,
        count: u64,
    ) -> Result<Option<OwnedEventId>> {
        let lower = keys::state_history(short, event_type, state_key, 0);
        let upper = keys::state_history(short, event_type, state_key, count.saturating_add(1));
        let mut scan = self.store.scan(
            Table::StateHistory,
            KeyRange::between(&lower, &upper),
            Direction::Backward,
        )?;
        match scan.next() {
            None => Ok(None),
            Some(entry) => {
                let (_, value) = entry?;
                String::from_utf8(value)
                    .ok()
                    .and_then(|s| OwnedEventId::try_from(s).ok())
                    .map(Some)
                    .ok_or_else(|| Error::internal("corrupt state history entry"))
            }
        }
    }

    /// A string field of the content of a piece of state at timeline position `count`.
    pub fn state_field_at(
        &self,
        short: u64,
        event_type: &str,
        state_key: &str,
        count: u64,
        field: &str,
    ) -> Result<Option<String>> {
        let Some(id) = self.state_id_at(short, event_type, state_key, count)? else {
            return Ok(None);
        };
        Ok(self
            .get(&id)?
            .and_then(|s| content_field(&s.pdu, field).map(str::to_owned)))
    }

    /// The whole current state: (type, state key) → event id.
    pub fn current_state(&self, short: u64) -> Result<Vec<((String, String), OwnedEventId)>> {
        self.state_under(&keys::pdus_of(short))
    }

    /// The state events in force at timeline position `at` (`None`: the current state).
    pub fn state_events_at(&self, short: u64, at: Option<u64>) -> Result<Vec<StoredPdu>> {
        let mut events = Vec::new();
        for ((event_type, state_key), current) in self.current_state(short)? {
            let event_id = match at {
                None => Some(current),
                Some(at) => self.state_id_at(short, &event_type, &state_key, at)?,
            };
            if let Some(stored) = event_id.map(|id| self.get(&id)).transpose()?.flatten() {
                events.push(stored);
            }
        }
        Ok(events)
    }

    /// The current state events of one type: (type, state key) → event id.
    pub fn current_state_of_type(
        &self,
        short: u64,
        event_type: &str,
    ) -> Result<Vec<((String, String), OwnedEventId)>> {
        self.state_under(&keys::room_state(short, event_type, ""))
    }

    fn state_under(&self, prefix: &[u8]) -> Result<Vec<((String, String), OwnedEventId)>> {
        self.store
            .scan(
                Table::RoomState,
                KeyRange::prefix(prefix),
                Direction::Forward,
            )?
            .map(|entry| {
                let (key, value) = entry?;
                let pair = keys::parse_room_state(&key)
                    .ok_or_else(|| Error::internal("corrupt state key"))?;
                let id = String::from_utf8(value)
                    .ok()
                    .and_then(|s| OwnedEventId::try_from(s).ok())
                    .ok_or_else(|| Error::internal("corrupt state value"))?;
                Ok((pair, id))
            })
            .collect()
    }

    /// The rooms a space lists as its children: `m.space.child` state whose `via` names at
    /// least one server (an event without `via` removes the child).
    pub fn space_children(&self, short: u64) -> Result<Vec<OwnedRoomId>> {
        let mut children = Vec::new();
        for ((_, state_key), event_id) in self.current_state_of_type(short, "m.space.child")? {
            let Some(event) = self.get(&event_id)? else {
                continue;
            };
            let listed = event.content()["via"]
                .as_array()
                .is_some_and(|via| !via.is_empty());
            if listed && let Ok(room_id) = OwnedRoomId::try_from(state_key) {
                children.push(room_id);
            }
        }
        Ok(children)
    }

    /// The (type, state key) pairs whose state changed after position `after` up to `upto`.
    pub fn state_changed_between(
        &self,
        short: u64,
        after: u64,
        upto: u64,
    ) -> Result<Vec<(String, String)>> {
        let range = KeyRange::between(
            &keys::pdu(short, after.saturating_add(1)),
            &keys::pdu(short, upto.saturating_add(1)),
        );
        let mut changed = std::collections::BTreeSet::new();
        for entry in self
            .store
            .scan(Table::StateChanges, range, Direction::Forward)?
        {
            let (_, value) = entry?;
            let change: StateChange = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("corrupt state change: {e}")))?;
            changed.insert((change.event_type, change.state_key));
        }
        Ok(changed.into_iter().collect())
    }

    /// The room state before an event (`after` false) or after it; `None` for an event this
    /// server does not have in a timeline.
    pub fn state_at_event(&self, event_id: &EventId, after: bool) -> Result<Option<StateMap>> {
        let Some((short, count)) = self.position(event_id)? else {
            return Ok(None);
        };
        let Some(snapshots) = snapshot::of_event(&*self.store, short, count)? else {
            // An event from before snapshots: its room's timeline was a line then, so the
            // per-key history at its position is exact.
            let at = if after { count } else { count - 1 };
            let mut state = StateMap::new();
            for (key, _) in self.current_state(short)? {
                if let Some(id) = self.state_id_at(short, &key.0, &key.1, at)? {
                    state.insert(key, id);
                }
            }
            return Ok(Some(state));
        };
        let id = if after { snapshots.1 } else { snapshots.0 };
        if id == 0 {
            return Ok(Some(StateMap::new()));
        }
        let layers = snapshot::Stored {
            store: &*self.store,
            short,
        };
        snapshot::state(&layers, id).map(Some)
    }

    /// The room's power levels as the authorization rules read them (creators included).
    pub fn power_levels(&self, record: &RoomRecord) -> Result<RoomPowerLevels> {
        power_levels(record, |kind| self.state_event(record.short, kind, ""))
    }
}

/// A room's power levels from its create and power levels events, read through `state` (type →
/// the current event of that type with an empty state key).
pub(super) fn power_levels(
    record: &RoomRecord,
    state: impl Fn(&str) -> Result<Option<StoredPdu>>,
) -> Result<RoomPowerLevels> {
    use ruma::events::room::power_levels::{RoomPowerLevelsEventContent, RoomPowerLevelsSource};
    let rules = pdu::rules(&record.version)?;
    let mut creators = Vec::new();
    if let Some(create) = state("m.room.create")? {
        creators.extend(Pdu::from_stored(&create).map(|p| p.sender));
        if rules.authorization.additional_room_creators {
            let extra = create.content()["additional_creators"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            creators.extend(
                extra
                    .iter()
                    .filter_map(|u| u.as_str())
                    .filter_map(|u| OwnedUserId::try_from(u).ok()),
            );
        }
    }
    let source = match state("m.room.power_levels")? {
        Some(stored) => RoomPowerLevelsSource::Original(
            serde_json::from_value::<RoomPowerLevelsEventContent>(stored.content())
                .map_err(|e| Error::internal(format!("stored power levels: {e}")))?,
        ),
        None => RoomPowerLevelsSource::None,
    };
    Ok(RoomPowerLevels::new(source, &rules.authorization, creators))
}

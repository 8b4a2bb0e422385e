//! Auth chains: the events that authorise a set of events, and the ones that authorise those,
//! down to the create event. Another server gets them with a room's state, to check that
//! state on its own.

use std::collections::BTreeSet;

use ruma::events::StateEventType;
use ruma::{EventId, OwnedEventId};

use super::pdu::Pdu;
use super::timeline::Timeline;
use crate::error::{Error, Result};

impl Timeline {
    /// Every event reachable from `from` through `auth_events` (not `from` itself, unless an
    /// event of it authorises another).
    pub fn auth_chain(
        &self,
        from: impl IntoIterator<Item = OwnedEventId>,
    ) -> Result<BTreeSet<OwnedEventId>> {
        let mut chain = BTreeSet::new();
        let mut todo: Vec<OwnedEventId> = from.into_iter().collect();
        let mut room = None;
        while let Some(event_id) = todo.pop() {
            let stored = self
                .get(&event_id)?
                .ok_or_else(|| Error::internal(format!("auth event {event_id} is missing")))?;
            let pdu = super::pdu::Pdu::from_stored(&stored)?;
            if pdu.kind != ruma::events::TimelineEventType::RoomCreate {
                room.get_or_insert(stored.room_id);
            }
            for auth in pdu.auth_events {
                if chain.insert(auth.clone()) {
                    todo.push(auth);
                }
            }
        }
        // From room version 12 the create event authorises every other event without being
        // named (the room id is its id): it belongs to their chain all the same.
        if let Some(room) = room
            && let Some(record) = self.room(&room)?
            && super::pdu::rules(&record.version)?
                .authorization
                .room_create_event_id_as_room_id
        {
            let create = OwnedEventId::try_from(format!("${}", &room.as_str()[1..]))
                .map_err(|e| Error::internal(format!("create event id of {room}: {e}")))?;
            chain.insert(create);
        }
        Ok(chain)
    }
}

/// Checks an event of another server against the authorization rules on its own and with
/// the state its auth events make (the spec's check against an event's auth events), where
/// `get` finds those events and `create` is the room's create event.
pub fn check_by_auth_events(
    rules: &ruma::room_version_rules::RoomVersionRules,
    event: &Pdu,
    create: &Pdu,
    get: impl Fn(&EventId) -> Option<Pdu>,
) -> Result<()> {
    ruma::state_res::check_state_independent_auth_rules(&rules.authorization, event, &get)
        .map_err(|e| Error::forbidden(format!("{}: {e}", event.event_id)))?;
    ruma::state_res::check_state_dependent_auth_rules(
        &rules.authorization,
        event,
        |kind: &StateEventType, key: &str| {
            if *kind == StateEventType::RoomCreate {
                return Some(create.clone());
            }
            event
                .auth_events
                .iter()
                .filter_map(|auth| get(auth))
                .find(|auth| {
                    auth.kind.to_string() == kind.to_string()
                        && auth.state_key.as_deref() == Some(key)
                })
        },
    )
    .map_err(|e| Error::forbidden(format!("{}: {e}", event.event_id)))
}

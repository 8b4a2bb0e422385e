//! State resolution: when a room's DAG forks (two servers sent events at the same moment), the
//! room's state is the resolution of the states at the tips of the fork, by the room version's
//! algorithm (v2, with v2.1's changes from room version 12, through ruma's `state-res`). Every
//! server resolves the same states to the same result, which is how they agree.

use std::collections::{HashMap, HashSet};

use ruma::events::StateEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::utils::event_id_set::EventIdSet;
use ruma::{EventId, OwnedEventId};

use super::pdu::Pdu;
use super::snapshot::StateMap;
use crate::error::{Error, Result};

/// Resolves `states` (each a whole room state) into one, `fetch` finding the events they name
/// and those that authorise them.
pub fn resolve(
    rules: &RoomVersionRules,
    states: &[StateMap],
    fetch: &dyn Fn(&EventId) -> Option<Pdu>,
) -> Result<StateMap> {
    let Some(v2) = rules.state_res.v2_rules() else {
        return Err(Error::internal("room versions 1 and 2 are not supported"));
    };
    let maps: Vec<ruma::state_res::StateMap<OwnedEventId>> = states
        .iter()
        .map(|state| {
            state
                .iter()
                .map(|((kind, key), id)| {
                    (
                        (StateEventType::from(kind.as_str()), key.clone()),
                        id.clone(),
                    )
                })
                .collect()
        })
        .collect();
    let auth_chains: Vec<EventIdSet<OwnedEventId>> = states
        .iter()
        .map(|state| auth_chain(state.values(), fetch).into_iter().collect())
        .collect();
    let resolved = ruma::state_res::resolve(
        &rules.authorization,
        v2,
        maps.iter(),
        auth_chains,
        |id: &EventId| fetch(id),
        |conflicted: &ruma::state_res::StateMap<Vec<OwnedEventId>>| {
            Some(conflicted_subgraph(conflicted.values().flatten(), fetch))
        },
    )
    .map_err(|e| Error::internal(format!("state resolution: {e}")))?;
    Ok(resolved
        .into_iter()
        .map(|((kind, key), id)| ((kind.to_string(), key), id))
        .collect())
}

/// Every event that authorises one of `events`, recursively.
fn auth_chain<'a>(
    events: impl Iterator<Item = &'a OwnedEventId>,
    fetch: &dyn Fn(&EventId) -> Option<Pdu>,
) -> HashSet<OwnedEventId> {
    let mut chain = HashSet::new();
    let mut todo: Vec<OwnedEventId> = events.cloned().collect();
    while let Some(id) = todo.pop() {
        let Some(event) = fetch(&id) else { continue };
        for auth in event.auth_events {
            if chain.insert(auth.clone()) {
                todo.push(auth);
            }
        }
    }
    chain
}

/// The conflicted state subgraph (room version 12): the events on an auth path from one
/// conflicted event to another, them included.
fn conflicted_subgraph<'a>(
    conflicted: impl Iterator<Item = &'a OwnedEventId>,
    fetch: &dyn Fn(&EventId) -> Option<Pdu>,
) -> EventIdSet<OwnedEventId> {
    let conflicted: HashSet<OwnedEventId> = conflicted.cloned().collect();
    // Whether an event leads (through auth events) to a conflicted event, memoised.
    let mut leads: HashMap<OwnedEventId, bool> = HashMap::new();
    fn visit(
        id: &OwnedEventId,
        conflicted: &HashSet<OwnedEventId>,
        fetch: &dyn Fn(&EventId) -> Option<Pdu>,
        leads: &mut HashMap<OwnedEventId, bool>,
    ) -> bool {
        if let Some(known) = leads.get(id) {
            return *known;
        }
        // Marked first: auth events never form a cycle, but a forged one must not loop.
        leads.insert(id.clone(), false);
        let mut any = false;
        for auth in fetch(id).map(|e| e.auth_events).unwrap_or_default() {
            let here = conflicted.contains(&auth) | visit(&auth, conflicted, fetch, leads);
            any |= here;
        }
        leads.insert(id.clone(), any);
        any
    }
    let mut subgraph: EventIdSet<OwnedEventId> = conflicted.iter().cloned().collect();
    for start in &conflicted {
        visit(start, &conflicted, fetch, &mut leads);
    }
    // An event below a conflicted one that leads to another conflicted one is on such a path.
    let mut below: HashSet<OwnedEventId> = HashSet::new();
    let mut todo: Vec<OwnedEventId> = conflicted.iter().cloned().collect();
    while let Some(id) = todo.pop() {
        for auth in fetch(&id).map(|e| e.auth_events).unwrap_or_default() {
            if below.insert(auth.clone()) {
                todo.push(auth);
            }
        }
    }
    for id in below {
        if leads.get(&id).copied().unwrap_or(false) {
            subgraph.insert(id);
        }
    }
    subgraph
}

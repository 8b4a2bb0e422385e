//! Auth chains: the events that authorise a set of events, and the ones that authorise those,
//! down to the create event. Another server gets them with a room's state, to check that
//! state on its own.

use std::collections::BTreeSet;

use ruma::OwnedEventId;

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
        while let Some(event_id) = todo.pop() {
            let stored = self
                .get(&event_id)?
                .ok_or_else(|| Error::internal(format!("auth event {event_id} is missing")))?;
            let pdu = super::pdu::Pdu::from_stored(&stored)?;
            for auth in pdu.auth_events {
                if chain.insert(auth.clone()) {
                    todo.push(auth);
                }
            }
        }
        Ok(chain)
    }
}


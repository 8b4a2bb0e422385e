//! Walking a room's DAG backwards through `prev_events`: what another server reads when it
//! fills a gap (`get_missing_events`) or scrolls back (`backfill`).

use std::collections::{BTreeSet, BinaryHeap, HashSet};

use ruma::{OwnedEventId, RoomId};

use super::pdu::{Pdu, StoredPdu};
use super::timeline::Timeline;
use crate::error::Result;

/// Most events one walk returns, whatever is asked.
pub const MAX_EVENTS: usize = 100;

impl Timeline {
    /// The events of `room_id` before `from` (with `from` itself when `with_from`), deepest
    /// first, at most `limit` of them: a walk back through `prev_events` that does not go
    /// past `stop` nor below `min_depth`. Events this server does not have end the walk
    /// where they are.
    pub fn walk_back(
        &self,
        room_id: &RoomId,
        (from, with_from): (&[OwnedEventId], bool),
        stop: &[OwnedEventId],
        limit: usize,
        min_depth: u64,
    ) -> Result<Vec<StoredPdu>> {
        let limit = limit.min(MAX_EVENTS);
        let stop: HashSet<&OwnedEventId> = stop.iter().collect();
        let mut seen: HashSet<OwnedEventId> = HashSet::new();
        // Deepest first, so that the nearest history comes before older branches.
        let mut queue: BinaryHeap<(u64, OwnedEventId)> = BinaryHeap::new();
        let mut found = Vec::new();
        let mut push = |timeline: &Timeline,
                        queue: &mut BinaryHeap<(u64, OwnedEventId)>,
                        event_id: &OwnedEventId|
         -> Result<Option<(StoredPdu, Pdu)>> {
            if stop.contains(event_id) || !seen.insert(event_id.clone()) {
                return Ok(None);
            }
            let Some(stored) = timeline.get(event_id)?.filter(|e| e.room_id == room_id) else {
                return Ok(None);
            };
            let parsed = Pdu::from_stored(&stored)?;
            let depth = u64::from(parsed.depth);
            if depth < min_depth {
                return Ok(None);
            }
            queue.push((depth, event_id.clone()));
            Ok(Some((stored, parsed)))
        };
        let mut loaded = std::collections::HashMap::new();
        for event_id in from {
            if let Some((stored, parsed)) = push(self, &mut queue, event_id)? {
                loaded.insert(event_id.clone(), (stored, parsed, with_from));
            }
        }
        while let Some((_, event_id)) = queue.pop() {
            if found.len() >= limit {
                break;
            }
            let Some((stored, parsed, keep)) = loaded.remove(&event_id) else {
                continue;
            };
            if keep {
                found.push(stored);
            }
            let prevs: BTreeSet<OwnedEventId> = parsed.prev_events.into_iter().collect();
            for prev in prevs {
                if let Some((stored, parsed)) = push(self, &mut queue, &prev)? {
                    loaded.insert(prev, (stored, parsed, true));
                }
            }
        }
        Ok(found)
    }
}

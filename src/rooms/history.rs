//! The history of a room joined through another server, from before the join. A join brings
//! the room's state, not its timeline: what came before is fetched from the room's other
//! servers when a client pages back that far (`/messages`), and kept here.
//!
//! Timeline positions only grow, so the join reserves a band of them below its own: the
//! history fills the band downwards, newest first, and pages back like any other part of the
//! timeline. Such an event's visibility is judged by the state the join brought (the state
//! before it is not known here).

use ruma::OwnedEventId;
use serde::{Deserialize, Serialize};

use super::pdu::StoredPdu;
use super::timeline::Timeline;
use crate::error::{Error, Result};
use crate::storage::{Batch, Direction, Table, keys};

/// Positions reserved for a joined room's history: more events than anyone pages back through.
pub const BAND: u64 = 1 << 20;

/// Where a room's fetched history stands.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct History {
    /// The lowest position of the band.
    pub floor: u64,
    /// The position of the oldest event fetched so far (the band's top while none is).
    pub next: u64,
    /// The position of the state the join brought; earlier events are judged by it.
    pub seeded_at: u64,
    /// Whether the room's first event was reached, or no server had more to give.
    pub complete: bool,
}

impl History {
    pub fn new(floor: u64, seeded_at: u64) -> Self {
        Self {
            floor,
            next: floor + BAND,
            seeded_at,
            complete: false,
        }
    }
}

impl Timeline {
    /// The room's oldest event here, while there is history before it left to fetch.
    pub fn history_to_fetch(&self, room_id: &ruma::RoomId) -> Result<Option<OwnedEventId>> {
        let Some(room) = self.room(room_id)? else {
            return Ok(None);
        };
        if room.history.is_none_or(|h| h.complete) {
            return Ok(None);
        }
        let oldest = self
            .scan_events(room.short, 0, u64::MAX, Direction::Forward)?
            .next()
            .transpose()?;
        Ok(oldest.map(|(_, event)| event.event_id))
    }

    /// Keeps `events` (checked, newest first) as the history before the room's oldest event,
    /// and `outliers` (the events that authorise them) by id. `complete`: nothing older is
    /// left to fetch. Events already here are skipped; returns how many were kept.
    pub async fn keep_history(
        &self,
        room_id: &ruma::RoomId,
        events: Vec<StoredPdu>,
        outliers: Vec<StoredPdu>,
        complete: bool,
    ) -> Result<usize> {
        let lock = self.room_lock(room_id);
        let _guard = lock.lock().await;
        let mut room = self
            .room(room_id)?
            .ok_or_else(|| Error::not_found("Unknown room"))?;
        let Some(mut history) = room.history else {
            return Ok(0);
        };
        let short = room.short;
        let mut batch = Batch::new();
        let mut kept = 0;
        for event in events {
            if history.next == history.floor {
                history.complete = true;
                break;
            }
            if self.position(&event.event_id)?.is_some() {
                continue;
            }
            history.next -= 1;
            let count = history.next;
            batch.put_json(Table::Pdus, keys::pdu(short, count), &event)?;
            batch.put(
                Table::EventIds,
                event.event_id.as_bytes(),
                keys::pdu(short, count),
            );
            batch.delete(Table::Outliers, event.event_id.as_bytes());
            let kind = event.pdu.get("type").and_then(|t| match t {
                ruma::CanonicalJsonValue::String(kind) => Some(kind.as_str()),
                _ => None,
            });
            if kind.is_some_and(|k| crate::search::document::indexable(&k.into())) {
                crate::search::outbox::index(&mut batch, short, count);
            }
            kept += 1;
        }
        for outlier in outliers {
            if self.get(&outlier.event_id)?.is_none() {
                batch.put_json(Table::Outliers, outlier.event_id.as_bytes(), &outlier)?;
            }
        }
        history.complete |= complete;
        room.history = Some(history);
        batch.put_json(Table::Rooms, room_id.as_bytes(), &room)?;
        self.store.write(batch)?;
        Ok(kept)
    }
}

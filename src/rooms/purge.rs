//! Purging a room: every event, its indices, the room's state, receipts, relations and the
//! members' notifications leave the store, and the search index is told to forget the
//! events (through its outbox, so a crash or an unreachable backend loses no removal). The
//! users' membership records stay, as `leave`, so their clients hear they are out.

use ruma::{OwnedUserId, RoomId};

use super::timeline::Timeline;
use crate::error::{Error, Result};
use crate::storage::{Batch, Direction, KeyRange, Table, keys};

/// Events purged per store commit (each with its indices and a search removal).
const EVENTS_PER_COMMIT: usize = 1000;
/// Keys deleted per store batch when clearing a room's other tables.
const KEYS_PER_BATCH: usize = 10_000;

/// Tables whose keys start with the room's short id.
const BY_SHORT_ID: [Table; 11] = [
    Table::StateChanges,
    Table::RoomState,
    Table::StateHistory,
    Table::StateSnapshots,
    Table::EventState,
    Table::Relations,
    Table::ThreadRoots,
    Table::ThreadActivity,
    Table::Receipts,
    Table::ReceiptChanges,
    Table::SentEvents,
];

/// What a purge removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub events: u64,
}

impl Timeline {
    /// Removes the room's events and everything indexed by them. The caller has made every
    /// member leave and holds the room's lock (no event is added meanwhile). Safe to run
    /// again after an interruption: it picks up what is left.
    pub fn purge(&self, room_id: &RoomId) -> Result<Purged> {
        let record = self
            .room(room_id)?
            .ok_or_else(|| Error::not_found("No such room"))?;
        let short = record.short;
        let mut purged = Purged::default();
        loop {
            let chunk: Vec<(u64, super::pdu::StoredPdu)> = self
                .scan_events(short, 0, u64::MAX, Direction::Forward)?
                .take(EVENTS_PER_COMMIT)
                .collect::<Result<_>>()?;
            if chunk.is_empty() {
                break;
            }
            // Fresh counts for the search removals: the indexer reads its outbox in order
            // and has long passed these events' own positions.
            self.store.commit_many(chunk.len() as u64, &mut |first| {
                let mut batch = Batch::new();
                for (index, (count, event)) in chunk.iter().enumerate() {
                    batch.delete(Table::Pdus, keys::pdu(short, *count));
                    batch.delete(Table::EventIds, event.event_id.as_bytes());
                    for media_id in crate::media::references::media_ids(
                        self.server_name.as_str(),
                        &event.content(),
                    ) {
                        batch.delete(Table::MediaRefs, keys::media_ref(&media_id, short, *count));
                    }
                    crate::search::outbox::remove(
                        &mut batch,
                        first + index as u64,
                        &event.event_id,
                    );
                }
                Ok(batch)
            })?;
            purged.events += chunk.len() as u64;
        }
        self.watchers.wake_workers();
        for table in BY_SHORT_ID {
            self.delete_prefix(table, &keys::pdus_of(short))?;
        }
        let members: Vec<OwnedUserId> = self
            .room_memberships(room_id)?
            .iter()
            .map(|(user, _)| user.clone())
            .collect();
        for user in &members {
            let of_user = keys::notifications_of(user.as_str(), short);
            self.delete_prefix(Table::Notifications, &of_user)?;
            self.delete_prefix(
                Table::UserReceipts,
                &keys::user_receipts_of(user.as_str(), short),
            )?;
        }
        self.delete_prefix(Table::RoomUsers, &keys::of_room(room_id.as_str()))?;
        self.member_cache.drop_room(room_id);
        let mut batch = Batch::new();
        batch.delete(Table::Rooms, room_id.as_bytes());
        self.store.write(batch)?;
        tracing::info!(%room_id, events = purged.events, "room purged");
        Ok(purged)
    }

    /// Deletes every key of `table` under `prefix`, in batches.
    fn delete_prefix(&self, table: Table, prefix: &[u8]) -> Result<()> {
        loop {
            let keys: Vec<Vec<u8>> = self
                .store
                .scan(table, KeyRange::prefix(prefix), Direction::Forward)?
                .take(KEYS_PER_BATCH)
                .map(|entry| entry.map(|(key, _)| key))
                .collect::<Result<_>>()?;
            if keys.is_empty() {
                return Ok(());
            }
            let mut batch = Batch::new();
            for key in keys {
                batch.delete(table, key);
            }
            self.store.write(batch)?;
        }
    }
}

//! The search outbox: what the search backend still has to do, written in the same store
//! batch as the event it concerns (so a crash cannot lose it) and removed only after the
//! backend acknowledged it (so a crash can only repeat it, and repeating is harmless: a
//! document is replaced by its event id).

use ruma::events::TimelineEventType;
use ruma::{EventId, OwnedEventId};

use super::document::indexable;
use crate::rooms::pdu::StoredPdu;

use crate::error::{Error, Result};
use crate::storage::{Batch, Direction, KeyRange, Store, Table, keys};

const INDEX: u8 = 0;
const REMOVE: u8 = 1;

/// One thing for the backend to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Job {
    /// Index the event at this timeline position (or drop it, if it is no longer searchable).
    Index { short: u64, count: u64 },
    /// Remove the event's document (it was redacted).
    Remove { event_id: OwnedEventId },
}

/// Adds "index the event at (short, count)" to an event's batch.
pub fn index(batch: &mut Batch, short: u64, count: u64) {
    batch.put(
        Table::SearchOutbox,
        keys::search_outbox(count, INDEX),
        keys::u64_be(short).to_vec(),
    );
}

/// Adds "remove `event_id`" to the batch of the redaction at `count`; it sorts after the
/// event's own indexing, so the two cannot be applied in the wrong order.
pub fn remove(batch: &mut Batch, count: u64, event_id: &EventId) {
    batch.put(
        Table::SearchOutbox,
        keys::search_outbox(count, REMOVE),
        event_id.as_bytes(),
    );
}

/// Up to `limit` pending jobs after the outbox key `after` (from the start: `None`), oldest
/// first, with their keys.
///
/// Entries are written with the count of the commit they belong to, and commits are written
/// in count order, so a new entry never lands before one already seen: a reader that resumes
/// after the last key it handled skips the deleted entries before it (in an LSM store, a scan
/// from the start would walk over every deletion not yet compacted away).
pub fn pending(
    store: &dyn Store,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Job)>> {
    let lower = after.map_or_else(Vec::new, |key| {
        let mut next = key.to_vec();
        next.push(0);
        next
    });
    let scan = store.scan(
        Table::SearchOutbox,
        KeyRange { lower, upper: None },
        Direction::Forward,
    )?;
    let mut jobs = Vec::new();
    for entry in scan.take(limit) {
        let (key, value) = entry?;
        let corrupt = || Error::internal("corrupt search outbox entry");
        let (count, operation) = keys::parse_search_outbox(&key).ok_or_else(corrupt)?;
        let job = match operation {
            INDEX => Job::Index {
                short: keys::trailing_u64(&value).ok_or_else(corrupt)?,
                count,
            },
            REMOVE => Job::Remove {
                event_id: std::str::from_utf8(&value)
                    .ok()
                    .and_then(|id| OwnedEventId::try_from(id).ok())
                    .ok_or_else(corrupt)?,
            },
            _ => return Err(corrupt()),
        };
        jobs.push((key, job));
    }
    Ok(jobs)
}

/// Forgets jobs the backend acknowledged.
pub fn done(store: &dyn Store, done: impl IntoIterator<Item = Vec<u8>>) -> Result<()> {
    let mut batch = Batch::new();
    for key in done {
        batch.delete(Table::SearchOutbox, key);
    }
    store.write(batch)
}

/// Queues every searchable event of every room (for a rebuild of the index).
pub fn queue_all(store: &dyn Store) -> Result<usize> {
    let scan = store.scan(Table::Pdus, KeyRange::all(), Direction::Forward)?;
    let mut batch = Batch::new();
    let mut queued = 0;
    for entry in scan {
        let (key, value) = entry?;
        let (short, count) =
            keys::parse_pdu(&key).ok_or_else(|| Error::internal("corrupt timeline key"))?;
        let event: StoredPdu = serde_json::from_slice(&value)
            .map_err(|e| Error::internal(format!("corrupt stored event: {e}")))?;
        let kind = event.to_client_event()["type"]
            .as_str()
            .map(TimelineEventType::from);
        if kind.as_ref().is_some_and(indexable) {
            index(&mut batch, short, count);
            queued += 1;
            if queued % 10_000 == 0 {
                store.write(std::mem::take(&mut batch))?;
            }
        }
    }
    store.write(batch)?;
    Ok(queued)
}

/// How many jobs wait (for the reindex command's progress and the benchmarks).
pub fn depth(store: &dyn Store) -> Result<usize> {
    let scan = store.scan(Table::SearchOutbox, KeyRange::all(), Direction::Forward)?;
    Ok(scan.count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::rocksdb::RocksStore;

    #[test]
    fn jobs_come_in_key_order_and_resume_after_the_last_one_handled() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), 8).unwrap();
        let target = OwnedEventId::try_from("$target").unwrap();
        let mut batch = Batch::new();
        index(&mut batch, 7, 10);
        index(&mut batch, 7, 11);
        remove(&mut batch, 12, &target);
        store.write(batch).unwrap();

        let first = pending(&store, None, 2).unwrap();
        assert_eq!(
            first.iter().map(|(_, job)| job.clone()).collect::<Vec<_>>(),
            vec![
                Job::Index {
                    short: 7,
                    count: 10
                },
                Job::Index {
                    short: 7,
                    count: 11
                }
            ]
        );
        let last = first.last().unwrap().0.clone();
        done(&store, first.into_iter().map(|(key, _)| key)).unwrap();
        let rest = pending(&store, Some(&last), 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].1, Job::Remove { event_id: target });
        assert_eq!(depth(&store).unwrap(), 1);
    }
}

//! The push outbox: per pusher, what its gateway still has to be told, written in the same
//! store batch as the event (or the receipt) it is about, and removed only after the gateway
//! answered. A crash can repeat the notification in flight, never lose one.

use crate::error::{Error, Result};
use crate::storage::{Batch, Direction, KeyRange, Store, Table, keys};

const EVENT: u8 = 0;
const BADGE: u8 = 1;

/// One thing to tell a pusher's gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    /// The event at this timeline position notifies the pusher's user.
    Event { short: u64, count: u64 },
    /// The user read something: the badge (unread count) changed.
    Badge,
}

/// Queues "notify of the event at (short, count)" for a pusher, in the event's batch.
pub fn event(batch: &mut Batch, pusher: u64, short: u64, count: u64) {
    batch.put(
        Table::PushQueue,
        keys::push_queue(pusher, count, EVENT),
        keys::u64_be(short).to_vec(),
    );
}

/// Queues "the badge changed" for a pusher, in the batch of the receipt at `count`.
pub fn badge(batch: &mut Batch, pusher: u64, count: u64) {
    batch.put(
        Table::PushQueue,
        keys::push_queue(pusher, count, BADGE),
        Vec::new(),
    );
}

/// Up to `limit` items of the pusher's queue after the key `after` (from its start: `None`),
/// oldest first, with their keys. Items are queued with the count of their commit, and commits
/// are written in count order, so resuming after the last key handled misses nothing and does
/// not walk over deletions again.
pub fn pending(
    store: &dyn Store,
    pusher: u64,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Item)>> {
    let prefix = keys::u64_be(pusher).to_vec();
    let lower = after.map_or_else(
        || prefix.clone(),
        |key| {
            let mut next = key.to_vec();
            next.push(0);
            next
        },
    );
    let range = KeyRange {
        lower,
        upper: keys::prefix_successor(&prefix),
    };
    let mut items = Vec::new();
    for entry in store
        .scan(Table::PushQueue, range, Direction::Forward)?
        .take(limit)
    {
        let (key, value) = entry?;
        let corrupt = || Error::internal("corrupt push queue entry");
        let (count, kind) = keys::parse_push_queue(&key).ok_or_else(corrupt)?;
        let item = match kind {
            EVENT => Item::Event {
                short: keys::trailing_u64(&value).ok_or_else(corrupt)?,
                count,
            },
            BADGE => Item::Badge,
            _ => return Err(corrupt()),
        };
        items.push((key, item));
    }
    Ok(items)
}

/// Whether the pusher has anything queued.
pub fn has_pending(store: &dyn Store, pusher: u64) -> Result<bool> {
    Ok(!pending(store, pusher, None, 1)?.is_empty())
}

/// Forgets an item the gateway answered.
pub fn done(store: &dyn Store, key: &[u8]) -> Result<()> {
    let mut batch = Batch::new();
    batch.delete(Table::PushQueue, key.to_vec());
    store.write(batch)
}

/// Adds the removal of the pusher's whole queue to `batch`.
pub fn clear(store: &dyn Store, batch: &mut Batch, pusher: u64) -> Result<()> {
    let prefix = keys::u64_be(pusher);
    for entry in store.scan(
        Table::PushQueue,
        KeyRange::prefix(&prefix),
        Direction::Forward,
    )? {
        batch.delete(Table::PushQueue, entry?.0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::rocksdb::RocksStore;

    #[test]
    fn each_pusher_has_its_own_queue_in_count_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), 8).unwrap();
        let mut batch = Batch::new();
        event(&mut batch, 1, 7, 12);
        badge(&mut batch, 1, 11);
        event(&mut batch, 2, 7, 10);
        event(&mut batch, 1, 9, 13);
        store.write(batch).unwrap();

        let first = pending(&store, 1, None, 2).unwrap();
        let items: Vec<Item> = first.iter().map(|(_, item)| *item).collect();
        assert_eq!(
            items,
            vec![
                Item::Badge,
                Item::Event {
                    short: 7,
                    count: 12
                }
            ]
        );
        for (key, _) in &first {
            done(&store, key).unwrap();
        }
        let rest = pending(&store, 1, Some(&first[1].0), 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(
            rest[0].1,
            Item::Event {
                short: 9,
                count: 13
            }
        );

        let mut batch = Batch::new();
        clear(&store, &mut batch, 1).unwrap();
        store.write(batch).unwrap();
        assert!(!has_pending(&store, 1).unwrap());
        assert!(
            has_pending(&store, 2).unwrap(),
            "another pusher's queue stays"
        );
    }
}

//! Account data: per-user JSON blobs by type, global or per room. Every change also gets an
//! entry under the server count, so `/sync` can list what changed since a token.

use std::sync::Arc;

use ruma::{OwnedRoomId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::storage::{Batch, Direction, KeyRange, Store, StoreExt, Table, keys};

#[derive(Deserialize, Serialize)]
struct Stored {
    count: u64,
    content: Box<RawValue>,
}

#[derive(Deserialize, Serialize)]
struct Change {
    room_id: Option<OwnedRoomId>,
    event_type: String,
}

pub struct AccountData {
    store: Arc<dyn Store>,
    watchers: Arc<crate::watchers::Watchers>,
    /// Serialises read-modify-write updates (tags).
    lock: std::sync::Mutex<()>,
}

impl AccountData {
    pub fn new(store: Arc<dyn Store>, watchers: Arc<crate::watchers::Watchers>) -> Self {
        Self {
            store,
            watchers,
            lock: std::sync::Mutex::new(()),
        }
    }

    /// Reads an entry as a JSON object (empty if unset), lets `change` edit it, stores it.
    pub fn update(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        event_type: &str,
        change: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>) -> Result<()>,
    ) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut content: serde_json::Map<String, serde_json::Value> =
            match self.get(user_id, room_id, event_type)? {
                Some(raw) => serde_json::from_str(raw.get()).unwrap_or_default(),
                None => serde_json::Map::new(),
            };
        change(&mut content)?;
        let raw = serde_json::value::to_raw_value(&content)
            .map_err(|e| Error::internal(format!("serialising account data: {e}")))?;
        self.set(user_id, room_id, event_type, raw)?;
        Ok(())
    }

    pub fn get(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        event_type: &str,
    ) -> Result<Option<Box<RawValue>>> {
        let key = keys::account_data(user_id.as_str(), room_id.map(RoomId::as_str), event_type);
        Ok(self
            .store
            .get_json::<Stored>(Table::AccountData, &key)?
            .map(|s| s.content))
    }

    /// Stores content (a JSON object) and records the change for `/sync`.
    pub fn set(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        event_type: &str,
        content: Box<RawValue>,
    ) -> Result<u64> {
        if !content.get().trim_start().starts_with('{') {
            return Err(Error::bad_json(
                "Account data content must be a JSON object",
            ));
        }
        let key = keys::account_data(user_id.as_str(), room_id.map(RoomId::as_str), event_type);
        let previous: Option<Stored> = self.store.get_json(Table::AccountData, &key)?;
        let change = Change {
            room_id: room_id.map(ToOwned::to_owned),
            event_type: event_type.to_owned(),
        };
        let count = self.store.commit(&mut |count| {
            let mut batch = Batch::new();
            if let Some(previous) = &previous {
                batch.delete(
                    Table::AccountDataChanges,
                    keys::account_data_change(user_id.as_str(), previous.count),
                );
            }
            batch.put_json(
                Table::AccountData,
                key.clone(),
                &Stored {
                    count,
                    content: content.clone(),
                },
            )?;
            batch.put_json(
                Table::AccountDataChanges,
                keys::account_data_change(user_id.as_str(), count),
                &change,
            )?;
            Ok(batch)
        })?;
        self.watchers.wake(user_id);
        Ok(count)
    }

    /// (room, type) of every entry changed after `since`, oldest change first.
    pub fn changed_since(
        &self,
        user_id: &UserId,
        since: u64,
    ) -> Result<Vec<(Option<OwnedRoomId>, String)>> {
        let lower = keys::account_data_change(user_id.as_str(), since.saturating_add(1));
        let prefix = keys::prefix(&[user_id.as_bytes()]);
        let range = KeyRange {
            lower,
            upper: keys::prefix_successor(&prefix),
        };
        self.store
            .scan(Table::AccountDataChanges, range, Direction::Forward)?
            .map(|entry| {
                let (_, value) = entry?;
                let change: Change = serde_json::from_slice(&value)
                    .map_err(|e| Error::internal(format!("corrupt account data change: {e}")))?;
                Ok((change.room_id, change.event_type))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn changes_are_listed_once_each_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::storage::rocksdb::RocksStore::open(dir.path(), 8).unwrap());
        let data = AccountData::new(store, Default::default());
        let alice: &UserId = "@alice:example.org".try_into().unwrap();
        let room: &RoomId = "!room:example.org".try_into().unwrap();

        let first = data.set(alice, None, "m.direct", raw("{}")).unwrap();
        data.set(alice, Some(room), "m.tag", raw(r#"{"tags":{}}"#))
            .unwrap();
        data.set(alice, None, "m.direct", raw(r#"{"@b:x":[]}"#))
            .unwrap();

        assert_eq!(
            data.get(alice, None, "m.direct").unwrap().unwrap().get(),
            r#"{"@b:x":[]}"#
        );
        assert!(data.get(alice, Some(room), "m.direct").unwrap().is_none());
        let changes = data.changed_since(alice, 0).unwrap();
        assert_eq!(
            changes,
            vec![
                (Some(room.to_owned()), "m.tag".into()),
                (None, "m.direct".into())
            ]
        );
        assert_eq!(data.changed_since(alice, first).unwrap().len(), 2);
        assert!(data.set(alice, None, "x", raw("[1]")).is_err());
    }
}

//! Server-side room key backup: versions (an algorithm and its public auth data, numbered per
//! user, the newest undeleted one current) and the encrypted room keys stored under a version.
//! Keys go only to the current version; each change moves the version's `etag`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use http::StatusCode;
use ruma::UserId;
use ruma::api::error::{ErrorKind, WrongRoomKeysVersionErrorData};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::storage::{Batch, Direction, KeyRange, Store, StoreExt, Table, keys};

/// A backup version as stored.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Version {
    pub algorithm: String,
    pub auth_data: Value,
    /// Bumped on every change of the version's keys.
    pub etag: u64,
    /// How many keys the version holds.
    pub count: u64,
    pub deleted: bool,
}

/// Which keys a read or delete covers.
#[derive(Clone, Copy)]
pub enum Scope<'a> {
    All,
    Room(&'a str),
    Session(&'a str, &'a str),
}

impl Scope<'_> {
    fn prefix(&self, user: &str, version: u64) -> Vec<u8> {
        match self {
            Scope::All => keys::backup_key(user, version, None, None),
            Scope::Room(room) | Scope::Session(room, _) => {
                keys::backup_key(user, version, Some(room), None)
            }
        }
    }
}

fn not_found() -> Error {
    Error::not_found("No such backup version")
}

/// A version number as the path gives it.
fn parse_version(version: &str) -> Result<u64> {
    version.parse().map_err(|_| not_found())
}

/// Whether `new` should replace `old`, by the spec's order: verified keys first, then the
/// lower first message index, then the lower forwarded count.
fn better(new: &Value, old: &Value) -> bool {
    let verified = |k: &Value| k["is_verified"].as_bool().unwrap_or(false);
    let number = |k: &Value, field: &str| k[field].as_u64().unwrap_or(u64::MAX);
    if verified(new) != verified(old) {
        return verified(new);
    }
    let (new_index, old_index) = (
        number(new, "first_message_index"),
        number(old, "first_message_index"),
    );
    if new_index != old_index {
        return new_index < old_index;
    }
    number(new, "forwarded_count") < number(old, "forwarded_count")
}

fn validate_key_data(key: &Value) -> Result<()> {
    let valid = key["first_message_index"].is_u64()
        && key["forwarded_count"].is_u64()
        && key["is_verified"].is_boolean()
        && key["session_data"].is_object();
    if valid {
        Ok(())
    } else {
        Err(Error::bad_json(
            "Key backup data needs first_message_index, forwarded_count, is_verified and session_data",
        ))
    }
}

pub struct Backup {
    store: Arc<dyn Store>,
    /// Serialises changes, so counts and etags stay exact.
    lock: Mutex<()>,
}

impl Backup {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            lock: Mutex::new(()),
        }
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest version, deleted ones counted or not.
    fn newest(&self, user: &UserId, deleted_too: bool) -> Result<Option<(u64, Version)>> {
        let prefix = keys::prefix(&[user.as_bytes()]);
        for entry in self.store.scan(
            Table::BackupVersions,
            KeyRange::prefix(&prefix),
            Direction::Backward,
        )? {
            let (key, value) = entry?;
            let version: Version = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("corrupt backup version: {e}")))?;
            if deleted_too || !version.deleted {
                return Ok(Some((keys::trailing_u64(&key).unwrap_or(0), version)));
            }
        }
        Ok(None)
    }

    /// The current version: the newest one not deleted.
    pub fn latest(&self, user: &UserId) -> Result<Option<(u64, Version)>> {
        self.newest(user, false)
    }

    /// Writes a version's record, with whatever else `batch` holds.
    fn store_version(
        &self,
        user: &UserId,
        number: u64,
        record: &Version,
        mut batch: Batch,
    ) -> Result<()> {
        batch.put_json(
            Table::BackupVersions,
            keys::backup_version(user.as_str(), number),
            record,
        )?;
        self.store.write(batch)
    }

    /// A version by its number; `M_NOT_FOUND` when unknown or deleted.
    pub fn get(&self, user: &UserId, version: &str) -> Result<(u64, Version)> {
        let number = parse_version(version)?;
        match self.store.get_json::<Version>(
            Table::BackupVersions,
            &keys::backup_version(user.as_str(), number),
        )? {
            Some(record) if !record.deleted => Ok((number, record)),
            _ => Err(not_found()),
        }
    }

    /// Creates a version, which becomes the current one; returns its number.
    pub fn create(&self, user: &UserId, algorithm: String, auth_data: Value) -> Result<u64> {
        let _guard = self.guard();
        if !auth_data.is_object() {
            return Err(Error::bad_json("auth_data must be an object"));
        }
        // Numbers are never reused, so count deleted versions too.
        let number = self.newest(user, true)?.map_or(1, |(n, _)| n + 1);
        let record = Version {
            algorithm,
            auth_data,
            etag: 0,
            count: 0,
            deleted: false,
        };
        self.store_version(user, number, &record, Batch::new())?;
        Ok(number)
    }

    /// Replaces a version's auth data; the algorithm may not change.
    pub fn update(
        &self,
        user: &UserId,
        version: &str,
        algorithm: &str,
        auth_data: Value,
    ) -> Result<()> {
        let _guard = self.guard();
        let (number, mut record) = self.get(user, version)?;
        if record.algorithm != algorithm {
            return Err(Error::invalid_param(
                "The algorithm of a backup version cannot change",
            ));
        }
        if !auth_data.is_object() {
            return Err(Error::bad_json("auth_data must be an object"));
        }
        record.auth_data = auth_data;
        self.store_version(user, number, &record, Batch::new())
    }

    /// Deletes a version and its keys. Its number is not used again.
    pub fn delete_version(&self, user: &UserId, version: &str) -> Result<()> {
        let _guard = self.guard();
        let (number, mut record) = self.get(user, version)?;
        let mut batch = Batch::new();
        for entry in self
            .store
            .scan_prefix(Table::BackupKeys, &Scope::All.prefix(user.as_str(), number))?
        {
            batch.delete(Table::BackupKeys, entry?.0);
        }
        record.deleted = true;
        record.count = 0;
        self.store_version(user, number, &record, batch)
    }

    /// Stores keys (room → session → key data) in the current version, keeping the better key
    /// where one is already there. Returns the version's key count and etag.
    pub fn put_keys(
        &self,
        user: &UserId,
        version: &str,
        rooms: &BTreeMap<String, BTreeMap<String, Value>>,
    ) -> Result<(u64, u64)> {
        let _guard = self.guard();
        let (number, mut record) = self.get(user, version)?;
        let current = self.latest(user)?.map(|(n, _)| n);
        if current != Some(number) {
            return Err(Error::new(
                StatusCode::FORBIDDEN,
                ErrorKind::WrongRoomKeysVersion(WrongRoomKeysVersionErrorData::new(
                    current.map(|n| n.to_string()).unwrap_or_default(),
                )),
                "Keys can only be added to the current backup version",
            ));
        }
        let u = user.as_str();
        let mut batch = Batch::new();
        let mut changed = false;
        for (room, sessions) in rooms {
            for (session, key) in sessions {
                validate_key_data(key)?;
                let storage_key = keys::backup_key(u, number, Some(room), Some(session));
                match self
                    .store
                    .get_json::<Value>(Table::BackupKeys, &storage_key)?
                {
                    Some(old) if !better(key, &old) => continue,
                    Some(_) => {}
                    None => record.count += 1,
                }
                batch.put_json(Table::BackupKeys, storage_key, key)?;
                changed = true;
            }
        }
        if changed {
            self.write_keys(user, number, &mut record, batch)?;
        }
        Ok((record.count, record.etag))
    }

    /// Writes a change of a version's keys, with the version's new count and etag.
    fn write_keys(
        &self,
        user: &UserId,
        number: u64,
        record: &mut Version,
        batch: Batch,
    ) -> Result<()> {
        record.etag += 1;
        self.store_version(user, number, record, batch)
    }

    /// The version's keys in `scope`: room → session → key data.
    pub fn keys(
        &self,
        user: &UserId,
        version: &str,
        scope: Scope<'_>,
    ) -> Result<BTreeMap<String, Map<String, Value>>> {
        let (number, _) = self.get(user, version)?;
        let mut rooms: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for entry in self
            .store
            .scan_prefix(Table::BackupKeys, &scope.prefix(user.as_str(), number))?
        {
            let (key, value) = entry?;
            let Some((room, session)) = keys::parse_backup_key(&key) else {
                continue;
            };
            if let Scope::Session(_, wanted) = scope
                && session != wanted
            {
                continue;
            }
            let value = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("corrupt backup key: {e}")))?;
            rooms.entry(room).or_default().insert(session, value);
        }
        Ok(rooms)
    }

    /// Deletes the version's keys in `scope`; returns the key count and etag after.
    pub fn delete_keys(
        &self,
        user: &UserId,
        version: &str,
        scope: Scope<'_>,
    ) -> Result<(u64, u64)> {
        let _guard = self.guard();
        let (number, mut record) = self.get(user, version)?;
        let u = user.as_str();
        let mut batch = Batch::new();
        let mut removed = 0;
        for entry in self
            .store
            .scan_prefix(Table::BackupKeys, &scope.prefix(u, number))?
        {
            let (key, _) = entry?;
            if let Scope::Session(_, wanted) = scope
                && keys::parse_backup_key(&key).is_none_or(|(_, session)| session != wanted)
            {
                continue;
            }
            batch.delete(Table::BackupKeys, key);
            removed += 1;
        }
        if removed > 0 {
            record.count = record.count.saturating_sub(removed);
            self.write_keys(user, number, &mut record, batch)?;
        }
        Ok((record.count, record.etag))
    }
}

#[cfg(test)]
mod tests {
    use ruma::owned_user_id;
    use serde_json::json;

    use super::*;

    fn key(index: u64, forwarded: u64, verified: bool) -> Value {
        json!({"first_message_index": index, "forwarded_count": forwarded, "is_verified": verified, "session_data": {"ciphertext": format!("{index}/{forwarded}/{verified}")}})
    }

    #[test]
    fn keys_go_to_the_current_version_and_the_better_key_stays() {
        let dir = tempfile::tempdir().unwrap();
        let backup = Backup::new(Arc::new(
            crate::storage::rocksdb::RocksStore::open(dir.path(), 8).unwrap(),
        ));
        let user = owned_user_id!("@a:x");
        let algorithm = "m.megolm_backup.v1.curve25519-aes-sha2".to_owned();
        let first = backup
            .create(&user, algorithm.clone(), json!({"public_key": "a"}))
            .unwrap();
        let put = |version: &str, room: &str, session: &str, k: Value| {
            let rooms =
                BTreeMap::from([(room.to_owned(), BTreeMap::from([(session.to_owned(), k)]))]);
            backup.put_keys(&user, version, &rooms)
        };
        assert_eq!(put("1", "!r:x", "s1", key(5, 1, false)).unwrap(), (1, 1));
        // A worse key (higher index) leaves the stored one and the etag alone; a better one
        // (verified) replaces it.
        assert_eq!(put("1", "!r:x", "s1", key(9, 0, false)).unwrap(), (1, 1));
        assert_eq!(put("1", "!r:x", "s1", key(7, 3, true)).unwrap(), (1, 2));
        assert_eq!(put("1", "!r:x", "s2", key(0, 0, false)).unwrap(), (2, 3));
        let stored = backup
            .keys(&user, "1", Scope::Session("!r:x", "s1"))
            .unwrap();
        assert_eq!(stored["!r:x"]["s1"], key(7, 3, true));

        // A new version becomes current: writes to the old one are refused by name.
        let second = backup.create(&user, algorithm.clone(), json!({})).unwrap();
        assert_eq!((first, second), (1, 2));
        let stale = put("1", "!r:x", "s3", key(0, 0, false)).unwrap_err();
        assert_eq!(stale.errcode(), "M_WRONG_ROOM_KEYS_VERSION");
        assert_eq!(backup.get(&user, "1").unwrap().1.count, 2);
        assert!(
            backup
                .update(&user, "2", "other.algorithm", json!({}))
                .is_err()
        );

        // Deleting the current version makes the previous one current again; numbers are
        // not reused.
        backup.delete_version(&user, "2").unwrap();
        assert_eq!(backup.get(&user, "2").unwrap_err().errcode(), "M_NOT_FOUND");
        assert_eq!(backup.latest(&user).unwrap().unwrap().0, 1);
        assert_eq!(backup.create(&user, algorithm, json!({})).unwrap(), 3);
        backup.delete_version(&user, "3").unwrap();
        assert_eq!(
            backup.delete_keys(&user, "1", Scope::Room("!r:x")).unwrap(),
            (0, 4)
        );
        assert!(backup.keys(&user, "1", Scope::All).unwrap().is_empty());
        assert_eq!(backup.get(&user, "x").unwrap_err().errcode(), "M_NOT_FOUND");
    }
}

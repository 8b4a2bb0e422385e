//! Pushers: where each user's apps want notifications pushed (a push gateway URL and the
//! app's pushkey), owned by the device that set them. Kept in the store and, because every
//! new event asks who of its notified members has one, in memory too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use ruma::api::client::push::{Pusher, PusherKind};
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};

use super::queue;
use super::sender::Work;
use crate::error::{Error, Result};
use crate::storage::{Batch, Direction, KeyRange, Store, Table, keys};

/// The path every push gateway serves (the push gateway API).
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";
/// Longest `app_id` (the spec's limit).
const MAX_APP_ID: usize = 64;
/// Longest `pushkey` (the spec's limit).
const MAX_PUSHKEY: usize = 512;
/// Longest display name, language tag or profile tag.
const MAX_LABEL: usize = 256;
/// Largest `data` object, as JSON: it is sent with every notification, and gateways (APNs
/// behind them) take about 4 KB in all.
const MAX_DATA_BYTES: usize = 2048;

/// A stored pusher.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct PusherRecord {
    /// Names the pusher's queue; kept when the pusher is set again.
    pub id: u64,
    pub user_id: OwnedUserId,
    /// The device that set it; logging that device out removes the pusher.
    pub device_id: Option<OwnedDeviceId>,
    pub pusher: Pusher,
    /// When the pusher was last set (ms).
    pub pushkey_ts: u64,
    /// Since when deliveries have been failing (ms), if they are.
    #[serde(default)]
    pub failing_since: Option<u64>,
    /// Failed for too long: nothing is queued for it until it is set again.
    #[serde(default)]
    pub disabled: bool,
}

impl PusherRecord {
    pub fn app_id(&self) -> &str {
        &self.pusher.ids.app_id
    }

    pub fn pushkey(&self) -> &str {
        &self.pusher.ids.pushkey
    }

    fn key(&self) -> Vec<u8> {
        keys::pusher(self.user_id.as_str(), self.app_id(), self.pushkey())
    }
}

#[derive(Default)]
struct Cache {
    by_user: HashMap<OwnedUserId, Vec<Arc<PusherRecord>>>,
    by_id: HashMap<u64, Arc<PusherRecord>>,
}

impl Cache {
    fn insert(&mut self, record: Arc<PusherRecord>) {
        self.remove(record.id);
        self.by_user
            .entry(record.user_id.clone())
            .or_default()
            .push(record.clone());
        self.by_id.insert(record.id, record);
    }

    fn remove(&mut self, id: u64) {
        if let Some(old) = self.by_id.remove(&id)
            && let Some(list) = self.by_user.get_mut(&old.user_id)
        {
            list.retain(|p| p.id != id);
            if list.is_empty() {
                self.by_user.remove(&old.user_id);
            }
        }
    }
}

pub struct Pushers {
    store: Arc<dyn Store>,
    max_per_user: usize,
    cache: RwLock<Cache>,
    /// Serialises changes (read, decide, write, update the cache).
    lock: Mutex<()>,
    /// Which pushers have queued work, for the sender.
    pub work: Work,
}

impl Pushers {
    /// Loads every stored pusher.
    pub fn new(store: Arc<dyn Store>, max_per_user: usize) -> Result<Self> {
        let mut cache = Cache::default();
        for entry in store.scan(Table::Pushers, KeyRange::all(), Direction::Forward)? {
            let (_, value) = entry?;
            let record: PusherRecord = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("corrupt pusher: {e}")))?;
            cache.insert(Arc::new(record));
        }
        Ok(Self {
            store,
            max_per_user,
            cache: RwLock::new(cache),
            lock: Mutex::new(()),
            work: Work::default(),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The user's pushers.
    pub fn of(&self, user_id: &UserId) -> Vec<Arc<PusherRecord>> {
        self.read()
            .by_user
            .get(user_id)
            .cloned()
            .unwrap_or_default()
    }

    /// The ids of the user's pushers that take notifications (for an event's commit).
    pub fn active_ids(&self, user_id: &UserId) -> Vec<u64> {
        self.read()
            .by_user
            .get(user_id)
            .map_or_else(Vec::new, |list| {
                list.iter().filter(|p| !p.disabled).map(|p| p.id).collect()
            })
    }

    pub fn by_id(&self, id: u64) -> Option<Arc<PusherRecord>> {
        self.read().by_id.get(&id).cloned()
    }

    /// Every pusher's id.
    pub fn ids(&self) -> Vec<u64> {
        self.read().by_id.keys().copied().collect()
    }

    /// Adds or replaces the user's pusher with the same app id and pushkey, owned by `device`.
    /// Unless `append`, the same app id and pushkey registered by other users is removed (the
    /// device changed hands). Checks what can be checked offline; the caller checks the URL's
    /// destination.
    pub fn set(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        pusher: Pusher,
        append: bool,
    ) -> Result<()> {
        validate(&pusher)?;
        let _guard = self.guard();
        let mine = self.of(user_id);
        let existing = mine
            .iter()
            .find(|p| p.app_id() == pusher.ids.app_id && p.pushkey() == pusher.ids.pushkey);
        if existing.is_none() && mine.len() >= self.max_per_user {
            return Err(Error::invalid_param(format!(
                "A user may have at most {} pushers",
                self.max_per_user
            )));
        }
        let id = match existing {
            Some(p) => p.id,
            None => self.store.next_count()?,
        };
        let record = Arc::new(PusherRecord {
            id,
            user_id: user_id.to_owned(),
            device_id: Some(device_id.to_owned()),
            pusher,
            pushkey_ts: crate::now_ms(),
            failing_since: None,
            disabled: false,
        });
        let mut batch = Batch::new();
        batch.put_json(Table::Pushers, record.key(), &*record)?;
        let mut removed = Vec::new();
        if !append {
            let others: Vec<Arc<PusherRecord>> = self
                .read()
                .by_id
                .values()
                .filter(|p| {
                    p.user_id != user_id
                        && p.app_id() == record.app_id()
                        && p.pushkey() == record.pushkey()
                })
                .cloned()
                .collect();
            for other in others {
                batch.delete(Table::Pushers, other.key());
                queue::clear(&*self.store, &mut batch, other.id)?;
                removed.push(other.id);
            }
        }
        self.store.write(batch)?;
        let mut cache = self.write();
        for id in removed {
            cache.remove(id);
        }
        cache.insert(record);
        Ok(())
    }

    /// Removes the user's pusher with this app id and pushkey, and its queue. Removing one that
    /// does not exist is no error (the spec's `kind: null` is idempotent).
    pub fn delete(&self, user_id: &UserId, app_id: &str, pushkey: &str) -> Result<()> {
        let found: Vec<u64> = self
            .of(user_id)
            .iter()
            .filter(|p| p.app_id() == app_id && p.pushkey() == pushkey)
            .map(|p| p.id)
            .collect();
        self.delete_ids(&found)
    }

    /// Removes the pushers the devices set (the devices were logged out or deleted).
    pub fn remove_devices(&self, user_id: &UserId, device_ids: &[String]) -> Result<()> {
        let found: Vec<u64> = self
            .of(user_id)
            .iter()
            .filter(|p| {
                p.device_id
                    .as_ref()
                    .is_some_and(|d| device_ids.iter().any(|id| id == d.as_str()))
            })
            .map(|p| p.id)
            .collect();
        self.delete_ids(&found)
    }

    /// Removes pushers by id, with their queues.
    pub fn delete_ids(&self, ids: &[u64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let _guard = self.guard();
        let mut batch = Batch::new();
        let mut removed = Vec::new();
        for id in ids {
            if let Some(record) = self.by_id(*id) {
                batch.delete(Table::Pushers, record.key());
                queue::clear(&*self.store, &mut batch, *id)?;
                removed.push(*id);
            }
        }
        self.store.write(batch)?;
        let mut cache = self.write();
        for id in removed {
            cache.remove(id);
        }
        Ok(())
    }

    /// Records how the pusher's deliveries go: failing since a time, or working again
    /// (`None`). Returns the record as it is now.
    pub fn set_failing(&self, id: u64, since: Option<u64>) -> Result<Option<Arc<PusherRecord>>> {
        self.update(id, |record| record.failing_since = since)
    }

    /// Stops queuing for a pusher that failed for too long and drops its queue; it works again
    /// once its app sets it again.
    pub fn disable(&self, id: u64) -> Result<()> {
        self.update(id, |record| record.disabled = true).map(drop)
    }

    fn update(
        &self,
        id: u64,
        change: impl FnOnce(&mut PusherRecord),
    ) -> Result<Option<Arc<PusherRecord>>> {
        let _guard = self.guard();
        let Some(current) = self.by_id(id) else {
            return Ok(None);
        };
        let mut record = (*current).clone();
        change(&mut record);
        let mut batch = Batch::new();
        batch.put_json(Table::Pushers, record.key(), &record)?;
        if record.disabled {
            queue::clear(&*self.store, &mut batch, id)?;
        }
        self.store.write(batch)?;
        let record = Arc::new(record);
        self.write().insert(record.clone());
        Ok(Some(record))
    }
}

/// What the spec asks of a pusher, and what keeps its notifications within gateway limits.
fn validate(pusher: &Pusher) -> Result<()> {
    let ids = &pusher.ids;
    if ids.app_id.is_empty() || ids.app_id.len() > MAX_APP_ID {
        return Err(Error::invalid_param(format!(
            "app_id must be 1 to {MAX_APP_ID} characters"
        )));
    }
    if ids.pushkey.is_empty() || ids.pushkey.len() > MAX_PUSHKEY {
        return Err(Error::invalid_param(format!(
            "pushkey must be 1 to {MAX_PUSHKEY} bytes"
        )));
    }
    for (name, value) in [
        ("app_display_name", Some(&pusher.app_display_name)),
        ("device_display_name", Some(&pusher.device_display_name)),
        ("lang", Some(&pusher.lang)),
        ("profile_tag", pusher.profile_tag.as_ref()),
    ] {
        if value.is_some_and(|v| v.len() > MAX_LABEL) {
            return Err(Error::invalid_param(format!(
                "{name} is longer than {MAX_LABEL} bytes"
            )));
        }
    }
    let PusherKind::Http(data) = &pusher.kind else {
        return Err(Error::invalid_param(
            "Only pushers of kind \"http\" are supported (or null, to delete one)",
        ));
    };
    gateway_url(&data.url)?;
    let data_bytes = serde_json::to_vec(&data.data).map_or(usize::MAX, |d| d.len());
    if data_bytes > MAX_DATA_BYTES {
        return Err(Error::invalid_param(format!(
            "The pusher's data is larger than {MAX_DATA_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Parses a pusher's `data.url`: http or https, ending in the push gateway API's path.
pub fn gateway_url(url: &str) -> Result<url::Url> {
    let parsed = url::Url::parse(url).map_err(|_| Error::invalid_param("data.url is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::invalid_param(
            "data.url must be an http or https URL",
        ));
    }
    if parsed.path() != NOTIFY_PATH {
        return Err(Error::invalid_param(format!(
            "data.url must end in {NOTIFY_PATH}"
        )));
    }
    if parsed.host().is_none() {
        return Err(Error::invalid_param("data.url has no host"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls_must_be_http_and_end_in_the_notify_path() {
        assert!(gateway_url("https://push.example.com/_matrix/push/v1/notify").is_ok());
        assert!(gateway_url("http://127.0.0.1:5000/_matrix/push/v1/notify").is_ok());
        for bad in [
            "ftp://push.example.com/_matrix/push/v1/notify",
            "https://push.example.com/notify",
            "https://push.example.com/_matrix/push/v1/notify/extra",
            "file:///_matrix/push/v1/notify",
            "not a url",
            "",
        ] {
            let error = gateway_url(bad).unwrap_err();
            assert_eq!(error.errcode(), "M_INVALID_PARAM", "{bad}");
        }
    }
}

//! Sessions: devices and the tokens that act for them. An access token is stored only as its
//! SHA-256, so a copy of the database opens nobody's account; each device holds at most one
//! access token and one refresh token, and deleting the device revokes both.

use std::sync::{Arc, Mutex};

use ring::digest::{SHA256, digest};
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};

use crate::admin::audit::{Audit, Origin};
use crate::error::{Error, Result};
use crate::storage::{Batch, Store, StoreExt, Table, keys};

/// Longest device display name kept.
pub const MAX_DEVICE_NAME_BYTES: usize = 256;

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct DeviceRecord {
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub last_seen_ip: Option<String>,
    pub last_seen_ts: Option<u64>,
    /// Hash of the device's current access token.
    access_token_hash: Option<String>,
    /// Hash of the device's current refresh token.
    refresh_token_hash: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
struct TokenRecord {
    user_id: OwnedUserId,
    device_id: OwnedDeviceId,
    /// Milliseconds since the epoch after which the token no longer works; `None`: never.
    expires_at: Option<u64>,
}

/// Who a valid access token acts for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    /// The appservice acting (with its `as_token`), for the user it names.
    pub appservice: Option<String>,
}

/// Tokens handed to a client at login, registration or refresh.
#[derive(Debug)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in_ms: Option<u64>,
}

pub struct Sessions {
    store: Arc<dyn Store>,
    refreshable_lifetime_ms: u64,
    /// Serialises read-modify-write of device records (token rotation, renames, deletion).
    lock: Mutex<()>,
    /// Logins and logouts are audited in the batch that makes them.
    audit: Arc<Audit>,
}

fn token_hash(token: &str) -> String {
    let d = digest(&SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    pub fn new(store: Arc<dyn Store>, refreshable_lifetime_ms: u64, audit: Arc<Audit>) -> Self {
        Self {
            audit,
            store,
            refreshable_lifetime_ms,
            lock: Mutex::new(()),
        }
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Who `token` acts for: `M_UNKNOWN_TOKEN` if unknown or revoked, with `soft_logout` when
    /// it merely expired (the device still exists and can refresh or log in again).
    pub fn authenticate(&self, token: &str) -> Result<Session> {
        let record: TokenRecord = self
            .store
            .get_json(Table::AccessTokens, token_hash(token).as_bytes())?
            .ok_or_else(|| Error::unknown_token(false))?;
        if record.expires_at.is_some_and(|at| crate::now_ms() >= at) {
            return Err(Error::unknown_token(true));
        }
        Ok(Session {
            user_id: record.user_id,
            device_id: record.device_id,
            appservice: None,
        })
    }

    /// Logs a device in: creates it (or reuses `device_id` if the user already has it),
    /// revokes its previous tokens, and issues new ones. Audited as `login` by `method`.
    pub fn login(
        &self,
        user_id: &UserId,
        device_id: Option<&DeviceId>,
        display_name: Option<String>,
        origin: &Origin,
        method: &str,
        refreshable: bool,
    ) -> Result<(OwnedDeviceId, IssuedTokens)> {
        let device_id: OwnedDeviceId = match device_id {
            Some(d) => d.to_owned(),
            None => crate::random::device_id().into(),
        };
        let _guard = self.guard();
        let mut batch = Batch::new();
        let mut device = match self.device(user_id, &device_id)? {
            Some(existing) => {
                revoke_tokens(&mut batch, &existing);
                existing
            }
            None => DeviceRecord {
                device_id: device_id.clone(),
                display_name: None,
                last_seen_ip: None,
                last_seen_ts: None,
                access_token_hash: None,
                refresh_token_hash: None,
            },
        };
        if let Some(name) = display_name {
            device.display_name = Some(truncate(name));
        }
        device.last_seen_ip = origin.ip.map(|ip| ip.to_string());
        device.last_seen_ts = Some(crate::now_ms());
        let issued = self.issue(&mut batch, user_id, &mut device, refreshable)?;
        batch.put_json(
            Table::Devices,
            keys::device(user_id.as_str(), device_id.as_str()),
            &device,
        )?;
        let audited = origin.acting_as(user_id).record(
            "login",
            user_id,
            serde_json::json!({"device_id": device_id, "method": method}),
        );
        self.audit.write(batch, [audited])?;
        Ok((device_id, issued))
    }

    fn issue(
        &self,
        batch: &mut Batch,
        user_id: &UserId,
        device: &mut DeviceRecord,
        refreshable: bool,
    ) -> Result<IssuedTokens> {
        let access_token = crate::random::token("sori_at_");
        let (refresh_token, expires_in_ms) = if refreshable {
            (
                Some(crate::random::token("sori_rt_")),
                Some(self.refreshable_lifetime_ms),
            )
        } else {
            (None, None)
        };
        let record = TokenRecord {
            user_id: user_id.to_owned(),
            device_id: device.device_id.clone(),
            expires_at: expires_in_ms.map(|ms| crate::now_ms() + ms),
        };
        let access_hash = token_hash(&access_token);
        batch.put_json(Table::AccessTokens, access_hash.as_bytes(), &record)?;
        device.access_token_hash = Some(access_hash);
        device.refresh_token_hash = None;
        if let Some(refresh) = &refresh_token {
            let refresh_hash = token_hash(refresh);
            let record = TokenRecord {
                expires_at: None,
                ..record
            };
            batch.put_json(Table::RefreshTokens, refresh_hash.as_bytes(), &record)?;
            device.refresh_token_hash = Some(refresh_hash);
        }
        Ok(IssuedTokens {
            access_token,
            refresh_token,
            expires_in_ms,
        })
    }

    /// Trades a refresh token for a new access and refresh token; the old pair stops working.
    pub fn refresh(&self, refresh_token: &str) -> Result<IssuedTokens> {
        let _guard = self.guard();
        let hash = token_hash(refresh_token);
        let record: TokenRecord = self
            .store
            .get_json(Table::RefreshTokens, hash.as_bytes())?
            .ok_or_else(|| Error::unknown_token(false))?;
        let mut device = self
            .device(&record.user_id, &record.device_id)?
            .ok_or_else(|| Error::unknown_token(false))?;
        let mut batch = Batch::new();
        revoke_tokens(&mut batch, &device);
        let issued = self.issue(&mut batch, &record.user_id, &mut device, true)?;
        batch.put_json(
            Table::Devices,
            keys::device(record.user_id.as_str(), record.device_id.as_str()),
            &device,
        )?;
        self.store.write(batch)?;
        Ok(issued)
    }

    pub fn device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Option<DeviceRecord>> {
        self.store.get_json(
            Table::Devices,
            &keys::device(user_id.as_str(), device_id.as_str()),
        )
    }

    pub fn devices(&self, user_id: &UserId) -> Result<Vec<DeviceRecord>> {
        self.store
            .scan_prefix(Table::Devices, &keys::devices_of(user_id.as_str()))?
            .map(|entry| {
                let (_, value) = entry?;
                serde_json::from_slice(&value)
                    .map_err(|e| Error::internal(format!("corrupt device record: {e}")))
            })
            .collect()
    }

    /// Renames a device; `M_NOT_FOUND` if the user has no such device.
    pub fn rename_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        name: Option<String>,
    ) -> Result<()> {
        let _guard = self.guard();
        let mut device = self
            .device(user_id, device_id)?
            .ok_or_else(|| Error::not_found("No such device"))?;
        device.display_name = name.map(truncate);
        let mut batch = Batch::new();
        batch.put_json(
            Table::Devices,
            keys::device(user_id.as_str(), device_id.as_str()),
            &device,
        )?;
        self.store.write(batch)
    }

    /// Deletes devices and revokes their tokens (audited as a `logout` of them); unknown
    /// device ids are skipped. Returns the ids of the devices deleted.
    pub fn delete_devices(
        &self,
        user_id: &UserId,
        device_ids: &[OwnedDeviceId],
        origin: &Origin,
    ) -> Result<Vec<OwnedDeviceId>> {
        let _guard = self.guard();
        let mut batch = Batch::new();
        let mut deleted = Vec::new();
        for device_id in device_ids {
            if let Some(device) = self.device(user_id, device_id)? {
                revoke_tokens(&mut batch, &device);
                batch.delete(
                    Table::Devices,
                    keys::device(user_id.as_str(), device_id.as_str()),
                );
                deleted.push(device_id.clone());
            }
        }
        if deleted.is_empty() {
            return Ok(deleted);
        }
        let audited = origin.record(
            "logout",
            user_id,
            serde_json::json!({"device_ids": deleted}),
        );
        self.audit.write(batch, [audited])?;
        Ok(deleted)
    }

    /// Deletes every device of the user except `keep`; returns their ids.
    pub fn delete_all_devices(
        &self,
        user_id: &UserId,
        keep: Option<&DeviceId>,
        origin: &Origin,
    ) -> Result<Vec<OwnedDeviceId>> {
        let ids: Vec<OwnedDeviceId> = self
            .devices(user_id)?
            .into_iter()
            .map(|d| d.device_id)
            .filter(|d| Some(d.as_ref()) != keep)
            .collect();
        self.delete_devices(user_id, &ids, origin)
    }
}

fn revoke_tokens(batch: &mut Batch, device: &DeviceRecord) {
    if let Some(hash) = &device.access_token_hash {
        batch.delete(Table::AccessTokens, hash.as_bytes());
    }
    if let Some(hash) = &device.refresh_token_hash {
        batch.delete(Table::RefreshTokens, hash.as_bytes());
    }
}

/// Cuts a display name to [`MAX_DEVICE_NAME_BYTES`] on a character boundary.
fn truncate(mut name: String) -> String {
    if name.len() > MAX_DEVICE_NAME_BYTES {
        let mut end = MAX_DEVICE_NAME_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(lifetime_ms: u64) -> (tempfile::TempDir, Sessions) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::storage::rocksdb::RocksStore::open(dir.path(), 8).unwrap());
        let audit = Arc::new(Audit::new(store.clone()).unwrap());
        (dir, Sessions::new(store, lifetime_ms, audit))
    }

    fn alice() -> OwnedUserId {
        "@alice:example.org".try_into().unwrap()
    }

    fn origin() -> Origin {
        Origin::of(&alice(), std::net::Ipv4Addr::LOCALHOST.into(), None)
    }

    #[test]
    fn tokens_are_stored_hashed_and_revoked_with_their_device() {
        let (_dir, s) = sessions(60_000);
        let (device, issued) = s
            .login(
                &alice(),
                None,
                Some("phone".into()),
                &origin(),
                "password",
                false,
            )
            .unwrap();
        assert!(issued.refresh_token.is_none());
        let session = s.authenticate(&issued.access_token).unwrap();
        assert_eq!(
            session,
            Session {
                user_id: alice(),
                device_id: device.clone(),
                appservice: None,
            }
        );
        assert!(
            s.store
                .get(Table::AccessTokens, issued.access_token.as_bytes())
                .unwrap()
                .is_none()
        );

        s.delete_devices(&alice(), &[device], &origin()).unwrap();
        let err = s.authenticate(&issued.access_token).unwrap_err();
        assert_eq!(err.errcode(), "M_UNKNOWN_TOKEN");
    }

    #[test]
    fn logging_in_again_on_a_device_replaces_its_token() {
        let (_dir, s) = sessions(60_000);
        let (device, first) = s
            .login(&alice(), None, None, &origin(), "password", false)
            .unwrap();
        let (same, second) = s
            .login(&alice(), Some(&device), None, &origin(), "password", false)
            .unwrap();
        assert_eq!(device, same);
        assert!(s.authenticate(&first.access_token).is_err());
        assert!(s.authenticate(&second.access_token).is_ok());
        assert_eq!(s.devices(&alice()).unwrap().len(), 1);
    }

    #[test]
    fn refresh_rotates_both_tokens_and_expiry_is_a_soft_logout() {
        let (_dir, s) = sessions(0);
        let (_, issued) = s
            .login(&alice(), None, None, &origin(), "password", true)
            .unwrap();
        let refresh = issued.refresh_token.unwrap();
        // Lifetime 0: the access token is already expired, but the device lives on.
        let Error::Matrix { kind, .. } = s.authenticate(&issued.access_token).unwrap_err() else {
            panic!("expected a Matrix error")
        };
        assert_eq!(serde_json::to_value(&kind).unwrap()["soft_logout"], true);

        let renewed = s.refresh(&refresh).unwrap();
        assert!(renewed.refresh_token.is_some());
        assert_eq!(
            s.refresh(&refresh).unwrap_err().errcode(),
            "M_UNKNOWN_TOKEN"
        );
        assert!(s.refresh(&renewed.refresh_token.unwrap()).is_ok());
    }

    #[test]
    fn long_device_names_are_cut_on_a_char_boundary() {
        let name = "가".repeat(200); // 600 bytes
        let cut = truncate(name);
        assert!(cut.len() <= MAX_DEVICE_NAME_BYTES);
        assert!(cut.chars().all(|c| c == '가'));
    }
}

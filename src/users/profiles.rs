//! Profiles: a JSON object per local user holding `displayname`, `avatar_url` and the custom
//! fields of spec v1.16 (for example the org chart's department and title, set by the LDAP
//! bridge). Limits follow the spec: keys up to 255 bytes, the whole profile up to 64 KiB.

use std::sync::{Arc, Mutex};

use http::StatusCode;
use ruma::UserId;
use ruma::api::error::ErrorKind;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::storage::{Batch, Store, StoreExt, Table, keys};

pub const MAX_KEY_BYTES: usize = 255;
pub const MAX_PROFILE_BYTES: usize = 64 * 1024;
/// Longest display name, in characters (Synapse's limit too).
pub const MAX_DISPLAYNAME_CHARS: usize = 256;

pub struct Profiles {
    store: Arc<dyn Store>,
    lock: Mutex<()>,
}

impl Profiles {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            lock: Mutex::new(()),
        }
    }

    /// Every field of the profile (empty for a user who set nothing).
    pub fn get(&self, user_id: &UserId) -> Result<Map<String, Value>> {
        Ok(self
            .store
            .get_json(Table::Profiles, &keys::account(user_id.localpart()))?
            .unwrap_or_default())
    }

    /// The profile fields a member event carries for joins and invites: `displayname` and
    /// `avatar_url`, where set.
    pub fn member_fields(&self, user_id: &UserId) -> Result<Map<String, Value>> {
        let mut profile = self.get(user_id)?;
        profile.retain(|key, value| {
            matches!(key.as_str(), "displayname" | "avatar_url") && value.is_string()
        });
        Ok(profile)
    }

    pub fn field(&self, user_id: &UserId, key: &str) -> Result<Option<Value>> {
        Ok(self.get(user_id)?.remove(key))
    }

    pub fn displayname(&self, user_id: &UserId) -> Result<Option<String>> {
        Ok(self
            .field(user_id, "displayname")?
            .and_then(|v| v.as_str().map(str::to_owned)))
    }

    /// Sets (or with `None`, removes) one field after checking it.
    pub fn set_field(&self, user_id: &UserId, key: &str, value: Option<Value>) -> Result<()> {
        check_field(key, value.as_ref())?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut profile = self.get(user_id)?;
        match value {
            Some(v) => {
                profile.insert(key.to_owned(), v);
            }
            None => {
                profile.remove(key);
            }
        }
        let bytes = serde_json::to_vec(&profile)
            .map_err(|e| Error::internal(format!("serialising a profile: {e}")))?;
        if bytes.len() > MAX_PROFILE_BYTES {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::ProfileTooLarge,
                "The profile would exceed 64 KiB",
            ));
        }
        let mut batch = Batch::new();
        batch.put(Table::Profiles, keys::account(user_id.localpart()), bytes);
        self.store.write(batch)
    }
}

fn check_field(key: &str, value: Option<&Value>) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_param("Empty profile field name"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::KeyTooLarge,
            "Profile field names are at most 255 bytes",
        ));
    }
    let Some(value) = value else { return Ok(()) };
    match key {
        "displayname" => {
            let name = value
                .as_str()
                .ok_or_else(|| Error::bad_json("displayname must be a string"))?;
            if name.chars().count() > MAX_DISPLAYNAME_CHARS {
                return Err(Error::invalid_param(format!(
                    "displayname is longer than {MAX_DISPLAYNAME_CHARS} characters"
                )));
            }
        }
        "avatar_url" => {
            let url = value
                .as_str()
                .ok_or_else(|| Error::bad_json("avatar_url must be a string"))?;
            if <&ruma::MxcUri>::from(url).validate().is_err() {
                return Err(Error::invalid_param("avatar_url must be an mxc:// URI"));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_checked_before_they_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::storage::rocksdb::RocksStore::open(dir.path(), 8).unwrap());
        let profiles = Profiles::new(store);
        let alice: &UserId = "@alice:example.org".try_into().unwrap();

        profiles
            .set_field(alice, "displayname", Some(json!("앨리스")))
            .unwrap();
        profiles
            .set_field(alice, "avatar_url", Some(json!("mxc://example.org/abc")))
            .unwrap();
        profiles
            .set_field(alice, "io.sori.department", Some(json!("R&D")))
            .unwrap();

        let long = json!("x".repeat(MAX_DISPLAYNAME_CHARS + 1));
        assert_eq!(
            profiles
                .set_field(alice, "displayname", Some(long))
                .unwrap_err()
                .errcode(),
            "M_INVALID_PARAM"
        );
        assert!(
            profiles
                .set_field(alice, "avatar_url", Some(json!("https://evil")))
                .is_err()
        );
        assert_eq!(
            profiles
                .set_field(alice, &"k".repeat(256), Some(json!(1)))
                .unwrap_err()
                .errcode(),
            "M_KEY_TOO_LARGE"
        );
        let huge = json!("x".repeat(MAX_PROFILE_BYTES));
        assert_eq!(
            profiles
                .set_field(alice, "io.sori.bio", Some(huge))
                .unwrap_err()
                .errcode(),
            "M_PROFILE_TOO_LARGE"
        );

        // Refused writes changed nothing.
        let profile = profiles.get(alice).unwrap();
        assert_eq!(profile.len(), 3);
        assert_eq!(
            profiles.displayname(alice).unwrap().as_deref(),
            Some("앨리스")
        );

        profiles.set_field(alice, "avatar_url", None).unwrap();
        assert!(profiles.field(alice, "avatar_url").unwrap().is_none());
    }
}

//! The keys clients publish for end-to-end encryption: each device's identity keys (signed by
//! the device), its one-time keys (each handed out once) and fallback keys, each user's
//! cross-signing keys and the signatures made with them; and the stream of whose keys changed,
//! from which `/sync` (`device_lists`) and `/keys/changes` are answered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use ruma::{DeviceId, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::signing;
use crate::error::{Error, Result};
use crate::storage::{Batch, KeyRange, Store, StoreExt, Table, keys};

/// The one-time key algorithm clients use; always reported in counts, 0 when none are left,
/// so clients know to upload more.
pub const SIGNED_CURVE25519: &str = "signed_curve25519";

/// The cross-signing key usages.
pub const MASTER: &str = "master";
pub const SELF_SIGNING: &str = "self_signing";
pub const USER_SIGNING: &str = "user_signing";

#[derive(Deserialize, Serialize)]
struct Fallback {
    key_id: String,
    key: Value,
    used: bool,
}

/// A refusal in a `/keys/signatures/upload` answer.
fn failure(errcode: &str, error: &str) -> Value {
    json!({"errcode": errcode, "error": error})
}

/// The object without `signatures` and `unsigned`: what a signature covers.
fn signed_content(object: &Value) -> Value {
    let mut content = object.clone();
    if let Some(map) = content.as_object_mut() {
        map.remove("signatures");
        map.remove("unsigned");
    }
    content
}

/// Adds every signature of `from` to `into` (both key objects).
fn merge_signatures(into: &mut Value, from: &Value) {
    let Some(signers) = from.get("signatures").and_then(Value::as_object) else {
        return;
    };
    for (signer, signatures) in signers {
        let Some(signatures) = signatures.as_object() else {
            continue;
        };
        for (key_id, signature) in signatures {
            into["signatures"][signer][key_id] = signature.clone();
        }
    }
}

/// `algorithm:id` split in two; both parts must be there.
fn split_key_id(key_id: &str) -> Result<(&str, &str)> {
    match key_id.split_once(':') {
        Some((algorithm, id)) if !algorithm.is_empty() && !id.is_empty() => Ok((algorithm, id)),
        _ => Err(Error::invalid_param(format!(
            "Key id {key_id:?} is not of the form <algorithm>:<id>"
        ))),
    }
}

/// The public key of a cross-signing key object: its one `ed25519:<key>` entry.
pub fn cross_signing_public(key: &Value) -> Option<String> {
    let keys = key.get("keys")?.as_object()?;
    if keys.len() != 1 {
        return None;
    }
    let (id, value) = keys.iter().next()?;
    let public = id.strip_prefix("ed25519:")?;
    (value.as_str() == Some(public) && !public.is_empty()).then(|| public.to_owned())
}

pub struct Keys {
    store: Arc<dyn Store>,
    /// Serialises read-modify-write changes, so that a one-time key is claimed once even by
    /// concurrent claims, and uploads do not interleave.
    lock: Mutex<()>,
}

impl Keys {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            lock: Mutex::new(()),
        }
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores what a device publishes: its identity keys (which may not change once set),
    /// one-time keys and fallback keys. Returns the device's one-time key counts.
    pub fn upload(
        &self,
        user: &UserId,
        device: &DeviceId,
        device_keys: Option<&Value>,
        one_time_keys: &BTreeMap<String, Value>,
        fallback_keys: &BTreeMap<String, Value>,
    ) -> Result<BTreeMap<String, u64>> {
        let _guard = self.guard();
        let (u, d) = (user.as_str(), device.as_str());
        let stored = self.device_keys(user, device)?;
        let mut new_identity = None;
        if let Some(uploaded) = device_keys {
            validate_device_keys(user, device, uploaded)?;
            let mut identity = uploaded.clone();
            match &stored {
                Some(stored) if stored.get("keys") != uploaded.get("keys") => {
                    return Err(Error::invalid_param(
                        "This device already has other identity keys; a new key needs a new device",
                    ));
                }
                // The same keys again: keep the signatures others made on them.
                Some(stored) if signed_content(stored) == signed_content(uploaded) => {
                    merge_signatures(&mut identity, stored);
                    if &identity == stored {
                        identity = Value::Null;
                    }
                }
                _ => {}
            }
            if !identity.is_null() {
                new_identity = Some(identity);
            }
        }
        let ed25519 = new_identity
            .as_ref()
            .or(stored.as_ref())
            .and_then(|k| k["keys"][format!("ed25519:{d}")].as_str())
            .map(str::to_owned);

        let mut batch = Batch::new();
        for (key_id, key) in one_time_keys {
            let (algorithm, id) = split_key_id(key_id)?;
            validate_one_time_key(user, device, algorithm, key, ed25519.as_deref())?;
            let storage_key = keys::one_time_key(u, d, algorithm, id);
            match self
                .store
                .get_json::<Value>(Table::OneTimeKeys, &storage_key)?
            {
                Some(existing) if &existing != key => {
                    return Err(Error::invalid_param(format!(
                        "One-time key {key_id} already exists with other content"
                    )));
                }
                Some(_) => {}
                None => batch.put_json(Table::OneTimeKeys, storage_key, key)?,
            }
        }
        for (key_id, key) in fallback_keys {
            let (algorithm, _) = split_key_id(key_id)?;
            validate_one_time_key(user, device, algorithm, key, ed25519.as_deref())?;
            let storage_key = keys::fallback_key(u, d, algorithm);
            // Uploading the key already there must not make a used key look unused.
            if let Some(existing) = self
                .store
                .get_json::<Fallback>(Table::FallbackKeys, &storage_key)?
                && existing.key_id == *key_id
                && existing.key == *key
            {
                continue;
            }
            batch.put_json(
                Table::FallbackKeys,
                storage_key,
                &Fallback {
                    key_id: key_id.clone(),
                    key: key.clone(),
                    used: false,
                },
            )?;
        }
        match new_identity {
            Some(identity) => {
                self.store.commit(&mut |count| {
                    let mut batch = batch.clone();
                    batch.put_json(Table::DeviceKeys, keys::device(u, d), &identity)?;
                    batch.put(Table::KeyChanges, keys::key_change(count), u.as_bytes());
                    Ok(batch)
                })?;
            }
            None if !batch.is_empty() => self.store.write(batch)?,
            None => {}
        }
        self.one_time_key_counts(user, device)
    }

    /// How many unclaimed one-time keys the device has, per algorithm.
    pub fn one_time_key_counts(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::from([(SIGNED_CURVE25519.to_owned(), 0)]);
        let prefix = keys::one_time_keys_of(user.as_str(), device.as_str(), None);
        for entry in self.store.scan_prefix(Table::OneTimeKeys, &prefix)? {
            let (key, _) = entry?;
            if let Some((algorithm, _)) = keys::parse_one_time_key(&key) {
                *counts.entry(algorithm).or_default() += 1;
            }
        }
        Ok(counts)
    }

    /// The algorithms of the device's fallback keys that nobody has claimed yet.
    pub fn unused_fallback_key_types(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Vec<String>> {
        let prefix = keys::one_time_keys_of(user.as_str(), device.as_str(), None);
        let mut types = Vec::new();
        for entry in self.store.scan_prefix(Table::FallbackKeys, &prefix)? {
            let (_, value) = entry?;
            let fallback: Fallback = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("corrupt fallback key: {e}")))?;
            if !fallback.used
                && let Some((algorithm, _)) = fallback.key_id.split_once(':')
            {
                types.push(algorithm.to_owned());
            }
        }
        Ok(types)
    }

    /// Hands out one of the device's one-time keys of `algorithm` (removing it), or else its
    /// fallback key (which stays, marked used). `None` when the device has neither.
    pub fn claim(
        &self,
        user: &UserId,
        device: &DeviceId,
        algorithm: &str,
    ) -> Result<Option<(String, Value)>> {
        let _guard = self.guard();
        let (u, d) = (user.as_str(), device.as_str());
        let prefix = keys::one_time_keys_of(u, d, Some(algorithm));
        if let Some(entry) = self.store.scan_prefix(Table::OneTimeKeys, &prefix)?.next() {
            let (key, value) = entry?;
            let (_, id) = keys::parse_one_time_key(&key)
                .ok_or_else(|| Error::internal("corrupt one-time key id"))?;
            let value: Value = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("corrupt one-time key: {e}")))?;
            let mut batch = Batch::new();
            batch.delete(Table::OneTimeKeys, key);
            self.store.write(batch)?;
            return Ok(Some((format!("{algorithm}:{id}"), value)));
        }
        let storage_key = keys::fallback_key(u, d, algorithm);
        let Some(mut fallback) = self
            .store
            .get_json::<Fallback>(Table::FallbackKeys, &storage_key)?
        else {
            return Ok(None);
        };
        if !fallback.used {
            fallback.used = true;
            let mut batch = Batch::new();
            batch.put_json(Table::FallbackKeys, storage_key, &fallback)?;
            self.store.write(batch)?;
        }
        Ok(Some((fallback.key_id, fallback.key)))
    }

    /// The identity keys a device published, with the signatures made on them.
    pub fn device_keys(&self, user: &UserId, device: &DeviceId) -> Result<Option<Value>> {
        self.store.get_json(
            Table::DeviceKeys,
            &keys::device(user.as_str(), device.as_str()),
        )
    }

    /// Every device of the user that published identity keys: (device id, keys).
    pub fn all_device_keys(&self, user: &UserId) -> Result<Vec<(String, Value)>> {
        let prefix = keys::devices_of(user.as_str());
        self.store
            .scan_prefix(Table::DeviceKeys, &prefix)?
            .map(|entry| {
                let (key, value) = entry?;
                let device = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                let value = serde_json::from_slice(&value)
                    .map_err(|e| Error::internal(format!("corrupt device keys: {e}")))?;
                Ok((device, value))
            })
            .collect()
    }

    /// Forgets everything the devices published (they were deleted or logged out).
    pub fn remove_devices(&self, user: &UserId, devices: &[String]) -> Result<()> {
        let _guard = self.guard();
        let u = user.as_str();
        let mut batch = Batch::new();
        let mut had_keys = false;
        for d in devices {
            if self
                .store
                .get(Table::DeviceKeys, &keys::device(u, d))?
                .is_some()
            {
                had_keys = true;
                batch.delete(Table::DeviceKeys, keys::device(u, d));
            }
            let prefix = keys::one_time_keys_of(u, d, None);
            for table in [Table::OneTimeKeys, Table::FallbackKeys] {
                for entry in self.store.scan_prefix(table, &prefix)? {
                    batch.delete(table, entry?.0);
                }
            }
        }
        if had_keys {
            self.store.commit(&mut |count| {
                let mut batch = batch.clone();
                batch.put(Table::KeyChanges, keys::key_change(count), u.as_bytes());
                Ok(batch)
            })?;
        } else if !batch.is_empty() {
            self.store.write(batch)?;
        }
        Ok(())
    }

    /// A cross-signing key of the user, as uploaded (with its signatures).
    pub fn cross_signing_key(&self, user: &UserId, usage: &str) -> Result<Option<Value>> {
        self.store.get_json(
            Table::CrossSigningKeys,
            &keys::cross_signing_key(user.as_str(), usage),
        )
    }

    /// The user's master key as `viewer` sees it: with the signatures the viewer made on it
    /// with their user-signing key (nobody else sees those).
    pub fn master_key_for(&self, user: &UserId, viewer: &UserId) -> Result<Option<Value>> {
        let Some(mut master) = self.cross_signing_key(user, MASTER)? else {
            return Ok(None);
        };
        if let Some(public) = cross_signing_public(&master)
            && viewer != user
            && let Some(signatures) = self.store.get_json::<Value>(
                Table::KeySignatures,
                &keys::key_signature(user.as_str(), &public, viewer.as_str()),
            )?
        {
            merge_signatures(&mut master, &json!({ "signatures": signatures }));
        }
        Ok(Some(master))
    }

    /// Whether every key given is exactly the one already stored (an upload that changes
    /// nothing, which needs no re-authentication).
    pub fn cross_signing_unchanged(
        &self,
        user: &UserId,
        uploads: &[(&str, Option<&Value>)],
    ) -> Result<bool> {
        for (usage, key) in uploads {
            if let Some(key) = key
                && self.cross_signing_key(user, usage)?.as_ref() != Some(*key)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Stores new cross-signing keys. Each must belong to the user, have the right usage and
    /// one ed25519 key; the self-signing and user-signing keys must be signed by the master
    /// key (the new one, or the stored one). A new master key drops the old sub-keys that are
    /// not replaced, since they were signed by the old master.
    pub fn upload_cross_signing(
        &self,
        user: &UserId,
        master: Option<&Value>,
        self_signing: Option<&Value>,
        user_signing: Option<&Value>,
    ) -> Result<()> {
        let _guard = self.guard();
        let u = user.as_str();
        let stored_master = self.cross_signing_key(user, MASTER)?;
        let master_public = match master.or(stored_master.as_ref()) {
            Some(key) => {
                validate_cross_signing_key(user, MASTER, key)?;
                cross_signing_public(key)
            }
            None if self_signing.is_some() || user_signing.is_some() => {
                return Err(Error::invalid_param("Upload a master key first"));
            }
            None => None,
        };
        for (usage, key) in [(SELF_SIGNING, self_signing), (USER_SIGNING, user_signing)] {
            let Some(key) = key else { continue };
            validate_cross_signing_key(user, usage, key)?;
            let master_public = master_public.as_deref().unwrap_or_default();
            if !signing::verify(key, u, &format!("ed25519:{master_public}"), master_public) {
                return Err(Error::invalid_param(format!(
                    "The {usage} key is not signed by the master key"
                )));
            }
        }
        let master_replaced = master.is_some_and(|m| {
            stored_master
                .as_ref()
                .is_some_and(|s| cross_signing_public(s) != cross_signing_public(m))
        });
        let mut batch = Batch::new();
        for (usage, key) in [
            (MASTER, master),
            (SELF_SIGNING, self_signing),
            (USER_SIGNING, user_signing),
        ] {
            let storage_key = keys::cross_signing_key(u, usage);
            match key {
                Some(key) => batch.put_json(Table::CrossSigningKeys, storage_key, key)?,
                None if master_replaced && usage != MASTER => {
                    batch.delete(Table::CrossSigningKeys, storage_key)
                }
                None => {}
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.store.commit(&mut |count| {
            let mut batch = batch.clone();
            batch.put(Table::KeyChanges, keys::key_change(count), u.as_bytes());
            Ok(batch)
        })?;
        Ok(())
    }

    /// Stores signatures `signer` made: on their own devices (with their self-signing key),
    /// on their own master key (with a device key), and on other users' master keys (with
    /// their user-signing key). Returns the refusals, by user and key id.
    pub fn upload_signatures(
        &self,
        signer: &UserId,
        signed: &BTreeMap<OwnedUserId, BTreeMap<String, Value>>,
    ) -> Result<BTreeMap<String, BTreeMap<String, Value>>> {
        let _guard = self.guard();
        let mut failures: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        let mut batch = Batch::new();
        let mut changed = BTreeSet::new();
        for (target, objects) in signed {
            for (key_id, object) in objects {
                let outcome = if target == signer {
                    self.sign_own(signer, key_id, object, &mut batch)
                } else {
                    self.sign_other(signer, target, key_id, object, &mut batch)
                };
                match outcome {
                    // A signature on one's own keys is news to everyone who shares a room with
                    // the signer; one on another user's master key is shown to the signer
                    // only, so only the signer's devices hear that the target changed.
                    Ok(()) if target == signer => {
                        changed.insert(target.as_bytes().to_vec());
                    }
                    Ok(()) => {
                        changed.insert(keys::join(&[target.as_bytes(), signer.as_bytes()]));
                    }
                    Err(refusal) => {
                        failures
                            .entry(target.to_string())
                            .or_default()
                            .insert(key_id.clone(), refusal);
                    }
                }
            }
        }
        if !batch.is_empty() {
            self.store.commit(&mut |count| {
                let mut batch = batch.clone();
                for (i, change) in changed.iter().enumerate() {
                    // One commit, one count: later users get the count plus a marker byte.
                    let mut key = keys::key_change(count);
                    if i > 0 {
                        key.extend_from_slice(&(i as u32).to_be_bytes());
                    }
                    batch.put(Table::KeyChanges, key, change.clone());
                }
                Ok(batch)
            })?;
        }
        Ok(failures)
    }

    /// A signature by the user on their own device keys or master key.
    fn sign_own(
        &self,
        user: &UserId,
        key_id: &str,
        object: &Value,
        batch: &mut Batch,
    ) -> std::result::Result<(), Value> {
        let u = user.as_str();
        let internal = |e: Error| failure("M_UNKNOWN", &e.to_string());
        let master = self.cross_signing_key(user, MASTER).map_err(internal)?;
        if let Some(master) = master
            && cross_signing_public(&master).as_deref() == Some(key_id)
        {
            // The master key, signed by one of the user's devices.
            if signed_content(object) != signed_content(&master) {
                return Err(failure(
                    "M_INVALID_PARAM",
                    "This is not the stored master key",
                ));
            }
            let mut merged = master.clone();
            let mut verified = false;
            let device_signatures = object["signatures"][u]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (signature_key, _) in device_signatures {
                let Some(device) = signature_key.strip_prefix("ed25519:") else {
                    continue;
                };
                let device: &DeviceId = device.into();
                let Some(device_keys) = self.device_keys(user, device).map_err(internal)? else {
                    continue;
                };
                let Some(public) = device_keys["keys"][&signature_key].as_str() else {
                    continue;
                };
                if !signing::verify(object, u, &signature_key, public) {
                    return Err(failure(
                        "M_INVALID_SIGNATURE",
                        "A device signature does not verify",
                    ));
                }
                merged["signatures"][u][&signature_key] =
                    object["signatures"][u][&signature_key].clone();
                verified = true;
            }
            if !verified {
                return Err(failure(
                    "M_INVALID_SIGNATURE",
                    "No signature by a known device",
                ));
            }
            batch
                .put_json(
                    Table::CrossSigningKeys,
                    keys::cross_signing_key(u, MASTER),
                    &merged,
                )
                .map_err(internal)?;
            return Ok(());
        }
        // A device, signed by the self-signing key.
        let device: &DeviceId = key_id.into();
        let Some(stored) = self.device_keys(user, device).map_err(internal)? else {
            return Err(failure("M_NOT_FOUND", "No such device or key"));
        };
        if signed_content(object) != signed_content(&stored) {
            return Err(failure(
                "M_INVALID_PARAM",
                "These are not the device's stored keys",
            ));
        }
        let signature_key = self.verify_by(user, SELF_SIGNING, object)?;
        let mut merged = stored;
        merged["signatures"][u][&signature_key] = object["signatures"][u][&signature_key].clone();
        batch
            .put_json(Table::DeviceKeys, keys::device(u, device.as_str()), &merged)
            .map_err(internal)?;
        Ok(())
    }

    /// Checks that `object` is signed by the user's cross-signing key of `usage`; returns
    /// the signature's key id.
    fn verify_by(
        &self,
        user: &UserId,
        usage: &str,
        object: &Value,
    ) -> std::result::Result<String, Value> {
        let Some(public) = self
            .cross_signing_key(user, usage)
            .map_err(|e| failure("M_UNKNOWN", &e.to_string()))?
            .as_ref()
            .and_then(cross_signing_public)
        else {
            return Err(failure(
                "M_INVALID_PARAM",
                &format!("Upload a {usage} key first"),
            ));
        };
        let signature_key = format!("ed25519:{public}");
        if signing::verify(object, user.as_str(), &signature_key, &public) {
            Ok(signature_key)
        } else {
            Err(failure(
                "M_INVALID_SIGNATURE",
                &format!("The {usage} signature does not verify"),
            ))
        }
    }

    /// A signature by `signer`'s user-signing key on `target`'s master key.
    fn sign_other(
        &self,
        signer: &UserId,
        target: &UserId,
        key_id: &str,
        object: &Value,
        batch: &mut Batch,
    ) -> std::result::Result<(), Value> {
        let internal = |e: Error| failure("M_UNKNOWN", &e.to_string());
        let Some(master) = self.cross_signing_key(target, MASTER).map_err(internal)? else {
            return Err(failure("M_NOT_FOUND", "The user has no master key"));
        };
        if cross_signing_public(&master).as_deref() != Some(key_id)
            || signed_content(object) != signed_content(&master)
        {
            return Err(failure(
                "M_INVALID_PARAM",
                "This is not the user's master key",
            ));
        }
        let signature_key = self.verify_by(signer, USER_SIGNING, object)?;
        let signatures = json!({ signer.as_str(): { &signature_key: object["signatures"][signer.as_str()][&signature_key] } });
        batch
            .put_json(
                Table::KeySignatures,
                keys::key_signature(target.as_str(), key_id, signer.as_str()),
                &signatures,
            )
            .map_err(internal)?;
        Ok(())
    }

    /// Users whose devices or cross-signing keys changed after `since`, up to `upto`, as
    /// `viewer` should hear of it: those whose change concerns everyone sharing a room with
    /// them, and those whose change only the viewer can see (the viewer's signature on their
    /// master key).
    pub fn changed_between(
        &self,
        viewer: &UserId,
        since: u64,
        upto: u64,
    ) -> Result<(BTreeSet<OwnedUserId>, BTreeSet<OwnedUserId>)> {
        let range = KeyRange::between(
            &keys::key_change(since.saturating_add(1)),
            &keys::key_change(upto.saturating_add(1)),
        );
        let mut shared = BTreeSet::new();
        let mut own = BTreeSet::new();
        for entry in
            self.store
                .scan(Table::KeyChanges, range, crate::storage::Direction::Forward)?
        {
            let (_, value) = entry?;
            let mut parts = value.split(|b| *b == keys::SEP);
            let Some(Ok(user)) = parts
                .next()
                .map(|u| OwnedUserId::try_from(String::from_utf8_lossy(u).as_ref()))
            else {
                continue;
            };
            match parts.next() {
                None => {
                    shared.insert(user);
                }
                Some(only) if only == viewer.as_bytes() => {
                    own.insert(user);
                }
                Some(_) => {}
            }
        }
        Ok((shared, own))
    }
}

/// Identity keys must be the requesting device's, name keys `<algorithm>:<device id>`, and be
/// signed by the device's own ed25519 key.
fn validate_device_keys(user: &UserId, device: &DeviceId, keys: &Value) -> Result<()> {
    let object = keys
        .as_object()
        .ok_or_else(|| Error::bad_json("device_keys must be an object"))?;
    if object.get("user_id").and_then(Value::as_str) != Some(user.as_str())
        || object.get("device_id").and_then(Value::as_str) != Some(device.as_str())
    {
        return Err(Error::invalid_param(
            "device_keys must name your user id and this device",
        ));
    }
    if !object
        .get("algorithms")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().all(Value::is_string))
    {
        return Err(Error::bad_json(
            "device_keys.algorithms must be a list of strings",
        ));
    }
    let identity: &Map<String, Value> = object
        .get("keys")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::bad_json("device_keys.keys must be an object"))?;
    for (key_id, key) in identity {
        let (_, id) = split_key_id(key_id)?;
        if id != device.as_str() || !key.is_string() {
            return Err(Error::invalid_param(format!(
                "Key {key_id} must be named after this device and be a string"
            )));
        }
    }
    let signature_key = format!("ed25519:{device}");
    let public = identity
        .get(&signature_key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid_param(format!("device_keys has no {signature_key} key")))?;
    if !signing::verify(keys, user.as_str(), &signature_key, public) {
        return Err(Error::invalid_param(
            "device_keys are not signed by the device's own ed25519 key",
        ));
    }
    Ok(())
}

/// One-time and fallback keys: a bare string for unsigned algorithms, else an object with
/// `key`, signed by the device when the algorithm is a `signed_` one.
fn validate_one_time_key(
    user: &UserId,
    device: &DeviceId,
    algorithm: &str,
    key: &Value,
    ed25519: Option<&str>,
) -> Result<()> {
    let signed = algorithm.starts_with("signed_");
    match key {
        Value::String(_) if !signed => Ok(()),
        Value::Object(object) if object.get("key").is_some_and(Value::is_string) => {
            if !signed {
                return Ok(());
            }
            let Some(public) = ed25519 else {
                return Err(Error::invalid_param(
                    "Upload the device keys before signed one-time keys",
                ));
            };
            if signing::verify(key, user.as_str(), &format!("ed25519:{device}"), public) {
                Ok(())
            } else {
                Err(Error::invalid_param(format!(
                    "A {algorithm} key is not signed by this device"
                )))
            }
        }
        _ => Err(Error::bad_json(format!(
            "A {algorithm} key must be {}",
            if signed {
                "an object with a key and signatures"
            } else {
                "a string"
            }
        ))),
    }
}

/// A cross-signing key must be the user's, carry its usage and exactly one ed25519 key.
fn validate_cross_signing_key(user: &UserId, usage: &str, key: &Value) -> Result<()> {
    if key.get("user_id").and_then(Value::as_str) != Some(user.as_str()) {
        return Err(Error::invalid_param(format!(
            "The {usage} key must name your user id"
        )));
    }
    let has_usage = key
        .get("usage")
        .and_then(Value::as_array)
        .is_some_and(|u| u.iter().any(|u| u.as_str() == Some(usage)));
    if !has_usage {
        return Err(Error::invalid_param(format!(
            "The {usage} key must have the usage {usage:?}"
        )));
    }
    if cross_signing_public(key).is_none() {
        return Err(Error::invalid_param(format!(
            "The {usage} key must hold exactly one ed25519:<public key> entry"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ruma::{owned_device_id, owned_user_id};

    use super::*;
    use crate::e2ee::signing::tests::Signer;

    fn keys() -> (tempfile::TempDir, Keys) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::storage::rocksdb::RocksStore::open(dir.path(), 8).unwrap());
        (dir, Keys::new(store))
    }

    fn device_keys(user: &str, device: &str, signer: &Signer) -> Value {
        let mut keys = json!({
            "user_id": user, "device_id": device,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {format!("curve25519:{device}"): "curve", format!("ed25519:{device}"): signer.public},
        });
        signer.sign(user, &format!("ed25519:{device}"), &mut keys);
        keys
    }

    fn one_time(user: &str, device: &str, signer: &Signer, key: &str) -> Value {
        let mut otk = json!({"key": key});
        signer.sign(user, &format!("ed25519:{device}"), &mut otk);
        otk
    }

    #[test]
    fn each_one_time_key_is_claimed_once_then_the_fallback_key() {
        let (_dir, keys) = keys();
        let (user, device) = (owned_user_id!("@a:x"), owned_device_id!("DEV"));
        let signer = Signer::new("DEV");
        let identity = device_keys("@a:x", "DEV", &signer);
        let otks = BTreeMap::from([
            (
                "signed_curve25519:AAA".to_owned(),
                one_time("@a:x", "DEV", &signer, "k1"),
            ),
            (
                "signed_curve25519:AAB".to_owned(),
                one_time("@a:x", "DEV", &signer, "k2"),
            ),
        ]);
        let mut fallback = one_time("@a:x", "DEV", &signer, "fb");
        fallback["fallback"] = json!(true);
        signer.sign("@a:x", "ed25519:DEV", &mut fallback);
        let fallbacks = BTreeMap::from([("signed_curve25519:FB".to_owned(), fallback)]);
        let counts = keys
            .upload(&user, &device, Some(&identity), &otks, &fallbacks)
            .unwrap();
        assert_eq!(counts[SIGNED_CURVE25519], 2);
        assert_eq!(
            keys.unused_fallback_key_types(&user, &device).unwrap(),
            [SIGNED_CURVE25519]
        );

        let first = keys
            .claim(&user, &device, SIGNED_CURVE25519)
            .unwrap()
            .unwrap();
        let second = keys
            .claim(&user, &device, SIGNED_CURVE25519)
            .unwrap()
            .unwrap();
        assert_ne!(first.0, second.0);
        let third = keys
            .claim(&user, &device, SIGNED_CURVE25519)
            .unwrap()
            .unwrap();
        assert_eq!(third.0, "signed_curve25519:FB");
        assert!(
            keys.unused_fallback_key_types(&user, &device)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            keys.one_time_key_counts(&user, &device).unwrap()[SIGNED_CURVE25519],
            0
        );
        assert!(keys.claim(&user, &device, "curve25519").unwrap().is_none());
    }

    #[test]
    fn identity_keys_must_be_the_devices_own_and_cannot_change() {
        let (_dir, keys) = keys();
        let (user, device) = (owned_user_id!("@a:x"), owned_device_id!("DEV"));
        let signer = Signer::new("DEV");
        let none = BTreeMap::new();
        // Signed by another key, or naming another device: refused, nothing stored.
        let mut forged = device_keys("@a:x", "DEV", &signer);
        Signer::new("X").sign("@a:x", "ed25519:DEV", &mut forged);
        let refused = keys
            .upload(&user, &device, Some(&forged), &none, &none)
            .unwrap_err();
        assert_eq!(refused.errcode(), "M_INVALID_PARAM");
        let other_device = device_keys("@a:x", "OTHER", &signer);
        assert!(
            keys.upload(&user, &device, Some(&other_device), &none, &none)
                .is_err()
        );
        assert!(keys.device_keys(&user, &device).unwrap().is_none());

        let identity = device_keys("@a:x", "DEV", &signer);
        keys.upload(&user, &device, Some(&identity), &none, &none)
            .unwrap();
        assert_eq!(keys.changed_between(&user, 0, u64::MAX).unwrap().0.len(), 1);
        // The same keys again are fine; other keys for the same device are not.
        keys.upload(&user, &device, Some(&identity), &none, &none)
            .unwrap();
        let replaced = device_keys("@a:x", "DEV", &Signer::new("DEV"));
        assert!(
            keys.upload(&user, &device, Some(&replaced), &none, &none)
                .is_err()
        );
        assert_eq!(keys.device_keys(&user, &device).unwrap(), Some(identity));
    }

    #[test]
    fn cross_signing_signatures_are_checked_and_kept() {
        let (_dir, keys) = keys();
        let (alice, bob) = (owned_user_id!("@a:x"), owned_user_id!("@b:x"));
        let device = owned_device_id!("DEV");
        let device_signer = Signer::new("DEV");
        let none = BTreeMap::new();
        keys.upload(
            &alice,
            &device,
            Some(&device_keys("@a:x", "DEV", &device_signer)),
            &none,
            &none,
        )
        .unwrap();
        let cross_signing = |user: &str, usage: &str, key: &Signer, master: Option<&Signer>| {
            let mut object = json!({"user_id": user, "usage": [usage], "keys": {format!("ed25519:{}", key.public): key.public}});
            if let Some(master) = master {
                master.sign(user, &format!("ed25519:{}", master.public), &mut object);
            }
            object
        };
        let (master, ssk, usk) = (Signer::new("m"), Signer::new("s"), Signer::new("u"));
        // A self-signing key not signed by the master key is refused.
        let unsigned_ssk = cross_signing("@a:x", SELF_SIGNING, &ssk, None);
        let master_key = cross_signing("@a:x", MASTER, &master, None);
        assert!(
            keys.upload_cross_signing(&alice, Some(&master_key), Some(&unsigned_ssk), None)
                .is_err()
        );
        let ssk_key = cross_signing("@a:x", SELF_SIGNING, &ssk, Some(&master));
        let usk_key = cross_signing("@a:x", USER_SIGNING, &usk, Some(&master));
        keys.upload_cross_signing(&alice, Some(&master_key), Some(&ssk_key), Some(&usk_key))
            .unwrap();
        assert!(
            keys.cross_signing_unchanged(&alice, &[(MASTER, Some(&master_key))])
                .unwrap()
        );

        // Alice signs her device with her self-signing key: stored on the device keys.
        let mut signed_device = keys.device_keys(&alice, &device).unwrap().unwrap();
        ssk.sign(
            "@a:x",
            &format!("ed25519:{}", ssk.public),
            &mut signed_device,
        );
        let failures = keys
            .upload_signatures(
                &alice,
                &BTreeMap::from([(
                    alice.clone(),
                    BTreeMap::from([("DEV".to_owned(), signed_device)]),
                )]),
            )
            .unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        let stored = keys.device_keys(&alice, &device).unwrap().unwrap();
        assert!(signing::verify(
            &stored,
            "@a:x",
            &format!("ed25519:{}", ssk.public),
            &ssk.public
        ));

        // Alice signs Bob's master key: only Alice sees that signature; a forged one fails.
        let bob_master = Signer::new("bm");
        let bob_master_key = cross_signing("@b:x", MASTER, &bob_master, None);
        keys.upload_cross_signing(&bob, Some(&bob_master_key), None, None)
            .unwrap();
        let mut signed_bob = bob_master_key.clone();
        usk.sign("@a:x", &format!("ed25519:{}", usk.public), &mut signed_bob);
        let mut forged_bob = bob_master_key.clone();
        Signer::new("f").sign("@a:x", &format!("ed25519:{}", usk.public), &mut forged_bob);
        let failures = keys
            .upload_signatures(
                &alice,
                &BTreeMap::from([(
                    bob.clone(),
                    BTreeMap::from([(bob_master.public.clone(), forged_bob)]),
                )]),
            )
            .unwrap();
        assert_eq!(
            failures["@b:x"][&bob_master.public]["errcode"],
            "M_INVALID_SIGNATURE"
        );
        keys.upload_signatures(
            &alice,
            &BTreeMap::from([(
                bob.clone(),
                BTreeMap::from([(bob_master.public.clone(), signed_bob)]),
            )]),
        )
        .unwrap();
        let seen_by_alice = keys.master_key_for(&bob, &alice).unwrap().unwrap();
        assert!(signing::verify(
            &seen_by_alice,
            "@a:x",
            &format!("ed25519:{}", usk.public),
            &usk.public
        ));
        let seen_by_bob = keys.master_key_for(&bob, &bob).unwrap().unwrap();
        assert!(seen_by_bob["signatures"].get("@a:x").is_none());
    }
}

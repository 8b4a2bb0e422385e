//! Key queries and claims over a set of users: local users' keys come from the store, other
//! servers' users' keys from their servers (asked at once, each within the client's timeout).
//! A server that fails is named in `failures`; what it answers for users of other servers is
//! ignored, so no server speaks for another's users.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use ruma::api::federation::keys::{claim_keys, get_keys};
use ruma::{OneTimeKeyAlgorithm, OwnedDeviceId, OwnedServerName, OwnedUserId, UserId};
use serde_json::{Map, Value, json};

use crate::e2ee::keys::{MASTER, SELF_SIGNING, USER_SIGNING};
use crate::error::Result;
use crate::services::Services;

/// How long other servers are waited for when the client names no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a key query found, as JSON maps keyed by user id (and `failures` by server).
#[derive(Debug, Default)]
pub struct Found {
    pub device_keys: Map<String, Value>,
    pub master_keys: Map<String, Value>,
    pub self_signing_keys: Map<String, Value>,
    pub user_signing_keys: Map<String, Value>,
    pub failures: Map<String, Value>,
}

pub type Wanted = BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>;
pub type Claims = BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>;

fn is_local(services: &Services, user: &UserId) -> bool {
    user.server_name() == services.config.server_name
}

/// The wanted users of other servers, by server.
fn by_server<V: Clone>(
    services: &Services,
    wanted: &BTreeMap<OwnedUserId, V>,
) -> BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, V>> {
    let mut servers: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, V>> = BTreeMap::new();
    for (user, value) in wanted.iter().filter(|(u, _)| !is_local(services, u)) {
        servers
            .entry(user.server_name().to_owned())
            .or_default()
            .insert(user.clone(), value.clone());
    }
    servers
}

fn failure(message: impl std::fmt::Display) -> Value {
    json!({"status": 503, "message": message.to_string()})
}

/// Local users' keys. `viewer` is the local user asking (who sees their own user-signing key
/// and the signatures they made on others' master keys); `None` for another server.
pub fn local_keys(services: &Services, wanted: &Wanted, viewer: Option<&UserId>) -> Result<Found> {
    let mut found = Found::default();
    for (user, devices_wanted) in wanted.iter().filter(|(u, _)| is_local(services, u)) {
        let mut devices = Map::new();
        for (device, mut keys) in services.keys.all_device_keys(user)? {
            if !devices_wanted.is_empty() && !devices_wanted.iter().any(|w| w.as_str() == device) {
                continue;
            }
            let Some(record) = services.sessions.device(user, device.as_str().into())? else {
                continue;
            };
            keys["unsigned"] = json!({ "device_display_name": record.display_name });
            devices.insert(device, keys);
        }
        found
            .device_keys
            .insert(user.to_string(), Value::Object(devices));
        let master = match viewer {
            Some(viewer) => services.keys.master_key_for(user, viewer)?,
            None => services.keys.cross_signing_key(user, MASTER)?,
        };
        if let Some(master) = master {
            found.master_keys.insert(user.to_string(), master);
        }
        if let Some(key) = services.keys.cross_signing_key(user, SELF_SIGNING)? {
            found.self_signing_keys.insert(user.to_string(), key);
        }
        // The user-signing key is the user's own business.
        if viewer == Some(user.as_ref())
            && let Some(key) = services.keys.cross_signing_key(user, USER_SIGNING)?
        {
            found.user_signing_keys.insert(user.to_string(), key);
        }
    }
    Ok(found)
}

/// Keys of local and remote users, as `viewer` (local) asks for them.
pub async fn query(
    services: &Services,
    wanted: &Wanted,
    viewer: &UserId,
    timeout: Duration,
) -> Result<Found> {
    let mut found = local_keys(services, wanted, Some(viewer))?;
    let asks = by_server(services, wanted)
        .into_iter()
        .map(|(server, users)| async move {
            let answer = ask(
                services,
                &server,
                get_keys::v1::Request::new(users),
                timeout,
            )
            .await;
            (server, answer)
        });
    for (server, answer) in join_all(asks).await {
        match answer {
            Err(why) => {
                found.failures.insert(server.to_string(), failure(why));
            }
            Ok(theirs) => {
                let of_server = |user: &UserId| user.server_name() == server;
                for (user, devices) in theirs.device_keys.into_iter().filter(|(u, _)| of_server(u))
                {
                    let devices: Map<String, Value> = devices
                        .into_iter()
                        .filter_map(|(device, keys)| {
                            Some((device.to_string(), keys.deserialize_as::<Value>().ok()?))
                        })
                        .collect();
                    found
                        .device_keys
                        .insert(user.to_string(), Value::Object(devices));
                }
                for (user, key) in theirs.master_keys.into_iter().filter(|(u, _)| of_server(u)) {
                    if let Ok(key) = key.deserialize_as::<Value>() {
                        found.master_keys.insert(user.to_string(), key);
                    }
                }
                for (user, key) in theirs
                    .self_signing_keys
                    .into_iter()
                    .filter(|(u, _)| of_server(u))
                {
                    if let Ok(key) = key.deserialize_as::<Value>() {
                        found.self_signing_keys.insert(user.to_string(), key);
                    }
                }
            }
        }
    }
    Ok(found)
}

/// Sends `request` to `server` and waits at most `timeout` for the answer.
async fn ask<R>(
    services: &Services,
    server: &OwnedServerName,
    request: R,
    timeout: Duration,
) -> std::result::Result<R::IncomingResponse, String>
where
    R: ruma::api::OutgoingRequest<
            Authentication = ruma::api::federation::authentication::ServerSignatures,
            PathBuilder = ruma::api::path_builder::SinglePath,
        >,
{
    if !services.federation.talks_to(server) {
        return Err("This server does not federate with it".into());
    }
    let sent = services
        .federation
        .client
        .send(&services.outbound, server, request);
    match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("No answer in time".into()),
    }
}

/// Claims one-time keys of local users: `{user: {device: {key_id: key}}}`.
pub fn local_claim(services: &Services, wanted: &Claims) -> Result<Map<String, Value>> {
    let mut claimed = Map::new();
    for (user, devices) in wanted.iter().filter(|(u, _)| is_local(services, u)) {
        let mut per_device = Map::new();
        for (device, algorithm) in devices {
            if let Some((key_id, key)) = services.keys.claim(user, device, algorithm.as_str())? {
                per_device.insert(device.to_string(), json!({ key_id: key }));
            }
        }
        if !per_device.is_empty() {
            claimed.insert(user.to_string(), Value::Object(per_device));
        }
    }
    Ok(claimed)
}

/// Claims one-time keys of local and remote users; returns the keys and the failures.
pub async fn claim(
    services: &Services,
    wanted: &Claims,
    timeout: Duration,
) -> Result<(Map<String, Value>, Map<String, Value>)> {
    let mut claimed = local_claim(services, wanted)?;
    let mut failures = Map::new();
    let asks = by_server(services, wanted)
        .into_iter()
        .map(|(server, users)| async move {
            let request = claim_keys::v1::Request::new(users);
            let answer = ask(services, &server, request, timeout).await;
            (server, answer)
        });
    for (server, answer) in join_all(asks).await {
        match answer {
            Err(why) => {
                failures.insert(server.to_string(), failure(why));
            }
            Ok(theirs) => {
                for (user, devices) in theirs.one_time_keys {
                    if user.server_name() != server {
                        continue;
                    }
                    let devices = serde_json::to_value(devices).unwrap_or_default();
                    claimed.insert(user.to_string(), devices);
                }
            }
        }
    }
    Ok((claimed, failures))
}

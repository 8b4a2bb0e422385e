//! Another server asks for this server's users' encryption keys: device lists
//! (`/user/devices`), device and cross-signing keys (`/user/keys/query`), and one-time keys
//! (`/user/keys/claim`). Only users of this server are answered for.

use std::sync::Arc;

use ruma::UInt;
use ruma::api::federation::device::get_devices;
use ruma::api::federation::keys::{claim_keys, get_keys};
use ruma::serde::Raw;
use serde_json::Value;

use crate::api::ruma::Ruma;
use crate::e2ee::keys::{MASTER, SELF_SIGNING};
use crate::e2ee::lookup;
use crate::error::{Error, Result};
use crate::services::Services;

fn raw<T>(value: &Value) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|e| Error::internal(format!("serialising keys: {e}")))
}

/// `GET /_matrix/federation/v1/user/devices/{userId}`
pub async fn devices(
    services: Arc<Services>,
    req: Ruma<get_devices::v1::Request>,
) -> Result<get_devices::v1::Response> {
    let user = &req.body.user_id;
    if user.server_name() != services.config.server_name || services.accounts.get(user)?.is_none() {
        return Err(Error::not_found("No such user on this server"));
    }
    // Any number that grows whenever the list changes will do: the latest count does.
    let stream_id = UInt::new(services.store.committed_count()).unwrap_or_default();
    let mut response = get_devices::v1::Response::new(user.clone(), stream_id);
    for (device, keys) in services.keys.all_device_keys(user)? {
        let Some(record) = services.sessions.device(user, device.as_str().into())? else {
            continue;
        };
        let mut entry = get_devices::v1::UserDevice::new(device.as_str().into(), raw(&keys)?);
        entry.device_display_name = record.display_name;
        response.devices.push(entry);
    }
    if let Some(master) = services.keys.cross_signing_key(user, MASTER)? {
        response.master_key = Some(raw(&master)?);
    }
    if let Some(key) = services.keys.cross_signing_key(user, SELF_SIGNING)? {
        response.self_signing_key = Some(raw(&key)?);
    }
    Ok(response)
}

/// `POST /_matrix/federation/v1/user/keys/query`
pub async fn query(
    services: Arc<Services>,
    req: Ruma<get_keys::v1::Request>,
) -> Result<get_keys::v1::Response> {
    let found = lookup::local_keys(&services, &req.body.device_keys, None)?;
    let device_keys = serde_json::from_value(Value::Object(found.device_keys))
        .map_err(|e| Error::internal(format!("stored device keys: {e}")))?;
    let mut response = get_keys::v1::Response::new(device_keys);
    response.master_keys = serde_json::from_value(Value::Object(found.master_keys))
        .map_err(|e| Error::internal(format!("stored master keys: {e}")))?;
    response.self_signing_keys = serde_json::from_value(Value::Object(found.self_signing_keys))
        .map_err(|e| Error::internal(format!("stored self-signing keys: {e}")))?;
    Ok(response)
}

/// `POST /_matrix/federation/v1/user/keys/claim`
pub async fn claim(
    services: Arc<Services>,
    req: Ruma<claim_keys::v1::Request>,
) -> Result<claim_keys::v1::Response> {
    let claimed = lookup::local_claim(&services, &req.body.one_time_keys)?;
    let one_time_keys = serde_json::from_value(Value::Object(claimed))
        .map_err(|e| Error::internal(format!("claimed keys: {e}")))?;
    Ok(claim_keys::v1::Response::new(one_time_keys))
}

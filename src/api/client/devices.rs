//! Devices: list, inspect, rename and delete (deletion needs the password).

use std::sync::Arc;

use ruma::MilliSecondsSinceUnixEpoch;
use ruma::api::client::device::{
    Device, delete_device, delete_devices, get_device, get_devices, update_device,
};

use super::{delete_devices, require_password};
use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::services::Services;
use crate::users::sessions::DeviceRecord;

fn to_device(record: DeviceRecord) -> Device {
    let mut device = Device::new(record.device_id);
    device.display_name = record.display_name;
    device.last_seen_ip = record.last_seen_ip;
    device.last_seen_ts = record
        .last_seen_ts
        .and_then(ruma::UInt::new)
        .map(MilliSecondsSinceUnixEpoch);
    device
}

/// `GET /_matrix/client/v3/devices`
pub async fn list(
    services: Arc<Services>,
    req: Ruma<get_devices::v3::Request>,
) -> Result<get_devices::v3::Response> {
    let devices = services
        .sessions
        .devices(req.user_id()?)?
        .into_iter()
        .map(to_device)
        .collect();
    Ok(get_devices::v3::Response::new(devices))
}

/// `GET /_matrix/client/v3/devices/{deviceId}`
pub async fn get(
    services: Arc<Services>,
    req: Ruma<get_device::v3::Request>,
) -> Result<get_device::v3::Response> {
    let device = services
        .sessions
        .device(req.user_id()?, &req.body.device_id)?
        .ok_or_else(|| Error::not_found("No such device"))?;
    Ok(get_device::v3::Response::new(to_device(device)))
}

/// `PUT /_matrix/client/v3/devices/{deviceId}`
pub async fn update(
    services: Arc<Services>,
    req: Ruma<update_device::v3::Request>,
) -> Result<update_device::v3::Response> {
    services.sessions.rename_device(
        req.user_id()?,
        &req.body.device_id,
        req.body.display_name.clone(),
    )?;
    Ok(update_device::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/devices/{deviceId}`
pub async fn delete(
    services: Arc<Services>,
    req: Ruma<delete_device::v3::Request>,
) -> Result<delete_device::v3::Response> {
    let user_id = req.user_id()?;
    if services
        .sessions
        .device(user_id, &req.body.device_id)?
        .is_none()
    {
        return Err(Error::not_found("No such device"));
    }
    require_password(
        &services,
        user_id,
        "delete_devices",
        req.body.auth.as_ref(),
        &req.origin(),
    )
    .await?;
    delete_devices(
        &services,
        user_id,
        Some(std::slice::from_ref(&req.body.device_id)),
        None,
        &req.origin(),
    )?;
    Ok(delete_device::v3::Response::new())
}

/// `POST /_matrix/client/v3/delete_devices`
pub async fn delete_many(
    services: Arc<Services>,
    req: Ruma<delete_devices::v3::Request>,
) -> Result<delete_devices::v3::Response> {
    let user_id = req.user_id()?;
    require_password(
        &services,
        user_id,
        "delete_devices",
        req.body.auth.as_ref(),
        &req.origin(),
    )
    .await?;
    delete_devices(
        &services,
        user_id,
        Some(&req.body.devices),
        None,
        &req.origin(),
    )?;
    Ok(delete_devices::v3::Response::new())
}

//! `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`: messages straight to devices.

use std::sync::Arc;

use ruma::api::client::to_device::send_event_to_device;
use ruma::to_device::DeviceIdOrAllDevices;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::Value;

use crate::api::ruma::Ruma;
use crate::e2ee::to_device::Delivery;
use crate::error::{Error, Result};
use crate::services::Services;

pub async fn send(
    services: Arc<Services>,
    req: Ruma<send_event_to_device::v3::Request>,
) -> Result<send_event_to_device::v3::Response> {
    let (sender, device) = (req.user_id()?, req.device_id()?);
    let body = &req.body;
    // Unknown users and devices are passed over, as the spec asks; users of other servers
    // wait for federation.
    let mut targets: Vec<(OwnedUserId, OwnedDeviceId, Value)> = Vec::new();
    for (user, devices) in &body.messages {
        if user.server_name() != services.config.server_name {
            continue;
        }
        for (target, content) in devices {
            let content: Value = serde_json::from_str(content.json().get())
                .map_err(|e| Error::bad_json(format!("Invalid message content: {e}")))?;
            if !content.is_object() {
                return Err(Error::bad_json("Message content must be an object"));
            }
            match target {
                DeviceIdOrAllDevices::AllDevices => {
                    for record in services.sessions.devices(user)? {
                        targets.push((user.clone(), record.device_id, content.clone()));
                    }
                }
                DeviceIdOrAllDevices::DeviceId(id) => {
                    if services.sessions.device(user, id)?.is_some() {
                        targets.push((user.clone(), id.clone(), content));
                    }
                }
            }
        }
    }
    let deliveries: Vec<Delivery<'_>> = targets
        .iter()
        .map(|(user, device, content)| Delivery {
            user,
            device,
            content,
        })
        .collect();
    services.to_device.send(
        sender,
        device,
        body.txn_id.as_str(),
        &body.event_type.to_string(),
        &deliveries,
    )?;
    Ok(send_event_to_device::v3::Response::new())
}

//! `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`: messages straight to devices.

use std::sync::Arc;

use ruma::api::client::to_device::send_event_to_device;
use ruma::to_device::DeviceIdOrAllDevices;
use std::collections::BTreeMap;

use ruma::{OwnedDeviceId, OwnedServerName, OwnedUserId};
use serde_json::{Value, json};

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
    // Unknown users and devices are passed over, as the spec asks; messages to users of other
    // servers go to their servers, one EDU per server.
    let mut targets: Vec<(OwnedUserId, OwnedDeviceId, Value)> = Vec::new();
    let mut remote: BTreeMap<OwnedServerName, serde_json::Map<String, Value>> = BTreeMap::new();
    for (user, devices) in &body.messages {
        let local = user.server_name() == services.config.server_name;
        if !local && !services.federation.talks_to(user.server_name()) {
            continue;
        }
        for (target, content) in devices {
            let content: Value = serde_json::from_str(content.json().get())
                .map_err(|e| Error::bad_json(format!("Invalid message content: {e}")))?;
            if !content.is_object() {
                return Err(Error::bad_json("Message content must be an object"));
            }
            if !local {
                let messages = remote.entry(user.server_name().to_owned()).or_default();
                let devices = messages
                    .entry(user.to_string())
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                devices[target.to_string()] = content;
                continue;
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
    let event_type = body.event_type.to_string();
    // The message id names the request, so that a retry is recognised on the other side too.
    let message_id = format!("{device}_{}", body.txn_id);
    let remote: Vec<(OwnedServerName, Value)> = remote
        .into_iter()
        .map(|(server, messages)| {
            let edu = json!({"edu_type": "m.direct_to_device", "content": {
                "sender": sender, "type": event_type, "message_id": message_id,
                "messages": messages,
            }});
            (server, edu)
        })
        .collect();
    services.to_device.send(
        sender,
        device,
        body.txn_id.as_str(),
        &event_type,
        &deliveries,
        &remote,
    )?;
    Ok(send_event_to_device::v3::Response::new())
}

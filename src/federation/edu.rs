//! Ephemeral events between servers (EDUs): the typing notices and read receipts of a room's
//! local users go to the servers of its other members, through the same durable queues as the
//! room's events (so they arrive in order with them); those of other servers' users are taken
//! from their transactions. Messages to devices (`m.direct_to_device`) are delivered to the
//! local devices they name; device list updates go to [`super::device_lists`], presence to
//! [`super::presence`]. Other EDU types are ignored.

use std::sync::Arc;
use std::time::Duration;

use ruma::api::federation::transactions::edu::Edu;
use ruma::serde::Raw;
use ruma::{EventId, OwnedServerName, OwnedUserId, RoomId, ServerName, UserId};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::rooms::receipts::UNTHREADED;
use crate::services::Services;
use crate::storage::Batch;

/// How long another server's user shows as typing without a word from that server (its own
/// timeout is not sent).
const REMOTE_TYPING: Duration = Duration::from_secs(30);

/// The other servers with a user joined to the room.
fn servers_of(services: &Services, room_id: &RoomId) -> Result<Vec<OwnedServerName>> {
    let own = &services.config.server_name;
    let mut servers: Vec<OwnedServerName> = services
        .timeline
        .joined_members(room_id)?
        .iter()
        .map(|user| user.server_name().to_owned())
        .filter(|server| server != own)
        .collect();
    servers.sort();
    servers.dedup();
    Ok(servers)
}

fn queue(services: &Services, room_id: &RoomId, edu: Value) -> Result<()> {
    let servers = servers_of(services, room_id)?;
    if servers.is_empty() {
        return Ok(());
    }
    let count = services.store.next_count()?;
    let mut batch = Batch::new();
    for server in &servers {
        super::sender::queue_edu(&mut batch, server, count, &edu);
    }
    services.store.write(batch)?;
    services.watchers.wake_federation();
    Ok(())
}

/// A local user started or stopped typing.
pub fn typing(services: &Services, room_id: &RoomId, user: &UserId, typing: bool) -> Result<()> {
    queue(
        services,
        room_id,
        json!({"edu_type": "m.typing",
               "content": {"room_id": room_id, "user_id": user, "typing": typing}}),
    )
}

/// A local user's public read receipt.
pub fn receipt(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    event_id: &EventId,
    thread: Option<&str>,
) -> Result<()> {
    let mut data = json!({"ts": crate::now_ms()});
    if let Some(thread) = thread {
        data["thread_id"] = thread.into();
    }
    queue(
        services,
        room_id,
        json!({"edu_type": "m.receipt",
               "content": {room_id.as_str(): {"m.read": {user.as_str(): {
                   "event_ids": [event_id], "data": data}}}}}),
    )
}

/// A user of `origin` joined to the room: the only one whose EDUs about it count (and none
/// when the room's server ACL denies `origin`).
fn member_of_origin(
    services: &Services,
    room_id: &RoomId,
    user: &str,
    origin: &ServerName,
) -> Result<Option<OwnedUserId>> {
    let Ok(user) = OwnedUserId::try_from(user) else {
        return Ok(None);
    };
    if user.server_name() != origin || services.timeline.refuse_if_denied(room_id, origin).is_err()
    {
        return Ok(None);
    }
    let joined = services
        .timeline
        .membership(room_id, &user)?
        .is_some_and(|m| m.membership == "join");
    Ok(joined.then_some(user))
}

/// Applies the EDUs of a transaction from `origin`. One that does not parse or concerns
/// someone else is passed over (logged).
pub fn receive(services: &Arc<Services>, origin: &ServerName, edus: &[Raw<Edu>]) {
    for edu in edus {
        let Ok(edu) = serde_json::from_str::<Value>(edu.json().get()) else {
            continue;
        };
        let result = match edu["edu_type"].as_str() {
            Some("m.typing") => remote_typing(services, origin, &edu["content"]),
            Some("m.receipt") => remote_receipts(services, origin, &edu["content"]),
            Some("m.direct_to_device") => remote_to_device(services, origin, &edu["content"]),
            Some("m.presence") => super::presence::receive(services, origin, &edu["content"]),
            Some("m.device_list_update" | "m.signing_key_update") => {
                super::device_lists::receive(services, origin, &edu["content"])
            }
            other => {
                tracing::debug!(%origin, edu_type = ?other, "EDU not taken");
                Ok(())
            }
        };
        if let Err(error) = result {
            tracing::info!(%origin, %error, "refused an EDU");
        }
    }
}

fn remote_typing(services: &Arc<Services>, origin: &ServerName, content: &Value) -> Result<()> {
    let room_id = content["room_id"]
        .as_str()
        .and_then(|r| ruma::OwnedRoomId::try_from(r).ok())
        .ok_or_else(|| Error::bad_json("m.typing without a room"))?;
    let Some(user) = member_of_origin(
        services,
        &room_id,
        content["user_id"].as_str().unwrap_or_default(),
        origin,
    )?
    else {
        return Err(Error::forbidden(
            "m.typing for a user not of the origin in the room",
        ));
    };
    let timeout = (content["typing"] == true).then_some(REMOTE_TYPING);
    crate::typing::announce(services, &room_id, &user, timeout)
}

fn remote_receipts(services: &Services, origin: &ServerName, content: &Value) -> Result<()> {
    let Some(rooms) = content.as_object() else {
        return Err(Error::bad_json("m.receipt content is not an object"));
    };
    for (room_id, by_type) in rooms {
        let Ok(room_id) = ruma::OwnedRoomId::try_from(room_id.as_str()) else {
            continue;
        };
        let Some(room) = services.timeline.room(&room_id)? else {
            continue;
        };
        let Some(users) = by_type["m.read"].as_object() else {
            continue;
        };
        for (user, receipt) in users {
            let Some(user) = member_of_origin(services, &room_id, user, origin)? else {
                continue;
            };
            let thread = receipt["data"]["thread_id"].as_str().unwrap_or(UNTHREADED);
            // The latest of the events it names that this server has.
            let events = receipt["event_ids"].as_array().cloned().unwrap_or_default();
            for event_id in events.iter().rev().filter_map(|e| e.as_str()) {
                let Ok(event_id) = ruma::OwnedEventId::try_from(event_id) else {
                    continue;
                };
                if services.timeline.position(&event_id)?.is_some() {
                    services.receipts.set(
                        &services.timeline,
                        &room_id,
                        room.short,
                        &user,
                        "m.read",
                        thread,
                        &event_id,
                    )?;
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Messages of another server's user to devices of this server's users. A message sent again
/// (the same `message_id` from the same sender) is delivered once.
fn remote_to_device(services: &Services, origin: &ServerName, content: &Value) -> Result<()> {
    let sender = content["sender"]
        .as_str()
        .and_then(|s| OwnedUserId::try_from(s).ok())
        .ok_or_else(|| Error::bad_json("m.direct_to_device without a sender"))?;
    if sender.server_name() != origin {
        return Err(Error::forbidden(
            "m.direct_to_device from a user not of the origin",
        ));
    }
    let (Some(event_type), Some(message_id), Some(messages)) = (
        content["type"].as_str(),
        content["message_id"].as_str(),
        content["messages"].as_object(),
    ) else {
        return Err(Error::bad_json(
            "m.direct_to_device needs a type, a message id and messages",
        ));
    };
    let own = &services.config.server_name;
    let mut targets: Vec<(OwnedUserId, ruma::OwnedDeviceId, &Value)> = Vec::new();
    for (user, devices) in messages {
        let Ok(user) = OwnedUserId::try_from(user.as_str()) else {
            continue;
        };
        let Some(devices) = devices.as_object().filter(|_| user.server_name() == own) else {
            continue;
        };
        for (device, message) in devices.iter().filter(|(_, m)| m.is_object()) {
            if device == "*" {
                for record in services.sessions.devices(&user)? {
                    targets.push((user.clone(), record.device_id, message));
                }
            } else {
                let device = ruma::OwnedDeviceId::from(device.as_str());
                if services.sessions.device(&user, &device)?.is_some() {
                    targets.push((user.clone(), device, message));
                }
            }
        }
    }
    let deliveries: Vec<crate::e2ee::to_device::Delivery<'_>> = targets
        .iter()
        .map(|(user, device, content)| crate::e2ee::to_device::Delivery {
            user,
            device,
            content,
        })
        .collect();
    // Remembered under a device of no local user: the sender's server stands for it.
    services.to_device.send(
        &sender,
        <&ruma::DeviceId>::from("federation"),
        message_id,
        event_type,
        &deliveries,
        &[],
    )
}

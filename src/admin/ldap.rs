//! `!admin ldap sync`: asks the directory bridge (`sori-ldap-sync daemon`) for a sync now.
//! The bridge is the appservice whose registration lists the `ldap` protocol. The request
//! goes to its bot's devices as a to-device message (durable, so a daemon that is restarting
//! gets it when it is back); the bot is invited to the admin room and answers the command
//! there when the sync is done.

use ruma::{DeviceId, EventId, RoomId, UserId};
use serde_json::json;

use crate::admin::commands::Reply;
use crate::e2ee::to_device::Delivery;
use crate::error::{Error, Result};
use crate::rooms::membership::{self, Change};
use crate::services::Services;

/// The protocol a directory bridge's registration lists.
pub const PROTOCOL: &str = "ldap";
/// The to-device event type of a request.
pub const REQUEST_TYPE: &str = "io.sori.ldap_sync.request";

/// Where a command was given: the room and the command's event.
pub struct Invocation<'a> {
    pub room_id: &'a RoomId,
    pub event_id: &'a EventId,
}

/// Asks every directory bridge for a sync (a dry run if asked), to be answered at `at`.
pub async fn request_sync(
    services: &Services,
    bot: &UserId,
    at: &Invocation<'_>,
    dry_run: bool,
) -> Result<Reply> {
    let bridges: Vec<_> = services
        .appservices
        .all()
        .iter()
        .filter(|a| a.registration.protocols.iter().any(|p| p == PROTOCOL))
        .cloned()
        .collect();
    if bridges.is_empty() {
        return Err(Error::not_found(format!(
            "No directory bridge is registered (an appservice whose registration lists `protocols: [{PROTOCOL}]`)"
        )));
    }
    let mut reply = Reply::default();
    for bridge in bridges {
        let listener = &bridge.sender;
        let devices = services.sessions.devices(listener)?;
        if devices.is_empty() {
            reply = reply.line(&format!(
                "{listener} is not listening: run the bridge as `sori-ldap-sync daemon`, or sync with `sori-ldap-sync once`."
            ));
            continue;
        }
        let held = services.timeline.membership(at.room_id, listener)?;
        if !held.is_some_and(|m| matches!(m.membership.as_str(), "join" | "invite")) {
            membership::change(
                &services.timeline,
                Change {
                    reason: Some("To answer `!admin ldap sync`"),
                    ..Change::new(at.room_id, bot, listener, "invite")
                },
            )
            .await?;
        }
        let content = json!({
            "room_id": at.room_id,
            "event_id": at.event_id,
            "dry_run": dry_run,
        });
        let deliveries: Vec<Delivery<'_>> = devices
            .iter()
            .map(|device| Delivery {
                user: listener,
                device: &device.device_id,
                content: &content,
            })
            .collect();
        // One request per command, whatever happens to the answer.
        services.to_device.send(
            bot,
            <&DeviceId>::from("SORI"),
            at.event_id.as_str(),
            REQUEST_TYPE,
            &deliveries,
            &[],
        )?;
        reply = reply.line(&format!(
            "Asked {listener} for a {}; it answers here when done.",
            if dry_run { "dry run" } else { "sync" }
        ));
    }
    Ok(reply)
}

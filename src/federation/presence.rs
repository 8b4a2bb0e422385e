//! Presence between servers (`m.presence` EDUs): a local user's presence changes go to the
//! servers of the rooms they are in, through the same durable queues as the rooms' events;
//! another server's, about its own users who share a room with a local user, are taken as
//! that server says (they never expire here) and reach the local users' `/sync`.

use std::time::Duration;

use ruma::presence::PresenceState;
use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::services::Services;
use crate::storage::Batch;

/// The other servers with a user joined to a room `user` is joined to.
fn servers_sharing_with(services: &Services, user: &UserId) -> Result<Vec<OwnedServerName>> {
    let own = &services.config.server_name;
    let mut servers: Vec<OwnedServerName> = Vec::new();
    for room_id in services.timeline.joined_rooms(user)? {
        for member in services.timeline.joined_members(&room_id)? {
            let server = member.server_name();
            if server != own && !servers.iter().any(|s| s == server) {
                servers.push(server.to_owned());
            }
        }
    }
    servers.retain(|server| services.federation.talks_to(server));
    Ok(servers)
}

/// A local user's presence changed: the servers sharing a room with them hear of it.
pub fn announce(services: &Services, user: &UserId) -> Result<()> {
    let servers = servers_sharing_with(services, user)?;
    if servers.is_empty() {
        return Ok(());
    }
    let status = services.presence.get(user);
    let mut update = status.content();
    update["user_id"] = json!(user);
    update["last_active_ago"] = json!(
        status
            .last_active_ago
            .map_or(0, |ago| ago.as_millis() as u64)
    );
    let edu = json!({"edu_type": "m.presence", "content": {"push": [update]}});
    let count = services.store.next_count()?;
    let mut batch = Batch::new();
    for server in &servers {
        super::sender::queue_edu(&mut batch, server, count, &edu);
    }
    services.store.write(batch)?;
    services.watchers.wake_federation();
    Ok(())
}

/// `m.presence` from `origin`: the updates about its own users who share a room with a local
/// user are taken; the others are passed over.
pub fn receive(services: &Services, origin: &ServerName, content: &Value) -> Result<()> {
    let Some(push) = content["push"].as_array() else {
        return Err(Error::bad_json("m.presence without push"));
    };
    let own = &services.config.server_name;
    for update in push {
        let Some(user) = update["user_id"]
            .as_str()
            .and_then(|u| OwnedUserId::try_from(u).ok())
            .filter(|u| u.server_name() == origin)
        else {
            continue;
        };
        let presence = match update["presence"].as_str() {
            Some("online") => PresenceState::Online,
            Some("unavailable") => PresenceState::Unavailable,
            Some("offline") => PresenceState::Offline,
            _ => continue,
        };
        let shares = services
            .timeline
            .joined_rooms(&user)?
            .iter()
            .any(|room_id| {
                services
                    .timeline
                    .joined_members(room_id)
                    .is_ok_and(|members| members.iter().any(|m| m.server_name() == own))
            });
        if !shares {
            continue;
        }
        let status_msg = update["status_msg"]
            .as_str()
            .map(|m| m.chars().take(1024).collect());
        let ago = Duration::from_millis(update["last_active_ago"].as_u64().unwrap_or(0));
        if services
            .presence
            .set_remote(&user, presence, status_msg, ago)
        {
            crate::sync::wake_sharers(services, &user)?;
        }
    }
    Ok(())
}

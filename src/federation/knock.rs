//! Knocking on a room of another server: a resident server prepares the knock (`make_knock`),
//! this server signs it and sends it back (`send_knock`), and keeps what it is answered with
//! of the room (`knock_room_state`) for the user's `/sync` (`knock_state`), as it keeps an
//! invite from another server ([`crate::rooms::invites`]). The room's admins answer with an
//! invite, which comes as any invite from another server; retracting the knock is leaving,
//! through the same servers.

use ruma::api::federation::membership::{create_knock_event, prepare_knock_event};
use ruma::{OwnedServerName, RoomId, ServerName, UserId};
use serde_json::{Value, json};

use super::invite::{MAX_INVITE_STATE, stripped, stripped_pdu};
use super::join::{bad_answer, servers_to_ask, sign_template};
use crate::error::{Error, Result};
use crate::rooms::invites::RemoteInvite;
use crate::rooms::pdu;
use crate::services::Services;

/// Knocks for `user` on a room this server is not in, through the first of `via` (and the
/// server of the room's id) that takes it.
pub async fn knock_remote(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    via: &[OwnedServerName],
    reason: Option<&str>,
) -> Result<()> {
    services.timeline.refuse_if_blocked(room_id)?;
    let candidates = servers_to_ask(services, room_id, via);
    let mut last = None;
    for server in &candidates {
        match knock_through(services, room_id, user, server, &candidates, reason).await {
            Ok(()) => return Ok(()),
            Err(error) => {
                tracing::warn!(%room_id, %server, %error, "knocking through another server failed");
                last = Some(error);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::not_found("This server is not in the room, and knows no server to knock through")
    }))
}

async fn knock_through(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    server: &ServerName,
    via: &[OwnedServerName],
    reason: Option<&str>,
) -> Result<()> {
    let mut request = prepare_knock_event::v1::Request::new(room_id.to_owned(), user.to_owned());
    request.ver = pdu::VERSIONS.to_vec();
    let made = services
        .federation
        .client
        .send(&services.outbound, server, request)
        .await?;
    let version = made.room_version;
    let rules = pdu::rules(&version)?;
    let mut content = json!({"membership": "knock"});
    if let Some(reason) = reason {
        content["reason"] = Value::String(reason.to_owned());
    }
    for (name, value) in services.profiles.get(user)? {
        if name == "displayname" || name == "avatar_url" {
            content[name] = value;
        }
    }
    let (knock, event_id) = sign_template(services, server, &made.event, user, content, &rules)?;
    let raw = serde_json::value::to_raw_value(&knock)
        .map_err(|e| Error::internal(format!("serialising the knock: {e}")))?;
    let answer = services
        .federation
        .client
        .send(
            &services.outbound,
            server,
            create_knock_event::v1::Request::new(room_id.to_owned(), event_id.clone(), raw),
        )
        .await?;
    let mut state: Vec<Value> = answer
        .knock_room_state
        .iter()
        .filter_map(|raw| stripped(raw, room_id))
        .filter(|e| e["state_key"] != user.as_str() || e["type"] != "m.room.member")
        .take(MAX_INVITE_STATE)
        .collect();
    let own = serde_json::to_value(&knock).map_err(|e| bad_answer(server, e))?;
    state.extend(stripped_pdu(&own));
    let mut servers = vec![server.to_owned()];
    servers.extend(via.iter().filter(|s| *s != server).cloned());
    services
        .timeline
        .keep_remote_invite(
            user,
            room_id,
            &RemoteInvite {
                event: knock,
                version,
                state,
                via: servers,
            },
            "knock",
        )
        .await?;
    tracing::info!(%room_id, %server, %user, %event_id, "knocked on a room of another server");
    Ok(())
}

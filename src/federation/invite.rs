//! Invites across servers. Inviting a user of another server: the invite event, made and
//! signed here, goes to the invitee's server (`PUT /_matrix/federation/v2/invite`) with a few
//! of the room's state events (what its client shows of the invite: name, topic, avatar, join
//! rules, who invites), and comes back signed by that server too. Only then is it added to the
//! room. Being invited: the other way round, with this server checking and signing.

use ruma::api::federation::membership::{
    RawStrippedState, create_invite, create_leave_event, prepare_leave_event,
};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::rooms::invites::RemoteInvite;
use crate::rooms::pdu::{self, StoredPdu};
use crate::services::Services;

/// Most state events kept with an invite (the spec suggests a handful).
pub(super) const MAX_INVITE_STATE: usize = 50;

/// Has the invitee's server sign `invite` (of a room of `version`); returns the event as it
/// came back.
pub async fn countersign(
    services: &Services,
    invite: &StoredPdu,
    version: RoomVersionId,
    invitee: &UserId,
) -> Result<CanonicalJsonObject> {
    let server = invitee.server_name();
    services.federation.check_talks_to(server)?;
    let record = services
        .timeline
        .room(&invite.room_id)?
        .ok_or_else(|| Error::not_found("Unknown room"))?;
    let sender = invite.to_client_event()["sender"]
        .as_str()
        .map(str::to_owned);
    let state = shown_state(services, record.short, sender)?;
    let event = serde_json::value::to_raw_value(&invite.pdu)
        .map_err(|e| Error::internal(format!("serialising the invite: {e}")))?;
    let request = create_invite::v2::Request::new(
        invite.room_id.clone(),
        invite.event_id.clone(),
        version,
        event,
        state,
    );
    let answer = services
        .federation
        .client
        .send(&services.outbound, server, request)
        .await?;
    serde_json::from_str(answer.event.get()).map_err(|e| {
        Error::new(
            http::StatusCode::BAD_GATEWAY,
            ruma::api::error::ErrorKind::Unknown,
            format!("{server} answered the invite with no event: {e}"),
        )
    })
}

/// What another server's user is shown of a room they are invited to or knock on: the room's
/// create, join rules, name, avatar, canonical alias, encryption and topic events, and the
/// member event of `member` (the inviter), as full PDUs.
pub fn shown_state(
    services: &Services,
    short: u64,
    member: Option<String>,
) -> Result<Vec<RawStrippedState>> {
    let mut state = Vec::new();
    for (kind, key) in crate::rooms::state::INVITE_STATE_TYPES
        .iter()
        .map(|kind| (*kind, String::new()))
        .chain(member.map(|member| ("m.room.member", member)))
    {
        if let Some(event) = services.timeline.state_event(short, kind, &key)? {
            let raw = serde_json::value::to_raw_value(&event.pdu)
                .map_err(|e| Error::internal(format!("serialising state: {e}")))?;
            state.push(RawStrippedState::Pdu(raw));
        }
    }
    Ok(state)
}

/// Takes an invite of one of this server's users sent by `origin`: checks that it is an
/// invite of that server's user to this one's, signed and hashed as it should be, signs it
/// too and answers with it. When no user of this server is in the room, the invite is kept
/// for the invitee with what `origin` told of the room.
pub async fn receive(
    services: &Services,
    origin: &ServerName,
    request: create_invite::v2::Request,
) -> Result<CanonicalJsonObject> {
    let version = request.room_version;
    if !pdu::VERSIONS.contains(&version) {
        return Err(Error::new(
            http::StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::IncompatibleRoomVersion(
                ruma::api::error::IncompatibleRoomVersionErrorData::new(version),
            ),
            "This server does not support the room's version",
        ));
    }
    let object: CanonicalJsonObject = serde_json::from_str(request.event.get())
        .map_err(|e| Error::bad_json(format!("The invite is not canonical JSON: {e}")))?;
    let invitee = check_invite(
        &object,
        &request.room_id,
        origin,
        &services.config.server_name,
    )?;
    if !services.accounts.is_active(&invitee)? {
        return Err(Error::not_found(format!("Unknown user {invitee}")));
    }
    services.timeline.refuse_if_blocked(&request.room_id)?;
    services
        .timeline
        .refuse_if_denied(&request.room_id, origin)?;
    let checked = services
        .federation
        .check_pdu(&services.outbound, &services.server_keys, &version, object)
        .await?;
    if checked.redacted {
        return Err(Error::forbidden(
            "The invite's content does not match its hash",
        ));
    }
    if checked.event_id != request.event_id {
        return Err(Error::bad_json(format!(
            "The event's id is {}, not the one in the path",
            checked.event_id
        )));
    }
    let mut event = checked.pdu;
    services.timeline.sign(&mut event, &pdu::rules(&version)?)?;

    let mut state: Vec<Value> = request
        .invite_room_state
        .iter()
        .filter_map(|raw| stripped(raw, &request.room_id))
        .filter(|e| e["state_key"] != invitee.as_str() || e["type"] != "m.room.member")
        .take(MAX_INVITE_STATE)
        .collect();
    state.extend(stripped_pdu(
        &serde_json::to_value(&event).unwrap_or_default(),
    ));
    let mut via = vec![origin.to_owned()];
    via.extend(
        request
            .room_id
            .server_name()
            .filter(|s| *s != origin)
            .map(ToOwned::to_owned),
    );
    let kept = services
        .timeline
        .keep_remote_invite(
            &invitee,
            &request.room_id,
            &RemoteInvite {
                event: event.clone(),
                version,
                state,
                via,
            },
            "invite",
        )
        .await?;
    tracing::info!(room_id = %request.room_id, %invitee, %origin, kept, "invited by another server");
    Ok(event)
}

/// Checks that `object` is an invite by a user of `origin` into `room_id` of a user of
/// `own`; returns the invitee.
fn check_invite(
    object: &CanonicalJsonObject,
    room_id: &ruma::RoomId,
    origin: &ServerName,
    own: &ServerName,
) -> Result<ruma::OwnedUserId> {
    let field = |name: &str| match object.get(name) {
        Some(CanonicalJsonValue::String(value)) => Some(value.as_str()),
        _ => None,
    };
    let membership = match object.get("content") {
        Some(CanonicalJsonValue::Object(content)) => match content.get("membership") {
            Some(CanonicalJsonValue::String(m)) => Some(m.as_str()),
            _ => None,
        },
        _ => None,
    };
    if field("type") != Some("m.room.member") || membership != Some("invite") {
        return Err(Error::bad_json("Not an invite"));
    }
    if field("room_id").is_some_and(|room| room != room_id.as_str()) {
        return Err(Error::bad_json("The invite is to another room"));
    }
    let user = |name: &str| {
        field(name)
            .and_then(|id| ruma::OwnedUserId::try_from(id).ok())
            .ok_or_else(|| Error::bad_json(format!("The invite's {name} is not a user id")))
    };
    if user("sender")?.server_name() != origin {
        return Err(Error::forbidden(
            "The inviter is not of the requesting server",
        ));
    }
    let invitee = user("state_key")?;
    if invitee.server_name() != own {
        return Err(Error::forbidden("The invitee is not of this server"));
    }
    Ok(invitee)
}

/// A state event sent with an invite (a PDU or, from older servers, already stripped) as
/// clients are shown it; none when it is of another room or no state event.
pub(super) fn stripped(raw: &RawStrippedState, room_id: &ruma::RoomId) -> Option<Value> {
    let event = serde_json::to_value(raw).ok()?;
    if event
        .get("room_id")
        .and_then(Value::as_str)
        .is_some_and(|room| room != room_id.as_str())
    {
        return None;
    }
    stripped_pdu(&event)
}

pub(super) fn stripped_pdu(event: &Value) -> Option<Value> {
    let (Some(kind), Some(state_key), Some(sender)) = (
        event["type"].as_str(),
        event["state_key"].as_str(),
        event["sender"].as_str(),
    ) else {
        return None;
    };
    event["content"].is_object().then(|| {
        json!({"type": kind, "state_key": state_key, "sender": sender, "content": event["content"]})
    })
}

/// Turns down the invite of `user` into a room this server is not in: a leave event made
/// through one of the servers the invite came from (`make_leave`, `send_leave`), so the
/// inviter sees the answer. When none of them takes it the invite is still turned down here:
/// a user must always be able to be rid of an invite, whatever the other servers do.
pub async fn decline(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    invite: &RemoteInvite,
    reason: Option<String>,
) -> Result<()> {
    let mut content = json!({"membership": "leave"});
    if let Some(reason) = reason {
        content["reason"] = Value::String(reason);
    }
    let mut sent = false;
    for server in &invite.via {
        if !services.federation.talks_to(server) {
            continue;
        }
        match leave_through(services, room_id, user, server, invite, content.clone()).await {
            Ok(()) => {
                sent = true;
                break;
            }
            Err(error) => {
                tracing::warn!(%room_id, %server, %error, "turning an invite down through another server failed");
            }
        }
    }
    if !sent {
        tracing::warn!(%room_id, %user, "no server took the leave; the invite is turned down here only");
    }
    services.timeline.decline_remote_invite(user, room_id).await
}

pub(super) async fn leave_through(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    server: &ServerName,
    invite: &RemoteInvite,
    content: Value,
) -> Result<()> {
    let request = prepare_leave_event::v1::Request::new(room_id.to_owned(), user.to_owned());
    let made = services
        .federation
        .client
        .send(&services.outbound, server, request)
        .await?;
    let version = made.room_version.unwrap_or_else(|| invite.version.clone());
    let rules = pdu::rules(&version)?;
    let (leave, event_id) =
        super::join::sign_template(services, server, &made.event, user, content, &rules)?;
    let raw = serde_json::value::to_raw_value(&leave)
        .map_err(|e| Error::internal(format!("serialising the leave: {e}")))?;
    services
        .federation
        .client
        .send(
            &services.outbound,
            server,
            create_leave_event::v2::Request::new(room_id.to_owned(), event_id.clone(), raw),
        )
        .await?;
    tracing::info!(%room_id, %server, %user, %event_id, "turned down an invite of another server");
    Ok(())
}

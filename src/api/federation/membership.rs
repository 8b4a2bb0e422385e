//! Another server's user joins a room of this server: `make_join` prepares the join event,
//! `send_join` (v2) takes it signed and answers with the room's state and auth chain. Leaving
//! without being joined (turning an invite down) goes the same way: `make_leave`,
//! `send_leave` (v2); knocking too: `make_knock`, `send_knock`. Another server's user invites
//! one of this server's: `invite` (v2).

use std::sync::Arc;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ruma::api::error::ErrorKind;
use ruma::api::federation::membership::{
    create_invite, create_join_event, create_knock_event, create_leave_event, prepare_join_event,
    prepare_knock_event, prepare_leave_event,
};
use ruma::{CanonicalJsonObject, OwnedEventId, RoomId, ServerName};
use serde_json::json;

use super::origin;
use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::services::Services;

/// A membership event template for `user` (of `origin`) in a room of this server, made when
/// the room's version is one the asking server supports (`ver`, when it says).
async fn template(
    services: &Services,
    origin: &ServerName,
    (room_id, user): (&RoomId, &ruma::UserId),
    ver: Option<&[ruma::RoomVersionId]>,
    membership: &str,
) -> Result<(ruma::RoomVersionId, Box<serde_json::value::RawValue>)> {
    if user.server_name() != origin {
        return Err(Error::forbidden("The user is not of the requesting server"));
    }
    services.timeline.refuse_if_denied(room_id, origin)?;
    let version = services
        .timeline
        .room(room_id)?
        .ok_or_else(|| Error::not_found("No such room here"))?
        .version;
    if ver.is_some_and(|ver| !ver.contains(&version)) {
        return Err(Error::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::IncompatibleRoomVersion(
                ruma::api::error::IncompatibleRoomVersionErrorData::new(version),
            ),
            "Your server does not support this room's version",
        ));
    }
    let mut draft = services.timeline.draft();
    let (version, template) = draft.membership_template(room_id, user, membership).await?;
    let event = serde_json::value::to_raw_value(&template)
        .map_err(|e| Error::internal(format!("serialising a {membership} template: {e}")))?;
    Ok((version, event))
}

/// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`
pub async fn make_join(
    services: Arc<Services>,
    req: Ruma<prepare_join_event::v1::Request>,
) -> Result<prepare_join_event::v1::Response> {
    let body = &req.body;
    let room_and_user = (&*body.room_id, &*body.user_id);
    let (version, event) = template(
        &services,
        origin(&req)?,
        room_and_user,
        Some(&body.ver),
        "join",
    )
    .await?;
    let mut response = prepare_join_event::v1::Response::new(event);
    response.room_version = Some(version);
    Ok(response)
}

/// `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}`
pub async fn make_knock(
    services: Arc<Services>,
    req: Ruma<prepare_knock_event::v1::Request>,
) -> Result<prepare_knock_event::v1::Response> {
    let body = &req.body;
    let room_and_user = (&*body.room_id, &*body.user_id);
    let (version, event) = template(
        &services,
        origin(&req)?,
        room_and_user,
        Some(&body.ver),
        "knock",
    )
    .await?;
    Ok(prepare_knock_event::v1::Response::new(version, event))
}

/// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`: the knock, answered with what
/// the knocker is shown of the room.
pub async fn send_knock(
    services: Arc<Services>,
    req: Ruma<create_knock_event::v1::Request>,
) -> Result<create_knock_event::v1::Response> {
    let origin = origin(&req)?.to_owned();
    let body = &req.body;
    take_membership(
        &services,
        &origin,
        (&body.room_id, &body.event_id),
        &body.pdu,
        "knock",
    )
    .await?;
    let short = services
        .timeline
        .room(&body.room_id)?
        .ok_or_else(|| Error::not_found("No such room here"))?
        .short;
    Ok(create_knock_event::v1::Response::new(
        crate::federation::invite::shown_state(&services, short, None)?,
    ))
}

/// The checks `send_join` and `send_leave` make on the event beyond the PDU checks: it is the
/// `expected` membership it says it is, of a user of the sending server, to this room.
fn check_membership(
    object: &CanonicalJsonObject,
    room_id: &RoomId,
    origin: &ServerName,
    expected: &str,
) -> Result<()> {
    let field = |name: &str| object.get(name).and_then(|v| v.as_str());
    if field("type") != Some("m.room.member") {
        return Err(Error::bad_json("Not a membership event"));
    }
    let membership = match object.get("content") {
        Some(ruma::CanonicalJsonValue::Object(content)) => {
            content.get("membership").and_then(|v| v.as_str())
        }
        _ => None,
    };
    if membership != Some(expected) {
        return Err(Error::bad_json(format!("Not a {expected}")));
    }
    let (Some(sender), Some(state_key)) = (field("sender"), field("state_key")) else {
        return Err(Error::bad_json(
            "A membership event needs a sender and a state key",
        ));
    };
    if sender != state_key {
        return Err(Error::bad_json("The state key is not the sender"));
    }
    let sender = <&ruma::UserId>::try_from(sender)
        .map_err(|_| Error::bad_json("The sender is not a user id"))?;
    if sender.server_name() != origin {
        return Err(Error::forbidden("The user is not of the requesting server"));
    }
    if let Some(room) = field("room_id")
        && room != room_id.as_str()
    {
        return Err(Error::bad_json("The event is of another room"));
    }
    Ok(())
}

/// Takes a signed join or leave (`membership`) of a user of `origin` into the room, as
/// `send_join` and `send_leave` do; returns the event as taken. The other servers in the room
/// are sent it too.
async fn take_membership(
    services: &Services,
    origin: &ServerName,
    (room_id, event_id): (&RoomId, &ruma::EventId),
    pdu: &serde_json::value::RawValue,
    membership: &str,
) -> Result<crate::federation::intake::Checked> {
    let version = services
        .timeline
        .room(room_id)?
        .ok_or_else(|| Error::not_found("No such room here"))?
        .version;
    services.timeline.refuse_if_denied(room_id, origin)?;
    let object: CanonicalJsonObject = serde_json::from_str(pdu.get())
        .map_err(|e| Error::bad_json(format!("The event is not canonical JSON: {e}")))?;
    check_membership(&object, room_id, origin, membership)?;
    let checked = services
        .federation
        .check_pdu(&services.outbound, &services.server_keys, &version, object)
        .await?;
    if checked.event_id != event_id {
        return Err(Error::bad_json(format!(
            "The event's id is {}, not the one in the path",
            checked.event_id
        )));
    }
    let mut draft = services.timeline.draft();
    draft
        .receive(room_id, checked.event_id.clone(), checked.pdu.clone(), true)
        .await?;
    draft.commit()?;
    tracing::info!(%room_id, event_id = %checked.event_id, %origin, membership, "remote membership");
    Ok(checked)
}

/// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`
pub async fn send_join(
    services: Arc<Services>,
    req: Ruma<create_join_event::v2::Request>,
) -> Result<Response> {
    let origin = origin(&req)?.to_owned();
    let body = &req.body;
    let checked = take_membership(
        &services,
        &origin,
        (&body.room_id, &body.event_id),
        &body.pdu,
        "join",
    )
    .await?;
    let state = join_state(&services, &checked.event_id, body.omit_members)?;
    let mut answer = json!({
        "origin": services.config.server_name,
        "state": state.state,
        "auth_chain": state.auth_chain,
        "event": checked.pdu,
        "members_omitted": body.omit_members,
    });
    if body.omit_members {
        answer["servers_in_room"] = json!(state.servers);
    }
    Ok(Json(answer).into_response())
}

/// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}`
pub async fn make_leave(
    services: Arc<Services>,
    req: Ruma<prepare_leave_event::v1::Request>,
) -> Result<prepare_leave_event::v1::Response> {
    let body = &req.body;
    let room_and_user = (&*body.room_id, &*body.user_id);
    let (version, event) = template(&services, origin(&req)?, room_and_user, None, "leave").await?;
    Ok(prepare_leave_event::v1::Response::new(Some(version), event))
}

/// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`
pub async fn send_leave(
    services: Arc<Services>,
    req: Ruma<create_leave_event::v2::Request>,
) -> Result<create_leave_event::v2::Response> {
    let origin = origin(&req)?.to_owned();
    let body = &req.body;
    take_membership(
        &services,
        &origin,
        (&body.room_id, &body.event_id),
        &body.pdu,
        "leave",
    )
    .await?;
    Ok(create_leave_event::v2::Response::new())
}

/// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`
pub async fn invite(
    services: Arc<Services>,
    req: Ruma<create_invite::v2::Request>,
) -> Result<create_invite::v2::Response> {
    let origin = origin(&req)?.to_owned();
    let event = crate::federation::invite::receive(&services, &origin, req.body).await?;
    let event = serde_json::value::to_raw_value(&event)
        .map_err(|e| Error::internal(format!("serialising the invite: {e}")))?;
    Ok(create_invite::v2::Response::new(event))
}

/// What `send_join` answers with about the room.
struct JoinState {
    state: Vec<Box<serde_json::value::RawValue>>,
    auth_chain: Vec<Box<serde_json::value::RawValue>>,
    /// The servers with a user joined before the join.
    servers: Vec<String>,
}

/// The state before a join and its auth chain; with `omit_members`, the state leaves out
/// membership events and the auth chain what the state already holds.
fn join_state(services: &Services, join: &ruma::EventId, omit_members: bool) -> Result<JoinState> {
    let timeline = &services.timeline;
    let before = timeline
        .state_at_event(join, false)?
        .ok_or_else(|| Error::internal("a join just accepted is missing"))?;
    let mut servers = std::collections::BTreeSet::new();
    let mut state: Vec<OwnedEventId> = Vec::new();
    for ((kind, state_key), event_id) in &before {
        if kind == "m.room.member" {
            if let Some(event) = timeline.get(event_id)?
                && event.content()["membership"] == "join"
                && let Ok(user) = <&ruma::UserId>::try_from(state_key.as_str())
            {
                servers.insert(user.server_name().to_string());
            }
            if omit_members {
                continue;
            }
        }
        state.push(event_id.clone());
    }
    let mut from: Vec<OwnedEventId> = before.values().cloned().collect();
    from.push(join.to_owned());
    let mut chain = timeline.auth_chain(from)?;
    if omit_members {
        for event_id in &state {
            chain.remove(event_id);
        }
    }
    Ok(JoinState {
        state: super::pdus(services, &state)?,
        auth_chain: super::pdus(services, &chain)?,
        servers: servers.into_iter().collect(),
    })
}

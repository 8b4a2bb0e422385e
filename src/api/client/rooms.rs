//! Rooms: creating them, sending messages and state, reading state and single events, and
//! listing the rooms a user is in. Only joined members may read or write a room, and a room
//! the requester is not in answers the same whether it exists or not.

use std::sync::Arc;

use ruma::api::client::membership::joined_rooms;
use ruma::api::client::message::send_message_event;
use ruma::api::client::room::{Visibility, create_room, get_room_event};
use ruma::api::client::state::{get_state_event_for_key, get_state_events, send_state_event};
use ruma::serde::Raw;
use ruma::{RoomId, UserId};
use serde_json::{Map, Value};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::create::{CreateOptions, Preset, create_room as create};
use crate::rooms::pdu::raw as to_raw;
use crate::rooms::timeline::NewEvent;
use crate::rooms::visibility::Viewer;
use crate::services::Services;

/// Room names and topics longer than this are refused.
const MAX_NAME_CHARS: usize = 255;

/// The room's short id if the user is joined; otherwise 403, whether or not the room exists.
pub(super) fn require_joined(
    services: &Services,
    room_id: &RoomId,
    user_id: &UserId,
) -> Result<u64> {
    let joined = services
        .timeline
        .membership(room_id, user_id)?
        .is_some_and(|m| m.membership == "join");
    match (joined, services.timeline.room(room_id)?) {
        (true, Some(room)) => Ok(room.short),
        _ => Err(Error::forbidden("You are not in this room")),
    }
}

fn object(raw: Option<&serde_json::value::RawValue>, what: &str) -> Result<Map<String, Value>> {
    match raw {
        None => Ok(Map::new()),
        Some(raw) => {
            serde_json::from_str(raw.get()).map_err(|e| Error::bad_json(format!("{what}: {e}")))
        }
    }
}

/// `POST /_matrix/client/v3/createRoom`
pub async fn create_room(
    services: Arc<Services>,
    req: Ruma<create_room::v3::Request>,
) -> Result<create_room::v3::Response> {
    let creator = req.user_id()?.to_owned();
    let body = req.body;
    let alias = match &body.room_alias_name {
        None => None,
        Some(name) => Some(
            ruma::OwnedRoomAliasId::try_from(format!("#{name}:{}", services.config.server_name))
                .map_err(|_| Error::invalid_param("Invalid room_alias_name"))?,
        ),
    };
    if let Some(alias) = &alias {
        let appservice = req.session.as_ref().and_then(|s| s.appservice.as_deref());
        services
            .appservices
            .refuse_claimed_alias(alias, appservice)?;
    }
    if !body.invite_3pid.is_empty() {
        return Err(Error::invalid_param(
            "Third-party invites are not supported",
        ));
    }
    for text in [&body.name, &body.topic].into_iter().flatten() {
        if text.chars().count() > MAX_NAME_CHARS {
            return Err(Error::bad_json(
                "Room names and topics are at most 255 characters",
            ));
        }
    }
    let preset = match body.preset.as_ref().map(|p| p.as_str()) {
        None => None,
        Some("private_chat") => Some(Preset::PrivateChat),
        Some("trusted_private_chat") => Some(Preset::TrustedPrivateChat),
        Some("public_chat") => Some(Preset::PublicChat),
        Some(other) => return Err(Error::bad_json(format!("Unknown preset {other}"))),
    };
    let mut initial_state = Vec::new();
    for raw in &body.initial_state {
        #[derive(serde::Deserialize)]
        struct InitialState {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            state_key: String,
            content: Value,
        }
        let event: InitialState = serde_json::from_str(raw.json().get())
            .map_err(|e| Error::bad_json(format!("initial_state: {e}")))?;
        initial_state.push((event.kind, event.state_key, event.content));
    }
    // Member events carry the profile of the user they are about, as for any join or invite.
    let mut profiles = std::collections::BTreeMap::new();
    profiles.insert(creator.clone(), services.profiles.member_fields(&creator)?);
    let own = &services.config.server_name;
    for invitee in body.invite.iter().filter(|u| u.server_name() == own) {
        if !services.accounts.is_active(invitee)? {
            return Err(Error::not_found(format!("Unknown user {invitee}")));
        }
        profiles.insert(invitee.clone(), services.profiles.member_fields(invitee)?);
    }
    let options = CreateOptions {
        version: body.room_version.clone(),
        preset,
        public: body.visibility == Visibility::Public,
        creation_content: object(
            body.creation_content.as_ref().map(Raw::json),
            "creation_content",
        )?,
        power_level_content_override: body
            .power_level_content_override
            .as_ref()
            .map(|raw| object(Some(raw.json()), "power_level_content_override"))
            .transpose()?,
        initial_state,
        name: body.name.clone(),
        topic: body.topic.clone(),
        invite: body.invite.clone(),
        is_direct: body.is_direct,
        profiles,
        alias,
        encrypt_private: services.config.e2ee.default_encryption,
    };
    let room_id = create(&services.timeline, &services.aliases, &creator, options).await?;
    tracing::info!(room_id = %room_id, creator = %creator, "room created");
    // A server that refuses an invite does not undo the room (nor the other invites).
    for invitee in body.invite.iter().filter(|u| u.server_name() != own) {
        let invited = super::membership::invite_remote(
            &services,
            &room_id,
            &creator,
            invitee,
            body.is_direct,
        );
        if let Err(error) = invited.await {
            tracing::warn!(%room_id, %invitee, %error, "inviting a user of another server failed");
        }
    }
    Ok(create_room::v3::Response::new(room_id))
}

/// How long the sender's own `/sync` waits after the answer to a thread reply was written.
/// matrix-js-sdk (Element Web) drops the echo of a thread reply that arrives before the
/// answer when it has no thread object yet (a first reply) and then fails the send; the
/// answer is usually read within a millisecond, and the reply is already shown as sent.
const THREAD_ANSWER_LEAD: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether event content is a reply in a thread.
fn is_thread_reply(content: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Relates {
        rel_type: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Content {
        #[serde(rename = "m.relates_to")]
        relates_to: Option<Relates>,
    }
    serde_json::from_str::<Content>(content)
        .ok()
        .and_then(|c| c.relates_to?.rel_type)
        .is_some_and(|rel| rel == "m.thread")
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`
pub async fn send_message(
    services: Arc<Services>,
    req: Ruma<send_message_event::v3::Request>,
) -> Result<send_message_event::v3::Response> {
    let session = req.session()?.clone();
    req.require_body()?;
    require_joined(&services, &req.body.room_id, &session.user_id)?;
    let sending = services.watchers.sending(&session.user_id);
    if is_thread_reply(req.body.body.json().get()) {
        req.keep_until_written(sending.linger(THREAD_ANSWER_LEAD));
    } else {
        req.keep_until_written(sending);
    }
    let event = NewEvent {
        kind: req.body.event_type.to_string().into(),
        content: req.body.body.json().to_owned(),
        state_key: None,
    };
    let event_id = services
        .timeline
        .append_at(
            &req.body.room_id,
            &session.user_id,
            event,
            Some((&session.device_id, req.body.txn_id.as_str())),
            massaged_ts(&session, req.body.timestamp),
        )
        .await?;
    // Sending ends typing (the append already woke the room's syncs), and is activity.
    services.typing.stop(&req.body.room_id, &session.user_id);
    if services.presence.active(&session.user_id) {
        crate::sync::wake_sharers(&services, &session.user_id)?;
        crate::federation::presence::announce(&services, &session.user_id)?;
    }
    Ok(send_message_event::v3::Response::new(event_id))
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
pub async fn send_state(
    services: Arc<Services>,
    req: Ruma<send_state_event::v3::Request>,
) -> Result<send_state_event::v3::Response> {
    let user_id = req.user_id()?.to_owned();
    let ts = massaged_ts(req.session()?, req.body.timestamp);
    req.require_body()?;
    require_joined(&services, &req.body.room_id, &user_id)?;
    if req.body.event_type == ruma::events::StateEventType::RoomCanonicalAlias {
        let content: Value = serde_json::from_str(req.body.body.json().get())
            .map_err(|e| Error::bad_json(format!("Invalid content: {e}")))?;
        services
            .aliases
            .check_canonical(&req.body.room_id, &content)?;
    }
    let event = NewEvent {
        kind: req.body.event_type.to_string().into(),
        content: req.body.body.json().to_owned(),
        state_key: Some(req.body.state_key.clone()),
    };
    let event_id = services
        .timeline
        .append_at(&req.body.room_id, &user_id, event, None, ts)
        .await?;
    Ok(send_state_event::v3::Response::new(event_id))
}

/// The `ts` of a send, honoured for appservices only (timestamp massaging for bridged
/// history); everyone else's events carry the server's time.
fn massaged_ts(
    session: &crate::users::sessions::Session,
    ts: Option<ruma::MilliSecondsSinceUnixEpoch>,
) -> Option<u64> {
    ts.filter(|_| session.appservice.is_some())
        .map(|ts| u64::from(ts.get()))
}

/// Where a user reads a room's state from: the room's short id, and for a former member (left
/// or banned) the timeline position of their leaving, since they see the state as it was then.
/// A world-readable room's current state is open to every user (room previews); anyone else
/// gets 403, whether or not the room exists.
pub(super) fn state_view(
    services: &Services,
    room_id: &RoomId,
    user_id: &UserId,
) -> Result<(u64, Option<u64>)> {
    let Some(room) = services.timeline.room(room_id)? else {
        return Err(Error::forbidden("You are not in this room"));
    };
    let membership = services.timeline.membership(room_id, user_id)?;
    let membership = membership
        .as_ref()
        .map(|m| (m.membership.as_str(), m.count));
    if let Some(("join", _)) = membership {
        return Ok((room.short, None));
    }
    match (membership, world_readable(services, room.short)?) {
        (_, true) => Ok((room.short, None)),
        (Some(("leave" | "ban", left)), false) => Ok((room.short, Some(left))),
        _ => Err(Error::forbidden("You are not in this room")),
    }
}

fn world_readable(services: &Services, short: u64) -> Result<bool> {
    Ok(services
        .timeline
        .state_event(short, "m.room.history_visibility", "")?
        .is_some_and(|event| event.content()["history_visibility"] == "world_readable"))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state`
pub async fn get_state(
    services: Arc<Services>,
    req: Ruma<get_state_events::v3::Request>,
) -> Result<get_state_events::v3::Response> {
    let (short, at) = state_view(&services, &req.body.room_id, req.user_id()?)?;
    let events = services
        .timeline
        .state_events_at(short, at)?
        .iter()
        .map(|stored| to_raw(&stored.to_client_event()))
        .collect::<Result<_>>()?;
    Ok(get_state_events::v3::Response::new(events))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
pub async fn get_state_event(
    services: Arc<Services>,
    req: Ruma<get_state_event_for_key::v3::Request>,
) -> Result<get_state_event_for_key::v3::Response> {
    use get_state_event_for_key::v3::StateEventFormat;
    let (short, at) = state_view(&services, &req.body.room_id, req.user_id()?)?;
    let event_type = req.body.event_type.to_string();
    let event_id = match at {
        None => services
            .timeline
            .state_event_id(short, &event_type, &req.body.state_key)?,
        Some(at) => services
            .timeline
            .state_id_at(short, &event_type, &req.body.state_key, at)?,
    };
    let stored = event_id
        .map(|id| services.timeline.get(&id))
        .transpose()?
        .flatten()
        .ok_or_else(|| Error::not_found("No such state in this room"))?;
    let value = match req.body.format {
        StateEventFormat::Event => stored.to_client_event(),
        _ => stored.content(),
    };
    let raw = serde_json::value::to_raw_value(&value)
        .map_err(|e| Error::internal(format!("serialising state: {e}")))?;
    Ok(get_state_event_for_key::v3::Response::new(raw))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}`: members and former members see
/// what history visibility lets them; everything else is "not found".
pub async fn get_event(
    services: Arc<Services>,
    req: Ruma<get_room_event::v3::Request>,
) -> Result<get_room_event::v3::Response> {
    let user_id = req.user_id()?;
    let body = &req.body;
    let viewer = Viewer::of_member(&services.timeline, &body.room_id, user_id)?;
    let count = viewer.position_of(&body.event_id)?;
    let stored = services
        .timeline
        .get(&body.event_id)?
        .ok_or_else(|| Error::not_found("No such event in this room"))?;
    let event = crate::rooms::relations::serve(
        &services.timeline,
        viewer.short(),
        (count, &stored),
        req.recipient()?,
    )?;
    Ok(get_room_event::v3::Response::new(to_raw(&event)?))
}

/// `GET /_matrix/client/v3/joined_rooms`
pub async fn joined(
    services: Arc<Services>,
    req: Ruma<joined_rooms::v3::Request>,
) -> Result<joined_rooms::v3::Response> {
    Ok(joined_rooms::v3::Response::new(
        services.timeline.joined_rooms(req.user_id()?)?,
    ))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}`: stored for the server's admins.
/// Outsiders get the same 404 as for an unknown event, as the spec asks.
pub async fn report(
    services: Arc<Services>,
    req: Ruma<ruma::api::client::room::report_content::v3::Request>,
) -> Result<ruma::api::client::room::report_content::v3::Response> {
    let user_id = req.user_id()?;
    let body = &req.body;
    let not_found = || Error::not_found("No such event in this room");
    let viewer =
        Viewer::of_member(&services.timeline, &body.room_id, user_id).map_err(|_| not_found())?;
    viewer.position_of(&body.event_id)?;
    services.reports.add(&crate::rooms::reports::Report {
        room_id: body.room_id.clone(),
        event_id: body.event_id.clone(),
        reporter: user_id.to_owned(),
        reason: body.reason.clone(),
        ts: crate::now_ms(),
    })?;
    tracing::info!(room_id = %body.room_id, event_id = %body.event_id, "event reported");
    Ok(ruma::api::client::room::report_content::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/upgrade`
pub async fn upgrade(
    services: Arc<Services>,
    req: Ruma<ruma::api::client::room::upgrade_room::v3::Request>,
) -> Result<ruma::api::client::room::upgrade_room::v3::Response> {
    let user_id = req.user_id()?;
    let body = &req.body;
    require_joined(&services, &body.room_id, user_id)?;
    let replacement = crate::rooms::upgrade::upgrade(
        &services.timeline,
        &services.aliases,
        &services.directory,
        &body.room_id,
        user_id,
        body.new_version.clone(),
        body.additional_creators.clone(),
    )
    .await?;
    tracing::info!(room_id = %body.room_id, replacement = %replacement, "room upgraded");
    Ok(ruma::api::client::room::upgrade_room::v3::Response::new(
        replacement,
    ))
}

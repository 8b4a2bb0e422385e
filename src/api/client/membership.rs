//! Membership: join, invite, leave, kick, ban, unban, and the member lists.

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::api::client::membership::get_member_events;
use ruma::api::client::membership::{
    ban_user, invite_user, join_room_by_id, join_room_by_id_or_alias, joined_members, kick_user,
    leave_room, unban_user,
};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, RoomId, UserId};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::membership::{Change, change, change_countersigned};
use crate::services::Services;

/// Applies a membership change, with the target's profile in the event for joins and invites.
async fn apply(
    services: &Services,
    room_id: &RoomId,
    sender: &UserId,
    target: &UserId,
    membership: &str,
    reason: Option<&str>,
) -> Result<()> {
    // Rooms the sender cannot see answer like rooms that do not exist.
    if services.timeline.room(room_id)?.is_none() {
        return Err(Error::forbidden(
            "You cannot change membership in this room",
        ));
    }
    let remote = target.server_name() != services.config.server_name;
    // Users of other servers are their servers' to know (an invite to an unknown one fails
    // there).
    if !remote && !crate::appservice::query::user_known(services, target).await? {
        return Err(Error::not_found(format!("Unknown user {target}")));
    }
    let (displayname, avatar_url) = if matches!(membership, "join" | "invite") {
        let profile = services.profiles.member_fields(target)?;
        let text = |k: &str| profile.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        (text("displayname"), text("avatar_url"))
    } else {
        (None, None)
    };
    let change_request = Change {
        room_id,
        sender,
        target,
        membership,
        reason,
        displayname,
        avatar_url,
        is_direct: false,
    };
    if remote && membership == "invite" {
        return countersigned_invite(services, change_request).await;
    }
    change(&services.timeline, change_request).await.map(drop)
}

/// An invite of a user of another server, whose server signs it before it counts.
async fn countersigned_invite(services: &Services, invite: Change<'_>) -> Result<()> {
    let target = invite.target;
    change_countersigned(&services.timeline, invite, async |made, version| {
        crate::federation::invite::countersign(services, made, version, target).await
    })
    .await
    .map(drop)
}

/// Invites a user of another server (for createRoom's `invite`), marked `is_direct` for a DM.
pub(super) async fn invite_remote(
    services: &Services,
    room_id: &RoomId,
    sender: &UserId,
    invitee: &UserId,
    is_direct: bool,
) -> Result<()> {
    let change = Change {
        room_id,
        sender,
        target: invitee,
        membership: "invite",
        reason: None,
        displayname: None,
        avatar_url: None,
        is_direct,
    };
    countersigned_invite(services, change).await
}

/// Joins; when the user accepts an invite its sender marked `is_direct`, the room is also
/// recorded as a DM with the inviter in the user's `m.direct`. Clients do this themselves
/// after the join, but one that already saw its join arrive through sync (matrix-sdk, since
/// this server answers that fast) skips it, and the DM would show as a plain room.
async fn join(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    reason: Option<&str>,
    via: &[ruma::OwnedServerName],
) -> Result<()> {
    let room = services.timeline.room(room_id)?;
    let own = &services.config.server_name;
    // A room no local user is in any more is joined again through another server, as one
    // never joined.
    let here = room.is_some() && services.timeline.server_in_room(room_id, own)?;
    // An invite from another server names the servers to join through (a room id of version
    // 12 names none).
    let remote_invite = match here {
        false => services.timeline.remote_invite(user, room_id)?,
        true => None,
    };
    let mut via = via.to_vec();
    via.extend(
        remote_invite
            .iter()
            .flat_map(|invite| invite.via.iter().cloned()),
    );
    if room.is_some() && !here {
        // The servers of the members it had when this server left may still be in it.
        for member in services.timeline.joined_members(room_id)? {
            via.push(member.server_name().to_owned());
        }
    }
    let elsewhere = via
        .iter()
        .map(|server| &**server)
        .chain(room_id.server_name())
        .any(|server| server != own);
    if !here && elsewhere {
        // A room this server is not in: joined through a server that is.
        crate::federation::join::join_remote(services, room_id, user, &via).await?;
        let direct_inviter = remote_invite
            .filter(crate::rooms::invites::RemoteInvite::is_direct)
            .and_then(|invite| {
                invite
                    .sender()
                    .and_then(|s| ruma::OwnedUserId::try_from(s).ok())
            });
        if let Some(inviter) = direct_inviter {
            remember_direct(services, user, &inviter, room_id)?;
        }
        return Ok(());
    }
    let Some(room) = room else {
        // Not a room of this server, and no other server to ask: refused like any room the
        // user may not join, whether or not it exists.
        return apply(services, room_id, user, user, "join", reason).await;
    };
    let direct_inviter = services
        .timeline
        .state_event(room.short, "m.room.member", user.as_str())?
        .map(|invite| (invite.content(), invite.to_client_event()["sender"].clone()))
        .filter(|(content, _)| content["membership"] == "invite" && content["is_direct"] == true)
        .and_then(|(_, sender)| {
            sender
                .as_str()
                .and_then(|s| ruma::OwnedUserId::try_from(s).ok())
        });
    apply(services, room_id, user, user, "join", reason).await?;
    if let Some(inviter) = direct_inviter {
        remember_direct(services, user, &inviter, room_id)?;
    }
    Ok(())
}

/// Adds `room_id` under `other` in the user's `m.direct`, keeping everything else in it.
fn remember_direct(
    services: &Services,
    user: &UserId,
    other: &UserId,
    room_id: &RoomId,
) -> Result<()> {
    let mut direct: serde_json::Value = services
        .account_data
        .get(user, None, "m.direct")?
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    let rooms = &mut direct[other.as_str()];
    if !rooms.is_array() {
        *rooms = serde_json::json!([]);
    }
    let list = rooms.as_array_mut().expect("made an array above");
    if list.iter().any(|r| r == room_id.as_str()) {
        return Ok(());
    }
    list.push(room_id.as_str().into());
    let content = serde_json::value::to_raw_value(&direct)
        .map_err(|e| Error::internal(format!("serialising m.direct: {e}")))?;
    services.account_data.set(user, None, "m.direct", content)?;
    Ok(())
}

/// A room id as given, or the room an alias of this server names.
/// The room an id or alias names, and servers to join it through (an alias of another server
/// is asked of that server).
async fn resolve(
    services: &Services,
    room_id_or_alias: &ruma::RoomOrAliasId,
) -> Result<(OwnedRoomId, Vec<ruma::OwnedServerName>)> {
    let alias = match OwnedRoomId::try_from(room_id_or_alias.to_owned()) {
        Ok(room_id) => return Ok((room_id, Vec::new())),
        Err(alias) => alias,
    };
    if alias.server_name() != services.config.server_name {
        return crate::federation::query::remote_alias(services, &alias).await;
    }
    let room_id = crate::appservice::query::resolve_alias(services, &alias)
        .await?
        .ok_or_else(|| Error::not_found("No room has this alias"))?;
    Ok((room_id, Vec::new()))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/join`
pub async fn join_by_id(
    services: Arc<Services>,
    req: Ruma<join_room_by_id::v3::Request>,
) -> Result<join_room_by_id::v3::Response> {
    let user = req.user_id()?;
    join(
        &services,
        &req.body.room_id,
        user,
        req.body.reason.as_deref(),
        &[],
    )
    .await?;
    Ok(join_room_by_id::v3::Response::new(req.body.room_id.clone()))
}

/// `POST /_matrix/client/v3/join/{roomIdOrAlias}`
pub async fn join_by_id_or_alias(
    services: Arc<Services>,
    req: Ruma<join_room_by_id_or_alias::v3::Request>,
) -> Result<join_room_by_id_or_alias::v3::Response> {
    let user = req.user_id()?;
    let (room_id, mut via) = resolve(&services, &req.body.room_id_or_alias).await?;
    via.extend(req.body.via.iter().cloned());
    join(&services, &room_id, user, req.body.reason.as_deref(), &via).await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(room_id))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/invite`
pub async fn invite(
    services: Arc<Services>,
    req: Ruma<invite_user::v3::Request>,
) -> Result<invite_user::v3::Response> {
    let invite_user::v3::InvitationRecipient::UserId(recipient) = &req.body.recipient else {
        return Err(Error::invalid_param(
            "Third-party invites are not supported",
        ));
    };
    let reason = recipient.reason.as_deref();
    apply(
        &services,
        &req.body.room_id,
        req.user_id()?,
        &recipient.user_id,
        "invite",
        reason,
    )
    .await?;
    Ok(invite_user::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/leave`
pub async fn leave(
    services: Arc<Services>,
    req: Ruma<leave_room::v3::Request>,
) -> Result<leave_room::v3::Response> {
    let user = req.user_id()?;
    let room_id = &req.body.room_id;
    // An invite into a room this server is not in is turned down through the inviter's server.
    if let Some(invite) = services.timeline.remote_invite(user, room_id)? {
        let reason = req.body.reason.clone();
        crate::federation::invite::decline(&services, room_id, user, &invite, reason).await?;
        return Ok(leave_room::v3::Response::new());
    }
    apply(
        &services,
        room_id,
        user,
        user,
        "leave",
        req.body.reason.as_deref(),
    )
    .await?;
    Ok(leave_room::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/kick`
pub async fn kick(
    services: Arc<Services>,
    req: Ruma<kick_user::v3::Request>,
) -> Result<kick_user::v3::Response> {
    let b = &req.body;
    apply(
        &services,
        &b.room_id,
        req.user_id()?,
        &b.user_id,
        "leave",
        b.reason.as_deref(),
    )
    .await?;
    Ok(kick_user::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/ban`
pub async fn ban(
    services: Arc<Services>,
    req: Ruma<ban_user::v3::Request>,
) -> Result<ban_user::v3::Response> {
    let b = &req.body;
    apply(
        &services,
        &b.room_id,
        req.user_id()?,
        &b.user_id,
        "ban",
        b.reason.as_deref(),
    )
    .await?;
    Ok(ban_user::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/unban`
pub async fn unban(
    services: Arc<Services>,
    req: Ruma<unban_user::v3::Request>,
) -> Result<unban_user::v3::Response> {
    let b = &req.body;
    apply(
        &services,
        &b.room_id,
        req.user_id()?,
        &b.user_id,
        "leave",
        b.reason.as_deref(),
    )
    .await?;
    Ok(unban_user::v3::Response::new())
}

/// `GET /_matrix/client/v3/rooms/{roomId}/members`, now or `at` a pagination token.
pub async fn members(
    services: Arc<Services>,
    req: Ruma<get_member_events::v3::Request>,
) -> Result<get_member_events::v3::Response> {
    let (short, left_at) = super::rooms::state_view(&services, &req.body.room_id, req.user_id()?)?;
    let asked = req
        .body
        .at
        .as_deref()
        .map(crate::rooms::pagination::parse_token)
        .transpose()?;
    // A former member sees the members as of their leaving, at the latest.
    let at = match (asked, left_at) {
        (Some(asked), Some(left)) => Some(asked.min(left)),
        (asked, left) => asked.or(left),
    };
    let mut chunk = Vec::new();
    for ((event_type, state_key), current) in services.timeline.current_state(short)? {
        if event_type != "m.room.member" {
            continue;
        }
        let event_id = match at {
            None => Some(current),
            Some(at) => services
                .timeline
                .state_id_at(short, &event_type, &state_key, at)?,
        };
        let Some(stored) = event_id
            .map(|id| services.timeline.get(&id))
            .transpose()?
            .flatten()
        else {
            continue;
        };
        let membership = stored.content()["membership"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if req
            .body
            .membership
            .as_ref()
            .is_some_and(|m| m.as_str() != membership)
            || req
                .body
                .not_membership
                .as_ref()
                .is_some_and(|m| m.as_str() == membership)
        {
            continue;
        }
        let raw = serde_json::value::to_raw_value(&stored.to_client_event())
            .map_err(|e| Error::internal(format!("serialising an event: {e}")))?;
        chunk.push(Raw::from_json(raw));
    }
    Ok(get_member_events::v3::Response::new(chunk))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/joined_members`
pub async fn joined(
    services: Arc<Services>,
    req: Ruma<joined_members::v3::Request>,
) -> Result<joined_members::v3::Response> {
    // Members and, for a world-readable room, anyone; not those who left (as Synapse).
    let (short, left_at) = super::rooms::state_view(&services, &req.body.room_id, req.user_id()?)?;
    if left_at.is_some() {
        return Err(Error::forbidden("You are not in this room"));
    }
    let mut joined = BTreeMap::new();
    for ((event_type, state_key), event_id) in services.timeline.current_state(short)? {
        if event_type != "m.room.member" {
            continue;
        }
        let Some(stored) = services.timeline.get(&event_id)? else {
            continue;
        };
        let content = stored.content();
        if content["membership"] != "join" {
            continue;
        }
        let Ok(user_id) = ruma::OwnedUserId::try_from(state_key) else {
            continue;
        };
        let mut member = joined_members::v3::RoomMember::new();
        member.display_name = content["displayname"].as_str().map(str::to_owned);
        member.avatar_url = content["avatar_url"]
            .as_str()
            .and_then(|u| u.try_into().ok());
        joined.insert(user_id, member);
    }
    Ok(joined_members::v3::Response::new(joined))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/forget`
pub async fn forget(
    services: Arc<Services>,
    req: Ruma<ruma::api::client::membership::forget_room::v3::Request>,
) -> Result<ruma::api::client::membership::forget_room::v3::Response> {
    services
        .timeline
        .forget(&req.body.room_id, req.user_id()?)?;
    Ok(ruma::api::client::membership::forget_room::v3::Response::new())
}

/// `POST /_matrix/client/v3/knock/{roomIdOrAlias}`
pub async fn knock(
    services: Arc<Services>,
    req: Ruma<ruma::api::client::knock::knock_room::v3::Request>,
) -> Result<ruma::api::client::knock::knock_room::v3::Response> {
    let user = req.user_id()?;
    let (room_id, mut via) = resolve(&services, &req.body.room_id_or_alias).await?;
    via.extend(req.body.via.iter().cloned());
    let own = &services.config.server_name;
    let here = services.timeline.room(&room_id)?.is_some()
        && services.timeline.server_in_room(&room_id, own)?;
    let elsewhere = via
        .iter()
        .map(|server| &**server)
        .chain(room_id.server_name())
        .any(|server| server != own);
    if !here && elsewhere {
        // A room this server is not in: knocked on through a server that is.
        let reason = req.body.reason.as_deref();
        crate::federation::knock::knock_remote(&services, &room_id, user, &via, reason).await?;
        return Ok(ruma::api::client::knock::knock_room::v3::Response::new(
            room_id,
        ));
    }
    apply(
        &services,
        &room_id,
        user,
        user,
        "knock",
        req.body.reason.as_deref(),
    )
    .await?;
    Ok(ruma::api::client::knock::knock_room::v3::Response::new(
        room_id,
    ))
}

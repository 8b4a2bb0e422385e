//! Aliases and the room directory.

use std::sync::Arc;

use ruma::api::client::alias::{create_alias, delete_alias, get_alias};
use ruma::api::client::directory::{
    get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
};
use ruma::api::client::room::{Visibility, aliases, get_summary};
use ruma::directory::RoomNetwork;
use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, RoomId, UInt, UserId};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::alias::canonical_without;
use crate::rooms::directory::{Listing, page_token, parse_page_token};
use crate::rooms::summary;
use crate::rooms::timeline::NewEvent;
use crate::services::Services;
use crate::users::accounts::Role;

/// Default and largest page of the public room list.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

fn is_joined(services: &Services, room_id: &RoomId, user_id: &UserId) -> Result<bool> {
    Ok(services
        .timeline
        .membership(room_id, user_id)?
        .is_some_and(|m| m.membership == "join"))
}

/// Whether the user may manage the room's aliases and listing: a server admin, or a member
/// allowed to set `m.room.canonical_alias`.
fn can_manage(services: &Services, room_id: &RoomId, user_id: &UserId) -> Result<bool> {
    if services
        .accounts
        .get(user_id)?
        .is_some_and(|a| a.role == Role::Admin)
    {
        return Ok(true);
    }
    let Some(room) = services.timeline.room(room_id)? else {
        return Ok(false);
    };
    Ok(is_joined(services, room_id, user_id)?
        && services
            .timeline
            .power_levels(&room)?
            .user_can_send_state(user_id, StateEventType::RoomCanonicalAlias))
}

/// `PUT /_matrix/client/v3/directory/room/{roomAlias}`
pub async fn create(
    services: Arc<Services>,
    req: Ruma<create_alias::v3::Request>,
) -> Result<create_alias::v3::Response> {
    let user_id = req.user_id()?;
    let appservice = req.session()?.appservice.as_deref();
    services
        .appservices
        .refuse_claimed_alias(&req.body.room_alias, appservice)?;
    if !is_joined(&services, &req.body.room_id, user_id)? {
        return Err(Error::forbidden("You are not in this room"));
    }
    services
        .aliases
        .create(&req.body.room_alias, &req.body.room_id, user_id)?;
    Ok(create_alias::v3::Response::new())
}

/// `GET /_matrix/client/v3/directory/room/{roomAlias}`
pub async fn get(
    services: Arc<Services>,
    req: Ruma<get_alias::v3::Request>,
) -> Result<get_alias::v3::Response> {
    if req.body.room_alias.server_name() != services.config.server_name {
        let (room_id, servers) =
            crate::federation::query::remote_alias(&services, &req.body.room_alias).await?;
        return Ok(get_alias::v3::Response::new(room_id, servers));
    }
    let room_id = crate::appservice::query::resolve_alias(&services, &req.body.room_alias)
        .await?
        .ok_or_else(|| Error::not_found("No such alias"))?;
    Ok(get_alias::v3::Response::new(
        room_id,
        vec![services.config.server_name.clone()],
    ))
}

/// `DELETE /_matrix/client/v3/directory/room/{roomAlias}`: its creator, a room moderator
/// allowed to set the canonical alias, or a server admin.
pub async fn delete(
    services: Arc<Services>,
    req: Ruma<delete_alias::v3::Request>,
) -> Result<delete_alias::v3::Response> {
    let user_id = req.user_id()?;
    let record = services
        .aliases
        .get(&req.body.room_alias)?
        .ok_or_else(|| Error::not_found("No such alias"))?;
    if record.creator != user_id && !can_manage(&services, &record.room_id, user_id)? {
        return Err(Error::forbidden("You may not delete this alias"));
    }
    services.aliases.delete(&req.body.room_alias)?;
    // The room's canonical alias event stops naming the deleted alias when the user may change
    // it; the deletion stands either way (as the spec recommends).
    if let Some(room) = services.timeline.room(&record.room_id)?
        && let Some(current) =
            services
                .timeline
                .state_event(room.short, "m.room.canonical_alias", "")?
        && let Some(content) = canonical_without(&current.content(), &req.body.room_alias)
    {
        let event = NewEvent {
            kind: "m.room.canonical_alias".into(),
            content: serde_json::value::to_raw_value(&content)
                .map_err(|e| Error::internal(format!("serialising an alias event: {e}")))?,
            state_key: Some(String::new()),
        };
        if let Err(e) = services
            .timeline
            .append(&record.room_id, user_id, event, None)
            .await
        {
            tracing::debug!(error = %e, "canonical alias left as it was");
        }
    }
    Ok(delete_alias::v3::Response::new())
}

/// `GET /_matrix/client/v3/rooms/{roomId}/aliases`
pub async fn room_aliases(
    services: Arc<Services>,
    req: Ruma<aliases::v3::Request>,
) -> Result<aliases::v3::Response> {
    let user_id = req.user_id()?;
    // Server admins and auditors (admin tools list a user's rooms with their aliases) see
    // any room's.
    let staff = services
        .accounts
        .get(user_id)?
        .is_some_and(|a| matches!(a.role, Role::Admin | Role::Auditor));
    if !staff && !is_joined(&services, &req.body.room_id, user_id)? {
        return Err(Error::forbidden("You are not in this room"));
    }
    Ok(aliases::v3::Response::new(
        services.aliases.of_room(&req.body.room_id)?,
    ))
}

/// `GET /_matrix/client/v3/directory/list/room/{roomId}`
pub async fn get_visibility(
    services: Arc<Services>,
    req: Ruma<get_room_visibility::v3::Request>,
) -> Result<get_room_visibility::v3::Response> {
    if services.timeline.room(&req.body.room_id)?.is_none() {
        return Err(Error::not_found("Unknown room"));
    }
    let visibility = if services.directory.is_published(&req.body.room_id)? {
        Visibility::Public
    } else {
        Visibility::Private
    };
    Ok(get_room_visibility::v3::Response::new(visibility))
}

/// `PUT /_matrix/client/v3/directory/list/room/{roomId}`
pub async fn set_visibility(
    services: Arc<Services>,
    req: Ruma<set_room_visibility::v3::Request>,
) -> Result<set_room_visibility::v3::Response> {
    if !can_manage(&services, &req.body.room_id, req.user_id()?)? {
        return Err(Error::forbidden("You may not change this room's listing"));
    }
    let publish = match req.body.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        _ => return Err(Error::bad_json("visibility must be public or private")),
    };
    services
        .directory
        .set_published(&req.body.room_id, publish)?;
    Ok(set_room_visibility::v3::Response::new())
}

/// One page of the server's public room directory.
pub(crate) struct Page {
    pub chunk: Vec<ruma::directory::PublicRoomsChunk>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub total: usize,
}

/// The directory section a client or server asks for.
pub(crate) fn listing(network: &RoomNetwork) -> Listing<'_> {
    match network {
        RoomNetwork::Matrix => Listing::Server,
        RoomNetwork::All => Listing::All,
        RoomNetwork::ThirdParty(instance) => Listing::Network(instance.as_str()),
        _ => Listing::Server,
    }
}

pub(crate) fn page(
    services: &Services,
    search: Option<&str>,
    listing: Listing<'_>,
    limit: Option<UInt>,
    since: Option<&str>,
) -> Result<Page> {
    let all = services
        .directory
        .list(&services.timeline, search, listing)?;
    let total = all.len();
    let limit = limit
        .map_or(DEFAULT_PAGE, |l| {
            usize::try_from(u64::from(l)).unwrap_or(MAX_PAGE)
        })
        .clamp(1, MAX_PAGE);
    let offset = since
        .map(parse_page_token)
        .transpose()?
        .unwrap_or(0)
        .min(total);
    let chunk: Vec<_> = all.into_iter().skip(offset).take(limit).collect();
    let next_batch = (offset + chunk.len() < total).then(|| page_token(offset + chunk.len()));
    let prev_batch = (offset > 0).then(|| page_token(offset.saturating_sub(limit)));
    Ok(Page {
        chunk,
        next_batch,
        prev_batch,
        total,
    })
}

/// The other server a directory request names, if it names one.
fn remote<'a>(
    services: &Services,
    server: Option<&'a ruma::ServerName>,
) -> Option<&'a ruma::ServerName> {
    server.filter(|s| *s != services.config.server_name)
}

/// `GET /_matrix/client/v3/publicRooms`
pub async fn public_rooms(
    services: Arc<Services>,
    req: Ruma<get_public_rooms::v3::Request>,
) -> Result<get_public_rooms::v3::Response> {
    if let Some(server) = remote(&services, req.body.server.as_deref()) {
        let theirs = crate::federation::query::remote_public_rooms(
            &services,
            server,
            req.body.limit,
            req.body.since.clone(),
            None,
        )
        .await?;
        let mut response = get_public_rooms::v3::Response::new(theirs.chunk);
        response.next_batch = theirs.next_batch;
        response.prev_batch = theirs.prev_batch;
        response.total_room_count_estimate = theirs.total_room_count_estimate;
        return Ok(response);
    }
    let p = page(
        &services,
        None,
        Listing::Server,
        req.body.limit,
        req.body.since.as_deref(),
    )?;
    let mut response = get_public_rooms::v3::Response::new(p.chunk);
    response.next_batch = p.next_batch;
    response.prev_batch = p.prev_batch;
    response.total_room_count_estimate = UInt::new(p.total as u64);
    Ok(response)
}

/// `POST /_matrix/client/v3/publicRooms`
pub async fn public_rooms_filtered(
    services: Arc<Services>,
    req: Ruma<get_public_rooms_filtered::v3::Request>,
) -> Result<get_public_rooms_filtered::v3::Response> {
    if let Some(server) = remote(&services, req.body.server.as_deref()) {
        let theirs = crate::federation::query::remote_public_rooms(
            &services,
            server,
            req.body.limit,
            req.body.since.clone(),
            Some((req.body.filter.clone(), req.body.room_network.clone())),
        )
        .await?;
        let mut response = get_public_rooms_filtered::v3::Response::new();
        response.chunk = theirs.chunk;
        response.next_batch = theirs.next_batch;
        response.prev_batch = theirs.prev_batch;
        response.total_room_count_estimate = theirs.total_room_count_estimate;
        return Ok(response);
    }
    let search = req.body.filter.generic_search_term.as_deref();
    let p = page(
        &services,
        search,
        listing(&req.body.room_network),
        req.body.limit,
        req.body.since.as_deref(),
    )?;
    let mut response = get_public_rooms_filtered::v3::Response::new();
    response.chunk = p.chunk;
    response.next_batch = p.next_batch;
    response.prev_batch = p.prev_batch;
    response.total_room_count_estimate = UInt::new(p.total as u64);
    Ok(response)
}

/// `PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}`: an appservice
/// lists a room in its network's section of the directory (instance id
/// `<appservice id>|<network id>`).
pub async fn set_appservice_visibility(
    services: Arc<Services>,
    req: Ruma<ruma::api::client::appservice::set_room_visibility::v3::Request>,
) -> Result<ruma::api::client::appservice::set_room_visibility::v3::Response> {
    let appservice = req
        .session()?
        .appservice
        .clone()
        .ok_or_else(|| Error::forbidden("Only appservices list rooms in a network"))?;
    if services.timeline.room(&req.body.room_id)?.is_none() {
        return Err(Error::not_found("Unknown room"));
    }
    let network = format!("{appservice}|{}", req.body.network_id);
    services.directory.set_published_in(
        &req.body.room_id,
        &network,
        req.body.visibility == Visibility::Public,
    )?;
    Ok(ruma::api::client::appservice::set_room_visibility::v3::Response::new())
}

/// `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}`: a room's preview before joining. A
/// room this server does not have and one the requester may not see get the same 404.
pub async fn room_summary(
    services: Arc<Services>,
    req: Ruma<get_summary::v1::Request>,
) -> Result<get_summary::v1::Response> {
    let not_found = || Error::not_found("No such room, or it is not visible to you");
    let room_id = match OwnedRoomId::try_from(req.body.room_id_or_alias.clone()) {
        Ok(room_id) => room_id,
        Err(alias) => services.aliases.resolve(&alias)?.ok_or_else(not_found)?,
    };
    let user = req.session.as_ref().map(|s| s.user_id.as_ref());
    let summary = summary::summary(&services.timeline, &room_id)?.ok_or_else(not_found)?;
    if !summary::may_preview(&services.timeline, &summary, user)? {
        return Err(not_found());
    }
    let mut response = get_summary::v1::Response::new(summary);
    if let Some(user) = user {
        let membership = services
            .timeline
            .membership(&room_id, user)?
            .map_or_else(|| "leave".to_owned(), |m| m.membership);
        response.membership = Some(MembershipState::from(membership.as_str()));
    }
    Ok(response)
}

//! Asking other servers about their users (`/query/profile`), aliases (`/query/directory`)
//! and public rooms (`/publicRooms`).

use ruma::api::federation::directory::{get_public_rooms, get_public_rooms_filtered};
use ruma::api::federation::query::{get_profile_information, get_room_information};
use ruma::directory::{Filter, RoomNetwork};
use ruma::profile::{ProfileFieldName, UserProfile};
use ruma::{OwnedRoomId, OwnedServerName, RoomAliasId, ServerName, UInt, UserId};

use crate::error::Result;
use crate::services::Services;

/// The profile of a user of another server (one field of it, when `field` is given).
pub async fn remote_profile(
    services: &Services,
    user_id: &UserId,
    field: Option<&str>,
) -> Result<UserProfile> {
    let server = user_id.server_name();
    services.federation.check_talks_to(server)?;
    let mut request = get_profile_information::v1::Request::new(user_id.to_owned());
    request.field = field.map(ProfileFieldName::from);
    let response = services
        .federation
        .client
        .send(&services.outbound, server, request)
        .await?;
    Ok(response.data)
}

/// The room an alias of another server names, and servers likely to be in it.
pub async fn remote_alias(
    services: &Services,
    alias: &RoomAliasId,
) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
    let server = alias.server_name();
    services.federation.check_talks_to(server)?;
    let response = services
        .federation
        .client
        .send(
            &services.outbound,
            server,
            get_room_information::v1::Request::new(alias.to_owned()),
        )
        .await?;
    Ok((response.room_id, response.servers))
}

/// One page of another server's public room directory (filtered by `search` when given, with
/// its network).
pub async fn remote_public_rooms(
    services: &Services,
    server: &ServerName,
    limit: Option<UInt>,
    since: Option<String>,
    search: Option<(Filter, RoomNetwork)>,
) -> Result<get_public_rooms_filtered::v1::Response> {
    services.federation.check_talks_to(server)?;
    let client = &services.federation.client;
    match search {
        None => {
            let mut request = get_public_rooms::v1::Request::new();
            request.limit = limit;
            request.since = since;
            let theirs = client.send(&services.outbound, server, request).await?;
            let mut response = get_public_rooms_filtered::v1::Response::new();
            response.chunk = theirs.chunk;
            response.next_batch = theirs.next_batch;
            response.prev_batch = theirs.prev_batch;
            response.total_room_count_estimate = theirs.total_room_count_estimate;
            Ok(response)
        }
        Some((filter, network)) => {
            let mut request = get_public_rooms_filtered::v1::Request::new();
            request.limit = limit;
            request.since = since;
            request.filter = filter;
            request.room_network = network;
            Ok(client.send(&services.outbound, server, request).await?)
        }
    }
}

//! Another server asks about this one's directory: an alias (`/query/directory`) and the
//! public rooms (`/publicRooms`, the same list local clients see).

use std::sync::Arc;

use ruma::UInt;
use ruma::api::federation::directory::{get_public_rooms, get_public_rooms_filtered};
use ruma::api::federation::query::get_room_information;

use crate::api::client::directory::{listing, page};
use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::services::Services;

/// `GET /_matrix/federation/v1/query/directory`
pub async fn alias(
    services: Arc<Services>,
    req: Ruma<get_room_information::v1::Request>,
) -> Result<get_room_information::v1::Response> {
    let alias = &req.body.room_alias;
    if alias.server_name() != services.config.server_name {
        return Err(Error::not_found("Not an alias of this server"));
    }
    let room_id = crate::appservice::query::resolve_alias(&services, alias)
        .await?
        .ok_or_else(|| Error::not_found("No such alias"))?;
    Ok(get_room_information::v1::Response::new(
        room_id,
        vec![services.config.server_name.clone()],
    ))
}

/// `GET /_matrix/federation/v1/publicRooms`
pub async fn public_rooms(
    services: Arc<Services>,
    req: Ruma<get_public_rooms::v1::Request>,
) -> Result<get_public_rooms::v1::Response> {
    let p = page(
        &services,
        None,
        listing(&req.body.room_network),
        req.body.limit,
        req.body.since.as_deref(),
    )?;
    let mut response = get_public_rooms::v1::Response::new();
    response.chunk = p.chunk;
    response.next_batch = p.next_batch;
    response.prev_batch = p.prev_batch;
    response.total_room_count_estimate = UInt::new(p.total as u64);
    Ok(response)
}

/// `POST /_matrix/federation/v1/publicRooms`
pub async fn public_rooms_filtered(
    services: Arc<Services>,
    req: Ruma<get_public_rooms_filtered::v1::Request>,
) -> Result<get_public_rooms_filtered::v1::Response> {
    let p = page(
        &services,
        req.body.filter.generic_search_term.as_deref(),
        listing(&req.body.room_network),
        req.body.limit,
        req.body.since.as_deref(),
    )?;
    let mut response = get_public_rooms_filtered::v1::Response::new();
    response.chunk = p.chunk;
    response.next_batch = p.next_batch;
    response.prev_batch = p.prev_batch;
    response.total_room_count_estimate = UInt::new(p.total as u64);
    Ok(response)
}

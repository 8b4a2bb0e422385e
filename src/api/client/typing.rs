//! `PUT /rooms/{roomId}/typing/{userId}`.

use std::sync::Arc;

use ruma::api::client::typing::create_typing_event::{self, v3::Typing};

use super::require_self;
use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::services::Services;

/// `PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}`
pub async fn typing(
    services: Arc<Services>,
    req: Ruma<create_typing_event::v3::Request>,
) -> Result<create_typing_event::v3::Response> {
    let user = req.user_id()?.to_owned();
    let b = &req.body;
    require_self(&user, &b.user_id)?;
    super::rooms::require_joined(&services, &b.room_id, &user)?;
    let timeout = match &b.state {
        Typing::Yes(info) => Some(info.timeout),
        _ => None,
    };
    crate::typing::announce(&services, &b.room_id, &user, timeout)?;
    Ok(create_typing_event::v3::Response::new())
}

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
    let room_id = b.room_id.clone();
    match &b.state {
        Typing::Yes(info) => {
            let until = services.typing.start(&room_id, &user, info.timeout);
            services.timeline.wake_room(&room_id)?;
            crate::appservice::ephemeral::typing(&services, &room_id)?;
            // When the notification runs out, the room's syncs hear that too.
            let services = services.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(until.into()).await;
                if services.typing.expire(&room_id, &user, until) {
                    let _ = services.timeline.wake_room(&room_id);
                    let _ = crate::appservice::ephemeral::typing(&services, &room_id);
                }
            });
        }
        _ => {
            if services.typing.stop(&room_id, &user) {
                services.timeline.wake_room(&room_id)?;
                crate::appservice::ephemeral::typing(&services, &room_id)?;
            }
        }
    }
    Ok(create_typing_event::v3::Response::new())
}

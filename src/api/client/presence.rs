//! Presence status: set your own, read anyone's (local users).

use std::sync::Arc;

use ruma::api::client::presence::{get_presence, set_presence};

use super::require_self;
use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::services::Services;

/// Longest status message kept.
const MAX_STATUS_MSG_BYTES: usize = 1024;

/// `GET /_matrix/client/v3/presence/{userId}/status`
pub async fn get(
    services: Arc<Services>,
    req: Ruma<get_presence::v3::Request>,
) -> Result<get_presence::v3::Response> {
    if !services.accounts.exists(&req.body.user_id)? {
        return Err(Error::not_found("No such user"));
    }
    let status = services.presence.get(&req.body.user_id);
    let mut response = get_presence::v3::Response::new(status.presence);
    response.status_msg = status.status_msg;
    response.last_active_ago = status.last_active_ago;
    response.currently_active = status.currently_active;
    Ok(response)
}

/// `PUT /_matrix/client/v3/presence/{userId}/status`
pub async fn set(
    services: Arc<Services>,
    req: Ruma<set_presence::v3::Request>,
) -> Result<set_presence::v3::Response> {
    require_self(req.user_id()?, &req.body.user_id)?;
    if req
        .body
        .status_msg
        .as_ref()
        .is_some_and(|m| m.len() > MAX_STATUS_MSG_BYTES)
    {
        return Err(Error::invalid_param("status_msg is longer than 1024 bytes"));
    }
    if services.presence.set(
        &req.body.user_id,
        req.body.presence.clone(),
        req.body.status_msg.clone(),
    ) {
        crate::sync::wake_sharers(&services, &req.body.user_id)?;
        crate::federation::presence::announce(&services, &req.body.user_id)?;
        let mut content = serde_json::json!({"presence": req.body.presence.as_str()});
        if let Some(message) = &req.body.status_msg {
            content["status_msg"] = message.as_str().into();
        }
        crate::appservice::ephemeral::presence(&services, &req.body.user_id, content)?;
    }
    Ok(set_presence::v3::Response::new())
}

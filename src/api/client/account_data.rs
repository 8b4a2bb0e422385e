//! Account data, global and per room. Types the server manages itself (`m.push_rules`,
//! `m.fully_read`) cannot be written here, as the spec requires.

use std::sync::Arc;

use http::StatusCode;
use ruma::api::client::config::{
    get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data,
};
use ruma::api::error::ErrorKind;
use ruma::serde::Raw;

use super::require_self;
use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::services::Services;

/// Largest account data entry accepted (same bound as an event).
const MAX_CONTENT_BYTES: usize = 65_536;

fn check_writable(event_type: &str, content: &serde_json::value::RawValue) -> Result<()> {
    if matches!(event_type, "m.push_rules" | "m.fully_read") {
        return Err(Error::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::BadJson,
            format!("{event_type} is managed by the server; use its own API"),
        ));
    }
    if content.get().len() > MAX_CONTENT_BYTES {
        return Err(Error::too_large(
            "Account data content is larger than 64 KiB",
        ));
    }
    Ok(())
}

/// `GET /_matrix/client/v3/user/{userId}/account_data/{type}`
pub async fn get_global(
    services: Arc<Services>,
    req: Ruma<get_global_account_data::v3::Request>,
) -> Result<get_global_account_data::v3::Response> {
    require_self(req.user_id()?, &req.body.user_id)?;
    let event_type = req.body.event_type.to_string();
    let content = services
        .account_data
        .get(&req.body.user_id, None, &event_type)?
        .ok_or_else(|| Error::not_found("No account data of this type"))?;
    Ok(get_global_account_data::v3::Response::new(Raw::from_json(
        content,
    )))
}

/// `PUT /_matrix/client/v3/user/{userId}/account_data/{type}`
pub async fn set_global(
    services: Arc<Services>,
    req: Ruma<set_global_account_data::v3::Request>,
) -> Result<set_global_account_data::v3::Response> {
    require_self(req.user_id()?, &req.body.user_id)?;
    req.require_body()?;
    let event_type = req.body.event_type.to_string();
    let content = req.body.data.json();
    check_writable(&event_type, content)?;
    services
        .account_data
        .set(&req.body.user_id, None, &event_type, content.to_owned())?;
    Ok(set_global_account_data::v3::Response::new())
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
pub async fn get_room(
    services: Arc<Services>,
    req: Ruma<get_room_account_data::v3::Request>,
) -> Result<get_room_account_data::v3::Response> {
    require_self(req.user_id()?, &req.body.user_id)?;
    let event_type = req.body.event_type.to_string();
    let content = services
        .account_data
        .get(&req.body.user_id, Some(&req.body.room_id), &event_type)?
        .ok_or_else(|| Error::not_found("No account data of this type in this room"))?;
    Ok(get_room_account_data::v3::Response::new(Raw::from_json(
        content,
    )))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
pub async fn set_room(
    services: Arc<Services>,
    req: Ruma<set_room_account_data::v3::Request>,
) -> Result<set_room_account_data::v3::Response> {
    require_self(req.user_id()?, &req.body.user_id)?;
    req.require_body()?;
    let event_type = req.body.event_type.to_string();
    let content = req.body.data.json();
    check_writable(&event_type, content)?;
    services.account_data.set(
        &req.body.user_id,
        Some(&req.body.room_id),
        &event_type,
        content.to_owned(),
    )?;
    Ok(set_room_account_data::v3::Response::new())
}

//! Room tags (`m.favourite` pins a room, `m.lowpriority`, `u.*` user tags), kept as the
//! room's `m.tag` account data.

use std::sync::Arc;

use ruma::api::client::tag::{create_tag, delete_tag, get_tags};
use serde_json::Value;

use super::require_self;
use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::services::Services;

const MAX_TAG_BYTES: usize = 255;

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags`
pub async fn get(
    services: Arc<Services>,
    req: Ruma<get_tags::v3::Request>,
) -> Result<get_tags::v3::Response> {
    require_self(req.user_id()?, &req.body.user_id)?;
    let content = services
        .account_data
        .get(&req.body.user_id, Some(&req.body.room_id), "m.tag")?;
    let tags: Value = match content {
        Some(raw) => serde_json::from_str::<Value>(raw.get())
            .ok()
            .and_then(|v| v.get("tags").cloned())
            .unwrap_or_default(),
        None => Value::Null,
    };
    let tags = serde_json::from_value(if tags.is_object() {
        tags
    } else {
        Value::Object(Default::default())
    })
    .map_err(|e| Error::internal(format!("stored tags: {e}")))?;
    Ok(get_tags::v3::Response::new(tags))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
pub async fn put(
    services: Arc<Services>,
    req: Ruma<create_tag::v3::Request>,
) -> Result<create_tag::v3::Response> {
    require_self(req.user_id()?, &req.body.user_id)?;
    let body = &req.body;
    if body.tag.is_empty() || body.tag.len() > MAX_TAG_BYTES {
        return Err(Error::invalid_param("Tags are 1 to 255 bytes"));
    }
    let info = serde_json::to_value(&body.tag_info).map_err(|e| Error::internal(e.to_string()))?;
    services
        .account_data
        .update(&body.user_id, Some(&body.room_id), "m.tag", |content| {
            let tags = content
                .entry("tags")
                .or_insert_with(|| Value::Object(Default::default()));
            if !tags.is_object() {
                *tags = Value::Object(Default::default());
            }
            tags.as_object_mut()
                .expect("made an object above")
                .insert(body.tag.clone(), info);
            Ok(())
        })?;
    Ok(create_tag::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
pub async fn delete(
    services: Arc<Services>,
    req: Ruma<delete_tag::v3::Request>,
) -> Result<delete_tag::v3::Response> {
    require_self(req.user_id()?, &req.body.user_id)?;
    let body = &req.body;
    services
        .account_data
        .update(&body.user_id, Some(&body.room_id), "m.tag", |content| {
            if let Some(tags) = content.get_mut("tags").and_then(Value::as_object_mut) {
                tags.remove(&body.tag);
            }
            Ok(())
        })?;
    Ok(delete_tag::v3::Response::new())
}

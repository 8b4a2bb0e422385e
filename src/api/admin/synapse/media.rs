//! Synapse's media admin API: quarantining and deleting files, and the files of a room or a
//! user.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{page, paging, room_id};
use crate::api::admin::{Caller, local_user, query_params};
use crate::error::{Error, Result};
use crate::services::Services;
use crate::storage::Direction;

/// A file of this server named by path; remote files are not stored here.
fn local_media(services: &Services, server: &str, media_id: &str) -> Result<String> {
    if !services.media.is_local(server) {
        return Err(Error::invalid_param(
            "Only files of this server can be managed here",
        ));
    }
    Ok(media_id.to_owned())
}

/// `POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}`
pub async fn quarantine(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path((server, media_id)): Path<(String, String)>,
) -> Result<Response> {
    caller.require_admin()?;
    let media_id = local_media(&services, &server, &media_id)?;
    let found = services.media.quarantine(
        &media_id,
        &caller.session.user_id,
        &services.audit,
        &caller.origin,
    )?;
    if !found {
        return Err(Error::not_found("Unknown media"));
    }
    Ok(Json(json!({})).into_response())
}

/// `DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}`
pub async fn delete(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path((server, media_id)): Path<(String, String)>,
) -> Result<Response> {
    caller.require_admin()?;
    let media_id = local_media(&services, &server, &media_id)?;
    if !services
        .media
        .delete(&media_id, &services.audit, &caller.origin)
        .await?
    {
        return Err(Error::not_found("Unknown media"));
    }
    Ok(Json(json!({"deleted_media": [media_id], "total": 1})).into_response())
}

/// The files of this server the room's events refer to.
fn room_media(services: &Services, room: &ruma::RoomId) -> Result<BTreeSet<String>> {
    let record = services
        .timeline
        .room(room)?
        .ok_or_else(|| Error::not_found("Room not found"))?;
    let server = services.config.server_name.as_str();
    let mut found = BTreeSet::new();
    for (_, event) in services.timeline.events(record.short, Direction::Forward)? {
        found.extend(crate::media::references::media_ids(
            server,
            &event.content(),
        ));
    }
    Ok(found)
}

/// `GET /_synapse/admin/v1/room/{roomId}/media`
pub async fn of_room(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(room): Path<String>,
) -> Result<Response> {
    let room = room_id(room)?;
    let local: Vec<String> = room_media(&services, &room)?
        .iter()
        .map(|id| services.media.mxc(id))
        .collect();
    Ok(Json(json!({"local": local, "remote": []})).into_response())
}

/// `POST /_synapse/admin/v1/room/{roomId}/media/quarantine`
pub async fn quarantine_room(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(room): Path<String>,
) -> Result<Response> {
    caller.require_admin()?;
    let room = room_id(room)?;
    quarantine_all(&services, &caller, room_media(&services, &room)?)
}

/// Quarantines every file named; answers how many there were.
fn quarantine_all(
    services: &Services,
    caller: &Caller,
    media_ids: impl IntoIterator<Item = String>,
) -> Result<Response> {
    let mut quarantined = 0;
    for media_id in media_ids {
        quarantined += usize::from(services.media.quarantine(
            &media_id,
            &caller.session.user_id,
            &services.audit,
            &caller.origin,
        )?);
    }
    Ok(Json(json!({ "num_quarantined": quarantined })).into_response())
}

/// `POST /_synapse/admin/v1/user/{userId}/media/quarantine`
pub async fn quarantine_user(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Response> {
    caller.require_admin()?;
    let user_id = local_user(&services, user_id)?;
    let uploads = services.media.uploads_of(&user_id)?;
    quarantine_all(&services, &caller, uploads.into_iter().map(|(id, _)| id))
}

/// `GET /_synapse/admin/v1/users/{userId}/media`
pub async fn of_user(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(user_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let user_id = local_user(&services, user_id)?;
    let params = query_params(raw.as_deref());
    let (from, limit) = paging(&params)?;
    let uploads = services.media.uploads_of(&user_id)?;
    let total = uploads.len();
    let (uploads, next) = page(uploads, from, limit);
    let media: Vec<Value> = uploads
        .iter()
        .map(|(media_id, record)| {
            let content = record.content.as_ref();
            json!({
                "media_id": media_id,
                "media_type": content.map(|c| c.content_type.clone()),
                "media_length": content.map(|c| c.size),
                "upload_name": content.and_then(|c| c.filename.clone()),
                "created_ts": record.created_ms,
                "last_access_ts": null,
                "quarantined_by": record.quarantined_by,
                "safe_from_quarantine": false,
            })
        })
        .collect();
    let mut answer = json!({"media": media, "total": total});
    if let Some(next) = next {
        answer["next_token"] = next.into();
    }
    Ok(Json(answer).into_response())
}

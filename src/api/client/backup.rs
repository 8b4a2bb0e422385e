//! Server-side room key backup: `/room_keys/version` and `/room_keys/keys`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::response::{IntoResponse, Response};
use ruma::api::client::backup::{
    add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session, create_backup_version,
    delete_backup_keys, delete_backup_keys_for_room, delete_backup_keys_for_session,
    delete_backup_version, get_backup_info, get_backup_keys, get_backup_keys_for_room,
    get_backup_keys_for_session, get_latest_backup_info, update_backup_version,
};
use ruma::serde::Raw;
use serde_json::{Value, json};

use crate::api::ruma::Ruma;
use crate::e2ee::backup::{Scope, Version};
use crate::error::{Error, Result};
use crate::services::Services;

fn parse<T>(raw: &Raw<T>) -> Result<Value> {
    serde_json::from_str(raw.json().get())
        .map_err(|e| Error::bad_json(format!("Invalid JSON: {e}")))
}

/// `{algorithm, auth_data}` of a version body.
fn algorithm(body: &Value) -> Result<(String, Value)> {
    let algorithm = body["algorithm"]
        .as_str()
        .ok_or_else(|| Error::bad_json("algorithm is required"))?;
    Ok((algorithm.to_owned(), body["auth_data"].clone()))
}

fn version_info(number: u64, version: Version) -> Response {
    Json(json!({
        "algorithm": version.algorithm,
        "auth_data": version.auth_data,
        "count": version.count,
        "etag": version.etag.to_string(),
        "version": number.to_string(),
    }))
    .into_response()
}

fn counts((count, etag): (u64, u64)) -> Response {
    Json(json!({"count": count, "etag": etag.to_string()})).into_response()
}

/// `POST /_matrix/client/v3/room_keys/version`
pub async fn create_version(
    services: Arc<Services>,
    req: Ruma<create_backup_version::v3::Request>,
) -> Result<Response> {
    let (algorithm, auth_data) = algorithm(&parse(&req.body.algorithm)?)?;
    let number = services
        .backup
        .create(req.user_id()?, algorithm, auth_data)?;
    Ok(Json(json!({"version": number.to_string()})).into_response())
}

/// `GET /_matrix/client/v3/room_keys/version`
pub async fn latest_version(
    services: Arc<Services>,
    req: Ruma<get_latest_backup_info::v3::Request>,
) -> Result<Response> {
    let (number, version) = services
        .backup
        .latest(req.user_id()?)?
        .ok_or_else(|| Error::not_found("No backup version exists"))?;
    Ok(version_info(number, version))
}

/// `GET /_matrix/client/v3/room_keys/version/{version}`
pub async fn get_version(
    services: Arc<Services>,
    req: Ruma<get_backup_info::v3::Request>,
) -> Result<Response> {
    let (number, version) = services.backup.get(req.user_id()?, &req.body.version)?;
    Ok(version_info(number, version))
}

/// `PUT /_matrix/client/v3/room_keys/version/{version}`
pub async fn update_version(
    services: Arc<Services>,
    req: Ruma<update_backup_version::v3::Request>,
) -> Result<Response> {
    let body = parse(&req.body.algorithm)?;
    if let Some(version) = body.get("version")
        && version.as_str() != Some(req.body.version.as_str())
    {
        return Err(Error::invalid_param(
            "The version in the body does not match the path",
        ));
    }
    let (algorithm, auth_data) = algorithm(&body)?;
    services
        .backup
        .update(req.user_id()?, &req.body.version, &algorithm, auth_data)?;
    Ok(Json(json!({})).into_response())
}

/// `DELETE /_matrix/client/v3/room_keys/version/{version}`
pub async fn delete_version(
    services: Arc<Services>,
    req: Ruma<delete_backup_version::v3::Request>,
) -> Result<Response> {
    services
        .backup
        .delete_version(req.user_id()?, &req.body.version)?;
    Ok(Json(json!({})).into_response())
}

fn sessions_of(
    sessions: &BTreeMap<String, Raw<ruma::api::client::backup::KeyBackupData>>,
) -> Result<BTreeMap<String, Value>> {
    sessions
        .iter()
        .map(|(id, key)| Ok((id.clone(), parse(key)?)))
        .collect()
}

/// `PUT /_matrix/client/v3/room_keys/keys`
pub async fn put_keys(
    services: Arc<Services>,
    req: Ruma<add_backup_keys::v3::Request>,
) -> Result<Response> {
    let rooms = req
        .body
        .rooms
        .iter()
        .map(|(room, backup)| Ok((room.to_string(), sessions_of(&backup.sessions)?)))
        .collect::<Result<_>>()?;
    Ok(counts(services.backup.put_keys(
        req.user_id()?,
        &req.body.version,
        &rooms,
    )?))
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}`
pub async fn put_room_keys(
    services: Arc<Services>,
    req: Ruma<add_backup_keys_for_room::v3::Request>,
) -> Result<Response> {
    let rooms = BTreeMap::from([(
        req.body.room_id.to_string(),
        sessions_of(&req.body.sessions)?,
    )]);
    Ok(counts(services.backup.put_keys(
        req.user_id()?,
        &req.body.version,
        &rooms,
    )?))
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
pub async fn put_session_key(
    services: Arc<Services>,
    req: Ruma<add_backup_keys_for_session::v3::Request>,
) -> Result<Response> {
    let body = &req.body;
    let sessions = BTreeMap::from([(body.session_id.clone(), parse(&body.session_data)?)]);
    let rooms = BTreeMap::from([(body.room_id.to_string(), sessions)]);
    Ok(counts(services.backup.put_keys(
        req.user_id()?,
        &body.version,
        &rooms,
    )?))
}

/// `GET /_matrix/client/v3/room_keys/keys`
pub async fn get_keys(
    services: Arc<Services>,
    req: Ruma<get_backup_keys::v3::Request>,
) -> Result<Response> {
    let rooms = services
        .backup
        .keys(req.user_id()?, &req.body.version, Scope::All)?;
    let rooms: serde_json::Map<String, Value> = rooms
        .into_iter()
        .map(|(room, sessions)| (room, json!({ "sessions": sessions })))
        .collect();
    Ok(Json(json!({ "rooms": rooms })).into_response())
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}`
pub async fn get_room_keys(
    services: Arc<Services>,
    req: Ruma<get_backup_keys_for_room::v3::Request>,
) -> Result<Response> {
    let room = req.body.room_id.as_str();
    let mut rooms = services
        .backup
        .keys(req.user_id()?, &req.body.version, Scope::Room(room))?;
    let sessions = rooms.remove(room).unwrap_or_default();
    Ok(Json(json!({ "sessions": sessions })).into_response())
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
pub async fn get_session_key(
    services: Arc<Services>,
    req: Ruma<get_backup_keys_for_session::v3::Request>,
) -> Result<Response> {
    let body = &req.body;
    let room = body.room_id.as_str();
    let mut rooms = services.backup.keys(
        req.user_id()?,
        &body.version,
        Scope::Session(room, &body.session_id),
    )?;
    let key = rooms
        .remove(room)
        .and_then(|mut sessions| sessions.remove(&body.session_id))
        .ok_or_else(|| Error::not_found("No key for this session in the backup"))?;
    Ok(Json(key).into_response())
}

/// `DELETE /_matrix/client/v3/room_keys/keys`
pub async fn delete_keys(
    services: Arc<Services>,
    req: Ruma<delete_backup_keys::v3::Request>,
) -> Result<Response> {
    Ok(counts(services.backup.delete_keys(
        req.user_id()?,
        &req.body.version,
        Scope::All,
    )?))
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}`
pub async fn delete_room_keys(
    services: Arc<Services>,
    req: Ruma<delete_backup_keys_for_room::v3::Request>,
) -> Result<Response> {
    Ok(counts(services.backup.delete_keys(
        req.user_id()?,
        &req.body.version,
        Scope::Room(req.body.room_id.as_str()),
    )?))
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
pub async fn delete_session_key(
    services: Arc<Services>,
    req: Ruma<delete_backup_keys_for_session::v3::Request>,
) -> Result<Response> {
    let body = &req.body;
    Ok(counts(services.backup.delete_keys(
        req.user_id()?,
        &body.version,
        Scope::Session(body.room_id.as_str(), &body.session_id),
    )?))
}

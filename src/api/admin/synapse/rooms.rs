//! Synapse's room admin API: the room list and details, members, state and messages, room
//! deletion (v1 at once, v2 in the background with its status), and blocking a room id.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use ruma::OwnedUserId;
use ruma::api::client::filter::RoomEventFilter;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{backwards, body, paging, room_id};
use crate::admin::rooms::{self, DeleteOptions, RoomView};
use crate::api::admin::{Caller, query_params};
use crate::error::{Error, Result};
use crate::rooms::pagination;
use crate::rooms::visibility::Viewer;
use crate::services::Services;
use crate::storage::Direction;

/// A room as Synapse's list and details show one.
fn shown(room: &RoomView) -> Value {
    json!({
        "room_id": room.room_id,
        "name": room.name,
        "topic": room.topic,
        "avatar": room.avatar,
        "canonical_alias": room.canonical_alias,
        "joined_members": room.joined_members,
        "joined_local_members": room.joined_local_members,
        "joined_local_devices": null,
        "version": room.version,
        "creator": room.creator,
        "encryption": room.encryption,
        "federatable": room.federatable,
        "public": room.public,
        "join_rules": room.join_rules,
        "guest_access": room.guest_access,
        "history_visibility": room.history_visibility,
        "state_events": room.state_events,
        "room_type": room.room_type,
    })
}

fn known(services: &Services, room_id: &ruma::RoomId) -> Result<RoomView> {
    rooms::view(services, room_id)?.ok_or_else(|| Error::not_found("Room not found"))
}

/// `GET /_synapse/admin/v1/rooms`
pub async fn list(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let params = query_params(raw.as_deref());
    let (from, limit) = paging(&params)?;
    let backwards = backwards(&params)?;
    let order_by = params
        .get("order_by")
        .cloned()
        .unwrap_or_else(|| "name".to_owned());
    let search = params.get("search_term").map(|t| t.to_lowercase());
    let mut found = tokio::task::spawn_blocking(move || rooms::all(&services))
        .await
        .map_err(|e| Error::internal(format!("listing rooms: {e}")))??;
    if let Some(term) = &search {
        found.retain(|room| {
            [
                Some(room.room_id.as_str()),
                room.name.as_deref(),
                room.canonical_alias.as_deref(),
            ]
            .into_iter()
            .flatten()
            .any(|text| text.to_lowercase().contains(term))
        });
    }
    let key = |room: &RoomView| -> Value {
        match order_by.as_str() {
            "name" | "alphabetical" => json!(room.name.as_deref().unwrap_or("").to_lowercase()),
            "canonical_alias" => json!(room.canonical_alias),
            "joined_members" | "size" => json!(room.joined_members),
            "joined_local_members" => json!(room.joined_local_members),
            "version" => json!(room.version),
            "creator" => json!(room.creator),
            "encryption" => json!(room.encryption),
            "federatable" => json!(room.federatable),
            "public" => json!(room.public),
            "join_rules" => json!(room.join_rules),
            "guest_access" => json!(room.guest_access),
            "history_visibility" => json!(room.history_visibility),
            _ => json!(room.state_events),
        }
    };
    const ORDERS: [&str; 15] = [
        "name",
        "alphabetical",
        "canonical_alias",
        "joined_members",
        "size",
        "joined_local_members",
        "version",
        "creator",
        "encryption",
        "federatable",
        "public",
        "join_rules",
        "guest_access",
        "history_visibility",
        "state_events",
    ];
    if !ORDERS.contains(&order_by.as_str()) {
        return Err(Error::invalid_param(format!(
            "Unknown value for order_by: {order_by}"
        )));
    }
    found.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        // JSON values of one kind compare as their strings, numbers or booleans do.
        let by = match (&ka, &kb) {
            (Value::Number(x), Value::Number(y)) => x.as_u64().cmp(&y.as_u64()),
            (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
            _ => ka.as_str().unwrap_or("").cmp(kb.as_str().unwrap_or("")),
        };
        by.then_with(|| a.room_id.cmp(&b.room_id))
    });
    // Sizes come largest first by default, as Synapse lists them.
    let sizes = matches!(
        order_by.as_str(),
        "joined_members" | "size" | "joined_local_members" | "state_events"
    );
    if backwards != sizes {
        found.reverse();
    }
    let total = found.len();
    let page: Vec<Value> = found.iter().skip(from).take(limit).map(shown).collect();
    let mut answer = json!({"rooms": page, "offset": from, "total_rooms": total});
    if from + page.len() < total {
        answer["next_batch"] = (from + page.len()).into();
    }
    if from > 0 {
        answer["prev_batch"] = from.saturating_sub(limit).into();
    }
    Ok(Json(answer).into_response())
}

/// `GET /_synapse/admin/v1/rooms/{roomId}`
pub async fn details(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(room): Path<String>,
) -> Result<Response> {
    let room = known(&services, &room_id(room)?)?;
    let mut answer = shown(&room);
    answer["forgotten"] = false.into();
    Ok(Json(answer).into_response())
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/members`
pub async fn members(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(room): Path<String>,
) -> Result<Response> {
    let room = room_id(room)?;
    known(&services, &room)?;
    let members = services.timeline.joined_members(&room)?;
    Ok(Json(json!({"members": members, "total": members.len()})).into_response())
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/state`
pub async fn state(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(room): Path<String>,
) -> Result<Response> {
    let room = room_id(room)?;
    let record = services
        .timeline
        .room(&room)?
        .ok_or_else(|| Error::not_found("Room not found"))?;
    let state: Vec<Value> = services
        .timeline
        .state_events_at(record.short, None)?
        .iter()
        .map(|e| e.to_client_event())
        .collect();
    Ok(Json(json!({ "state": state })).into_response())
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/messages`: any event of the room, whatever its
/// history visibility.
pub async fn messages(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(room): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let room = room_id(room)?;
    let record = services
        .timeline
        .room(&room)?
        .ok_or_else(|| Error::not_found("Room not found"))?;
    let params = query_params(raw.as_deref());
    let token = |name: &str| {
        params
            .get(name)
            .map(|t| pagination::parse_token(t))
            .transpose()
    };
    let (from, to) = (token("from")?, token("to")?);
    let direction = if backwards(&params)? {
        Direction::Backward
    } else {
        Direction::Forward
    };
    let limit = match params.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| Error::invalid_param("limit must be a non-negative integer"))?,
        None => 10,
    };
    let filter: RoomEventFilter = match params.get("filter") {
        Some(f) => serde_json::from_str(f)
            .map_err(|e| Error::invalid_param(format!("Invalid filter: {e}")))?,
        None => RoomEventFilter::default(),
    };
    let viewer = Viewer::admin(&services.timeline, record.short, &caller.session.user_id);
    let page = pagination::page(
        &services.timeline,
        &viewer,
        record.short,
        from,
        to,
        direction,
        limit,
        &filter,
    )?;
    let chunk: Vec<Value> = page
        .events
        .iter()
        .map(|(_, e)| e.to_client_event())
        .collect();
    let mut answer = json!({"chunk": chunk, "start": page.start});
    if let Some(end) = page.end {
        answer["end"] = end.into();
    }
    Ok(Json(answer).into_response())
}

#[derive(Deserialize)]
struct Delete {
    #[serde(default)]
    block: bool,
    #[serde(default = "yes")]
    purge: bool,
    new_room_user_id: Option<String>,
    room_name: Option<String>,
    message: Option<String>,
}

fn yes() -> bool {
    true
}

fn delete_options(services: &Services, bytes: &[u8]) -> Result<DeleteOptions> {
    let asked: Delete = body(bytes)?;
    let new_room_user_id = asked
        .new_room_user_id
        .map(|u| {
            OwnedUserId::try_from(u)
                .ok()
                .filter(|u| services.accounts.is_local(u))
                .ok_or_else(|| Error::invalid_param("new_room_user_id must be a local user id"))
        })
        .transpose()?;
    Ok(DeleteOptions {
        block: asked.block,
        purge: asked.purge,
        new_room_user_id,
        room_name: asked.room_name,
        message: asked.message,
    })
}

/// `DELETE /_synapse/admin/v2/rooms/{roomId}`: starts the deletion; answers its id.
pub async fn delete_v2(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(room): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    caller.require_admin()?;
    let room = room_id(room)?;
    let options = delete_options(&services, &bytes)?;
    let delete_id = rooms::start_delete(&services, &room, &options, &caller.origin)?;
    tokio::spawn(rooms::run_delete(
        services.clone(),
        delete_id.clone(),
        room,
        options,
        caller.session.user_id.clone(),
    ));
    Ok(Json(json!({ "delete_id": delete_id })).into_response())
}

/// `DELETE /_synapse/admin/v1/rooms/{roomId}`: the same deletion, answered when done.
pub async fn delete_v1(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(room): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    caller.require_admin()?;
    let room = room_id(room)?;
    let options = delete_options(&services, &bytes)?;
    let delete_id = rooms::start_delete(&services, &room, &options, &caller.origin)?;
    let done = rooms::run_delete(
        services.clone(),
        delete_id,
        room,
        options,
        caller.session.user_id.clone(),
    )
    .await;
    if let Some(error) = done.error {
        return Err(Error::internal(error));
    }
    Ok(Json(serde_json::to_value(done.shutdown_room).unwrap_or_default()).into_response())
}

/// `GET /_synapse/admin/v2/rooms/{roomId}/delete_status`
pub async fn delete_status_of_room(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(room): Path<String>,
) -> Result<Response> {
    let room = room_id(room)?;
    let results = services.room_deletions.of_room(&room);
    if results.is_empty() {
        return Err(Error::not_found("No delete task for room"));
    }
    Ok(Json(json!({ "results": results })).into_response())
}

/// `GET /_synapse/admin/v2/rooms/delete_status/{deleteId}`
pub async fn delete_status(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(delete_id): Path<String>,
) -> Result<Response> {
    let status = services
        .room_deletions
        .get(&delete_id)
        .ok_or_else(|| Error::not_found("delete id not found"))?;
    let mut answer = serde_json::to_value(status).unwrap_or_default();
    if let Some(object) = answer.as_object_mut() {
        object.remove("delete_id");
    }
    Ok(Json(answer).into_response())
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/block`
pub async fn get_block(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(room): Path<String>,
) -> Result<Response> {
    let room = room_id(room)?;
    Ok(Json(match rooms::block_of(&services, &room)? {
        Some(user_id) => json!({"block": true, "user_id": user_id}),
        None => json!({"block": false}),
    })
    .into_response())
}

#[derive(Deserialize)]
struct SetBlock {
    block: bool,
}

/// `PUT /_synapse/admin/v1/rooms/{roomId}/block`
pub async fn set_block(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(room): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    caller.require_admin()?;
    let room = room_id(room)?;
    let SetBlock { block } = body(&bytes)?;
    if block && rooms::is_admin_room(&services, &room)? {
        return Err(Error::forbidden("The admin room cannot be blocked"));
    }
    services
        .timeline
        .set_blocked(&room, &caller.session.user_id, block)?;
    services.audit.record(caller.origin.record(
        if block { "room_block" } else { "room_unblock" },
        &room,
        json!({}),
    ))?;
    Ok(Json(json!({ "block": block })).into_response())
}

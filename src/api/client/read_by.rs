//! Sori extension: `GET /_matrix/client/unstable/io.sori/rooms/{roomId}/read_by/{eventId}` —
//! who of the members joined at an event has read it, and who has not (docs/extensions.md).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use ruma::{OwnedEventId, OwnedRoomId};
use serde_json::json;

use crate::error::{Error, Result};
use crate::rooms::visibility::Viewer;
use crate::services::Services;

pub async fn read_by(
    State(services): State<Arc<Services>>,
    Path((room_id, event_id)): Path<(String, String)>,
    request: Request,
) -> Result<Response> {
    let token = ruma::api::auth_scheme::extract_bearer_or_query_token(&request)
        .map_err(|_| Error::missing_token())?
        .ok_or_else(Error::missing_token)?;
    let session = services.sessions.authenticate(&token)?;
    let room_id =
        OwnedRoomId::try_from(room_id).map_err(|_| Error::invalid_param("Invalid room id"))?;
    let event_id =
        OwnedEventId::try_from(event_id).map_err(|_| Error::invalid_param("Invalid event id"))?;
    // Only current members may ask.
    super::rooms::require_joined(&services, &room_id, &session.user_id)?;
    let viewer = Viewer::of_member(&services.timeline, &room_id, &session.user_id)?;
    let count = viewer.position_of(&event_id)?;
    let event = services
        .timeline
        .get(&event_id)?
        .ok_or_else(|| Error::not_found("No such event in this room"))?;
    let result = services
        .receipts
        .read_by(&services.timeline, viewer.short(), &event, count)?;
    let read: Vec<_> = result
        .read
        .iter()
        .map(|(user, ts)| json!({"user_id": user, "ts": ts}))
        .collect();
    Ok(Json(json!({"read": read, "unread": result.unread})).into_response())
}

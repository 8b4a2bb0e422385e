//! VoIP: TURN server credentials. Without a TURN server configured the answer is an empty
//! object, which clients read as "no TURN server" (they fall back to STUN/direct).

use std::sync::Arc;

use axum::Json;
use axum::response::{IntoResponse, Response};
use ruma::api::client::voip::get_turn_server_info;

use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::services::Services;

/// `GET /_matrix/client/v3/voip/turnServer`
pub async fn turn_server(
    _services: Arc<Services>,
    _req: Ruma<get_turn_server_info::v3::Request>,
) -> Result<Response> {
    Ok(Json(serde_json::json!({})).into_response())
}

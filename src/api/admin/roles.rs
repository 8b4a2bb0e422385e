//! `GET /_sori/admin/v1/users/{userId}/role`: a user's server role (`admin`, `auditor` or
//! `user`), for admins and auditors.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use ruma::OwnedUserId;
use serde_json::json;

use crate::api::ruma::Authenticated;
use crate::error::{Error, Result};
use crate::services::Services;

pub async fn get(
    State(services): State<Arc<Services>>,
    Path(user_id): Path<String>,
    Authenticated(session): Authenticated,
) -> Result<Response> {
    super::require_reader(&services, &session)?;
    let user_id =
        OwnedUserId::try_from(user_id).map_err(|_| Error::invalid_param("Invalid user id"))?;
    let account = services
        .accounts
        .get(&user_id)?
        .ok_or_else(|| Error::not_found("No such local user"))?;
    Ok(Json(json!({"user_id": user_id, "role": account.role})).into_response())
}

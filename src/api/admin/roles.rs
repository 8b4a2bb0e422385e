//! `GET|PUT /_sori/admin/v1/users/{userId}/role`: a user's server role (`admin`, `auditor` or
//! `user`); admins and auditors read it, admins change it (never demoting the last admin).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::api::ruma::Authenticated;
use crate::error::{Error, Result};
use crate::services::Services;
use crate::users::accounts::Role;

pub async fn get(
    State(services): State<Arc<Services>>,
    Path(user_id): Path<String>,
    Authenticated(session): Authenticated,
) -> Result<Response> {
    super::require_reader(&services, &session)?;
    let user_id = super::local_user(&services, user_id)?;
    let account = services
        .accounts
        .get(&user_id)?
        .ok_or_else(|| Error::not_found("No such user"))?;
    Ok(Json(json!({"user_id": user_id, "role": account.role})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRole {
    role: Role,
}

pub async fn put(
    State(services): State<Arc<Services>>,
    Path(user_id): Path<String>,
    Authenticated(session): Authenticated,
    body: axum::body::Bytes,
) -> Result<Response> {
    super::require_admin(&services, &session)?;
    let user_id = super::local_user(&services, user_id)?;
    let SetRole { role } = serde_json::from_slice(&body).map_err(|e| {
        Error::bad_json(format!(
            "Expected {{\"role\": \"admin\" | \"auditor\" | \"user\"}}: {e}"
        ))
    })?;
    services.accounts.change_role(&user_id, role)?;
    tracing::info!(actor = %session.user_id, user_id = %user_id, role = ?role, "role set by an admin");
    Ok(Json(json!({"user_id": user_id, "role": role})).into_response())
}

//! `GET|PUT /_sori/admin/v1/users/{userId}/role`: a user's server role (`admin`, `auditor` or
//! `user`); admins and auditors read it, admins change it (never demoting the last admin).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::Caller;
use crate::error::{Error, Result};
use crate::services::Services;
use crate::users::accounts::Role;

pub async fn get(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Response> {
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
    caller: Caller,
    Path(user_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    caller.require_admin()?;
    let user_id = super::local_user(&services, user_id)?;
    let SetRole { role } = serde_json::from_slice(&body).map_err(|e| {
        Error::bad_json(format!(
            "Expected {{\"role\": \"admin\" | \"auditor\" | \"user\"}}: {e}"
        ))
    })?;
    services
        .accounts
        .change_role(&user_id, role, &caller.origin)?;
    Ok(Json(json!({"user_id": user_id, "role": role})).into_response())
}

//! The part of Synapse's admin API (`/_synapse/admin`) that admin tools (synadm, the
//! synapse-admin web UI) speak, answered in Synapse's shapes. So far: a user's `admin` flag,
//! which is the server role seen through Synapse's eyes (`admin: true` is the role `admin`,
//! clearing it makes the user a `user`).

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

/// `GET /_synapse/admin/v1/users/{userId}/admin`
pub async fn get_admin(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Response> {
    let user_id = super::local_user(&services, user_id)?;
    let admin = services
        .accounts
        .get(&user_id)?
        .is_some_and(|a| a.role == Role::Admin);
    Ok(Json(json!({ "admin": admin })).into_response())
}

#[derive(Deserialize)]
struct SetAdmin {
    admin: bool,
}

/// `PUT /_synapse/admin/v1/users/{userId}/admin`
pub async fn set_admin(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(user_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    caller.require_admin()?;
    let user_id = super::local_user(&services, user_id)?;
    let SetAdmin { admin } = serde_json::from_slice(&body)
        .map_err(|e| Error::bad_json(format!("Expected {{\"admin\": true | false}}: {e}")))?;
    let role = if admin { Role::Admin } else { Role::User };
    services
        .accounts
        .change_role(&user_id, role, &caller.origin)?;
    Ok(Json(json!({})).into_response())
}

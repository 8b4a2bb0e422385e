//! Synapse's registration token admin API: tokens that let people register, each with a
//! number of uses and an expiry.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{body, flag};
use crate::api::admin::{Caller, query_params};
use crate::error::{Error, Result};
use crate::services::Services;

const DEFAULT_LENGTH: u64 = 16;

/// An optional non-negative integer field: absent, `null`, or a number.
fn count(fields: &Map<String, Value>, name: &str) -> Result<Option<Option<u64>>> {
    match fields.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(value) => value.as_u64().map(|n| Some(Some(n))).ok_or_else(|| {
            Error::invalid_param(format!("{name} must be null or a non-negative integer"))
        }),
    }
}

fn unknown() -> Error {
    Error::not_found("No such registration token")
}

/// `GET /_synapse/admin/v1/registration_tokens`
pub async fn list(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let params = query_params(raw.as_deref());
    let tokens = services.registration_tokens.list(flag(&params, "valid")?)?;
    Ok(Json(json!({ "registration_tokens": tokens })).into_response())
}

/// `GET /_synapse/admin/v1/registration_tokens/{token}`
pub async fn get(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(token): Path<String>,
) -> Result<Response> {
    let token = services
        .registration_tokens
        .get(&token)?
        .ok_or_else(unknown)?;
    Ok(Json(token).into_response())
}

/// `POST /_synapse/admin/v1/registration_tokens/new`
pub async fn create(
    State(services): State<Arc<Services>>,
    caller: Caller,
    bytes: Bytes,
) -> Result<Response> {
    caller.require_admin()?;
    let fields: Map<String, Value> = body(&bytes)?;
    let token = match fields.get("token") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) => Some(token.clone()),
        Some(_) => return Err(Error::invalid_param("token must be a string")),
    };
    let length = count(&fields, "length")?
        .flatten()
        .unwrap_or(DEFAULT_LENGTH);
    let created = services.registration_tokens.create(
        token,
        usize::try_from(length).unwrap_or(usize::MAX),
        count(&fields, "uses_allowed")?.flatten(),
        count(&fields, "expiry_time")?.flatten(),
    )?;
    Ok(Json(created).into_response())
}

/// `PUT /_synapse/admin/v1/registration_tokens/{token}`
pub async fn update(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(token): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    caller.require_admin()?;
    let fields: Map<String, Value> = body(&bytes)?;
    let updated = services
        .registration_tokens
        .update(
            &token,
            count(&fields, "uses_allowed")?,
            count(&fields, "expiry_time")?,
        )?
        .ok_or_else(unknown)?;
    Ok(Json(updated).into_response())
}

/// `DELETE /_synapse/admin/v1/registration_tokens/{token}`
pub async fn delete(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<Response> {
    caller.require_admin()?;
    if !services.registration_tokens.delete(&token)? {
        return Err(unknown());
    }
    Ok(Json(json!({})).into_response())
}

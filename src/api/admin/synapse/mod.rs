//! The part of Synapse's admin API (`/_synapse/admin`) that admin tools (synadm, the
//! synapse-admin web UI) speak, answered in Synapse's shapes: users, rooms, media, event
//! reports and registration tokens. Admins may call all of it, auditors only what reads.

pub mod media;
pub mod registration_tokens;
pub mod reports;
pub mod rooms;
pub mod users;

use std::collections::HashMap;

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::{Error, Result};

/// Most entries one page of a list holds.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

/// `GET /_synapse/admin/v1/server_version`
pub async fn server_version() -> Response {
    Json(json!({"server_version": concat!("Sori ", env!("CARGO_PKG_VERSION"))})).into_response()
}

/// A room id from a path.
fn room_id(raw: String) -> Result<ruma::OwnedRoomId> {
    ruma::OwnedRoomId::try_from(raw).map_err(|_| Error::invalid_param("Invalid room id"))
}

/// A `true`/`false` query parameter.
fn flag(params: &HashMap<String, String>, name: &str) -> Result<Option<bool>> {
    match params.get(name).map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(Error::invalid_param(format!(
            "Query parameter {name} must be true or false"
        ))),
    }
}

/// `from` (an offset) and `limit` of a paged list.
fn paging(params: &HashMap<String, String>) -> Result<(usize, usize)> {
    let number = |name: &str, default: usize| -> Result<usize> {
        params.get(name).map_or(Ok(default), |v| {
            v.parse::<usize>().map_err(|_| {
                Error::invalid_param(format!(
                    "Query parameter {name} must be a non-negative integer"
                ))
            })
        })
    };
    let limit = number("limit", DEFAULT_LIMIT)?;
    if limit > MAX_LIMIT {
        return Err(Error::invalid_param(format!(
            "limit is at most {MAX_LIMIT}"
        )));
    }
    Ok((number("from", 0)?, limit))
}

/// `dir`: `f` (the default) or `b`.
fn backwards(params: &HashMap<String, String>) -> Result<bool> {
    match params.get("dir").map(String::as_str) {
        None | Some("f") => Ok(false),
        Some("b") => Ok(true),
        Some(_) => Err(Error::invalid_param("dir must be f or b")),
    }
}

/// One page of `items` from `from`, and the `next_token` when more follow.
fn page<T>(items: Vec<T>, from: usize, limit: usize) -> (Vec<T>, Option<String>) {
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(from).take(limit).collect();
    let next =
        (from + page.len() < total && !page.is_empty()).then(|| (from + page.len()).to_string());
    (page, next)
}

/// A JSON body (empty means `{}`); anything else is 400 `M_BAD_JSON` / `M_NOT_JSON`.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| Error::not_json("The body is not JSON"))?;
    serde_json::from_value(value).map_err(|e| Error::bad_json(format!("Invalid body: {e}")))
}

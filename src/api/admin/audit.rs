//! `GET /_sori/admin/v1/audit`: the audit log, newest first, for admins and auditors; and
//! `GET /_sori/admin/v1/rooms/{roomId}/export`: a room's events as JSON lines (itself audited).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::header;
use serde_json::json;

use super::Caller;
use crate::admin::audit;
use crate::error::{Error, Result};
use crate::services::Services;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

fn number(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>> {
    params
        .get(name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| Error::invalid_param(format!("{name} must be a non-negative integer")))
        })
        .transpose()
}

/// `GET /_sori/admin/v1/audit?from=&limit=&action=&user_id=&since_ts=&until_ts=`
pub async fn list(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let params = super::query_params(raw.as_deref());
    let limit = number(&params, "limit")?.map_or(DEFAULT_LIMIT, |l| l as usize);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Error::invalid_param(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let query = audit::Query {
        before: number(&params, "from")?,
        limit,
        action: params.get("action").cloned(),
        user_id: params.get("user_id").cloned(),
        since_ts: number(&params, "since_ts")?,
        until_ts: number(&params, "until_ts")?,
    };
    let (entries, next) = tokio::task::spawn_blocking(move || services.audit.query(&query))
        .await
        .map_err(|e| Error::internal(format!("audit query: {e}")))??;
    let mut body = json!({ "entries": entries });
    if let Some(next) = next {
        body["next_batch"] = next.to_string().into();
    }
    Ok(Json(body).into_response())
}

/// `GET /_sori/admin/v1/rooms/{roomId}/export`: streamed, one event per line.
pub async fn export_room(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(room_id): Path<String>,
) -> Result<Response> {
    let room_id = ruma::OwnedRoomId::try_from(room_id)
        .map_err(|_| Error::invalid_param("Invalid room id"))?;
    if services.timeline.room(&room_id)?.is_none() {
        return Err(Error::not_found("No such room"));
    }
    services.audit.record(
        caller
            .origin
            .record("export", &room_id, json!({"format": "jsonl"})),
    )?;
    // Each chunk is read off the async workers; the next is read when the client has taken
    // the last, so a big room never sits in memory whole.
    let stream = futures_util::stream::unfold(Some(0u64), move |after| {
        let services = services.clone();
        let room_id = room_id.clone();
        async move {
            let after = after?;
            let read = tokio::task::spawn_blocking(move || {
                services.timeline.export_chunk(&room_id, after)
            })
            .await;
            match read {
                Ok(Ok((chunk, next))) if !chunk.is_empty() => {
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)), next))
                }
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some((Err(std::io::Error::other(e.to_string())), None)),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-ndjson; charset=utf-8"),
    );
    Ok(response)
}

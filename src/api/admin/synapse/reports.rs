//! Synapse's event report admin API: what users reported, for admins to act on.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{page, paging};
use crate::api::admin::{Caller, query_params};
use crate::error::{Error, Result};
use crate::rooms::reports::Report;
use crate::services::Services;

fn shown(services: &Services, id: u64, report: &Report) -> Result<Value> {
    let room = crate::admin::rooms::view(services, &report.room_id)?;
    let event = services.timeline.get(&report.event_id)?;
    Ok(json!({
        "id": id,
        "received_ts": report.ts,
        "room_id": report.room_id,
        "name": room.as_ref().and_then(|r| r.name.clone()),
        "canonical_alias": room.as_ref().and_then(|r| r.canonical_alias.clone()),
        "event_id": report.event_id,
        "user_id": report.reporter,
        "reason": report.reason,
        "score": null,
        "sender": event.map(|e| e.to_client_event()["sender"].clone()),
    }))
}

fn report_id(raw: &str) -> Result<u64> {
    raw.parse()
        .map_err(|_| Error::invalid_param("The report id must be a positive integer"))
}

/// `GET /_synapse/admin/v1/event_reports`
pub async fn list(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let params = query_params(raw.as_deref());
    let (from, limit) = paging(&params)?;
    let mut reports = services.reports.all()?;
    reports.retain(|(_, r)| {
        params
            .get("room_id")
            .is_none_or(|room| r.room_id.as_str() == room)
            && params
                .get("user_id")
                .is_none_or(|user| r.reporter.as_str() == user)
    });
    // Newest first unless `dir=f`.
    if params.get("dir").map(String::as_str) != Some("f") {
        super::backwards(&params)?;
        reports.reverse();
    }
    let total = reports.len();
    let (reports, next) = page(reports, from, limit);
    let shown: Vec<Value> = reports
        .iter()
        .map(|(id, r)| shown(&services, *id, r))
        .collect::<Result<_>>()?;
    let mut answer = json!({"event_reports": shown, "total": total});
    if let Some(next) = next {
        answer["next_token"] = next.into();
    }
    Ok(Json(answer).into_response())
}

/// `GET /_synapse/admin/v1/event_reports/{reportId}`: with the reported event.
pub async fn get(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let id = report_id(&id)?;
    let report = services
        .reports
        .get(id)?
        .ok_or_else(|| Error::not_found("Event report not found"))?;
    let mut answer = shown(&services, id, &report)?;
    answer["event_json"] = services
        .timeline
        .get(&report.event_id)?
        .map(|e| e.to_client_event())
        .unwrap_or_default();
    Ok(Json(answer).into_response())
}

/// `DELETE /_synapse/admin/v1/event_reports/{reportId}`
pub async fn delete(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    caller.require_admin()?;
    let id = report_id(&id)?;
    if !services.reports.delete(id)? {
        return Err(Error::not_found("Event report not found"));
    }
    Ok(Json(json!({})).into_response())
}

//! `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync` (simplified sliding sync,
//! MSC4186): answer at once on a new connection or when something changed since `pos`,
//! otherwise wait up to `timeout` for a change that concerns the user.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use ruma::api::client::sync::sync_events::v5;
use serde_json::Value;

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::services::Services;
use crate::sync::{self, sliding};

/// Longest a request waits, whatever the client asks.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn sliding_sync(services: Arc<Services>, req: Ruma<v5::Request>) -> Result<Response> {
    let user = req.user_id()?.to_owned();
    let device = req.device_id()?.to_owned();
    let body = &req.body;
    let conn_id = body.conn_id.clone().unwrap_or_default();
    if conn_id.len() > 255 {
        return Err(Error::invalid_param("conn_id is at most 255 bytes"));
    }
    let spaces = sliding::space_filters(&req.raw_body)?;
    let previous = services
        .sliding
        .previous(&user, &device, &conn_id, body.pos.as_deref())?;
    let _syncing = sync::syncing(&services, &user, &body.set_presence)?;
    let timeout = body.timeout.unwrap_or_default().min(MAX_TIMEOUT);
    let response = sync::long_poll(&services, &user, timeout, |upto, last| {
        let (mut response, sent, changed) =
            sliding::build(&services, &user, &device, body, &spaces, &previous, upto)?;
        if !(changed || body.pos.is_none() || last) {
            return Ok(None);
        }
        let pos = services.sliding.remember(&user, &device, &conn_id, sent);
        response.insert("pos".into(), Value::String(pos));
        Ok(Some(Value::Object(response)))
    })
    .await?;
    Ok(Json(response).into_response())
}

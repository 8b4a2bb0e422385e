//! `GET /_matrix/client/v3/sync`: answer at once when something changed since `since` (or on a
//! first sync), otherwise wait up to `timeout` for a change that concerns the user.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use ruma::api::client::filter::FilterDefinition;
use ruma::api::client::sync::sync_events::v3::{self, Filter};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::services::Services;
use crate::sync::{self, Options};

/// Longest a sync waits, whatever the client asks.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn sync_events(services: Arc<Services>, req: Ruma<v3::Request>) -> Result<Response> {
    let user = req.user_id()?.to_owned();
    let body = &req.body;
    let filter: FilterDefinition = match &body.filter {
        None => FilterDefinition::default(),
        Some(Filter::FilterDefinition(definition)) => definition.clone(),
        // An inline filter that is not a valid definition arrives here as an "id".
        Some(Filter::FilterId(id)) if id.trim_start().starts_with('{') => {
            return Err(Error::bad_json("Invalid filter"));
        }
        Some(Filter::FilterId(id)) => services
            .filters
            .get(&user, id)?
            .ok_or_else(|| Error::invalid_param("Unknown filter id"))?,
        Some(_) => FilterDefinition::default(),
    };
    let committed = services.store.committed_count();
    let parsed = body
        .since
        .as_deref()
        .map(|t| sync::parse_since(t, committed))
        .transpose()?;
    let options = Options::new(&filter, parsed, body.full_state);
    let device = req.device_id()?.to_owned();
    // Syncing from a token means the device has the to-device messages up to it.
    if let Some(received) = options.to_device_since {
        services.to_device.acknowledge(&user, &device, received)?;
    }
    // While this request runs, the user is not gone (presence does not time out to offline).
    let _syncing = sync::syncing(&services, &user, &body.set_presence)?;
    let timeout = body.timeout.unwrap_or_default().min(MAX_TIMEOUT);
    let answer_now = options.since.is_none() || options.full_state;
    let response = sync::long_poll(&services, &user, timeout, |upto, last| {
        let (response, has_changes) = sync::build(&services, &user, &device, &options, upto)?;
        Ok((has_changes || answer_now || last).then_some(response))
    })
    .await?;
    Ok(Json(response).into_response())
}

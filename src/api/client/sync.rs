//! `GET /_matrix/client/v3/sync`: answer at once when something changed since `since` (or on a
//! first sync), otherwise wait up to `timeout` for a change that concerns the user.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use ruma::api::client::filter::FilterDefinition;
use ruma::api::client::sync::sync_events::v3::{self, Filter};
use ruma::presence::PresenceState;

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
    if body.set_presence != PresenceState::Offline
        && services.presence.touch(&user, body.set_presence.clone())
    {
        sync::wake_sharers(&services, &user)?;
    }
    // While this request runs, the user is not gone (presence does not time out to offline).
    let _syncing =
        (body.set_presence != PresenceState::Offline).then(|| services.presence.syncing(&user));

    let timeout = body.timeout.unwrap_or_default().min(MAX_TIMEOUT);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // Register for wake-ups before reading, so a change between the read and the wait
        // still wakes this request.
        let notify = services.watchers.watch(&user);
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let upto = services.store.committed_count();
        let (response, has_changes) = sync::build(&services, &user, &device, &options, upto)?;
        if has_changes
            || options.since.is_none()
            || options.full_state
            || tokio::time::Instant::now() >= deadline
        {
            return Ok(Json(response).into_response());
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            // Timed out: answer with what there is (nothing), at the latest position.
            let upto = services.store.committed_count();
            let (response, _) = sync::build(&services, &user, &device, &options, upto)?;
            return Ok(Json(response).into_response());
        }
    }
}

//! `POST /_matrix/client/v3/search`: message search (the `room_events` category).

use std::sync::Arc;

use ruma::api::client::search::search_events;

use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::search::messages::{self, Options};
use crate::services::Services;

/// `POST /_matrix/client/v3/search`
pub async fn search(
    services: Arc<Services>,
    req: Ruma<search_events::v3::Request>,
) -> Result<search_events::v3::Response> {
    let to = req.recipient()?;
    let mut categories = search_events::v3::ResultCategories::new();
    if let Some(criteria) = &req.body.search_categories.room_events {
        // ruma fills in an absent `event_context` with its defaults; only a given one asks
        // for context (as in Synapse).
        let context = serde_json::from_slice::<serde_json::Value>(&req.raw_body)
            .ok()
            .is_some_and(|body| {
                !body["search_categories"]["room_events"]["event_context"].is_null()
            });
        categories.room_events = messages::room_events(
            &services,
            to,
            criteria,
            req.body.next_batch.as_deref(),
            Options { context },
        )
        .await?;
    }
    Ok(search_events::v3::Response::new(categories))
}

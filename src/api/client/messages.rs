//! Reading history (`/messages`) and redacting events.

use std::collections::BTreeSet;
use std::sync::Arc;

use ruma::api::Direction as ApiDirection;
use ruma::api::client::message::get_message_events;
use ruma::api::client::redact::redact_event;
use ruma::serde::Raw;
use serde_json::json;

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::pagination::{self, parse_token};
use crate::rooms::timeline::NewEvent;
use crate::rooms::visibility::Viewer;
use crate::services::Services;
use crate::storage::Direction;

fn raw<T>(value: &serde_json::Value) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|e| Error::internal(format!("serialising an event: {e}")))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/messages`
pub async fn messages(
    services: Arc<Services>,
    req: Ruma<get_message_events::v3::Request>,
) -> Result<get_message_events::v3::Response> {
    let user_id = req.user_id()?;
    let body = &req.body;
    let room = services.timeline.room(&body.room_id)?;
    // Members and former members page through what they may see; others get nothing.
    let membership = services.timeline.membership(&body.room_id, user_id)?;
    let (Some(room), Some(_)) = (room, membership) else {
        return Err(Error::forbidden("You are not in this room"));
    };
    let viewer = Viewer::new(&services.timeline, room.short, &body.room_id, user_id)?;
    let from = body.from.as_deref().map(parse_token).transpose()?;
    let to = body.to.as_deref().map(parse_token).transpose()?;
    let direction = match body.dir {
        ApiDirection::Backward => Direction::Backward,
        ApiDirection::Forward => Direction::Forward,
    };
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(pagination::MAX_LIMIT);
    let page = pagination::page(
        &services.timeline,
        &viewer,
        room.short,
        from,
        to,
        direction,
        limit,
        &body.filter,
    )?;

    // With lazy-loading, the member events of the page's senders come along.
    let mut state = Vec::new();
    if !body.filter.lazy_load_options.is_disabled() {
        let senders: BTreeSet<String> = page
            .events
            .iter()
            .filter_map(|e| e.to_client_event()["sender"].as_str().map(str::to_owned))
            .collect();
        for sender in senders {
            if let Some(member) =
                services
                    .timeline
                    .state_event(room.short, "m.room.member", &sender)?
            {
                state.push(raw(&member.to_client_event())?);
            }
        }
    }
    let mut response = get_message_events::v3::Response::new();
    response.start = page.start;
    response.end = page.end;
    response.chunk = page
        .events
        .iter()
        .map(|e| raw(&e.to_client_event()))
        .collect::<Result<_>>()?;
    response.state = state;
    Ok(response)
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}`
pub async fn redact(
    services: Arc<Services>,
    req: Ruma<redact_event::v3::Request>,
) -> Result<redact_event::v3::Response> {
    let session = req.session()?.clone();
    let body = &req.body;
    let room = services
        .timeline
        .room(&body.room_id)?
        .filter(|_| {
            services
                .timeline
                .membership(&body.room_id, &session.user_id)
                .ok()
                .flatten()
                .is_some_and(|m| m.membership == "join")
        })
        .ok_or_else(|| Error::forbidden("You are not in this room"))?;
    let target = services
        .timeline
        .get(&body.event_id)?
        .filter(|t| t.room_id == body.room_id)
        .ok_or_else(|| Error::not_found("No such event in this room"))?;
    let mut content = json!({"redacts": body.event_id});
    if let Some(reason) = &body.reason {
        content["reason"] = reason.as_str().into();
    }
    let event = NewEvent {
        kind: "m.room.redaction".into(),
        content: serde_json::value::to_raw_value(&content)
            .map_err(|e| Error::internal(e.to_string()))?,
        state_key: None,
    };
    let event_id = services
        .timeline
        .redact(
            &room,
            &target,
            &session.user_id,
            event,
            (&session.device_id, body.txn_id.as_str()),
        )
        .await?;
    Ok(redact_event::v3::Response::new(event_id))
}

//! Reading history (`/messages`) and redacting events.

use std::collections::BTreeSet;
use std::sync::Arc;

use ruma::api::Direction as ApiDirection;
use ruma::api::client::message::get_message_events;
use ruma::api::client::redact::redact_event;
use serde_json::json;

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::pagination::{self, parse_token};
use crate::rooms::pdu::raw;
use crate::rooms::relations;
use crate::rooms::timeline::NewEvent;
use crate::rooms::visibility::Viewer;
use crate::services::Services;
use crate::storage::Direction;

/// `GET /_matrix/client/v3/rooms/{roomId}/messages`
pub async fn messages(
    services: Arc<Services>,
    req: Ruma<get_message_events::v3::Request>,
) -> Result<get_message_events::v3::Response> {
    let user_id = req.user_id()?;
    let recipient = req.recipient()?;
    let body = &req.body;
    // Members and former members page through what they may see; others get nothing.
    let viewer = Viewer::of_member(&services.timeline, &body.room_id, user_id)?;
    let from = body.from.as_deref().map(parse_token).transpose()?;
    let to = body.to.as_deref().map(parse_token).transpose()?;
    let direction = match body.dir {
        ApiDirection::Backward => Direction::Backward,
        ApiDirection::Forward => Direction::Forward,
    };
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(pagination::MAX_LIMIT);
    let page_now = || {
        pagination::page(
            &services.timeline,
            &viewer,
            viewer.short(),
            from,
            to,
            direction,
            limit,
            &body.filter,
        )
    };
    let mut page = page_now()?;
    // Paging back past the oldest event here, in a room joined through another server: its
    // history is fetched from the room's other servers (a few rounds at most per request, so
    // that a room with much hidden history still answers).
    let mut rounds = 0;
    while direction == Direction::Backward && to.is_none() && page.end.is_none() && rounds < 3 {
        rounds += 1;
        let fetched = crate::federation::backfill::fill(&services, &body.room_id, limit).await?;
        if fetched == 0 {
            break;
        }
        page = page_now()?;
    }

    // With lazy-loading, the member events of the page's senders come along.
    let mut state = Vec::new();
    if !body.filter.lazy_load_options.is_disabled() {
        let senders: BTreeSet<String> = page
            .events
            .iter()
            .filter_map(|(_, e)| e.to_client_event()["sender"].as_str().map(str::to_owned))
            .collect();
        for sender in senders {
            if let Some(member) =
                services
                    .timeline
                    .state_event(viewer.short(), "m.room.member", &sender)?
            {
                state.push(raw(&member.to_client_event())?);
            }
        }
    }
    let mut response = get_message_events::v3::Response::new();
    response.start = page.start;
    response.end = page.end;
    let serve = |(count, e): &(u64, crate::rooms::pdu::StoredPdu)| {
        raw(&relations::serve(
            &services.timeline,
            viewer.short(),
            (*count, e),
            recipient,
        )?)
    };
    response.chunk = page.events.iter().map(serve).collect::<Result<_>>()?;
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
    super::rooms::require_joined(&services, &body.room_id, &session.user_id)?;
    req.keep_until_written(services.watchers.sending(&session.user_id));
    let room = services
        .timeline
        .room(&body.room_id)?
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

/// `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}`: the event with up to `limit`
/// visible events around it (half before, half after) and the members who sent them.
pub async fn context(
    services: Arc<Services>,
    req: Ruma<ruma::api::client::context::get_context::v3::Request>,
) -> Result<ruma::api::client::context::get_context::v3::Response> {
    let user_id = req.user_id()?;
    let recipient = req.recipient()?;
    let body = &req.body;
    let not_found = || Error::not_found("No such event in this room");
    let viewer = Viewer::of_member(&services.timeline, &body.room_id, user_id)?;
    let count = viewer.position_of(&body.event_id)?;
    let event = services
        .timeline
        .get(&body.event_id)?
        .ok_or_else(not_found)?;
    let limit = usize::try_from(u64::from(body.limit))
        .unwrap_or(pagination::MAX_LIMIT)
        .min(pagination::MAX_LIMIT);
    let before_limit = limit / 2;
    let (before, after) = pagination::around(
        &services.timeline,
        &viewer,
        count,
        (before_limit, limit - before_limit),
        &body.filter,
    )?;

    let mut senders = BTreeSet::new();
    for e in before
        .events
        .iter()
        .chain(after.events.iter())
        .map(|(_, e)| e)
        .chain(std::iter::once(&event))
    {
        if let Some(sender) = e.to_client_event()["sender"].as_str() {
            senders.insert(sender.to_owned());
        }
    }
    let mut state = Vec::new();
    for sender in senders {
        if let Some(member) =
            services
                .timeline
                .state_event(viewer.short(), "m.room.member", &sender)?
        {
            state.push(raw(&member.to_client_event())?);
        }
    }
    let mut response = ruma::api::client::context::get_context::v3::Response::new();
    response.start = Some(before.end.unwrap_or_else(|| pagination::token(0)));
    response.end = Some(
        after
            .end
            .unwrap_or_else(|| pagination::token(services.store.current_count())),
    );
    let serve = |(count, e): &(u64, crate::rooms::pdu::StoredPdu)| {
        raw(&relations::serve(
            &services.timeline,
            viewer.short(),
            (*count, e),
            recipient,
        )?)
    };
    response.event = Some(serve(&(count, event))?);
    response.events_before = before.events.iter().map(serve).collect::<Result<_>>()?;
    response.events_after = after.events.iter().map(serve).collect::<Result<_>>()?;
    response.state = state;
    Ok(response)
}

/// `GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event`
pub async fn timestamp_to_event(
    services: Arc<Services>,
    req: Ruma<ruma::api::client::room::get_event_by_timestamp::v1::Request>,
) -> Result<ruma::api::client::room::get_event_by_timestamp::v1::Response> {
    let user_id = req.user_id()?;
    let body = &req.body;
    let viewer = Viewer::of_member(&services.timeline, &body.room_id, user_id)?;
    let direction = match body.dir {
        ApiDirection::Backward => Direction::Backward,
        ApiDirection::Forward => Direction::Forward,
    };
    let ts = u64::from(body.ts.0);
    let (event_id, sent) =
        pagination::event_at_timestamp(&services.timeline, &viewer, viewer.short(), ts, direction)?
            .ok_or_else(|| Error::not_found("No event in that direction from that time"))?;
    let sent = ruma::MilliSecondsSinceUnixEpoch(ruma::UInt::new(sent).unwrap_or_default());
    Ok(ruma::api::client::room::get_event_by_timestamp::v1::Response::new(event_id, sent))
}

//! `/relations` and `/threads`.

use std::sync::Arc;

use ruma::api::Direction as ApiDirection;
use ruma::api::client::relations::{
    get_relating_events, get_relating_events_with_rel_type,
    get_relating_events_with_rel_type_and_event_type,
};
use ruma::api::client::threads::get_threads;
use ruma::serde::Raw;
use ruma::{EventId, RoomId, UInt};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::pagination::{self, parse_token, token};
use crate::rooms::pdu::Recipient;
use crate::rooms::relations::{self, RelationsPage};
use crate::rooms::visibility::Viewer;
use crate::services::Services;
use crate::storage::Direction;

/// Default page size of `/relations` and `/threads`.
const DEFAULT_LIMIT: usize = 50;

struct Query<'a> {
    room_id: &'a RoomId,
    event_id: &'a EventId,
    rel_type: Option<String>,
    event_type: Option<String>,
    from: Option<&'a str>,
    dir: &'a ApiDirection,
    limit: Option<UInt>,
    recurse: bool,
}

struct Answer {
    chunk: Vec<Raw<ruma::events::AnyMessageLikeEvent>>,
    next_batch: Option<String>,
    recursion_depth: Option<UInt>,
}

fn limit_of(limit: Option<UInt>) -> usize {
    limit.map_or(DEFAULT_LIMIT, |l| {
        usize::try_from(u64::from(l)).unwrap_or(pagination::MAX_LIMIT)
    })
}

fn relations(services: &Services, to: Recipient<'_>, q: Query<'_>) -> Result<Answer> {
    let viewer = Viewer::of_member(&services.timeline, q.room_id, to.user)?;
    // The parent must be an event of the room the user may see.
    viewer.position_of(q.event_id)?;
    let direction = match q.dir {
        ApiDirection::Forward => Direction::Forward,
        _ => Direction::Backward,
    };
    let from = q.from.map(parse_token).transpose()?;
    let RelationsPage {
        events,
        next_batch,
        recursion_depth,
    } = relations::page(
        &services.timeline,
        &viewer,
        viewer.short(),
        q.event_id,
        q.rel_type.as_deref(),
        q.event_type.as_deref(),
        from,
        direction,
        limit_of(q.limit),
        q.recurse,
    )?;
    let chunk = events
        .iter()
        .map(|(count, e)| {
            let json = relations::serve(&services.timeline, viewer.short(), (*count, e), to)?;
            serde_json::value::to_raw_value(&json)
                .map(Raw::from_json)
                .map_err(|e| Error::internal(e.to_string()))
        })
        .collect::<Result<_>>()?;
    Ok(Answer {
        chunk,
        next_batch,
        recursion_depth: recursion_depth.and_then(UInt::new),
    })
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}`
pub async fn all(
    services: Arc<Services>,
    req: Ruma<get_relating_events::v1::Request>,
) -> Result<get_relating_events::v1::Response> {
    let b = &req.body;
    let q = Query {
        room_id: &b.room_id,
        event_id: &b.event_id,
        rel_type: None,
        event_type: None,
        from: b.from.as_deref(),
        dir: &b.dir,
        limit: b.limit,
        recurse: b.recurse,
    };
    let a = relations(&services, req.recipient()?, q)?;
    let mut response = get_relating_events::v1::Response::new(a.chunk);
    response.next_batch = a.next_batch;
    response.recursion_depth = a.recursion_depth;
    Ok(response)
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}`
pub async fn by_type(
    services: Arc<Services>,
    req: Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type::v1::Response> {
    let b = &req.body;
    let q = Query {
        room_id: &b.room_id,
        event_id: &b.event_id,
        rel_type: Some(b.rel_type.to_string()),
        event_type: None,
        from: b.from.as_deref(),
        dir: &b.dir,
        limit: b.limit,
        recurse: b.recurse,
    };
    let a = relations(&services, req.recipient()?, q)?;
    let mut response = get_relating_events_with_rel_type::v1::Response::new(a.chunk);
    response.next_batch = a.next_batch;
    response.recursion_depth = a.recursion_depth;
    Ok(response)
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}`
pub async fn by_type_and_event_type(
    services: Arc<Services>,
    req: Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type_and_event_type::v1::Response> {
    let b = &req.body;
    let q = Query {
        room_id: &b.room_id,
        event_id: &b.event_id,
        rel_type: Some(b.rel_type.to_string()),
        event_type: Some(b.event_type.to_string()),
        from: b.from.as_deref(),
        dir: &b.dir,
        limit: b.limit,
        recurse: b.recurse,
    };
    let a = relations(&services, req.recipient()?, q)?;
    let mut response = get_relating_events_with_rel_type_and_event_type::v1::Response::new(a.chunk);
    response.next_batch = a.next_batch;
    response.recursion_depth = a.recursion_depth;
    Ok(response)
}

/// `GET /_matrix/client/v1/rooms/{roomId}/threads`: thread roots by latest activity.
pub async fn threads(
    services: Arc<Services>,
    req: Ruma<get_threads::v1::Request>,
) -> Result<get_threads::v1::Response> {
    let user = req.user_id()?;
    let b = &req.body;
    let viewer = Viewer::of_member(&services.timeline, &b.room_id, user)?;
    let participated_only = b.include == get_threads::v1::IncludeThreads::Participated;
    let limit = limit_of(b.limit).clamp(1, pagination::MAX_LIMIT);
    let before = b.from.as_deref().map(parse_token).transpose()?;
    let mut chunk = Vec::new();
    let mut next_batch = None;
    for (activity, root) in services.timeline.threads(viewer.short(), before)? {
        let Some((_, root_count)) = services.timeline.position(&root)? else {
            continue;
        };
        if !viewer.can_see(root_count)? {
            continue;
        }
        let Some(stored) = services.timeline.get(&root)? else {
            continue;
        };
        let json = relations::serve(
            &services.timeline,
            viewer.short(),
            (root_count, &stored),
            req.recipient()?,
        )?;
        if participated_only
            && json["unsigned"]["m.relations"]["m.thread"]["current_user_participated"] != true
        {
            continue;
        }
        if chunk.len() == limit {
            next_batch = Some(token(activity));
            break;
        }
        chunk.push(
            serde_json::value::to_raw_value(&json)
                .map(Raw::from_json)
                .map_err(|e| Error::internal(e.to_string()))?,
        );
    }
    let mut response = get_threads::v1::Response::new(chunk);
    response.next_batch = next_batch;
    Ok(response)
}

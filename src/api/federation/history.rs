//! Another server reads a room's history from this one: one event (`/event`), the state at an
//! event, whole (`/state`) or as event ids (`/state_ids`), each with its auth chain, and the
//! events before some events (`/backfill`, `/get_missing_events`), an event's auth chain
//! (`/event_auth`), and the event closest to a time (`/timestamp_to_event`).
//! Only a server with a user in the room may ask; an event whose history visibility hides it
//! from that server is served redacted.

use std::sync::Arc;

use ruma::api::federation::authorization::get_event_authorization;
use ruma::api::federation::backfill::get_backfill;
use ruma::api::federation::event::{
    get_event, get_event_by_timestamp, get_missing_events, get_room_state, get_room_state_ids,
};
use ruma::{EventId, MilliSecondsSinceUnixEpoch, RoomId, ServerName};
use serde_json::value::RawValue;

use super::origin;
use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::pdu::{self, StoredPdu};
use crate::services::Services;

fn require_in_room(services: &Services, room_id: &RoomId, server: &ServerName) -> Result<()> {
    services.timeline.refuse_if_denied(room_id, server)?;
    if services.timeline.server_in_room(room_id, server)? {
        Ok(())
    } else {
        Err(Error::forbidden("Your server has no user in this room"))
    }
}

fn as_raw(stored: &StoredPdu) -> Result<Box<RawValue>> {
    serde_json::value::to_raw_value(&stored.pdu)
        .map_err(|e| Error::internal(format!("serialising a PDU: {e}")))
}

/// The state ids before `event_id` of `room_id`, and their auth chain.
fn state_at(
    services: &Services,
    room_id: &RoomId,
    event_id: &EventId,
    server: &ServerName,
) -> Result<(Vec<ruma::OwnedEventId>, Vec<ruma::OwnedEventId>)> {
    require_in_room(services, room_id, server)?;
    let not_found = || Error::not_found("No such event in this room");
    if services
        .timeline
        .get(event_id)?
        .map(|e| e.room_id)
        .as_deref()
        != Some(room_id)
    {
        return Err(not_found());
    }
    let state: Vec<_> = services
        .timeline
        .state_at_event(event_id, false)?
        .ok_or_else(not_found)?
        .into_values()
        .collect();
    let chain = services.timeline.auth_chain(state.iter().cloned())?;
    Ok((chain.into_iter().collect(), state))
}

/// `GET /_matrix/federation/v1/state_ids/{roomId}?event_id=`
pub async fn state_ids(
    services: Arc<Services>,
    req: Ruma<get_room_state_ids::v1::Request>,
) -> Result<get_room_state_ids::v1::Response> {
    let (chain, state) = state_at(
        &services,
        &req.body.room_id,
        &req.body.event_id,
        origin(&req)?,
    )?;
    Ok(get_room_state_ids::v1::Response::new(chain, state))
}

/// `GET /_matrix/federation/v1/state/{roomId}?event_id=`
pub async fn state(
    services: Arc<Services>,
    req: Ruma<get_room_state::v1::Request>,
) -> Result<get_room_state::v1::Response> {
    let (chain, state) = state_at(
        &services,
        &req.body.room_id,
        &req.body.event_id,
        origin(&req)?,
    )?;
    Ok(get_room_state::v1::Response::new(
        super::pdus(&services, &chain)?,
        super::pdus(&services, &state)?,
    ))
}

/// An event as `server` may see it: redacted when its history visibility hides it.
fn as_seen_by(
    services: &Services,
    server: &ServerName,
    mut stored: StoredPdu,
) -> Result<Box<RawValue>> {
    if !services.timeline.server_sees(&stored.event_id, server)? {
        let version = services
            .timeline
            .room(&stored.room_id)?
            .ok_or_else(|| Error::internal("an event's room is missing"))?
            .version;
        stored.pdu = pdu::redact(stored.pdu, &pdu::rules(&version)?)?;
    }
    as_raw(&stored)
}

fn all_as_seen_by(
    services: &Services,
    server: &ServerName,
    events: Vec<StoredPdu>,
) -> Result<Vec<Box<RawValue>>> {
    events
        .into_iter()
        .map(|event| as_seen_by(services, server, event))
        .collect()
}

/// `GET /_matrix/federation/v1/backfill/{roomId}?v=…&limit=…`
pub async fn backfill(
    services: Arc<Services>,
    req: Ruma<get_backfill::v1::Request>,
) -> Result<get_backfill::v1::Response> {
    let server = origin(&req)?;
    let body = &req.body;
    require_in_room(&services, &body.room_id, server)?;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX);
    let events = services
        .timeline
        .walk_back(&body.room_id, (&body.v, true), &[], limit, 0)?;
    Ok(get_backfill::v1::Response::new(
        services.config.server_name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
        all_as_seen_by(&services, server, events)?,
    ))
}

/// `POST /_matrix/federation/v1/get_missing_events/{roomId}`
pub async fn missing_events(
    services: Arc<Services>,
    req: Ruma<get_missing_events::v1::Request>,
) -> Result<get_missing_events::v1::Response> {
    let server = origin(&req)?;
    let body = &req.body;
    require_in_room(&services, &body.room_id, server)?;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX);
    let mut events = services.timeline.walk_back(
        &body.room_id,
        (&body.latest_events, false),
        &body.earliest_events,
        limit,
        u64::from(body.min_depth),
    )?;
    // Oldest first, as they are to be applied.
    events.reverse();
    Ok(get_missing_events::v1::Response::new(all_as_seen_by(
        &services, server, events,
    )?))
}

/// `GET /_matrix/federation/v1/event/{eventId}`
pub async fn event(
    services: Arc<Services>,
    req: Ruma<get_event::v1::Request>,
) -> Result<get_event::v1::Response> {
    let server = origin(&req)?;
    let stored = services
        .timeline
        .get(&req.body.event_id)?
        .ok_or_else(|| Error::not_found("No such event"))?;
    require_in_room(&services, &stored.room_id, server)?;
    Ok(get_event::v1::Response::new(
        services.config.server_name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
        as_seen_by(&services, server, stored)?,
    ))
}

/// `GET /_matrix/federation/v1/timestamp_to_event/{roomId}?ts=&dir=`: the event of the room
/// closest to a time that the asking server may see (`dir=f`: the first at or after it,
/// `dir=b`: the last at or before it). A linear walk of the timeline.
pub async fn timestamp_to_event(
    services: Arc<Services>,
    req: Ruma<get_event_by_timestamp::v1::Request>,
) -> Result<get_event_by_timestamp::v1::Response> {
    let server = origin(&req)?;
    let body = &req.body;
    require_in_room(&services, &body.room_id, server)?;
    let short = services
        .timeline
        .room(&body.room_id)?
        .ok_or_else(|| Error::not_found("No such room here"))?
        .short;
    let ts = u64::from(body.ts.get());
    let direction = match body.dir {
        ruma::api::Direction::Forward => crate::storage::Direction::Forward,
        ruma::api::Direction::Backward => crate::storage::Direction::Backward,
    };
    for entry in services
        .timeline
        .scan_events(short, 0, u64::MAX, direction)?
    {
        let (_, stored) = entry?;
        let sent = pdu::int_field(&stored.pdu, "origin_server_ts")
            .unwrap_or(0)
            .max(0) as u64;
        let hit = match direction {
            crate::storage::Direction::Forward => sent >= ts,
            crate::storage::Direction::Backward => sent <= ts,
        };
        if hit && services.timeline.server_sees(&stored.event_id, server)? {
            return Ok(get_event_by_timestamp::v1::Response::new(
                stored.event_id,
                MilliSecondsSinceUnixEpoch(ruma::UInt::new_saturating(sent)),
            ));
        }
    }
    Err(Error::not_found("No event of the room at that time"))
}

/// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`: every event that authorises
/// an event of the room, recursively.
pub async fn event_auth(
    services: Arc<Services>,
    req: Ruma<get_event_authorization::v1::Request>,
) -> Result<get_event_authorization::v1::Response> {
    let server = origin(&req)?;
    let body = &req.body;
    require_in_room(&services, &body.room_id, server)?;
    let event = services
        .timeline
        .get(&body.event_id)?
        .filter(|event| event.room_id == body.room_id)
        .ok_or_else(|| Error::not_found("No such event in this room"))?;
    let auth_events = crate::rooms::pdu::Pdu::from_stored(&event)?.auth_events;
    let chain: Vec<ruma::OwnedEventId> = services
        .timeline
        .auth_chain(auth_events.iter().cloned())?
        .into_iter()
        .chain(auth_events)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(get_event_authorization::v1::Response::new(super::pdus(
        &services, &chain,
    )?))
}

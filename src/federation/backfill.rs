//! Fetching a room's history from before this server joined it (`GET /backfill` as a client
//! of other servers), when a client pages back past the oldest event here. Each event is
//! checked like any other from another server (hashes, signatures, and the authorization
//! rules against its auth events, fetched with `/event` when not known here) before it is
//! kept ([`crate::rooms::history`]).

use std::collections::HashMap;

use ruma::api::federation::backfill::get_backfill;
use ruma::api::federation::event::get_event;
use ruma::events::TimelineEventType;
use ruma::{CanonicalJsonObject, EventId, OwnedEventId, OwnedServerName, RoomId, ServerName};

use crate::error::{Error, Result};
use crate::rooms::pdu::{self, Pdu, StoredPdu};
use crate::services::Services;

/// Most events asked of a server at once (the spec leaves it to the server; 100 is common).
const MAX_BATCH: usize = 100;
/// Most auth events fetched one by one for one batch.
const MAX_AUTH_FETCHES: usize = 50;

/// Fetches up to `wanted` events of the room's history before its oldest event here; returns
/// how many were kept. A server that cannot give any is logged and the next one asked; when
/// none can, nothing is kept and the client pages through what is here.
pub async fn fill(services: &Services, room_id: &RoomId, wanted: usize) -> Result<usize> {
    let Some(oldest) = services.timeline.history_to_fetch(room_id)? else {
        return Ok(0);
    };
    for server in servers_to_ask(services, room_id)? {
        match fill_from(services, room_id, &oldest, &server, wanted).await {
            Ok(kept) => return Ok(kept),
            Err(error) => {
                tracing::warn!(%room_id, %server, %error, "fetching history from another server failed");
            }
        }
    }
    Ok(0)
}

/// The servers of the room's joined members, the room id's first (it made the room).
fn servers_to_ask(services: &Services, room_id: &RoomId) -> Result<Vec<OwnedServerName>> {
    let own = &services.config.server_name;
    let mut servers: Vec<OwnedServerName> = Vec::new();
    let members = services.timeline.joined_members(room_id)?;
    for server in room_id
        .server_name()
        .into_iter()
        .chain(members.iter().map(|user| user.server_name()))
    {
        if server != own
            && !servers.iter().any(|s| s == server)
            && services.federation.talks_to(server)
        {
            servers.push(server.to_owned());
        }
    }
    Ok(servers)
}

async fn fill_from(
    services: &Services,
    room_id: &RoomId,
    oldest: &EventId,
    server: &ServerName,
    wanted: usize,
) -> Result<usize> {
    let record = services
        .timeline
        .room(room_id)?
        .ok_or_else(|| Error::not_found("Unknown room"))?;
    let version = record.version.clone();
    let rules = pdu::rules(&version)?;
    let create = services
        .timeline
        .state_event(record.short, "m.room.create", "")?
        .ok_or_else(|| Error::internal(format!("{room_id} has no create event")))?;
    let create = Pdu::from_stored(&create)?;
    // The oldest event comes back too (the spec's window includes the events asked from).
    let limit = wanted.clamp(1, MAX_BATCH) + 1;
    let request = get_backfill::v1::Request::new(
        room_id.to_owned(),
        vec![oldest.to_owned()],
        ruma::UInt::try_from(limit as u64).unwrap_or(ruma::UInt::MAX),
    );
    let answer = services
        .federation
        .client
        .send(&services.outbound, server, request)
        .await?;

    let mut fetched: HashMap<OwnedEventId, (StoredPdu, Pdu)> = HashMap::new();
    for raw in answer.pdus.iter().take(limit) {
        match check(services, room_id, &version, raw.get()).await {
            Ok(Some(event)) => {
                fetched.insert(event.0.event_id.clone(), event);
            }
            Ok(None) => {}
            Err(error) => tracing::info!(%room_id, %server, %error, "dropped a backfilled event"),
        }
    }
    // Their auth events: here already, among them, or fetched.
    let mut outliers: HashMap<OwnedEventId, Pdu> = HashMap::new();
    let mut outliers_stored = Vec::new();
    let mut fetches = 0;
    let wanted_auth: Vec<OwnedEventId> = fetched
        .values()
        .flat_map(|(_, parsed)| parsed.auth_events.iter().cloned())
        .collect();
    for auth in wanted_auth {
        if fetched.contains_key(&auth)
            || outliers.contains_key(&auth)
            || services.timeline.get(&auth)?.is_some()
        {
            continue;
        }
        if fetches == MAX_AUTH_FETCHES {
            break;
        }
        fetches += 1;
        let answer = services
            .federation
            .client
            .send(
                &services.outbound,
                server,
                get_event::v1::Request::new(auth.clone()),
            )
            .await?;
        if let Some((stored, parsed)) = check(services, room_id, &version, answer.pdu.get()).await?
            && stored.event_id == auth
        {
            outliers.insert(auth, parsed);
            outliers_stored.push(stored);
        }
    }
    let lookup = |id: &EventId| -> Option<Pdu> {
        if let Some((_, parsed)) = fetched.get(id) {
            return Some(parsed.clone());
        }
        if let Some(parsed) = outliers.get(id) {
            return Some(parsed.clone());
        }
        services
            .timeline
            .get(id)
            .ok()
            .flatten()
            .and_then(|stored| Pdu::from_stored(&stored).ok())
    };
    let mut events: Vec<(StoredPdu, Pdu)> = Vec::new();
    let mut reached_create = false;
    for (stored, parsed) in fetched.values() {
        match crate::rooms::auth_chain::check_by_auth_events(&rules, parsed, &create, lookup) {
            Ok(()) => {
                reached_create |= parsed.kind == TimelineEventType::RoomCreate;
                events.push((stored.clone(), parsed.clone()));
            }
            Err(error) => tracing::info!(%room_id, %server, %error, "dropped a backfilled event"),
        }
    }
    // Newest first: by depth, then by id for a stable order among equals.
    events.sort_by(|(a, pa), (b, pb)| {
        pb.depth
            .cmp(&pa.depth)
            .then_with(|| b.event_id.cmp(&a.event_id))
    });
    let new = events
        .iter()
        .filter(|(stored, _)| stored.event_id != oldest)
        .count();
    // A server with nothing before the oldest event has no more to give.
    let complete = reached_create || new == 0;
    let kept = services
        .timeline
        .keep_history(
            room_id,
            events.into_iter().map(|(stored, _)| stored).collect(),
            outliers_stored,
            complete,
        )
        .await?;
    tracing::info!(%room_id, %server, kept, complete, "fetched history from another server");
    Ok(kept)
}

/// Checks one event of the room sent by another server (hashes, signatures); `None` for an
/// event of another room.
async fn check(
    services: &Services,
    room_id: &RoomId,
    version: &ruma::RoomVersionId,
    json: &str,
) -> Result<Option<(StoredPdu, Pdu)>> {
    let object: CanonicalJsonObject = serde_json::from_str(json)
        .map_err(|e| Error::bad_json(format!("an event that is not JSON: {e}")))?;
    let checked = services
        .federation
        .check_pdu(&services.outbound, &services.server_keys, version, object)
        .await?;
    let stored = StoredPdu {
        event_id: checked.event_id,
        room_id: room_id.to_owned(),
        pdu: checked.pdu,
        transaction: None,
    };
    let parsed = Pdu::from_stored(&stored)?;
    // Before room version 12 the room id is in the event; from 12 the create event has none,
    // and its id is the room's.
    let of_room = match &parsed.room_id {
        Some(id) => id == room_id,
        None => {
            parsed.kind == TimelineEventType::RoomCreate
                && parsed.event_id.as_str()[1..] == room_id.as_str()[1..]
        }
    };
    if !of_room {
        return Ok(None);
    }
    Ok(Some((stored, parsed)))
}

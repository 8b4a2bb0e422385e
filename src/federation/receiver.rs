//! Events other servers send in transactions (`PUT /send/{txnId}`): each PDU is checked (size,
//! format, hashes, signatures: [`super::intake`]) and, in a room this server is in, added to
//! the room if it passes the authorization rules. A PDU for a room this server is not in, or
//! one that fails, is answered with an error for that PDU alone; the rest of the transaction
//! goes on. A PDU that follows events this server does not have (its server sent only its
//! latest after an outage, or one was lost) has the gap filled first, from the sending
//! server (`POST /get_missing_events`).

use ruma::api::federation::event::get_missing_events;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, OwnedRoomId, RoomId, ServerName,
};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::rooms::timeline::RoomRecord;
use crate::services::Services;

/// Most events fetched to fill one gap; a longer gap leaves the PDU refused.
const MAX_GAP: u32 = 50;

/// The id a PDU says it has is known only once it is checked; before, the id it would get
/// names it in the answer if it can be worked out.
pub async fn receive_pdu(
    services: &Services,
    origin: &ServerName,
    pdu: &RawValue,
) -> (Option<OwnedEventId>, Result<()>) {
    let object: CanonicalJsonObject = match serde_json::from_str(pdu.get()) {
        Ok(object) => object,
        Err(e) => return (None, Err(Error::bad_json(format!("Not a PDU: {e}")))),
    };
    let room_id = match object.get("room_id").and_then(|v| v.as_str()) {
        Some(room) => match OwnedRoomId::try_from(room) {
            Ok(room) => room,
            Err(_) => return (None, Err(Error::bad_json("The PDU's room id is invalid"))),
        },
        None => return (None, Err(Error::bad_json("The PDU has no room id"))),
    };
    let record = match services.timeline.room(&room_id) {
        Ok(Some(record)) => record,
        Ok(None) => {
            return (
                None,
                Err(Error::not_found("This server is not in that room")),
            );
        }
        Err(e) => return (None, Err(e)),
    };
    if let Err(e) = services.timeline.refuse_if_denied(&room_id, origin) {
        return (None, Err(e));
    }
    let checked = match services
        .federation
        .check_pdu(
            &services.outbound,
            &services.server_keys,
            &record.version,
            object,
        )
        .await
    {
        Ok(checked) => checked,
        Err(e) => return (None, Err(e)),
    };
    let event_id = checked.event_id.clone();
    if has_unknown_prev(services, &checked.pdu)
        && let Err(error) = fill_gap(services, origin, &room_id, &record, &event_id).await
    {
        tracing::info!(%room_id, %origin, %error, "filling a gap before an event failed");
    }
    let mut draft = services.timeline.draft();
    let result = match draft
        .receive(&room_id, checked.event_id, checked.pdu, false)
        .await
    {
        Ok(_) => draft.commit(),
        Err(e) => Err(e),
    };
    (Some(event_id), result)
}

/// Whether an event names a previous event this server does not have in the room's timeline.
fn has_unknown_prev(services: &Services, pdu: &CanonicalJsonObject) -> bool {
    let Some(CanonicalJsonValue::Array(prev)) = pdu.get("prev_events") else {
        return false;
    };
    prev.iter().any(|id| match id {
        CanonicalJsonValue::String(id) => <&ruma::EventId>::try_from(id.as_str())
            .ok()
            .is_none_or(|id| services.timeline.position(id).ok().flatten().is_none()),
        _ => true,
    })
}

/// Fetches the events between the room's extremities here and `event_id` from `origin`, and
/// adds them oldest first (each checked like any PDU).
async fn fill_gap(
    services: &Services,
    origin: &ServerName,
    room_id: &RoomId,
    record: &RoomRecord,
    event_id: &ruma::EventId,
) -> Result<()> {
    let mut request = get_missing_events::v1::Request::new(
        room_id.to_owned(),
        record.extremities.clone(),
        vec![event_id.to_owned()],
    );
    request.limit = MAX_GAP.into();
    let answer = services
        .federation
        .client
        .send(&services.outbound, origin, request)
        .await?;
    let mut events = Vec::new();
    for raw in answer.events.iter().take(MAX_GAP as usize) {
        let object: CanonicalJsonObject = serde_json::from_str(raw.get())
            .map_err(|e| Error::bad_json(format!("Not a PDU: {e}")))?;
        let checked = services
            .federation
            .check_pdu(
                &services.outbound,
                &services.server_keys,
                &record.version,
                object,
            )
            .await?;
        let depth = match checked.pdu.get("depth") {
            Some(CanonicalJsonValue::Integer(depth)) => i64::from(*depth),
            _ => 0,
        };
        events.push((depth, checked));
    }
    events.sort_by_key(|(depth, _)| *depth);
    let mut added = 0;
    for (_, checked) in events {
        if checked.event_id == event_id || services.timeline.get(&checked.event_id)?.is_some() {
            continue;
        }
        let id = checked.event_id.clone();
        let mut draft = services.timeline.draft();
        match draft
            .receive(room_id, checked.event_id, checked.pdu, false)
            .await
        {
            Ok(_) => {
                draft.commit()?;
                added += 1;
            }
            Err(error) => {
                tracing::info!(%room_id, %origin, event_id = %id, %error, "refused an event of a gap")
            }
        }
    }
    tracing::info!(%room_id, %origin, added, "filled a gap before an event");
    Ok(())
}

//! Events other servers send in transactions (`PUT /send/{txnId}`): each PDU is checked (size,
//! format, hashes, signatures: [`super::intake`]) and, in a room this server is in, added to
//! the room if it passes the authorization rules. A PDU for a room this server is not in, or
//! one that fails, is answered with an error for that PDU alone; the rest of the transaction
//! goes on.

use ruma::{CanonicalJsonObject, OwnedEventId, OwnedRoomId};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::services::Services;

/// The id a PDU says it has is known only once it is checked; before, the id it would get
/// names it in the answer if it can be worked out.
pub async fn receive_pdu(
    services: &Services,
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

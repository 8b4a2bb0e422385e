//! Inviting a user of another server: the invite event, made and signed here, goes to the
//! invitee's server (`PUT /_matrix/federation/v2/invite`) with a few of the room's state events
//! (what its client shows of the invite: name, topic, avatar, join rules, who invites), and
//! comes back signed by that server too. Only then is it added to the room.

use ruma::api::federation::membership::{RawStrippedState, create_invite};
use ruma::{CanonicalJsonObject, RoomVersionId, UserId};

use crate::error::{Error, Result};
use crate::rooms::pdu::StoredPdu;
use crate::services::Services;

/// Has the invitee's server sign `invite` (of a room of `version`); returns the event as it
/// came back.
pub async fn countersign(
    services: &Services,
    invite: &StoredPdu,
    version: RoomVersionId,
    invitee: &UserId,
) -> Result<CanonicalJsonObject> {
    let server = invitee.server_name();
    services.federation.check_talks_to(server)?;
    let record = services
        .timeline
        .room(&invite.room_id)?
        .ok_or_else(|| Error::not_found("Unknown room"))?;
    let mut state = Vec::new();
    let sender = invite.to_client_event()["sender"]
        .as_str()
        .map(str::to_owned);
    for (kind, key) in crate::rooms::state::INVITE_STATE_TYPES
        .iter()
        .map(|kind| (*kind, String::new()))
        .chain(sender.map(|sender| ("m.room.member", sender)))
    {
        if let Some(event) = services.timeline.state_event(record.short, kind, &key)? {
            let raw = serde_json::value::to_raw_value(&event.pdu)
                .map_err(|e| Error::internal(format!("serialising state: {e}")))?;
            state.push(RawStrippedState::Pdu(raw));
        }
    }
    let event = serde_json::value::to_raw_value(&invite.pdu)
        .map_err(|e| Error::internal(format!("serialising the invite: {e}")))?;
    let request = create_invite::v2::Request::new(
        invite.room_id.clone(),
        invite.event_id.clone(),
        version,
        event,
        state,
    );
    let answer = services
        .federation
        .client
        .send(&services.outbound, server, request)
        .await?;
    serde_json::from_str(answer.event.get()).map_err(|e| {
        Error::new(
            http::StatusCode::BAD_GATEWAY,
            ruma::api::error::ErrorKind::Unknown,
            format!("{server} answered the invite with no event: {e}"),
        )
    })
}

//! Receipts and read markers.

use std::sync::Arc;

use ruma::api::client::read_marker::set_read_marker;
use ruma::api::client::receipt::create_receipt::{self, v3::ReceiptType};
use ruma::{EventId, RoomId, UserId};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::receipts::UNTHREADED;
use crate::services::Services;

/// The room's short id, if the user is joined and the event is one of the room's.
fn check(services: &Services, room_id: &RoomId, user: &UserId, event_id: &EventId) -> Result<u64> {
    let short = super::rooms::require_joined(services, room_id, user)?;
    match services.timeline.position(event_id)? {
        Some((s, _)) if s == short => Ok(short),
        _ => Err(Error::not_found("No such event in this room")),
    }
}

fn set_fully_read(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    event_id: &EventId,
) -> Result<()> {
    let content = serde_json::value::to_raw_value(&serde_json::json!({"event_id": event_id}))
        .map_err(|e| Error::internal(e.to_string()))?;
    services
        .account_data
        .set(user, Some(room_id), "m.fully_read", content)
        .map(drop)
}

/// A public read receipt goes to the appservices that hear of the room and to the room's
/// other servers.
fn tell_public_receipt(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    event_id: &EventId,
    thread: Option<&str>,
) -> Result<()> {
    crate::appservice::ephemeral::receipt(services, room_id, user, event_id, thread)?;
    crate::federation::edu::receipt(services, room_id, user, event_id, thread)
}

/// `POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}`
pub async fn receipt(
    services: Arc<Services>,
    req: Ruma<create_receipt::v3::Request>,
) -> Result<create_receipt::v3::Response> {
    let user = req.user_id()?;
    let b = &req.body;
    let short = check(&services, &b.room_id, user, &b.event_id)?;
    let receipt_type = match &b.receipt_type {
        ReceiptType::FullyRead => {
            set_fully_read(&services, &b.room_id, user, &b.event_id)?;
            return Ok(create_receipt::v3::Response::new());
        }
        ReceiptType::Read => "m.read",
        ReceiptType::ReadPrivate => "m.read.private",
        other => {
            return Err(Error::invalid_param(format!(
                "Unknown receipt type {other}"
            )));
        }
    };
    let thread = b.thread.as_str().unwrap_or(UNTHREADED);
    services.receipts.set(
        &services.timeline,
        &b.room_id,
        short,
        user,
        receipt_type,
        thread,
        &b.event_id,
    )?;
    if receipt_type == "m.read" {
        tell_public_receipt(&services, &b.room_id, user, &b.event_id, b.thread.as_str())?;
    }
    Ok(create_receipt::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/read_markers`
pub async fn read_markers(
    services: Arc<Services>,
    req: Ruma<set_read_marker::v3::Request>,
) -> Result<set_read_marker::v3::Response> {
    let user = req.user_id()?;
    let b = &req.body;
    if let Some(event_id) = &b.fully_read {
        check(&services, &b.room_id, user, event_id)?;
        set_fully_read(&services, &b.room_id, user, event_id)?;
    }
    for (receipt_type, event_id) in [
        ("m.read", &b.read_receipt),
        ("m.read.private", &b.private_read_receipt),
    ] {
        if let Some(event_id) = event_id {
            let short = check(&services, &b.room_id, user, event_id)?;
            services.receipts.set(
                &services.timeline,
                &b.room_id,
                short,
                user,
                receipt_type,
                UNTHREADED,
                event_id,
            )?;
            if receipt_type == "m.read" {
                tell_public_receipt(&services, &b.room_id, user, event_id, None)?;
            }
        }
    }
    Ok(set_read_marker::v3::Response::new())
}

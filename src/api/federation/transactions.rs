//! `PUT /_matrix/federation/v1/send/{txnId}`: another server's transaction of PDUs and EDUs.
//! Sending the same transaction again changes nothing: every PDU already taken is answered
//! as taken again, and typing notices and receipts set what they set already.

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::api::federation::transactions::send_transaction_message;

use super::origin;
use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::federation::receiver;
use crate::federation::{MAX_EDUS, MAX_PDUS};
use crate::services::Services;

pub async fn send(
    services: Arc<Services>,
    req: Ruma<send_transaction_message::v1::Request>,
) -> Result<send_transaction_message::v1::Response> {
    let origin = origin(&req)?;
    let body = &req.body;
    if body.origin != origin {
        return Err(Error::forbidden(
            "The transaction's origin is not the requesting server",
        ));
    }
    if body.pdus.len() > MAX_PDUS || body.edus.len() > MAX_EDUS {
        return Err(Error::bad_json(format!(
            "A transaction holds at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs"
        )));
    }
    let mut results = BTreeMap::new();
    for pdu in &body.pdus {
        let (event_id, result) = receiver::receive_pdu(&services, origin, pdu).await;
        if let Err(error) = &result {
            tracing::info!(%origin, event_id = ?event_id, %error, "refused a PDU");
        }
        if let Some(event_id) = event_id {
            results.insert(event_id, result.map_err(|e| e.to_string()));
        }
    }
    crate::federation::edu::receive(&services, origin, &body.edus);
    Ok(send_transaction_message::v1::Response::new(results))
}

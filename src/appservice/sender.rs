//! Delivering events to appservices: each appservice's queue (room events, and to-device
//! messages to its users when it asked for them) is sent in order, in transactions of at
//! most 100 entries (`PUT /_matrix/app/v1/transactions/{txnId}`). A
//! transaction is recorded before it is first sent, so every retry, even after a restart,
//! sends the same transaction id with the same events; its entries leave the queue only
//! after the appservice answered 2xx. Failures back off from 1 s to 5 min.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Appservice;
use crate::error::{Error, Result};
use crate::services::Services;
use crate::storage::{Batch, Direction, KeyRange, StoreExt, Table, keys};

/// Events per transaction (the spec's guidance for appservices).
pub const MAX_EVENTS: usize = 100;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Looks at the queue this often even without a wake-up.
const IDLE: Duration = Duration::from_secs(30);

/// The transaction being delivered: its id (the first queued count in it, unique per
/// appservice) and its last queued count.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct InFlight {
    pub txn_id: u64,
    /// The last queued count in it; 0 for a transaction of ephemeral events only.
    pub through: u64,
    /// Its ephemeral events, kept so that a retry sends them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ephemeral: Vec<Value>,
}

/// What one queue entry (keyed by its count) holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Queued {
    /// A room event at the key's count, in the room with this short id.
    Event(u64),
    /// The messages of one to-device send to the appservice's users (MSC4203).
    ToDevice(Vec<Value>),
}

impl Queued {
    /// An event is its room's 8-byte short id; to-device messages a JSON array (which starts
    /// with `[`, a byte no short id below 2^62 starts with).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Queued::Event(short) => keys::u64_be(*short).to_vec(),
            Queued::ToDevice(messages) => {
                serde_json::to_vec(messages).expect("JSON values serialise")
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Queued> {
        if bytes.first() == Some(&b'[') {
            return serde_json::from_slice(bytes)
                .map(Queued::ToDevice)
                .map_err(|e| Error::internal(format!("corrupt appservice queue entry: {e}")));
        }
        keys::trailing_u64(bytes)
            .filter(|_| bytes.len() == 8)
            .map(Queued::Event)
            .ok_or_else(|| Error::internal("corrupt appservice queue entry"))
    }
}

/// Starts one delivery loop per appservice that has a URL.
pub fn spawn(services: &Arc<Services>) {
    for appservice in services.appservices.all() {
        if appservice.registration.url.is_some() {
            tokio::spawn(deliver(services.clone(), appservice.clone()));
        }
    }
}

async fn deliver(services: Arc<Services>, appservice: Arc<Appservice>) {
    let wake = services.watchers.worker();
    let mut backoff = FIRST_BACKOFF;
    loop {
        match send_next(&services, &appservice).await {
            Ok(true) => backoff = FIRST_BACKOFF,
            Ok(false) => {
                backoff = FIRST_BACKOFF;
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = appservice.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE) => {}
                }
            }
            Err(error) => {
                tracing::warn!(appservice = appservice.id(), %error, retry_in_ms = backoff.as_millis() as u64,
                    "appservice transaction failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The transaction to send next: the one under way, or a new one of the queue's first
/// entries and the ephemeral events waiting (recorded before it is sent). `None` when there
/// is nothing to send.
pub fn next_transaction(services: &Services, appservice: &Appservice) -> Result<Option<InFlight>> {
    let id = appservice.id();
    if let Some(inflight) = services
        .store
        .get_json(Table::AppserviceTransactions, id.as_bytes())?
    {
        return Ok(Some(inflight));
    }
    let counts: Vec<u64> = services
        .store
        .scan(
            Table::AppserviceQueue,
            KeyRange::prefix(&keys::appservice_queue_of(id)),
            Direction::Forward,
        )?
        .take(MAX_EVENTS)
        .map(|entry| entry.map(|(key, _)| keys::trailing_u64(&key).unwrap_or(0)))
        .collect::<Result<_>>()?;
    let ephemeral = appservice.take_ephemeral();
    let inflight = match (counts.first(), counts.last()) {
        (Some(first), Some(last)) => InFlight {
            txn_id: *first,
            through: *last,
            ephemeral,
        },
        // Ephemeral events alone: an id of their own, never a queued event's count.
        _ if !ephemeral.is_empty() => InFlight {
            txn_id: services.store.next_count()?,
            through: 0,
            ephemeral,
        },
        _ => return Ok(None),
    };
    let mut batch = Batch::new();
    batch.put_json(Table::AppserviceTransactions, id.as_bytes(), &inflight)?;
    services.store.write(batch)?;
    Ok(Some(inflight))
}

/// The queue entries of a transaction, and its body.
fn transaction_body(
    services: &Services,
    appservice: &str,
    inflight: &InFlight,
) -> Result<(Vec<Vec<u8>>, Value)> {
    let body = |events: Vec<Value>, to_device: Vec<Value>| {
        let mut body = json!({
            "events": events,
            "ephemeral": inflight.ephemeral,
            "de.sorunome.msc2409.ephemeral": inflight.ephemeral,
        });
        if !to_device.is_empty() {
            body["de.sorunome.msc2409.to_device"] = to_device.into();
        }
        body
    };
    if inflight.through == 0 {
        return Ok((Vec::new(), body(Vec::new(), Vec::new())));
    }
    let range = KeyRange::between(
        &keys::appservice_queue_of(appservice),
        &keys::appservice_queue(appservice, inflight.through.saturating_add(1)),
    );
    let mut entries = Vec::new();
    let mut events = Vec::new();
    let mut to_device = Vec::new();
    for entry in services
        .store
        .scan(Table::AppserviceQueue, range, Direction::Forward)?
    {
        let (key, value) = entry?;
        let count = keys::trailing_u64(&key).unwrap_or(0);
        let short = match Queued::decode(&value) {
            Ok(Queued::Event(short)) => short,
            Ok(Queued::ToDevice(messages)) => {
                to_device.extend(messages);
                entries.push(key);
                continue;
            }
            // Left out rather than holding the queue up for ever.
            Err(error) => {
                tracing::error!(appservice, count, %error, "skipping a queue entry");
                entries.push(key);
                continue;
            }
        };
        // An event purged since it was queued is left out.
        if let Some(event) = services.timeline.event_at(short, count)? {
            // Without its age, so that a retried transaction is the same, byte for byte.
            let mut event = event.to_client_event();
            if let Some(unsigned) = event.get_mut("unsigned").and_then(Value::as_object_mut) {
                unsigned.remove("age");
                if unsigned.is_empty() {
                    event.as_object_mut().map(|e| e.remove("unsigned"));
                }
            }
            events.push(event);
        }
        entries.push(key);
    }
    Ok((entries, body(events, to_device)))
}

/// Sends the next transaction; `false` when there was nothing to send.
async fn send_next(services: &Services, appservice: &Appservice) -> Result<bool> {
    let id = appservice.id();
    let Some(inflight) = next_transaction(services, appservice)? else {
        return Ok(false);
    };
    let (entries, body) = transaction_body(services, id, &inflight)?;
    let url = format!(
        "{}/_matrix/app/v1/transactions/{}",
        appservice.registration.url.as_deref().unwrap_or_default(),
        inflight.txn_id
    );
    let bytes =
        serde_json::to_vec(&body).map_err(|e| Error::internal(format!("transaction: {e}")))?;
    let response = services
        .appservices
        .http
        .put(&url)
        .bearer_auth(&appservice.registration.hs_token)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(bytes)
        .send()
        .await
        .map_err(|e| Error::internal(format!("sending to {id}: {e}")))?;
    if !response.status().is_success() {
        return Err(Error::internal(format!(
            "{id} answered {} to transaction {}",
            response.status(),
            inflight.txn_id
        )));
    }
    let mut batch = Batch::new();
    for key in entries {
        batch.delete(Table::AppserviceQueue, key);
    }
    batch.delete(Table::AppserviceTransactions, id.as_bytes());
    services.store.write(batch)?;
    tracing::debug!(
        appservice = id,
        txn_id = inflight.txn_id,
        "appservice transaction delivered"
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_entries_read_back_as_written() {
        for queued in [
            Queued::Event(0),
            Queued::Event(7),
            Queued::Event(u64::from(u32::MAX) << 20),
            Queued::ToDevice(vec![json!({"type": "m.dummy", "to_user_id": "@a:x"})]),
        ] {
            assert_eq!(Queued::decode(&queued.encode()).unwrap(), queued);
        }
        assert!(Queued::decode(b"").is_err());
        assert!(Queued::decode(b"[not json").is_err());
        assert!(Queued::decode(&[1, 2, 3]).is_err());
    }
}

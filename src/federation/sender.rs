//! Sending events to other servers: each destination has a queue in the store, filled in the
//! same commit as the event (so a crash loses nothing), and a task that sends it in order as
//! transactions of at most 50 entries (`PUT /_matrix/federation/v1/send/{txnId}`); typing
//! notices and receipts (EDUs) go through the same queues. A transaction is recorded before it
//! is first sent, so a retry, even after a restart, has the same id and
//! events; its entries leave the queue only once the destination answered 200. A destination
//! that fails is retried with a growing delay (1 s up to an hour), and at once when it
//! contacts this server; a destination back from an outage gets everything it missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ruma::api::federation::transactions::send_transaction_message;
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId, ServerName};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::MAX_PDUS;
use crate::error::{Error, Result};
use crate::services::Services;
use crate::storage::{Batch, Direction, KeyRange, StoreExt, Table, keys};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The transaction being delivered to a destination: its id (the first queued count in it)
/// and its last queued count.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
struct InFlight {
    txn_id: u64,
    through: u64,
}

/// The running senders, one per destination with something queued.
#[derive(Default)]
pub struct Senders {
    running: Mutex<HashMap<OwnedServerName, Arc<Notify>>>,
}

impl Senders {
    /// `server` contacted this server: if its sender is waiting out a failure, it tries again
    /// now.
    pub fn contacted(&self, server: &ServerName) {
        if let Some(wake) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(server)
        {
            wake.notify_one();
        }
    }
}

/// Queues the event at `count` (of the room `short`) for `destination`, in `batch`. An event
/// is queued as its room's 8-byte short id; an EDU as its JSON object (which starts with `{`,
/// a byte no short id below 2^62 starts with).
pub fn queue(batch: &mut Batch, destination: &ServerName, short: u64, count: u64) {
    batch.put(
        Table::FederationQueue,
        keys::federation_queue(destination.as_str(), count),
        keys::u64_be(short).to_vec(),
    );
}

/// Queues an EDU for `destination` at `count` (a count of its own), in `batch`.
pub fn queue_edu(batch: &mut Batch, destination: &ServerName, count: u64, edu: &serde_json::Value) {
    batch.put(
        Table::FederationQueue,
        keys::federation_queue(destination.as_str(), count),
        serde_json::to_vec(edu).expect("JSON values serialise"),
    );
}

/// Starts a sender for every destination with a queue, now and after every commit that may
/// have filled one.
pub fn spawn(services: &Arc<Services>) {
    let services = services.clone();
    tokio::spawn(async move {
        loop {
            if let Err(error) = start_senders(&services) {
                tracing::error!(%error, "reading the federation queues");
            }
            tokio::select! {
                _ = services.watchers.federation_queued() => {}
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
        }
    });
}

/// The destinations with something queued.
fn destinations(services: &Services) -> Result<Vec<OwnedServerName>> {
    let mut found = Vec::new();
    let mut lower = Vec::new();
    loop {
        let range = KeyRange {
            lower: lower.clone(),
            upper: None,
        };
        let Some(entry) = services
            .store
            .scan(Table::FederationQueue, range, Direction::Forward)?
            .next()
        else {
            return Ok(found);
        };
        let (key, _) = entry?;
        let name_end = key
            .iter()
            .position(|b| *b == keys::SEP)
            .unwrap_or(key.len());
        let prefix = &key[..name_end + 1];
        match std::str::from_utf8(&key[..name_end])
            .ok()
            .and_then(|name| OwnedServerName::try_from(name).ok())
        {
            Some(server) => found.push(server),
            None => tracing::error!("a federation queue key names no server"),
        }
        match keys::prefix_successor(prefix) {
            Some(next) => lower = next,
            None => return Ok(found),
        }
    }
}

fn start_senders(services: &Arc<Services>) -> Result<()> {
    for destination in destinations(services)? {
        let mut running = services
            .federation
            .senders
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // A running sender sends what was queued after it started too (and one waiting out
        // a failure keeps waiting).
        if running.contains_key(&destination) {
            continue;
        }
        let wake = Arc::new(Notify::new());
        running.insert(destination.clone(), wake.clone());
        tokio::spawn(deliver(services.clone(), destination, wake));
    }
    Ok(())
}

/// Sends `destination` its queue until it is empty, then ends.
async fn deliver(services: Arc<Services>, destination: OwnedServerName, wake: Arc<Notify>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match send_next(&services, &destination).await {
            Ok(true) => backoff = FIRST_BACKOFF,
            Ok(false) => {
                let mut running = services
                    .federation
                    .senders
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                // Looked at again under the lock: whatever is queued from now on starts a
                // new sender.
                match queue_is_empty(&services, &destination) {
                    Ok(true) => {
                        running.remove(&destination);
                        return;
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::error!(%destination, %error, "reading a federation queue")
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%destination, %error, retry_in_s = backoff.as_secs(),
                    "federation transaction failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = wake.notified() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn queue_is_empty(services: &Services, destination: &ServerName) -> Result<bool> {
    Ok(services
        .store
        .scan(
            Table::FederationQueue,
            KeyRange::prefix(&keys::federation_queue_of(destination.as_str())),
            Direction::Forward,
        )?
        .next()
        .is_none())
}

fn transaction_key(destination: &ServerName) -> &[u8] {
    destination.as_bytes()
}

/// The transaction to send next: the one under way, or a new one of the queue's first
/// entries (recorded before it is sent).
fn next_transaction(services: &Services, destination: &ServerName) -> Result<Option<InFlight>> {
    if let Some(inflight) = services
        .store
        .get_json(Table::FederationTransactions, transaction_key(destination))?
    {
        return Ok(Some(inflight));
    }
    let counts: Vec<u64> = services
        .store
        .scan(
            Table::FederationQueue,
            KeyRange::prefix(&keys::federation_queue_of(destination.as_str())),
            Direction::Forward,
        )?
        .take(MAX_PDUS)
        .map(|entry| entry.map(|(key, _)| keys::trailing_u64(&key).unwrap_or(0)))
        .collect::<Result<_>>()?;
    let (Some(first), Some(last)) = (counts.first(), counts.last()) else {
        return Ok(None);
    };
    let inflight = InFlight {
        txn_id: *first,
        through: *last,
    };
    let mut batch = Batch::new();
    batch.put_json(
        Table::FederationTransactions,
        transaction_key(destination).to_vec(),
        &inflight,
    )?;
    services.store.write(batch)?;
    Ok(Some(inflight))
}

/// Sends the next transaction; `false` when there was nothing to send.
async fn send_next(services: &Services, destination: &ServerName) -> Result<bool> {
    let Some(inflight) = next_transaction(services, destination)? else {
        return Ok(false);
    };
    // A server this one no longer talks to (federation turned off, or off the allowlist)
    // is not sent what was queued for it.
    let allowed = services.federation.talks_to(destination);
    let range = KeyRange::between(
        &keys::federation_queue_of(destination.as_str()),
        &keys::federation_queue(destination.as_str(), inflight.through.saturating_add(1)),
    );
    let mut entries = Vec::new();
    let mut pdus = Vec::new();
    let mut edus = Vec::new();
    for entry in services
        .store
        .scan(Table::FederationQueue, range, Direction::Forward)?
    {
        let (key, value) = entry?;
        let count = keys::trailing_u64(&key).unwrap_or(0);
        entries.push(key);
        if value.first() == Some(&b'{') {
            match serde_json::value::RawValue::from_string(String::from_utf8_lossy(&value).into()) {
                Ok(edu) => edus.push(Raw::from_json(edu)),
                Err(error) => tracing::error!(%destination, count, %error, "skipping a queued EDU"),
            }
            continue;
        }
        // An event purged since it was queued is left out.
        if value.len() == 8
            && let Some(short) = keys::trailing_u64(&value)
            && let Some(event) = services.timeline.event_at(short, count)?
        {
            pdus.push(
                serde_json::value::to_raw_value(&event.pdu)
                    .map_err(|e| Error::internal(format!("serialising a PDU: {e}")))?,
            );
        }
    }
    if !allowed {
        tracing::info!(%destination, events = entries.len(), "dropping events queued for a server not talked to");
        return forget(services, destination, entries).map(|()| true);
    }
    let mut request = send_transaction_message::v1::Request::new(
        OwnedTransactionId::from(inflight.txn_id.to_string()),
        services.config.server_name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
    );
    request.pdus = pdus;
    request.edus = edus;
    let response = services
        .federation
        .client
        .send(&services.outbound, destination, request)
        .await?;
    for (event_id, result) in &response.pdus {
        if let Err(error) = result {
            tracing::info!(%destination, %event_id, %error, "the destination refused an event");
        }
    }
    forget(services, destination, entries)?;
    tracing::debug!(%destination, txn_id = inflight.txn_id, "federation transaction delivered");
    Ok(true)
}

/// Takes a transaction's entries out of the queue, and the transaction with them.
fn forget(services: &Services, destination: &ServerName, entries: Vec<Vec<u8>>) -> Result<()> {
    let mut batch = Batch::new();
    for key in entries {
        batch.delete(Table::FederationQueue, key);
    }
    batch.delete(
        Table::FederationTransactions,
        transaction_key(destination).to_vec(),
    );
    services.store.write(batch)
}

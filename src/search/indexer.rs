//! The indexer: drains the search outbox into the backend in batches. An entry leaves the
//! outbox only after the backend acknowledged the batch it was in; after a crash or a backend
//! outage the same entries are sent again, and a document replaces its earlier copy, so every
//! event ends up indexed exactly once.

use std::sync::Arc;
use std::time::Duration;

use super::document::Document;
use super::index::Change;
use super::outbox::{self, Job};
use crate::error::Result;
use crate::services::Services;

/// Outbox entries sent to the backend at once.
const BATCH: usize = 1000;
/// After a batch that did not fill, wait this long for more: fewer, larger commits (each
/// commit of the embedded index syncs several files, which competes with the sends' own
/// syncs), at the price of that much indexing lag.
const GATHER: Duration = Duration::from_millis(250);
/// Looks at the outbox this often even without a wake-up.
const IDLE: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Sends up to `limit` outbox entries after `cursor` to the backend and moves the cursor past
/// them; returns how many were done.
pub async fn index_pending(
    services: &Services,
    cursor: &mut Option<Vec<u8>>,
    limit: usize,
) -> Result<usize> {
    let jobs = outbox::pending(&*services.store, cursor.as_deref(), limit)?;
    if jobs.is_empty() {
        return Ok(0);
    }
    let mut changes = Vec::with_capacity(jobs.len());
    for (_, job) in &jobs {
        match job {
            Job::Index { short, count } => {
                // An event that is gone or no longer searchable (redacted since) leaves no
                // document behind.
                if let Some(event) = services.timeline.event_at(*short, *count)? {
                    changes.push(match Document::of(*count, &event) {
                        Some(document) => Change::Put(Box::new(document)),
                        None => Change::Remove(event.event_id.clone()),
                    });
                }
            }
            Job::Remove { event_id } => changes.push(Change::Remove(event_id.clone())),
        }
    }
    services.search.index().apply(changes).await?;
    let done = jobs.len();
    let last = jobs.last().map(|(key, _)| key.clone());
    outbox::done(&*services.store, jobs.into_iter().map(|(key, _)| key))?;
    *cursor = last;
    Ok(done)
}

/// Runs for the life of the server.
pub async fn run(services: Arc<Services>) {
    let signal = services.search.signal.clone();
    let mut backoff = Duration::from_secs(1);
    while let Err(error) = services.search.index().prepare().await {
        tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "search backend not ready");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    backoff = Duration::from_secs(1);
    let mut cursor = None;
    loop {
        match index_pending(&services, &mut cursor, BATCH).await {
            Ok(done) => {
                backoff = Duration::from_secs(1);
                if done == 0 {
                    let _ = tokio::time::timeout(IDLE, signal.notified()).await;
                    tokio::time::sleep(GATHER).await;
                } else if done < BATCH {
                    tokio::time::sleep(GATHER).await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "search indexing failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Rebuilds the index from the timeline (`sori search reindex`, with the server stopped):
/// empties the backend, queues every searchable event and indexes them all. Returns how many
/// outbox entries were indexed.
pub async fn reindex(services: &Services, progress: impl Fn(usize)) -> Result<usize> {
    services.search.index().prepare().await?;
    services.search.index().clear().await?;
    outbox::queue_all(&*services.store)?;
    let mut total = 0;
    let mut cursor = None;
    loop {
        let done = index_pending(services, &mut cursor, BATCH * 10).await?;
        if done == 0 {
            return Ok(total);
        }
        total += done;
        progress(total);
    }
}

//! The push sender: one delivery loop per pusher with queued work, so each gateway gets its
//! notifications in order and a slow or failing gateway holds up only its own pushers. A
//! notification leaves the queue only once the gateway answered it; failures are retried
//! with exponential backoff, and a pusher failing for a day is disabled.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use super::gateway::{self, Answer};
use super::queue::{self, Item};
use crate::error::Result;
use crate::services::Services;

/// First wait after a failed delivery; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// A pusher whose deliveries have failed this long is disabled.
const GIVE_UP_AFTER_MS: u64 = 24 * 60 * 60 * 1000;
/// Requests to gateways under way at once, over all pushers.
const CONCURRENT_REQUESTS: usize = 64;
/// Queue entries read at once.
const BATCH: usize = 100;

/// Which pushers have work, and which have a delivery loop running.
#[derive(Default)]
pub struct Work {
    state: Mutex<WorkState>,
    signal: Notify,
}

#[derive(Default)]
struct WorkState {
    waiting: HashSet<u64>,
    running: HashSet<u64>,
    /// Running loops that must look at their queue again before they end.
    again: HashSet<u64>,
}

impl Work {
    fn state(&self) -> std::sync::MutexGuard<'_, WorkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Work was committed for these pushers.
    pub fn queued(&self, ids: impl IntoIterator<Item = u64>) {
        let mut ids = ids.into_iter().peekable();
        if ids.peek().is_none() {
            return;
        }
        {
            let mut state = self.state();
            for id in ids {
                if state.running.contains(&id) {
                    state.again.insert(id);
                } else {
                    state.waiting.insert(id);
                }
            }
        }
        self.signal.notify_one();
    }

    /// The pushers whose loops are to start now.
    fn start(&self) -> Vec<u64> {
        let mut state = self.state();
        let ids: Vec<u64> = state.waiting.drain().collect();
        state.running.extend(ids.iter().copied());
        ids
    }

    /// A loop found its queue empty: it ends, unless work came in since it looked.
    fn finish(&self, id: u64) -> bool {
        let mut state = self.state();
        if state.again.remove(&id) {
            true
        } else {
            state.running.remove(&id);
            false
        }
    }
}

/// The wait after `backoff`.
pub fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

/// Whether a pusher failing since `since` (ms) is to be given up at `now`.
pub fn gives_up(since: u64, now: u64) -> bool {
    now.saturating_sub(since) >= GIVE_UP_AFTER_MS
}

/// Runs for the life of the server.
pub async fn run(services: Arc<Services>) {
    // Work left queued before a restart.
    let mut left = Vec::new();
    for id in services.pushers.ids() {
        match queue::has_pending(&*services.store, id) {
            Ok(true) => left.push(id),
            Ok(false) => {}
            Err(error) => tracing::error!(%error, pusher = id, "cannot read a push queue"),
        }
    }
    services.pushers.work.queued(left);
    let requests = Arc::new(Semaphore::new(CONCURRENT_REQUESTS));
    loop {
        for id in services.pushers.work.start() {
            tokio::spawn(drain(services.clone(), id, requests.clone()));
        }
        services.pushers.work.signal.notified().await;
    }
}

/// Delivers the pusher's queue until it is empty.
async fn drain(services: Arc<Services>, id: u64, requests: Arc<Semaphore>) {
    let mut cursor = None;
    loop {
        match deliver_queued(&services, id, &mut cursor, &requests).await {
            Ok(true) => {}
            Ok(false) => {
                if !services.pushers.work.finish(id) {
                    return;
                }
            }
            Err(error) => {
                tracing::error!(%error, pusher = id, "push delivery stopped; trying again");
                tokio::time::sleep(MAX_BACKOFF / 10).await;
            }
        }
    }
}

/// Delivers a batch of the pusher's queue; `false` when there was nothing to deliver.
async fn deliver_queued(
    services: &Services,
    id: u64,
    cursor: &mut Option<Vec<u8>>,
    requests: &Semaphore,
) -> Result<bool> {
    if services.pushers.by_id(id).is_none_or(|p| p.disabled) {
        // Work queued by a commit that raced the pusher's removal.
        let mut batch = crate::storage::Batch::new();
        queue::clear(&*services.store, &mut batch, id)?;
        services.store.write(batch)?;
        return Ok(false);
    }
    let items = queue::pending(&*services.store, id, cursor.as_deref(), BATCH)?;
    if items.is_empty() {
        return Ok(false);
    }
    let last = items.len() - 1;
    for (index, (key, item)) in items.iter().enumerate() {
        // Every notification carries the badge: a badge update followed by anything is stale.
        let stale = *item == Item::Badge && index < last;
        if !stale && !deliver(services, id, *item, requests).await? {
            return Ok(true);
        }
        queue::done(&*services.store, key)?;
        *cursor = Some(key.clone());
    }
    Ok(true)
}

/// Delivers one item, retrying until the gateway answers; `false` when the pusher went away
/// (removed, rejected by its gateway, or disabled) and its queue with it.
async fn deliver(services: &Services, id: u64, item: Item, requests: &Semaphore) -> Result<bool> {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let Some(pusher) = services.pushers.by_id(id).filter(|p| !p.disabled) else {
            return Ok(false);
        };
        let Some(body) = gateway::notification(services, &pusher, item)? else {
            return Ok(true);
        };
        let answer = {
            let _permit = requests.acquire().await;
            gateway::post(&services.outbound, &pusher, &body).await
        };
        match answer {
            Ok(Answer::Accepted) => {
                if pusher.failing_since.is_some() {
                    services.pushers.set_failing(id, None)?;
                    tracing::info!(
                        pusher = id,
                        app_id = pusher.app_id(),
                        "push gateway reachable again"
                    );
                }
                return Ok(true);
            }
            Ok(Answer::Rejected) => {
                tracing::info!(pusher = id, app_id = pusher.app_id(), user = %pusher.user_id,
                    "the push gateway rejected the pushkey; pusher removed");
                services.pushers.delete_ids(&[id])?;
                return Ok(false);
            }
            Err(reason) => {
                let now = crate::now_ms();
                let since = match pusher.failing_since {
                    Some(since) => since,
                    None => {
                        services.pushers.set_failing(id, Some(now))?;
                        now
                    }
                };
                if gives_up(since, now) {
                    tracing::warn!(pusher = id, app_id = pusher.app_id(), user = %pusher.user_id,
                        %reason, "push deliveries failed for a day; pusher disabled");
                    services.pushers.disable(id)?;
                    return Ok(false);
                }
                tracing::warn!(pusher = id, app_id = pusher.app_id(), %reason,
                    retry_in_ms = backoff.as_millis() as u64, "push delivery failed");
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_to_ten_minutes() {
        let mut backoff = FIRST_BACKOFF;
        let mut waits = vec![backoff.as_secs()];
        for _ in 0..12 {
            backoff = next_backoff(backoff);
            waits.push(backoff.as_secs());
        }
        assert_eq!(
            waits,
            vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600]
        );
    }

    #[test]
    fn a_pusher_is_given_up_after_a_day_of_failures() {
        let day = 24 * 60 * 60 * 1000;
        assert!(!gives_up(1_000, 1_000));
        assert!(!gives_up(1_000, 1_000 + day - 1));
        assert!(gives_up(1_000, 1_000 + day));
    }

    #[test]
    fn a_loop_that_finds_new_work_keeps_going() {
        let work = Work::default();
        work.queued([1, 2]);
        let mut started = work.start();
        started.sort();
        assert_eq!(started, vec![1, 2]);
        assert!(
            work.start().is_empty(),
            "running loops are not started twice"
        );
        work.queued([1]);
        assert!(work.finish(1), "work came in while it ran");
        assert!(!work.finish(1));
        assert!(!work.finish(2));
        work.queued([2]);
        assert_eq!(work.start(), vec![2], "an ended loop starts again");
    }
}

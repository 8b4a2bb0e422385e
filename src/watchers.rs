//! Wake-ups for sleeping long-polls (`/sync`): one `Notify` per user with a request waiting. A
//! request registers (enables its `Notified`) before it reads, so a change committed between
//! its read and its wait still wakes it; a request that goes away drops its handle.
//!
//! Background workers that drain an outbox (the search indexer; push and federation senders
//! later) are woken the same way after every commit that may have filled one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use ruma::{OwnedUserId, UserId};
use tokio::sync::Notify;

#[derive(Default)]
pub struct Watchers {
    users: Mutex<HashMap<OwnedUserId, Weak<Notify>>>,
    workers: Mutex<Vec<Arc<Notify>>>,
}

impl Watchers {
    /// The user's wake-up handle (shared by all of the user's waiting requests).
    pub fn watch(&self, user_id: &UserId) -> Arc<Notify> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(notify) = users.get(user_id).and_then(Weak::upgrade) {
            return notify;
        }
        // Drop the handles of requests that ended, now and then.
        if users.len() > 1024 {
            users.retain(|_, w| w.strong_count() > 0);
        }
        let notify = Arc::new(Notify::new());
        users.insert(user_id.to_owned(), Arc::downgrade(&notify));
        notify
    }

    /// Wakes every waiting request of the user.
    pub fn wake(&self, user_id: &UserId) {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(notify) = users.get(user_id).and_then(Weak::upgrade) {
            notify.notify_waiters();
        }
    }

    /// A wake-up handle for a background worker. A wake while the worker is busy is kept
    /// (one permit), so the worker looks at its outbox again before it sleeps.
    pub fn worker(&self) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(notify.clone());
        notify
    }

    /// Wakes every background worker.
    pub fn wake_workers(&self) {
        for worker in self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            worker.notify_one();
        }
    }
}

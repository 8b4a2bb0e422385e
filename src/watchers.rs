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
    /// Users with a send request under way: how many, and who waits for them to end.
    sending: Mutex<HashMap<OwnedUserId, (usize, Arc<Notify>)>>,
    /// The federation sender's: woken only by commits that queued something for another
    /// server (most commits concern local users alone, and looking at the queues costs).
    federation: Notify,
}

/// A send request under way (see [`Watchers::sending`]); ends when dropped.
pub struct Sending {
    watchers: Arc<Watchers>,
    user: OwnedUserId,
}

impl Drop for Sending {
    fn drop(&mut self) {
        let mut sending = self
            .watchers
            .sending
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((count, notify)) = sending.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                notify.notify_waiters();
                sending.remove(&self.user);
            }
        }
    }
}

impl Sending {
    /// Keeps the send under way for `extra` after the guard is dropped: for a send whose
    /// echo the client can only place once it has read the answer (see
    /// [`crate::api::client::rooms::send_message`]).
    pub fn linger(self, extra: std::time::Duration) -> Lingering {
        Lingering(Some((self, extra)))
    }
}

/// A [`Sending`] that ends a while after it is dropped.
pub struct Lingering(Option<(Sending, std::time::Duration)>);

impl Drop for Lingering {
    fn drop(&mut self) {
        if let Some((sending, extra)) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                tokio::time::sleep(extra).await;
                drop(sending);
            });
        }
    }
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

    /// Wakes the federation sender: something was queued for another server.
    pub fn wake_federation(&self) {
        self.federation.notify_one();
    }

    /// Waits for [`Watchers::wake_federation`] (a wake while nobody waits is kept).
    pub async fn federation_queued(&self) {
        self.federation.notified().await;
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

    /// Marks a send request of the user as under way until the guard is dropped (when the
    /// response has been written: see [`crate::api::hold`]). A client expects the answer to its send before the event
    /// comes back through its own `/sync`; matrix-js-sdk (Element Web) mishandles the other
    /// order in threads, and a fast server makes it common.
    pub fn sending(self: &Arc<Self>, user: &UserId) -> Sending {
        let mut sending = self.sending.lock().unwrap_or_else(|p| p.into_inner());
        sending
            .entry(user.to_owned())
            .or_insert_with(|| (0, Arc::new(Notify::new())))
            .0 += 1;
        Sending {
            watchers: self.clone(),
            user: user.to_owned(),
        }
    }

    /// Waits (at most `limit`) until none of the user's send requests is under way.
    pub async fn sends_settled(&self, user: &UserId, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notify = match self
                .sending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(user)
            {
                Some((count, notify)) if *count > 0 => notify.clone(),
                _ => return,
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // The last send may have ended between the look and the registration.
            if !self
                .sending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(user)
                .is_some_and(|(count, _)| *count > 0)
            {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_woken_long_poll_lets_the_users_own_sends_finish_first() {
        let watchers = Arc::new(Watchers::default());
        let user: OwnedUserId = "@alice:sori.test".try_into().unwrap();
        // Nobody sending: nothing to wait for.
        watchers.sends_settled(&user, Duration::from_secs(60)).await;

        let first = watchers.sending(&user);
        let second = watchers.sending(&user);
        let waiter = {
            let watchers = watchers.clone();
            let user = user.clone();
            tokio::spawn(
                async move { watchers.sends_settled(&user, Duration::from_secs(60)).await },
            )
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "two sends under way");
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one send still under way");
        drop(second);
        tokio::time::timeout(Duration::from_secs(60), waiter)
            .await
            .expect("woken when the last send ended")
            .unwrap();
        // Another user's sends are not waited for.
        let bob: OwnedUserId = "@bob:sori.test".try_into().unwrap();
        let _other = watchers.sending(&bob);
        watchers.sends_settled(&user, Duration::from_secs(60)).await;
    }
}

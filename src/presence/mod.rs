//! Presence: each user's online/unavailable/offline state and status message, in memory
//! (presence is ephemeral; after a restart everyone starts offline). Every visible change
//! bumps a serial that `/sync` tokens carry (`…_p<serial>`), so syncs send changed presence of
//! the users who share a room.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ruma::presence::PresenceState;
use ruma::{OwnedUserId, UserId};

struct Entry {
    presence: PresenceState,
    status_msg: Option<String>,
    last_active: Instant,
    /// When the user's latest `/sync` ended; `None` before the first.
    last_sync: Option<Instant>,
    /// `/sync` requests of the user running now.
    syncing: u32,
    /// Serial of the latest visible change.
    serial: u64,
    /// A user of another server: their server says when they go idle or offline.
    remote: bool,
}

/// What `GET /presence/{userId}/status` reports.
pub struct Status {
    pub presence: PresenceState,
    pub status_msg: Option<String>,
    pub last_active_ago: Option<Duration>,
    pub currently_active: Option<bool>,
}

impl Status {
    /// The `m.presence` event content.
    pub fn content(&self) -> serde_json::Value {
        let mut content = serde_json::json!({"presence": self.presence.as_str()});
        if let Some(ago) = self.last_active_ago {
            content["last_active_ago"] = (ago.as_millis() as u64).into();
        }
        if let Some(active) = self.currently_active {
            content["currently_active"] = active.into();
        }
        if let Some(msg) = &self.status_msg {
            content["status_msg"] = msg.as_str().into();
        }
        content
    }
}

pub struct Presence {
    entries: Mutex<HashMap<OwnedUserId, Entry>>,
    serial: AtomicU64,
    idle_after: Duration,
    offline_after: Duration,
}

/// Marks a user as syncing while it lives (see [`Presence::syncing`]).
pub struct Syncing<'a> {
    presence: &'a Presence,
    user_id: OwnedUserId,
}

impl Drop for Syncing<'_> {
    fn drop(&mut self) {
        let mut entries = self.presence.lock();
        if let Some(entry) = entries.get_mut(&self.user_id) {
            entry.syncing = entry.syncing.saturating_sub(1);
            entry.last_sync = Some(Instant::now());
        }
    }
}

impl Presence {
    pub fn new(config: &crate::config::PresenceConfig) -> Self {
        Self {
            entries: Mutex::default(),
            serial: AtomicU64::new(0),
            idle_after: Duration::from_secs(config.idle_after_secs),
            offline_after: Duration::from_secs(config.offline_after_secs),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedUserId, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self, entry: &mut Entry) {
        entry.serial = self.serial.fetch_add(1, Ordering::AcqRel) + 1;
    }

    /// Applies `change` to the user's entry (created offline); whether anything visible changed.
    fn update(&self, user_id: &UserId, change: impl FnOnce(&mut Entry)) -> bool {
        let mut entries = self.lock();
        let entry = entries.entry(user_id.to_owned()).or_insert(Entry {
            presence: PresenceState::Offline,
            status_msg: None,
            last_active: Instant::now(),
            last_sync: None,
            syncing: 0,
            serial: 0,
            remote: false,
        });
        let before = (entry.presence.clone(), entry.status_msg.clone());
        change(entry);
        let changed = before != (entry.presence.clone(), entry.status_msg.clone());
        if changed {
            self.bump(entry);
        }
        changed
    }

    /// Sets presence and status message (`PUT /presence`); whether anything visible changed.
    pub fn set(
        &self,
        user_id: &UserId,
        presence: PresenceState,
        status_msg: Option<String>,
    ) -> bool {
        self.update(user_id, |entry| {
            entry.presence = presence;
            entry.status_msg = status_msg;
            entry.last_active = Instant::now();
        })
    }

    /// Presence of a user of another server, as their server says (`m.presence`); whether
    /// anything visible changed. Such presence never expires here.
    pub fn set_remote(
        &self,
        user_id: &UserId,
        presence: PresenceState,
        status_msg: Option<String>,
        last_active_ago: Duration,
    ) -> bool {
        self.update(user_id, |entry| {
            entry.remote = true;
            entry.presence = presence;
            entry.status_msg = status_msg;
            entry.last_active = Instant::now()
                .checked_sub(last_active_ago)
                .unwrap_or_else(Instant::now);
        })
    }

    /// A sync with `set_presence`: an offline user comes online (or unavailable, as asked);
    /// syncing alone does not bring an idle user back, activity does.
    pub fn touch(&self, user_id: &UserId, presence: PresenceState) -> bool {
        self.update(user_id, |entry| {
            let comes_back = entry.presence == PresenceState::Offline;
            if comes_back || presence == PresenceState::Unavailable {
                if comes_back {
                    entry.last_active = Instant::now();
                }
                entry.presence = presence;
            }
        })
    }

    /// The user did something (sent an event): online again if they were not offline on purpose.
    pub fn active(&self, user_id: &UserId) -> bool {
        self.update(user_id, |entry| {
            entry.last_active = Instant::now();
            if entry.presence == PresenceState::Unavailable {
                entry.presence = PresenceState::Online;
            }
        })
    }

    /// Counts a running `/sync` of the user until the guard is dropped, so that a user waiting
    /// in a long-poll never times out to offline.
    pub fn syncing(&self, user_id: &UserId) -> Syncing<'_> {
        if let Some(entry) = self.lock().get_mut(user_id) {
            entry.syncing += 1;
        }
        Syncing {
            presence: self,
            user_id: user_id.to_owned(),
        }
    }

    /// Moves users who stopped syncing to offline and idle online users to unavailable; the
    /// users whose presence changed.
    pub fn expire(&self) -> Vec<OwnedUserId> {
        let mut changed = Vec::new();
        let mut entries = self.lock();
        for (user_id, entry) in entries.iter_mut().filter(|(_, e)| !e.remote) {
            let last_seen = entry.last_sync.unwrap_or(entry.last_active);
            let next = if entry.presence != PresenceState::Offline
                && entry.syncing == 0
                && last_seen.elapsed() > self.offline_after
            {
                PresenceState::Offline
            } else if entry.presence == PresenceState::Online
                && entry.last_active.elapsed() > self.idle_after
            {
                PresenceState::Unavailable
            } else {
                continue;
            };
            entry.presence = next;
            self.bump(entry);
            changed.push(user_id.clone());
        }
        changed
    }

    /// The serial of the latest change anywhere.
    pub fn serial(&self) -> u64 {
        self.serial.load(Ordering::Acquire)
    }

    /// Users whose presence changed after serial `since` (everyone known on `None`).
    pub fn changed_since(&self, since: Option<u64>) -> Vec<OwnedUserId> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.serial > 0 && since.is_none_or(|s| e.serial > s))
            .map(|(u, _)| u.clone())
            .collect()
    }

    pub fn get(&self, user_id: &UserId) -> Status {
        match self.lock().get(user_id) {
            None => Status {
                presence: PresenceState::Offline,
                status_msg: None,
                last_active_ago: None,
                currently_active: None,
            },
            Some(entry) => Status {
                presence: entry.presence.clone(),
                status_msg: entry.status_msg.clone(),
                last_active_ago: Some(entry.last_active.elapsed()),
                currently_active: Some(entry.presence == PresenceState::Online),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PresenceConfig;

    fn alice() -> OwnedUserId {
        "@alice:x".try_into().unwrap()
    }

    #[test]
    fn only_visible_changes_bump_the_serial() {
        let presence = Presence::new(&PresenceConfig::default());
        let alice = alice();
        assert!(presence.set(&alice, PresenceState::Online, Some("회의 중".into())));
        let serial = presence.serial();
        // Syncing again while online changes nothing visible, and keeps the status message.
        assert!(!presence.touch(&alice, PresenceState::Online));
        assert_eq!(presence.serial(), serial);
        assert_eq!(presence.get(&alice).status_msg.as_deref(), Some("회의 중"));
        assert!(presence.changed_since(Some(serial)).is_empty());
        assert!(presence.touch(&alice, PresenceState::Unavailable));
        assert_eq!(presence.changed_since(Some(serial)), vec![alice.clone()]);
        assert_eq!(presence.get(&alice).content()["presence"], "unavailable");
        // Activity brings an unavailable user back online.
        assert!(presence.active(&alice));
        assert_eq!(presence.get(&alice).presence, PresenceState::Online);
    }

    #[test]
    fn idle_users_become_unavailable_and_absent_ones_offline() {
        let presence = Presence::new(&PresenceConfig {
            idle_after_secs: 0,
            offline_after_secs: 0,
        });
        let alice = alice();
        assert!(presence.touch(&alice, PresenceState::Online));
        // A sync is running: idle, but not gone.
        let syncing = presence.syncing(&alice);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(presence.expire(), vec![alice.clone()]);
        assert_eq!(presence.get(&alice).presence, PresenceState::Unavailable);
        assert!(presence.expire().is_empty());
        // Syncing alone does not make an idle user online again.
        assert!(!presence.touch(&alice, PresenceState::Online));
        drop(syncing);
        std::thread::sleep(Duration::from_millis(5));
        let serial = presence.serial();
        assert_eq!(presence.expire(), vec![alice.clone()]);
        assert_eq!(presence.get(&alice).presence, PresenceState::Offline);
        assert!(presence.serial() > serial);
        // The next sync brings them back.
        assert!(presence.touch(&alice, PresenceState::Online));
        assert_eq!(presence.get(&alice).presence, PresenceState::Online);
    }
}

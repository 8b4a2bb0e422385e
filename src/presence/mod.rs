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

/// Without activity for this long, an online user shows as unavailable.
const IDLE_AFTER: Duration = Duration::from_secs(5 * 60);

struct Entry {
    presence: PresenceState,
    status_msg: Option<String>,
    last_active: Instant,
    /// Serial of the latest visible change.
    serial: u64,
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

#[derive(Default)]
pub struct Presence {
    entries: Mutex<HashMap<OwnedUserId, Entry>>,
    serial: AtomicU64,
}

impl Presence {
    fn update(
        &self,
        user_id: &UserId,
        presence: PresenceState,
        status_msg: Option<Option<String>>,
    ) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let entry = entries.entry(user_id.to_owned()).or_insert(Entry {
            presence: PresenceState::Offline,
            status_msg: None,
            last_active: now,
            serial: 0,
        });
        let was_idle =
            entry.presence == PresenceState::Online && entry.last_active.elapsed() > IDLE_AFTER;
        let status_msg = status_msg.unwrap_or_else(|| entry.status_msg.clone());
        let changed = entry.presence != presence
            || entry.status_msg != status_msg
            || was_idle
            || entry.serial == 0;
        entry.presence = presence;
        entry.status_msg = status_msg;
        entry.last_active = now;
        if changed {
            entry.serial = self.serial.fetch_add(1, Ordering::AcqRel) + 1;
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
        self.update(user_id, presence, Some(status_msg))
    }

    /// Marks activity from a sync (`set_presence`), keeping the status message.
    pub fn touch(&self, user_id: &UserId, presence: PresenceState) -> bool {
        self.update(user_id, presence, None)
    }

    /// The serial of the latest change anywhere.
    pub fn serial(&self) -> u64 {
        self.serial.load(Ordering::Acquire)
    }

    /// Users among `users` whose presence changed after serial `since` (all known on `None`).
    pub fn changed<'a>(
        &self,
        users: impl IntoIterator<Item = &'a OwnedUserId>,
        since: Option<u64>,
    ) -> Vec<(OwnedUserId, Status)> {
        let changed: Vec<OwnedUserId> = {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            users
                .into_iter()
                .filter(|u| {
                    entries
                        .get(*u)
                        .is_some_and(|e| since.is_none_or(|s| e.serial > s))
                })
                .cloned()
                .collect()
        };
        changed
            .into_iter()
            .map(|u| {
                let status = self.get(&u);
                (u, status)
            })
            .collect()
    }

    pub fn get(&self, user_id: &UserId) -> Status {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(user_id) {
            None => Status {
                presence: PresenceState::Offline,
                status_msg: None,
                last_active_ago: None,
                currently_active: None,
            },
            Some(entry) => {
                let idle = entry.last_active.elapsed();
                let presence = match &entry.presence {
                    PresenceState::Online if idle > IDLE_AFTER => PresenceState::Unavailable,
                    other => other.clone(),
                };
                let currently_active = presence == PresenceState::Online;
                Status {
                    presence,
                    status_msg: entry.status_msg.clone(),
                    last_active_ago: Some(idle),
                    currently_active: Some(currently_active),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visible_changes_bump_the_serial() {
        let presence = Presence::default();
        let alice: OwnedUserId = "@alice:x".try_into().unwrap();
        assert!(presence.set(&alice, PresenceState::Online, Some("회의 중".into())));
        let serial = presence.serial();
        // Syncing again while online changes nothing visible, and keeps the status message.
        assert!(!presence.touch(&alice, PresenceState::Online));
        assert_eq!(presence.serial(), serial);
        assert_eq!(presence.get(&alice).status_msg.as_deref(), Some("회의 중"));
        assert!(presence.changed([&alice], Some(serial)).is_empty());
        assert!(presence.touch(&alice, PresenceState::Unavailable));
        let changed = presence.changed([&alice], Some(serial));
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].1.content()["presence"], "unavailable");
    }
}

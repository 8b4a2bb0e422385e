//! Presence: each user's online/unavailable/offline state and status message, in memory
//! (presence is ephemeral; after a restart everyone starts offline).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ruma::presence::PresenceState;
use ruma::{OwnedUserId, UserId};

/// Without activity for this long, an online user shows as unavailable.
const IDLE_AFTER: Duration = Duration::from_secs(5 * 60);

struct Entry {
    presence: PresenceState,
    status_msg: Option<String>,
    last_active: Instant,
}

/// What `GET /presence/{userId}/status` reports.
pub struct Status {
    pub presence: PresenceState,
    pub status_msg: Option<String>,
    pub last_active_ago: Option<Duration>,
    pub currently_active: Option<bool>,
}

#[derive(Default)]
pub struct Presence {
    entries: Mutex<HashMap<OwnedUserId, Entry>>,
}

impl Presence {
    pub fn set(&self, user_id: &UserId, presence: PresenceState, status_msg: Option<String>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(
            user_id.to_owned(),
            Entry {
                presence,
                status_msg,
                last_active: Instant::now(),
            },
        );
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

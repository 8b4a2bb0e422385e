//! The position of each room's latest change (event or receipt), in memory, so that a sync
//! passes over rooms where nothing happened without reading them; and of each user's latest
//! event, so that a client's encryption connection hears when its user sent something.
//!
//! A change is recorded while its commit is being built, before its count becomes readable:
//! a sync that can read the change also sees it recorded. Rooms not seen since the server
//! started count as changed at the start position.

use std::collections::HashMap;
use std::sync::Mutex;

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

pub struct Activity {
    latest: Mutex<HashMap<OwnedRoomId, u64>>,
    /// Each user's latest event.
    sent: Mutex<HashMap<OwnedUserId, u64>>,
    /// The committed count when the server started.
    started_at: u64,
}

impl Activity {
    pub fn new(started_at: u64) -> Self {
        Self {
            latest: Mutex::default(),
            sent: Mutex::default(),
            started_at,
        }
    }

    /// Records a change of the room at `count`.
    pub fn record(&self, room_id: &RoomId, count: u64) {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let slot = latest.entry(room_id.to_owned()).or_insert(count);
        *slot = (*slot).max(count);
    }

    /// Records that `sender` sent an event at `count`.
    pub fn record_sent(&self, sender: &UserId, count: u64) {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let slot = sent.entry(sender.to_owned()).or_insert(count);
        *slot = (*slot).max(count);
    }

    /// Whether the user may have sent an event after `since`.
    pub fn sent_after(&self, user: &UserId, since: u64) -> bool {
        let sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        sent.get(user).copied().unwrap_or(self.started_at) > since
    }

    /// Whether the room may have changed after `since`.
    pub fn changed_after(&self, room_id: &RoomId, since: u64) -> bool {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest.get(room_id).copied().unwrap_or(self.started_at) > since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_unseen_since_start_count_as_changed_at_start() {
        let activity = Activity::new(100);
        let (one, two): (&RoomId, &RoomId) =
            ("!one:x".try_into().unwrap(), "!two:x".try_into().unwrap());
        assert!(activity.changed_after(one, 99));
        assert!(!activity.changed_after(one, 100));
        activity.record(one, 150);
        activity.record(one, 120);
        assert!(activity.changed_after(one, 149));
        assert!(!activity.changed_after(one, 150));
        assert!(!activity.changed_after(two, 150));

        let alice: &UserId = "@alice:x".try_into().unwrap();
        assert!(!activity.sent_after(alice, 100));
        activity.record_sent(alice, 160);
        assert!(activity.sent_after(alice, 159));
        assert!(!activity.sent_after(alice, 160));
    }
}

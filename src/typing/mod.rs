//! Typing notifications: memory only, with a timeout. Each change bumps a serial that `/sync`
//! tokens carry (`s<count>_t<serial>`), so a sync sends a room's typing users when they changed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

/// Longest a typing notification lasts, whatever the client asks.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct RoomTyping {
    users: HashMap<OwnedUserId, Instant>,
    /// Serial of the room's latest change.
    serial: u64,
}

#[derive(Default)]
pub struct Typing {
    rooms: Mutex<HashMap<OwnedRoomId, RoomTyping>>,
    serial: AtomicU64,
}

impl Typing {
    fn change(&self, room_id: &RoomId, edit: impl FnOnce(&mut RoomTyping) -> bool) -> bool {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let room = rooms.entry(room_id.to_owned()).or_default();
        let changed = edit(room);
        if changed {
            room.serial = self.serial.fetch_add(1, Ordering::AcqRel) + 1;
        }
        changed
    }

    /// Marks the user typing until `timeout` from now; returns the expiry.
    pub fn start(&self, room_id: &RoomId, user_id: &UserId, timeout: Duration) -> Instant {
        let until = Instant::now() + timeout.min(MAX_TIMEOUT);
        self.change(room_id, |room| {
            room.users.insert(user_id.to_owned(), until);
            true
        });
        until
    }

    /// Clears the user's typing; whether anything changed.
    pub fn stop(&self, room_id: &RoomId, user_id: &UserId) -> bool {
        self.change(room_id, |room| room.users.remove(user_id).is_some())
    }

    /// Clears the user's typing if it still ends at `until` (a later start extended it otherwise).
    pub fn expire(&self, room_id: &RoomId, user_id: &UserId, until: Instant) -> bool {
        self.change(room_id, |room| {
            if room.users.get(user_id) == Some(&until) {
                room.users.remove(user_id);
                true
            } else {
                false
            }
        })
    }

    /// The serial of the latest change anywhere.
    pub fn serial(&self) -> u64 {
        self.serial.load(Ordering::Acquire)
    }

    /// The users typing in the room, if it changed after serial `since` (always on `None`).
    pub fn changed(&self, room_id: &RoomId, since: Option<u64>) -> Option<Vec<OwnedUserId>> {
        let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let room = rooms.get(room_id)?;
        if since.is_some_and(|s| room.serial <= s) {
            return None;
        }
        let now = Instant::now();
        let mut users: Vec<OwnedUserId> = room
            .users
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(u, _)| u.clone())
            .collect();
        users.sort();
        (since.is_some() || !users.is_empty()).then_some(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_changes_are_seen_once_per_serial() {
        let typing = Typing::default();
        let room: &RoomId = "!r:x".try_into().unwrap();
        let alice: &UserId = "@alice:x".try_into().unwrap();
        assert_eq!(typing.changed(room, None), None);
        let until = typing.start(room, alice, Duration::from_secs(30));
        let serial = typing.serial();
        assert_eq!(typing.changed(room, None), Some(vec![alice.to_owned()]));
        assert_eq!(
            typing.changed(room, Some(serial)),
            None,
            "nothing new after the serial"
        );
        assert!(
            !typing.expire(room, alice, until + Duration::from_secs(1)),
            "a stale expiry is ignored"
        );
        assert!(typing.expire(room, alice, until));
        assert_eq!(typing.changed(room, Some(serial)), Some(vec![]));
        assert!(!typing.stop(room, alice));
    }
}

/// A user starts typing in a room (for `timeout`) or stops (`None`): the room's syncs wake,
/// the appservices that want ephemeral events hear of it, and for a user of this server, the
/// room's other servers. The notice runs out on its own after the timeout.
pub fn announce(
    services: &std::sync::Arc<crate::services::Services>,
    room_id: &RoomId,
    user: &UserId,
    timeout: Option<Duration>,
) -> crate::error::Result<()> {
    let local = user.server_name() == services.config.server_name;
    let Some(timeout) = timeout else {
        if services.typing.stop(room_id, user) {
            services.timeline.wake_room(room_id)?;
            crate::appservice::ephemeral::typing(services, room_id)?;
            if local {
                crate::federation::edu::typing(services, room_id, user, false)?;
            }
        }
        return Ok(());
    };
    let until = services.typing.start(room_id, user, timeout);
    services.timeline.wake_room(room_id)?;
    crate::appservice::ephemeral::typing(services, room_id)?;
    if local {
        crate::federation::edu::typing(services, room_id, user, true)?;
    }
    // When the notice runs out, the room's syncs hear that too.
    let (services, room_id, user) = (services.clone(), room_id.to_owned(), user.to_owned());
    tokio::spawn(async move {
        tokio::time::sleep_until(until.into()).await;
        if services.typing.expire(&room_id, &user, until) {
            let _ = services.timeline.wake_room(&room_id);
            let _ = crate::appservice::ephemeral::typing(&services, &room_id);
        }
    });
    Ok(())
}

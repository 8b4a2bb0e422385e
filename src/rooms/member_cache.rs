//! Rooms' memberships held in memory. Every event in a room reads who is in it (for push
//! rules, wake-ups and appservices); in a room of thousands, reading that from the store each
//! time made each new member cost as much as all the members before them.
//!
//! A commit that changes memberships patches its rooms' entries after it is written (under
//! the room's lock, so in commit order). A reader that loaded from the store before such a
//! change must not put its stale copy in: each change takes a new generation, and a load
//! made under an older one is not kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use super::members::MembershipRecord;

/// A room's memberships, as stored (ordered by user id).
pub type Memberships = Arc<Vec<(OwnedUserId, MembershipRecord)>>;

/// Rooms kept at most; past it, the cache starts over.
const MAX_ROOMS: usize = 4096;

#[derive(Default)]
pub struct MemberCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Taken by every drop.
    generation: u64,
    /// Loads made before this generation are not kept (the cache was emptied after them).
    floor: u64,
    rooms: HashMap<OwnedRoomId, Entry>,
}

struct Entry {
    /// The generation of the room's last change.
    changed_at: u64,
    memberships: Option<Memberships>,
}

/// What a reader holds between asking and loading: the generation it started under.
#[derive(Debug)]
pub struct Ticket(u64);

impl MemberCache {
    /// The room's memberships if cached; else a ticket to [`MemberCache::keep`] a load with.
    pub fn get(&self, room_id: &RoomId) -> Result<Memberships, Ticket> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match inner.rooms.get(room_id).and_then(|e| e.memberships.clone()) {
            Some(memberships) => Ok(memberships),
            None => Err(Ticket(inner.generation)),
        }
    }

    /// Keeps memberships loaded from the store under `ticket`, unless the room changed since.
    pub fn keep(&self, room_id: &RoomId, ticket: Ticket, memberships: Memberships) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if ticket.0 < inner.floor {
            return;
        }
        if let Some(entry) = inner.rooms.get(room_id)
            && entry.changed_at > ticket.0
        {
            return;
        }
        if inner.rooms.len() >= MAX_ROOMS && !inner.rooms.contains_key(room_id) {
            inner.floor = inner.generation + 1;
            inner.generation += 1;
            inner.rooms.clear();
            return;
        }
        inner.rooms.insert(
            room_id.to_owned(),
            Entry {
                changed_at: ticket.0,
                memberships: Some(memberships),
            },
        );
    }

    /// Records a user's new membership: called after the commit that stored it is written.
    pub fn changed(&self, room_id: &RoomId, user: &UserId, record: &MembershipRecord) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.generation += 1;
        let generation = inner.generation;
        let entry = inner.rooms.entry(room_id.to_owned()).or_insert(Entry {
            changed_at: generation,
            memberships: None,
        });
        entry.changed_at = generation;
        if let Some(memberships) = entry.memberships.as_mut() {
            // Copied only when a reader still holds the old list.
            let memberships = Arc::make_mut(memberships);
            match memberships.binary_search_by(|(held, _)| held.as_str().cmp(user.as_str())) {
                Ok(at) => memberships[at].1 = record.clone(),
                Err(at) => memberships.insert(at, (user.to_owned(), record.clone())),
            }
        }
    }

    /// Forgets the room's memberships (the room was purged).
    pub fn drop_room(&self, room_id: &RoomId) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.generation += 1;
        let generation = inner.generation;
        inner.rooms.insert(
            room_id.to_owned(),
            Entry {
                changed_at: generation,
                memberships: None,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(n: usize) -> OwnedRoomId {
        format!("!r{n}:example.org").try_into().unwrap()
    }

    fn record(membership: &str, count: u64) -> MembershipRecord {
        MembershipRecord {
            membership: membership.into(),
            count,
            forgotten: false,
        }
    }

    fn user(name: &str) -> OwnedUserId {
        format!("@{name}:example.org").try_into().unwrap()
    }

    fn members(names: &[&str]) -> Memberships {
        Arc::new(names.iter().map(|n| (user(n), record("join", 1))).collect())
    }

    #[test]
    fn a_load_is_kept_and_served_until_the_room_changes() {
        let cache = MemberCache::default();
        let ticket = cache.get(&room(1)).unwrap_err();
        cache.keep(&room(1), ticket, members(&["a"]));
        assert_eq!(cache.get(&room(1)).unwrap(), members(&["a"]));
        cache.drop_room(&room(1));
        assert!(cache.get(&room(1)).is_err());
    }

    #[test]
    fn changes_are_applied_in_place_keeping_the_order() {
        let cache = MemberCache::default();
        let ticket = cache.get(&room(1)).unwrap_err();
        cache.keep(&room(1), ticket, members(&["b", "d"]));
        let held = cache.get(&room(1)).unwrap();
        cache.changed(&room(1), &user("c"), &record("join", 5));
        cache.changed(&room(1), &user("a"), &record("invite", 6));
        cache.changed(&room(1), &user("d"), &record("leave", 7));
        let now = cache.get(&room(1)).unwrap();
        let names: Vec<(&str, &str)> = now
            .iter()
            .map(|(u, r)| (u.localpart(), r.membership.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("a", "invite"),
                ("b", "join"),
                ("c", "join"),
                ("d", "leave")
            ]
        );
        assert_eq!(
            held,
            members(&["b", "d"]),
            "a reader's copy stays as it was"
        );
    }

    #[test]
    fn a_load_from_before_a_change_is_not_kept() {
        let cache = MemberCache::default();
        let stale = cache.get(&room(1)).unwrap_err();
        // The room changes while the reader loads.
        cache.changed(&room(1), &user("b"), &record("join", 2));
        cache.keep(&room(1), stale, members(&["a"]));
        assert!(cache.get(&room(1)).is_err(), "the stale copy was dropped");
        let fresh = cache.get(&room(1)).unwrap_err();
        cache.keep(&room(1), fresh, members(&["a", "b"]));
        assert_eq!(cache.get(&room(1)).unwrap(), members(&["a", "b"]));
    }

    #[test]
    fn a_change_of_another_room_does_not_spoil_a_load() {
        let cache = MemberCache::default();
        let ticket = cache.get(&room(1)).unwrap_err();
        cache.changed(&room(2), &user("b"), &record("join", 2));
        cache.keep(&room(1), ticket, members(&["a"]));
        assert!(cache.get(&room(1)).is_ok());
        cache.drop_room(&room(1));
        assert!(cache.get(&room(1)).is_err(), "purged");
    }

    #[test]
    fn when_full_it_starts_over_and_refuses_older_loads() {
        let cache = MemberCache::default();
        let early = cache.get(&room(0)).unwrap_err();
        for n in 1..=MAX_ROOMS + 1 {
            let ticket = cache.get(&room(n)).unwrap_err();
            cache.keep(&room(n), ticket, members(&["a"]));
        }
        assert!(cache.get(&room(1)).is_err(), "emptied when full");
        // A change to room 0 may have been forgotten with the rest: older loads are refused.
        cache.keep(&room(0), early, members(&["a"]));
        assert!(cache.get(&room(0)).is_err());
    }
}

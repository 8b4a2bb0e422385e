//! History visibility: which events of a room a user may see, by the `m.room.history_visibility`
//! and the user's membership at each event (spec: "History visibility"); and which events
//! another server may see.

use ruma::{EventId, RoomId, ServerName, UserId};

use super::timeline::Timeline;
use crate::error::{Error, Result};

/// What decides visibility for one user in one room, read once per request.
pub struct Viewer<'a> {
    timeline: &'a Timeline,
    short: u64,
    user_id: &'a UserId,
    joined_now: bool,
    /// A server admin or auditor reading through the admin API sees every event.
    sees_all: bool,
    /// For a room joined through another server: the position of the state the join brought,
    /// by which the history from before it is judged.
    seeded_at: u64,
}

impl<'a> Viewer<'a> {
    pub fn new(
        timeline: &'a Timeline,
        short: u64,
        room_id: &ruma::RoomId,
        user_id: &'a UserId,
    ) -> Result<Self> {
        let joined_now = timeline
            .membership(room_id, user_id)?
            .is_some_and(|m| m.membership == "join");
        let seeded_at = timeline
            .room(room_id)?
            .and_then(|room| room.history)
            .map_or(0, |history| history.seeded_at);
        Ok(Self {
            timeline,
            short,
            user_id,
            joined_now,
            sees_all: false,
            seeded_at,
        })
    }

    /// The viewer of the admin API: every event of the room, whatever its visibility.
    pub fn admin(timeline: &'a Timeline, short: u64, user_id: &'a UserId) -> Self {
        Self {
            timeline,
            short,
            user_id,
            joined_now: false,
            sees_all: true,
            seeded_at: 0,
        }
    }

    /// The viewer for a member or former member of the room; anyone else gets 403, whether or
    /// not the room exists.
    pub fn of_member(
        timeline: &'a Timeline,
        room_id: &RoomId,
        user_id: &'a UserId,
    ) -> Result<Self> {
        match (
            timeline.room(room_id)?,
            timeline.membership(room_id, user_id)?,
        ) {
            (Some(room), Some(_)) => Self::new(timeline, room.short, room_id, user_id),
            _ => Err(Error::forbidden("You are not in this room")),
        }
    }

    /// The room's short id.
    pub fn short(&self) -> u64 {
        self.short
    }

    /// The timeline position of an event of this room the user may see; 404 otherwise.
    pub fn position_of(&self, event_id: &EventId) -> Result<u64> {
        match self.timeline.position(event_id)? {
            Some((short, count)) if short == self.short && self.can_see(count)? => Ok(count),
            _ => Err(Error::not_found("No such event in this room")),
        }
    }

    /// Whether the user may see the event at timeline position `count`.
    pub fn can_see(&self, count: u64) -> Result<bool> {
        if self.sees_all {
            return Ok(true);
        }
        // History fetched from before the join is judged as if just after the state the
        // join brought: no state from before it is known here.
        let count = if count < self.seeded_at {
            self.seeded_at + 1
        } else {
            count
        };
        // The state in force when the event was sent: that of the position just before it.
        let then = self.visibility_at(count.saturating_sub(1))?;
        if self.allowed_under(&then, count)? {
            return Ok(true);
        }
        // A history visibility change is shown to those who could see it under the new
        // setting too (the spec's rule for m.room.history_visibility events), so that a room
        // opened up again is seen as open.
        let after = self.visibility_at(count)?;
        Ok(after != then && self.allowed_under(&after, count)?)
    }

    fn visibility_at(&self, position: u64) -> Result<String> {
        Ok(self
            .timeline
            .state_field_at(
                self.short,
                "m.room.history_visibility",
                "",
                position,
                "history_visibility",
            )?
            .unwrap_or_else(|| "shared".to_owned()))
    }

    /// Whether history visibility `visibility` lets the user see the event at `count`.
    fn allowed_under(&self, visibility: &str, count: u64) -> Result<bool> {
        if visibility == "world_readable" {
            return Ok(true);
        }
        // The user's membership around the event: before it, and after it, so that a user's
        // own membership changes (the join that let them in, the leave that let them out) are
        // visible to them.
        let membership_at = |position: u64| {
            self.timeline.state_field_at(
                self.short,
                "m.room.member",
                self.user_id.as_str(),
                position,
                "membership",
            )
        };
        let around = [
            membership_at(count.saturating_sub(1))?,
            membership_at(count)?,
        ];
        let was = |m: &str| around.iter().any(|a| a.as_deref() == Some(m));
        Ok(was("join")
            || (visibility == "invited" && was("invite"))
            || (visibility == "shared" && self.joined_now))
    }

    /// Whether the user may read the room at all (now).
    pub fn is_joined(&self) -> bool {
        self.joined_now
    }
}

impl Timeline {
    /// Whether a user of `server` is joined to the room now: a server that may ask about it.
    pub fn server_in_room(&self, room_id: &RoomId, server: &ServerName) -> Result<bool> {
        Ok(self
            .joined_members(room_id)?
            .iter()
            .any(|user| user.server_name() == server))
    }

    /// Whether `server` may see an event (the spec's history visibility for servers): any
    /// server may see `shared` and `world_readable` history; `joined` history only a server
    /// with a user joined at the event, `invited` history one with a user invited or joined.
    pub fn server_sees(&self, event_id: &EventId, server: &ServerName) -> Result<bool> {
        let Some(state) = self.state_at_event(event_id, true)? else {
            return Ok(false);
        };
        let field = |id: &EventId, name: &str| -> Result<Option<String>> {
            Ok(self
                .get(id)?
                .and_then(|e| super::timeline::content_field(&e.pdu, name).map(str::to_owned)))
        };
        let visibility = match state.get(&("m.room.history_visibility".to_owned(), String::new())) {
            Some(id) => field(id, "history_visibility")?,
            None => None,
        };
        let visibility = visibility.unwrap_or_else(|| "shared".to_owned());
        if visibility != "joined" && visibility != "invited" {
            return Ok(true);
        }
        let members = state
            .range(("m.room.member".to_owned(), String::new())..)
            .take_while(|((kind, _), _)| kind == "m.room.member");
        for ((_, user), id) in members {
            if <&UserId>::try_from(user.as_str()).is_ok_and(|u| u.server_name() == server) {
                match field(id, "membership")?.as_deref() {
                    Some("join") => return Ok(true),
                    Some("invite") if visibility == "invited" => return Ok(true),
                    _ => {}
                }
            }
        }
        Ok(false)
    }
}

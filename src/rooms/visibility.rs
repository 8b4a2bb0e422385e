//! History visibility: which events of a room a user may see, by the `m.room.history_visibility`
//! and the user's membership at each event (spec: "History visibility").

use ruma::UserId;

use super::timeline::Timeline;
use crate::error::Result;

/// What decides visibility for one user in one room, read once per request.
pub struct Viewer<'a> {
    timeline: &'a Timeline,
    short: u64,
    user_id: &'a UserId,
    joined_now: bool,
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
        Ok(Self {
            timeline,
            short,
            user_id,
            joined_now,
        })
    }

    /// Whether the user may see the event at timeline position `count`.
    pub fn can_see(&self, count: u64) -> Result<bool> {
        // The state in force when the event was sent: that of the position just before it.
        let before = count.saturating_sub(1);
        let visibility = self
            .timeline
            .state_field_at(
                self.short,
                "m.room.history_visibility",
                "",
                before,
                "history_visibility",
            )?
            .unwrap_or_else(|| "shared".to_owned());
        if visibility == "world_readable" {
            return Ok(true);
        }
        // The user's membership when the event was sent; the user's own join is visible to them.
        let membership = self.timeline.state_field_at(
            self.short,
            "m.room.member",
            self.user_id.as_str(),
            count,
            "membership",
        )?;
        Ok(match membership.as_deref() {
            Some("join") => true,
            Some("invite") if visibility == "invited" => true,
            _ => visibility == "shared" && self.joined_now,
        })
    }

    /// Whether the user may read the room at all (now).
    pub fn is_joined(&self) -> bool {
        self.joined_now
    }
}

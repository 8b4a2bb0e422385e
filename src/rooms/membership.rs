//! Membership changes: join, invite, leave, kick, ban, unban as `m.room.member` events. Whether
//! a change is allowed is left to the authorization rules of the room version.

use ruma::events::TimelineEventType;
use ruma::{OwnedEventId, RoomId, UserId};
use serde_json::{Value, json};

use super::timeline::{NewEvent, Timeline};
use crate::error::{Error, Result};

/// A membership change one user makes for another (or for themself).
pub struct Change<'a> {
    pub room_id: &'a RoomId,
    pub sender: &'a UserId,
    pub target: &'a UserId,
    /// `join`, `invite`, `leave`, `ban` or `knock`.
    pub membership: &'a str,
    pub reason: Option<&'a str>,
    /// The target's profile, shown by clients from the member event.
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub is_direct: bool,
}

/// Longest reason kept in a member event.
const MAX_REASON_CHARS: usize = 1024;

pub async fn change(timeline: &Timeline, change: Change<'_>) -> Result<OwnedEventId> {
    let mut content = json!({"membership": change.membership});
    if let Some(reason) = change.reason {
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(Error::bad_json("reason is longer than 1024 characters"));
        }
        content["reason"] = reason.into();
    }
    if let Some(name) = change.displayname {
        content["displayname"] = Value::String(name);
    }
    if let Some(url) = change.avatar_url {
        content["avatar_url"] = Value::String(url);
    }
    if change.is_direct {
        content["is_direct"] = true.into();
    }
    let event = NewEvent {
        kind: TimelineEventType::RoomMember,
        content: serde_json::value::to_raw_value(&content)
            .map_err(|e| Error::internal(format!("member content: {e}")))?,
        state_key: Some(change.target.to_string()),
    };
    timeline
        .append(change.room_id, change.sender, event, None)
        .await
}

//! Membership changes: join, invite, leave, kick, ban, unban as `m.room.member` events. Whether
//! a change is allowed is left to the authorization rules of the room version.

use ruma::events::TimelineEventType;
use ruma::{CanonicalJsonObject, OwnedEventId, RoomId, RoomVersionId, UserId};
use serde_json::{Value, json};

use super::pdu::StoredPdu;
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

impl<'a> Change<'a> {
    /// A change with no reason, profile or direct flag (the server acting: a bot's invite,
    /// a leave on someone's behalf).
    pub fn new(
        room_id: &'a RoomId,
        sender: &'a UserId,
        target: &'a UserId,
        membership: &'a str,
    ) -> Self {
        Self {
            room_id,
            sender,
            target,
            membership,
            reason: None,
            displayname: None,
            avatar_url: None,
            is_direct: false,
        }
    }
}

/// Longest reason kept in a member event.
const MAX_REASON_CHARS: usize = 1024;

pub async fn change(timeline: &Timeline, change: Change<'_>) -> Result<OwnedEventId> {
    let (room_id, sender) = (change.room_id, change.sender);
    let event = member_event(timeline, change)?;
    timeline.append(room_id, sender, event, None).await
}

/// A membership change that another server must sign before it is added (an invite of one
/// of its users): `countersign` gets the event made here and answers with it signed.
pub async fn change_countersigned(
    timeline: &Timeline,
    change: Change<'_>,
    countersign: impl AsyncFnOnce(&StoredPdu, RoomVersionId) -> Result<CanonicalJsonObject>,
) -> Result<OwnedEventId> {
    let (room_id, sender) = (change.room_id, change.sender);
    let event = member_event(timeline, change)?;
    let mut draft = timeline.draft();
    let event_id = draft.send(room_id, sender, event, None).await?;
    let made = draft
        .get(&event_id)?
        .ok_or_else(|| Error::internal("a drafted event is missing"))?;
    let version = draft
        .room(room_id)?
        .ok_or_else(|| Error::internal("a drafted room is missing"))?
        .version;
    let signed = countersign(&made, version).await?;
    draft.add_signatures(&event_id, &signed)?;
    draft.commit()?;
    Ok(event_id)
}

/// The member event of a change.
fn member_event(timeline: &Timeline, change: Change<'_>) -> Result<NewEvent> {
    if matches!(change.membership, "join" | "invite" | "knock") {
        timeline.refuse_if_blocked(change.room_id)?;
    }
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
    Ok(NewEvent {
        kind: TimelineEventType::RoomMember,
        content: serde_json::value::to_raw_value(&content)
            .map_err(|e| Error::internal(format!("member content: {e}")))?,
        state_key: Some(change.target.to_string()),
    })
}

/// Announces a changed display name or avatar in every room the user is joined to, with a
/// new `m.room.member` join event carrying the profile (clients show names from these).
pub async fn announce_profile(
    timeline: &Timeline,
    user: &UserId,
    displayname: Option<String>,
    avatar_url: Option<String>,
) -> Result<()> {
    for room_id in timeline.joined_rooms(user)? {
        let Some(room) = timeline.room(&room_id)? else {
            continue;
        };
        let mut content = match timeline.state_event(room.short, "m.room.member", user.as_str())? {
            Some(member) => member.content(),
            None => continue,
        };
        let Some(object) = content.as_object_mut() else {
            continue;
        };
        for (key, value) in [("displayname", &displayname), ("avatar_url", &avatar_url)] {
            match value {
                Some(value) => object.insert(key.to_owned(), Value::String(value.clone())),
                None => object.remove(key),
            };
        }
        object.remove("reason");
        let event = NewEvent {
            kind: TimelineEventType::RoomMember,
            content: serde_json::value::to_raw_value(&content)
                .map_err(|e| Error::internal(format!("member content: {e}")))?,
            state_key: Some(user.to_string()),
        };
        // One room refusing (say, a power level rule) must not stop the others.
        if let Err(error) = timeline.append(&room_id, user, event, None).await {
            tracing::warn!(%room_id, %error, "profile change not announced in a room");
        }
    }
    Ok(())
}

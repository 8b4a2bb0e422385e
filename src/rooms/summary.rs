//! Room summaries (`GET /_matrix/client/v1/room_summary/{roomIdOrAlias}`): what a room is, from
//! its current state, for a preview before joining; and who may see one.

use ruma::events::room::join_rules::RoomJoinRulesEventContent;
use ruma::room::{JoinRuleSummary, RoomSummary};
use ruma::{RoomId, RoomVersionId, UInt, UserId};

use super::timeline::Timeline;
use crate::error::Result;

/// The room's summary from its current state; `None` for a room this server does not have.
pub fn summary(timeline: &Timeline, room_id: &RoomId) -> Result<Option<RoomSummary>> {
    let Some(room) = timeline.room(room_id)? else {
        return Ok(None);
    };
    let content = |kind: &str| -> Result<serde_json::Value> {
        Ok(timeline
            .state_event(room.short, kind, "")?
            .map(|e| e.content())
            .unwrap_or_default())
    };
    let text = |value: &serde_json::Value, field: &str| value[field].as_str().map(str::to_owned);
    let create = content("m.room.create")?;
    let mut summary = RoomSummary::new(
        room_id.to_owned(),
        join_rule(timeline, room.short)?,
        text(&content("m.room.guest_access")?, "guest_access").as_deref() == Some("can_join"),
        UInt::new(timeline.joined_member_count(room_id)?).unwrap_or_default(),
        text(&content("m.room.history_visibility")?, "history_visibility").as_deref()
            == Some("world_readable"),
    );
    summary.name = text(&content("m.room.name")?, "name").filter(|n| !n.is_empty());
    summary.topic = text(&content("m.room.topic")?, "topic").filter(|t| !t.is_empty());
    summary.avatar_url = text(&content("m.room.avatar")?, "url").map(Into::into);
    summary.canonical_alias =
        text(&content("m.room.canonical_alias")?, "alias").and_then(|a| a.try_into().ok());
    summary.room_type = text(&create, "type").map(Into::into);
    summary.room_version =
        RoomVersionId::try_from(text(&create, "room_version").unwrap_or_else(|| "1".to_owned()))
            .ok();
    summary.encryption = text(&content("m.room.encryption")?, "algorithm").map(Into::into);
    Ok(Some(summary))
}

fn join_rule(timeline: &Timeline, short: u64) -> Result<JoinRuleSummary> {
    let rule = timeline
        .state_event(short, "m.room.join_rules", "")?
        .and_then(|e| serde_json::from_value::<RoomJoinRulesEventContent>(e.content()).ok())
        .map(|c| JoinRuleSummary::from(c.join_rule))
        .unwrap_or(JoinRuleSummary::Invite);
    Ok(rule)
}

/// Whether `user` (or anyone, without one) may see the room's summary: rooms open to joining
/// or knocking, world-readable rooms, rooms the user is in or invited to, and restricted rooms
/// the user could join through a room they are in.
pub fn may_preview(
    timeline: &Timeline,
    summary: &RoomSummary,
    user: Option<&UserId>,
) -> Result<bool> {
    let open = matches!(
        summary.join_rule,
        JoinRuleSummary::Public | JoinRuleSummary::Knock | JoinRuleSummary::KnockRestricted(_)
    );
    if open || summary.world_readable {
        return Ok(true);
    }
    let Some(user) = user else {
        return Ok(false);
    };
    let in_room = |room: &RoomId, memberships: &[&str]| -> Result<bool> {
        Ok(timeline
            .membership(room, user)?
            .is_some_and(|m| memberships.contains(&m.membership.as_str())))
    };
    if in_room(&summary.room_id, &["join", "invite", "knock"])? {
        return Ok(true);
    }
    if let JoinRuleSummary::Restricted(restricted) = &summary.join_rule {
        for allowed in &restricted.allowed_room_ids {
            if in_room(allowed, &["join"])? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

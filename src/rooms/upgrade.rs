//! Room upgrades: a new room of a newer version that continues the old one. The old room gets
//! a tombstone and is made read-only for ordinary members; the new room gets the old one's
//! important state and its local aliases. All of it is one draft, committed at once: a crash
//! leaves either the old room as it was or the upgrade done.

use ruma::events::StateEventType;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId};
use serde_json::{Value, json};

use super::alias::Aliases;
use super::directory::Directory;
use super::timeline::{NewEvent, Timeline};
use crate::error::{Error, Result};

/// State carried over to the replacement room, as is.
const COPIED_STATE: &[&str] = &[
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
    "m.room.pinned_events",
];

fn event(kind: &str, content: &Value) -> Result<NewEvent> {
    Ok(NewEvent {
        kind: kind.into(),
        content: serde_json::value::to_raw_value(content)
            .map_err(|e| Error::internal(e.to_string()))?,
        state_key: Some(String::new()),
    })
}

pub async fn upgrade(
    timeline: &Timeline,
    aliases: &Aliases,
    directory: &Directory,
    room_id: &RoomId,
    user: &UserId,
    new_version: RoomVersionId,
    additional_creators: Vec<OwnedUserId>,
) -> Result<OwnedRoomId> {
    // The old room stays locked from the first read of its state to the commit.
    let mut draft = timeline.draft();
    draft.lock(room_id).await;
    let old = timeline
        .room(room_id)?
        .ok_or_else(|| Error::forbidden("You are not in this room"))?;
    let levels = timeline.power_levels(&old)?;
    if !levels.user_can_send_state(user, StateEventType::RoomTombstone) {
        return Err(Error::forbidden("You may not upgrade this room"));
    }
    let new_rules = super::pdu::rules(&new_version)?;

    let mut creation = serde_json::Map::new();
    creation.insert("predecessor".into(), json!({"room_id": room_id}));
    if let Some(create) = timeline.state_event(old.short, "m.room.create", "")?
        && let Some(kind) = create.content().get("type")
    {
        creation.insert("type".into(), kind.clone());
    }
    if new_rules.authorization.additional_room_creators && !additional_creators.is_empty() {
        creation.insert(
            "additional_creators".into(),
            additional_creators
                .iter()
                .map(|u| Value::from(u.as_str()))
                .collect(),
        );
    }
    let new_room = draft.create(user, new_version, creation).await?;

    let mut member = json!({"membership": "join"});
    if let Some(old_member) = timeline.state_event(old.short, "m.room.member", user.as_str())? {
        for field in ["displayname", "avatar_url"] {
            if let Some(v) = old_member.content().get(field) {
                member[field] = v.clone();
            }
        }
    }
    let member = NewEvent {
        state_key: Some(user.to_string()),
        ..event("m.room.member", &member)?
    };
    draft.send(&new_room, user, member, None).await?;

    // Power levels: the old ones; creators of a v12 room must not be listed in `users`.
    let mut power = timeline
        .state_event(old.short, "m.room.power_levels", "")?
        .map(|e| e.content())
        .unwrap_or_else(|| json!({}));
    if new_rules.authorization.explicitly_privilege_room_creators
        && let Some(users) = power.get_mut("users").and_then(Value::as_object_mut)
    {
        users.remove(user.as_str());
        for creator in &additional_creators {
            users.remove(creator.as_str());
        }
    } else if !new_rules.authorization.explicitly_privilege_room_creators {
        power["users"][user.as_str()] = json!(100);
    }
    draft
        .send(&new_room, user, event("m.room.power_levels", &power)?, None)
        .await?;

    for kind in COPIED_STATE {
        if let Some(state) = timeline.state_event(old.short, kind, "")? {
            draft
                .send(&new_room, user, event(kind, &state.content())?, None)
                .await?;
        }
    }

    if let Some(canonical) = timeline.state_event(old.short, "m.room.canonical_alias", "")? {
        let canonical = event("m.room.canonical_alias", &canonical.content())?;
        draft.send(&new_room, user, canonical, None).await?;
    }

    // The tombstone, then the old room goes quiet for ordinary members.
    let tombstone = json!({"body": "This room has been replaced", "replacement_room": new_room});
    draft
        .send(room_id, user, event("m.room.tombstone", &tombstone)?, None)
        .await?;
    if let Some(old_power) = timeline.state_event(old.short, "m.room.power_levels", "")? {
        let mut content = old_power.content();
        let users_default = content["users_default"].as_i64().unwrap_or(0);
        let restricted = (users_default + 1).max(50);
        for key in ["events_default", "invite"] {
            if content[key].as_i64().unwrap_or(0) < restricted {
                content[key] = json!(restricted);
            }
        }
        // Someone allowed to upgrade but not to change power levels leaves them as they are
        // (as Synapse does); a refused send leaves the draft as it was.
        let restrict = event("m.room.power_levels", &content)?;
        if let Err(error) = draft.send(room_id, user, restrict, None).await {
            if error.errcode() != "M_FORBIDDEN" {
                return Err(error);
            }
            tracing::info!(%room_id, "old room's power levels left as they were: {error}");
        }
    }

    // A published room's directory entry and its local aliases follow it, in the same commit.
    if directory.is_published(room_id)? {
        draft.also().extend(Directory::publication(room_id, false));
        draft.also().extend(Directory::publication(&new_room, true));
    }
    aliases.move_with(room_id, &new_room, |batch| {
        draft.also().extend(batch);
        draft.commit()
    })?;
    Ok(new_room)
}

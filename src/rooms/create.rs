//! Room creation: the events `createRoom` sends, in the spec's order, for each preset. They
//! are drafted one after another and committed together with the room's alias, so a room
//! exists whole (with its encryption, join rules, name…) or not at all.

use http::StatusCode;
use ruma::api::error::ErrorKind;
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomVersionId, UserId};
use serde_json::{Map, Value, json};

use super::alias::Aliases;
use super::directory::Directory;
use super::timeline::{NewEvent, Timeline};
use crate::error::{Error, Result};

/// The room version new rooms get when the client names none.
pub const DEFAULT_ROOM_VERSION: RoomVersionId = RoomVersionId::V12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    PrivateChat,
    TrustedPrivateChat,
    PublicChat,
}

/// What a client asked for in `POST /createRoom`, already parsed.
#[derive(Debug, Default)]
pub struct CreateOptions {
    pub version: Option<RoomVersionId>,
    pub preset: Option<Preset>,
    /// `visibility: public`: published in the room directory (and decides the default preset).
    pub public: bool,
    pub creation_content: Map<String, Value>,
    pub power_level_content_override: Option<Map<String, Value>>,
    /// `(type, state_key, content)` from `initial_state`.
    pub initial_state: Vec<(String, String, Value)>,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
    /// What the member events of the creator and the invitees carry of their profiles
    /// (`displayname`, `avatar_url`), by user.
    pub profiles: std::collections::BTreeMap<OwnedUserId, Map<String, Value>>,
    /// `room_alias_name`, as the full local alias.
    pub alias: Option<OwnedRoomAliasId>,
    /// Turn on encryption in a private room (the server's `e2ee.default_encryption`), unless
    /// the client's initial state sets it.
    pub encrypt_private: bool,
}

fn raw(value: &Value) -> Result<Box<serde_json::value::RawValue>> {
    serde_json::value::to_raw_value(value)
        .map_err(|e| Error::internal(format!("event content: {e}")))
}

fn state(kind: &str, state_key: &str, content: Value) -> Result<NewEvent> {
    Ok(NewEvent {
        kind: kind.into(),
        content: raw(&content)?,
        state_key: Some(state_key.to_owned()),
    })
}

/// Creates the room with its initial events, in one commit; returns the room id.
pub async fn create_room(
    timeline: &Timeline,
    aliases: &Aliases,
    creator: &UserId,
    options: CreateOptions,
) -> Result<OwnedRoomId> {
    let version = options.version.clone().unwrap_or(DEFAULT_ROOM_VERSION);
    let rules = super::pdu::rules(&version)?;
    let preset = options.preset.unwrap_or(if options.public {
        Preset::PublicChat
    } else {
        Preset::PrivateChat
    });
    let creators_are_privileged = rules.authorization.explicitly_privilege_room_creators;

    for (kind, _, _) in &options.initial_state {
        if matches!(
            kind.as_str(),
            "m.room.create" | "m.room.member" | "m.room.power_levels"
        ) {
            return Err(Error::bad_json(format!(
                "{kind} cannot be set through initial_state"
            )));
        }
    }

    if let Some(alias) = &options.alias
        && aliases.get(alias)?.is_some()
    {
        return Err(Error::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::RoomInUse,
            "The room alias is taken",
        ));
    }

    // 1. The create event. In v12 a trusted private chat makes its invitees co-creators.
    let mut creation_content = options.creation_content.clone();
    creation_content.remove("room_version");
    if creators_are_privileged && preset == Preset::TrustedPrivateChat && !options.invite.is_empty()
    {
        creation_content.insert(
            "additional_creators".into(),
            options
                .invite
                .iter()
                .map(|u| Value::from(u.as_str()))
                .collect(),
        );
    }
    let mut draft = timeline.draft();
    let room_id = draft.create(creator, version, creation_content).await?;
    let mut events = Vec::new();

    let member = |user: &UserId, membership: &str| {
        let mut content = options.profiles.get(user).cloned().unwrap_or_default();
        content.insert("membership".into(), membership.into());
        content
    };

    // 2. The creator joins.
    events.push(state(
        "m.room.member",
        creator.as_str(),
        Value::Object(member(creator, "join")),
    )?);

    // 3. Power levels: the preset's, then the client's override on top.
    let mut users = Map::new();
    if !creators_are_privileged {
        users.insert(creator.to_string(), 100.into());
        if preset == Preset::TrustedPrivateChat {
            for invitee in &options.invite {
                users.insert(invitee.to_string(), 100.into());
            }
        }
    }
    let mut power_levels = json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.avatar": 50,
            "m.room.topic": 50,
            "m.room.canonical_alias": 50,
            "m.room.pinned_events": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.encryption": 100,
            "m.room.server_acl": 100,
            "m.room.tombstone": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": if preset == Preset::PublicChat { 50 } else { 0 },
    });
    if let Some(overrides) = &options.power_level_content_override {
        for (key, value) in overrides {
            power_levels[key] = value.clone();
        }
    }
    events.push(state("m.room.power_levels", "", power_levels)?);

    // 4. The alias (registered in the same commit) made canonical.
    if let Some(alias) = &options.alias {
        events.push(state(
            "m.room.canonical_alias",
            "",
            json!({"alias": alias}),
        )?);
    }

    // 5. The preset's rules.
    let join_rule = if preset == Preset::PublicChat {
        "public"
    } else {
        "invite"
    };
    events.push(state(
        "m.room.join_rules",
        "",
        json!({"join_rule": join_rule}),
    )?);
    events.push(state(
        "m.room.history_visibility",
        "",
        json!({"history_visibility": "shared"}),
    )?);
    let guest_access = if preset == Preset::PublicChat {
        "forbidden"
    } else {
        "can_join"
    };
    events.push(state(
        "m.room.guest_access",
        "",
        json!({"guest_access": guest_access}),
    )?);

    // Encryption for private rooms, when the server turns it on by default.
    let encryption_given = options
        .initial_state
        .iter()
        .any(|(kind, _, _)| kind == "m.room.encryption");
    if options.encrypt_private && preset != Preset::PublicChat && !encryption_given {
        events.push(state(
            "m.room.encryption",
            "",
            json!({"algorithm": "m.megolm.v1.aes-sha2"}),
        )?);
    }

    // 6. The client's initial state, then name and topic.
    for (kind, state_key, content) in options.initial_state {
        events.push(state(&kind, &state_key, content)?);
    }
    if let Some(name) = options.name {
        events.push(state("m.room.name", "", json!({"name": name}))?);
    }
    if let Some(topic) = options.topic {
        events.push(state("m.room.topic", "", json!({"topic": topic}))?);
    }

    // 7. Invites. Users of other servers are invited once the room exists, through their
    // servers (which sign the invite first).
    for invitee in options
        .invite
        .iter()
        .filter(|user| user.server_name() == timeline.server_name)
    {
        let mut content = member(invitee, "invite");
        if options.is_direct {
            content.insert("is_direct".into(), true.into());
        }
        events.push(state(
            "m.room.member",
            invitee.as_str(),
            Value::Object(content),
        )?);
    }

    for event in events {
        draft.send(&room_id, creator, event, None).await?;
    }
    if options.public {
        draft.also().extend(Directory::publication(&room_id, true));
    }
    match &options.alias {
        Some(alias) => aliases.create_with(alias, &room_id, creator, |batch| {
            draft.also().extend(batch);
            draft.commit()
        })?,
        None => draft.commit()?,
    }
    Ok(room_id)
}

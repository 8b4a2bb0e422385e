//! What admins see of rooms (each room's name, alias, members and settings, and the list of
//! them), and deleting a room: its members leave, its aliases and directory entry go, the
//! id may be blocked, and its events may be purged. A deletion runs in the background; its
//! status is kept (in memory) for the admin API to report.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ruma::{OwnedRoomId, OwnedUserId, RoomId};
use serde::Serialize;
use serde_json::Value;

use crate::admin::audit::Origin;
use crate::error::{Error, Result};
use crate::rooms::membership::{self, Change};
use crate::rooms::timeline::RoomRecord;
use crate::services::Services;
use crate::storage::{Direction, KeyRange, Table};

/// One room as admins see it.
#[derive(Clone, Debug, Serialize)]
pub struct RoomView {
    pub room_id: OwnedRoomId,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub avatar: Option<String>,
    pub canonical_alias: Option<String>,
    pub joined_members: u64,
    pub joined_local_members: u64,
    pub invited_members: u64,
    pub version: String,
    pub creator: Option<String>,
    pub encryption: Option<String>,
    pub federatable: bool,
    pub public: bool,
    pub join_rules: Option<String>,
    pub guest_access: Option<String>,
    pub history_visibility: Option<String>,
    pub state_events: u64,
    pub room_type: Option<String>,
}

/// Every room this server has, as admins see them, in room id order.
pub fn all(services: &Services) -> Result<Vec<RoomView>> {
    let mut rooms = Vec::new();
    for entry in services
        .store
        .scan(Table::Rooms, KeyRange::all(), Direction::Forward)?
    {
        let (key, value) = entry?;
        let Ok(room_id) = OwnedRoomId::try_from(String::from_utf8_lossy(&key).into_owned()) else {
            continue;
        };
        let record: RoomRecord = serde_json::from_slice(&value)
            .map_err(|e| Error::internal(format!("corrupt room record: {e}")))?;
        rooms.push(view_of(services, room_id, &record)?);
    }
    Ok(rooms)
}

/// The room as admins see it; `None` for a room this server does not have.
pub fn view(services: &Services, room_id: &RoomId) -> Result<Option<RoomView>> {
    match services.timeline.room(room_id)? {
        Some(record) => view_of(services, room_id.to_owned(), &record).map(Some),
        None => Ok(None),
    }
}

fn view_of(services: &Services, room_id: OwnedRoomId, record: &RoomRecord) -> Result<RoomView> {
    let timeline = &services.timeline;
    let content = |kind: &str| -> Result<Value> {
        Ok(timeline
            .state_event(record.short, kind, "")?
            .map(|e| e.content())
            .unwrap_or_default())
    };
    let text = |value: &Value, field: &str| value[field].as_str().map(str::to_owned);
    let create = content("m.room.create")?;
    let creator = timeline
        .state_event(record.short, "m.room.create", "")?
        .and_then(|e| e.to_client_event()["sender"].as_str().map(str::to_owned));
    let memberships = timeline.room_memberships(&room_id)?;
    let joined: Vec<&OwnedUserId> = memberships
        .iter()
        .filter(|(_, m)| m.membership == "join")
        .map(|(u, _)| u)
        .collect();
    let server_name = services.config.server_name.as_str();
    Ok(RoomView {
        name: text(&content("m.room.name")?, "name").filter(|n| !n.is_empty()),
        topic: text(&content("m.room.topic")?, "topic").filter(|t| !t.is_empty()),
        avatar: text(&content("m.room.avatar")?, "url"),
        canonical_alias: text(&content("m.room.canonical_alias")?, "alias"),
        joined_members: joined.len() as u64,
        joined_local_members: joined
            .iter()
            .filter(|u| u.server_name().as_str() == server_name)
            .count() as u64,
        invited_members: memberships
            .iter()
            .filter(|(_, m)| m.membership == "invite")
            .count() as u64,
        version: record.version.to_string(),
        creator,
        encryption: text(&content("m.room.encryption")?, "algorithm"),
        federatable: create["m.federate"].as_bool().unwrap_or(true),
        public: services.directory.is_published(&room_id)?,
        join_rules: text(&content("m.room.join_rules")?, "join_rule"),
        guest_access: text(&content("m.room.guest_access")?, "guest_access"),
        history_visibility: text(&content("m.room.history_visibility")?, "history_visibility"),
        state_events: timeline.current_state(record.short)?.len() as u64,
        room_type: text(&create, "type"),
        room_id,
    })
}

/// What a room deletion does besides making everyone leave.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub block: bool,
    pub purge: bool,
    /// Moves the local members to a new room this user creates, with `message` in it.
    pub new_room_user_id: Option<OwnedUserId>,
    pub room_name: Option<String>,
    pub message: Option<String>,
}

/// Where a deletion stands, in Synapse's words.
#[derive(Clone, Debug, Serialize)]
pub struct DeleteStatus {
    pub delete_id: String,
    #[serde(skip)]
    pub room_id: OwnedRoomId,
    /// `shutting_down`, `purging`, `complete` or `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub shutdown_room: ShutdownResult,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ShutdownResult {
    pub kicked_users: Vec<OwnedUserId>,
    pub failed_to_kick_users: Vec<OwnedUserId>,
    pub local_aliases: Vec<String>,
    pub new_room_id: Option<OwnedRoomId>,
}

/// Room deletions, running and done (kept until the server restarts).
#[derive(Default)]
pub struct Deletions {
    tasks: Mutex<HashMap<String, DeleteStatus>>,
}

impl Deletions {
    fn update(&self, delete_id: &str, change: impl FnOnce(&mut DeleteStatus)) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(status) = tasks.get_mut(delete_id) {
            change(status);
        }
    }

    pub fn get(&self, delete_id: &str) -> Option<DeleteStatus> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.get(delete_id).cloned()
    }

    /// Every deletion of the room, oldest first.
    pub fn of_room(&self, room_id: &RoomId) -> Vec<DeleteStatus> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let mut found: Vec<DeleteStatus> = tasks
            .values()
            .filter(|t| t.room_id == room_id)
            .cloned()
            .collect();
        found.sort_by(|a, b| a.delete_id.cmp(&b.delete_id));
        found
    }
}

/// The admin room, which must outlive every admin action.
pub fn is_admin_room(services: &Services, room_id: &RoomId) -> Result<bool> {
    let alias = format!("#admins:{}", services.config.server_name);
    let Ok(alias) = ruma::OwnedRoomAliasId::try_from(alias) else {
        return Ok(false);
    };
    Ok(services.aliases.resolve(&alias)?.as_deref() == Some(room_id))
}

/// Checks a deletion can start and records it (audited as `room_delete`); returns its id.
/// Run it with [`run_delete`].
pub fn start_delete(
    services: &Services,
    room_id: &RoomId,
    options: &DeleteOptions,
    origin: &Origin,
) -> Result<String> {
    if services.timeline.room(room_id)?.is_none() {
        return Err(Error::not_found("Unknown room"));
    }
    if is_admin_room(services, room_id)? {
        return Err(Error::forbidden("The admin room cannot be deleted"));
    }
    if let Some(user) = &options.new_room_user_id
        && !services.accounts.is_active(user)?
    {
        return Err(Error::invalid_param(
            "new_room_user_id must be an active local user",
        ));
    }
    let mut tasks = services
        .room_deletions
        .tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if tasks
        .values()
        .any(|t| t.room_id == room_id && matches!(t.status, "shutting_down" | "purging"))
    {
        return Err(Error::invalid_param("This room is already being deleted"));
    }
    // Time-ordered ids, so a room's deletions list oldest first.
    let delete_id = format!(
        "{:013}{}",
        crate::now_ms(),
        crate::random::string(b"abcdefghijklmnopqrstuvwxyz", 8)
    );
    services.audit.record(origin.record(
        "room_delete",
        room_id,
        serde_json::json!({
            "delete_id": delete_id,
            "block": options.block,
            "purge": options.purge,
            "new_room_user_id": options.new_room_user_id,
        }),
    ))?;
    tasks.insert(
        delete_id.clone(),
        DeleteStatus {
            delete_id: delete_id.clone(),
            room_id: room_id.to_owned(),
            status: "shutting_down",
            error: None,
            shutdown_room: ShutdownResult::default(),
        },
    );
    Ok(delete_id)
}

/// Carries out a deletion [`start_delete`] recorded, updating its status as it goes.
pub async fn run_delete(
    services: Arc<Services>,
    delete_id: String,
    room_id: OwnedRoomId,
    options: DeleteOptions,
    admin: OwnedUserId,
) -> DeleteStatus {
    let result = delete(&services, &delete_id, &room_id, &options, &admin).await;
    services
        .room_deletions
        .update(&delete_id, |status| match result {
            Ok(()) => status.status = "complete",
            Err(e) => {
                tracing::error!(%room_id, error = %e, "room deletion failed");
                status.status = "failed";
                status.error = Some(e.to_string());
            }
        });
    services
        .room_deletions
        .get(&delete_id)
        .expect("recorded by start_delete")
}

async fn delete(
    services: &Arc<Services>,
    delete_id: &str,
    room_id: &RoomId,
    options: &DeleteOptions,
    admin: &OwnedUserId,
) -> Result<()> {
    let timeline = &services.timeline;
    if options.block {
        timeline.set_blocked(room_id, admin, true)?;
    }
    let new_room = match &options.new_room_user_id {
        Some(creator) => Some(notice_room(services, creator, options).await?),
        None => None,
    };
    let mut result = ShutdownResult {
        new_room_id: new_room.clone(),
        ..Default::default()
    };
    for (user, record) in timeline.room_memberships(room_id)?.iter() {
        if !matches!(record.membership.as_str(), "join" | "invite" | "knock")
            || !services.accounts.is_local(user)
        {
            continue;
        }
        let left = membership::change(
            timeline,
            Change {
                reason: Some("This room was deleted by a server admin"),
                ..Change::new(room_id, user, user, "leave")
            },
        )
        .await;
        match left {
            Ok(_) if record.membership == "join" => result.kicked_users.push(user.clone()),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%room_id, user_id = %user, error = %e, "could not remove a member");
                result.failed_to_kick_users.push(user.clone());
                continue;
            }
        }
        if let Some(new_room) = &new_room
            && record.membership == "join"
            && let Err(e) = join(timeline, new_room, user).await
        {
            tracing::warn!(user_id = %user, error = %e, "could not move a member to the new room");
        }
    }
    for alias in services.aliases.of_room(room_id)? {
        services.aliases.delete(&alias)?;
        result.local_aliases.push(alias.to_string());
    }
    services.directory.set_published(room_id, false)?;
    services.room_deletions.update(delete_id, |status| {
        status.shutdown_room = result;
        if options.purge {
            status.status = "purging";
        }
    });
    if options.purge {
        // The room's lock keeps sends out while its events go.
        let _lock = timeline.room_lock(room_id).lock_owned().await;
        let services = services.clone();
        let room_id = room_id.to_owned();
        tokio::task::spawn_blocking(move || services.timeline.purge(&room_id))
            .await
            .map_err(|e| Error::internal(format!("purge: {e}")))??;
    }
    Ok(())
}

/// The room the members of a deleted room are moved to, with the admin's message.
async fn notice_room(
    services: &Services,
    creator: &OwnedUserId,
    options: &DeleteOptions,
) -> Result<OwnedRoomId> {
    use crate::rooms::create::{CreateOptions, Preset, create_room};
    let room_id = create_room(
        &services.timeline,
        &services.aliases,
        creator,
        CreateOptions {
            preset: Some(Preset::PublicChat),
            name: Some(
                options
                    .room_name
                    .clone()
                    .unwrap_or_else(|| "Content Violation Notification".to_owned()),
            ),
            ..Default::default()
        },
    )
    .await?;
    let message = options.message.clone().unwrap_or_else(|| {
        "A room you were in was deleted by the server's administrators.".to_owned()
    });
    let content = serde_json::json!({"msgtype": "m.text", "body": message});
    services
        .timeline
        .append(
            &room_id,
            creator,
            crate::rooms::timeline::NewEvent {
                kind: ruma::events::TimelineEventType::RoomMessage,
                content: serde_json::value::to_raw_value(&content)
                    .map_err(|e| Error::internal(format!("message: {e}")))?,
                state_key: None,
            },
            None,
        )
        .await?;
    Ok(room_id)
}

async fn join(
    timeline: &crate::rooms::timeline::Timeline,
    room_id: &RoomId,
    user: &OwnedUserId,
) -> Result<()> {
    membership::change(timeline, Change::new(room_id, user, user, "join"))
        .await
        .map(drop)
}

/// Whether the room's id is blocked, and by whom.
pub fn block_of(services: &Services, room_id: &RoomId) -> Result<Option<OwnedUserId>> {
    Ok(services.timeline.blocked(room_id)?.map(|b| b.user_id))
}

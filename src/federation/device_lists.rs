//! Device list updates between servers (`m.device_list_update`). Every change to a local
//! user's devices or cross-signing keys is already logged, in order and in the change's own
//! commit ([`Table::KeyChanges`]); an announcer follows that log and queues an update for each
//! server sharing a room with the user, moving its cursor in the same batch, so a crash loses
//! no update and sends none twice. The update names no previous update: the other server then
//! fetches the user's whole list (`/user/devices`), which also carries the cross-signing keys.
//! Another server's updates about its own users tell the local users sharing a room with them
//! (their `/sync`'s `device_lists.changed`); their keys are asked of that server when queried.

use std::sync::Arc;
use std::time::Duration;

use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::services::Services;
use crate::storage::{Batch, Direction, KeyRange, Table, keys};

/// Where the announcer stands in the key change log (the key of the last entry it handled).
const CURSOR: &[u8] = b"device_list_announcer";
/// How often the log is looked at; a change reaches other servers within about this long.
const POLL: Duration = Duration::from_millis(500);
/// Most log entries handled in one batch.
const BATCH: usize = 200;

pub fn spawn(services: &Arc<Services>) {
    let services = services.clone();
    tokio::spawn(async move {
        loop {
            if let Err(error) = announce(&services) {
                tracing::error!(%error, "announcing device list changes");
            }
            tokio::time::sleep(POLL).await;
        }
    });
}

/// The other servers with a user joined to a room `user` is joined to.
fn servers_sharing_with(services: &Services, user: &UserId) -> Result<Vec<OwnedServerName>> {
    let own = &services.config.server_name;
    let mut servers = Vec::new();
    for (room_id, record) in services.timeline.memberships_of(user)? {
        if record.membership != "join" {
            continue;
        }
        for member in services.timeline.joined_members(&room_id)? {
            let server = member.server_name();
            if server != own && !servers.iter().any(|s: &OwnedServerName| s == server) {
                servers.push(server.to_owned());
            }
        }
    }
    servers.retain(|server| services.federation.talks_to(server));
    Ok(servers)
}

/// Handles the key change log after the cursor: queues the updates and moves the cursor.
fn announce(services: &Services) -> Result<()> {
    let store = &services.store;
    let Some(cursor) = store.get(Table::Global, CURSOR)? else {
        // A new server, or one from before federation: what happened before is not news.
        let mut batch = Batch::new();
        let last = store
            .scan(Table::KeyChanges, KeyRange::all(), Direction::Backward)?
            .next()
            .transpose()?
            .map_or_else(Vec::new, |(key, _)| key);
        batch.put(Table::Global, CURSOR.to_vec(), last);
        return store.write(batch);
    };
    let mut after = cursor.clone();
    after.push(0);
    let range = KeyRange::between(&after, &[0xFF; 16]);
    let mut batch = Batch::new();
    let mut last = None;
    let mut queued = 0;
    let own = &services.config.server_name;
    for entry in store
        .scan(Table::KeyChanges, range, Direction::Forward)?
        .take(BATCH)
    {
        let (key, value) = entry?;
        last = Some(key);
        let mut parts = value.split(|b| *b == keys::SEP);
        let user = parts
            .next()
            .and_then(|u| OwnedUserId::try_from(String::from_utf8_lossy(u).as_ref()).ok());
        // A change only one viewer hears of (their signature on someone's key) is not news
        // for other servers.
        let Some(user) = user.filter(|u| u.server_name() == own && parts.next().is_none()) else {
            continue;
        };
        let device = services
            .sessions
            .devices(&user)?
            .into_iter()
            .next()
            .map(|d| d.device_id.to_string())
            .unwrap_or_default();
        for server in servers_sharing_with(services, &user)? {
            let count = store.next_count()?;
            let edu = json!({"edu_type": "m.device_list_update", "content": {
                "user_id": user, "device_id": device, "stream_id": count, "prev_id": [],
                "deleted": false,
            }});
            super::sender::queue_edu(&mut batch, &server, count, &edu);
            queued += 1;
        }
    }
    let Some(last) = last else {
        return Ok(());
    };
    batch.put(Table::Global, CURSOR.to_vec(), last);
    store.write(batch)?;
    if queued > 0 {
        services.watchers.wake_federation();
    }
    Ok(())
}

/// Another server says one of its users' devices or cross-signing keys changed
/// (`m.device_list_update`, `m.signing_key_update`): logged as a key change, and the local
/// users sharing a room with them are woken.
pub fn receive(services: &Services, origin: &ServerName, content: &Value) -> Result<()> {
    let user = content["user_id"]
        .as_str()
        .and_then(|u| OwnedUserId::try_from(u).ok())
        .ok_or_else(|| Error::bad_json("A device list update without a user"))?;
    if user.server_name() != origin {
        return Err(Error::forbidden(
            "A device list update about a user not of the origin",
        ));
    }
    let mut local = Vec::new();
    for (room_id, record) in services.timeline.memberships_of(&user)? {
        if record.membership != "join" {
            continue;
        }
        for member in services.timeline.joined_members(&room_id)? {
            if member.server_name() == services.config.server_name && !local.contains(&member) {
                local.push(member);
            }
        }
    }
    if local.is_empty() {
        // Nobody here shares a room with them: nothing to tell.
        return Ok(());
    }
    services.store.commit(&mut |count| {
        let mut batch = Batch::new();
        batch.put(Table::KeyChanges, keys::key_change(count), user.as_bytes());
        Ok(batch)
    })?;
    for member in &local {
        services.watchers.wake(member);
    }
    Ok(())
}

//! Ephemeral events for appservices that ask for them (`receive_ephemeral`, MSC2409): typing,
//! read receipts and presence of the rooms and users they hear of. Ephemeral by nature, they
//! wait in memory (at most [`MAX_PENDING`] per appservice, the oldest dropped first) and go
//! with the next transaction, which records them so that a retry sends them again.

use std::sync::Arc;

use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::{Value, json};

use super::{Appservice, Appservices};
use crate::error::Result;
use crate::services::Services;

/// Ephemeral events kept per appservice until its next transaction.
pub const MAX_PENDING: usize = 1000;

impl Appservice {
    fn push_ephemeral(&self, event: Value) {
        let mut pending = self.ephemeral.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= MAX_PENDING {
            pending.remove(0);
        }
        pending.push(event);
        drop(pending);
        self.wake.notify_one();
    }

    /// The ephemeral events waiting for the next transaction, taken.
    pub fn take_ephemeral(&self) -> Vec<Value> {
        std::mem::take(&mut *self.ephemeral.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Appservices {
    /// The appservices with a URL that asked for ephemeral events (and so to-device ones).
    pub fn wanting_ephemeral(&self) -> impl Iterator<Item = &Arc<Appservice>> {
        self.all()
            .iter()
            .filter(|a| a.registration.receive_ephemeral && a.registration.url.is_some())
    }

    /// Gives a room's ephemeral event to every appservice that asked for them and hears of
    /// the room (one of its users is joined, or the room is in its namespace).
    fn room_event(&self, room_id: &RoomId, members: &[OwnedUserId], event: &Value) {
        for appservice in self.wanting_ephemeral() {
            let hears = appservice
                .registration
                .rooms
                .iter()
                .any(|ns| ns.matches(room_id.as_str()))
                || members.iter().any(|user| appservice.is_user(user));
            if hears {
                appservice.push_ephemeral(event.clone());
            }
        }
    }
}

/// The room's typing users, for the appservices that hear of the room.
pub fn typing(services: &Services, room_id: &RoomId) -> Result<()> {
    if services.appservices.wanting_ephemeral().next().is_none() {
        return Ok(());
    }
    let users = services.typing.changed(room_id, None).unwrap_or_default();
    let event = json!({"type": "m.typing", "room_id": room_id, "content": {"user_ids": users}});
    let members = services.timeline.joined_members(room_id)?;
    services.appservices.room_event(room_id, &members, &event);
    Ok(())
}

/// A public read receipt, for the appservices that hear of the room.
pub fn receipt(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    event_id: &ruma::EventId,
    thread: Option<&str>,
) -> Result<()> {
    if services.appservices.wanting_ephemeral().next().is_none() {
        return Ok(());
    }
    let mut receipt = json!({"ts": crate::now_ms()});
    if let Some(thread) = thread {
        receipt["thread_id"] = thread.into();
    }
    let event = json!({
        "type": "m.receipt",
        "room_id": room_id,
        "content": {event_id.as_str(): {"m.read": {user.as_str(): receipt}}},
    });
    let members = services.timeline.joined_members(room_id)?;
    services.appservices.room_event(room_id, &members, &event);
    Ok(())
}

/// A user's presence, for the appservices that own the user or share a room with them.
pub fn presence(services: &Services, user: &UserId, content: Value) -> Result<()> {
    let wanting: Vec<&Arc<Appservice>> = services.appservices.wanting_ephemeral().collect();
    if wanting.is_empty() {
        return Ok(());
    }
    let event = json!({"type": "m.presence", "sender": user, "content": content});
    let mut sharers = Vec::new();
    for room_id in services.timeline.joined_rooms(user)? {
        sharers.extend(services.timeline.joined_members(&room_id)?);
    }
    for appservice in wanting {
        if appservice.is_user(user) || sharers.iter().any(|u| appservice.is_user(u)) {
            appservice.push_ephemeral(event.clone());
        }
    }
    Ok(())
}

//! Invites from other servers into rooms this server is not in, and knocks of local users on
//! such rooms. The room's events are not here, so what the user is shown of it (its
//! `invite_state` or `knock_state`) is what the other server sent with the invite or answered
//! the knock with; the user joins through that server, or turns the invite down (retracts
//! the knock) through it.

use ruma::{CanonicalJsonObject, OwnedServerName, RoomId, RoomVersionId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::members::MembershipRecord;
use super::timeline::Timeline;
use crate::error::Result;
use crate::storage::{Batch, StoreExt, Table, keys};

/// An invite (or a knock) kept for a room this server is not in.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RemoteInvite {
    /// The invite event, signed by the inviter's server and this one (or the knock).
    pub event: CanonicalJsonObject,
    /// The room's version, as the inviting server named it.
    pub version: RoomVersionId,
    /// What the invitee is shown of the room: stripped state events, the invite last.
    pub state: Vec<Value>,
    /// The servers to join or turn the invite down through, the inviter's first.
    pub via: Vec<OwnedServerName>,
}

impl RemoteInvite {
    /// The inviter, as the event names them.
    pub fn sender(&self) -> Option<&str> {
        match self.event.get("sender") {
            Some(ruma::CanonicalJsonValue::String(sender)) => Some(sender),
            _ => None,
        }
    }

    /// Whether the inviter marked the room as a direct chat with the invitee.
    pub fn is_direct(&self) -> bool {
        match self.event.get("content") {
            Some(ruma::CanonicalJsonValue::Object(content)) => {
                matches!(
                    content.get("is_direct"),
                    Some(ruma::CanonicalJsonValue::Bool(true))
                )
            }
            _ => false,
        }
    }
}

impl Timeline {
    /// Keeps an invite of `user` into a room this server has no part in (`membership`
    /// "invite"), or their knock on it ("knock"), and tells the user. Returns false (keeping
    /// nothing) when a user of this server is in the room after all: then the invite reaches
    /// this server as one of the room's events.
    pub async fn keep_remote_invite(
        &self,
        user: &UserId,
        room_id: &RoomId,
        invite: &RemoteInvite,
        membership: &str,
    ) -> Result<bool> {
        let lock = self.room_lock(room_id);
        let _guard = lock.lock().await;
        if self.room(room_id)?.is_some() && self.server_in_room(room_id, &self.server_name)? {
            return Ok(false);
        }
        let key = keys::user_room(user.as_str(), room_id.as_str());
        self.store.commit(&mut |count| {
            let mut batch = Batch::new();
            let record = MembershipRecord {
                membership: membership.to_owned(),
                count,
                forgotten: false,
            };
            batch.put_json(Table::UserRooms, key.clone(), &record)?;
            batch.put_json(Table::RemoteInvites, key.clone(), invite)?;
            Ok(batch)
        })?;
        self.watchers.wake(user);
        Ok(true)
    }

    /// The invite of `user` into a room this server is not in (or their knock on it), while
    /// it stands.
    pub fn remote_invite(&self, user: &UserId, room_id: &RoomId) -> Result<Option<RemoteInvite>> {
        if self
            .membership(room_id, user)?
            .is_none_or(|r| r.membership != "invite" && r.membership != "knock")
        {
            return Ok(None);
        }
        self.store.get_json(
            Table::RemoteInvites,
            &keys::user_room(user.as_str(), room_id.as_str()),
        )
    }

    /// Ends a kept invite the user turned down: they have left the room, as far as this
    /// server knows. Nothing changes when the invite no longer stands.
    pub async fn decline_remote_invite(&self, user: &UserId, room_id: &RoomId) -> Result<()> {
        let lock = self.room_lock(room_id);
        let _guard = lock.lock().await;
        if self.remote_invite(user, room_id)?.is_none() {
            return Ok(());
        }
        let key = keys::user_room(user.as_str(), room_id.as_str());
        self.store.commit(&mut |count| {
            let mut batch = Batch::new();
            let record = MembershipRecord {
                membership: "leave".to_owned(),
                count,
                forgotten: false,
            };
            batch.put_json(Table::UserRooms, key.clone(), &record)?;
            batch.delete(Table::RemoteInvites, key.clone());
            Ok(batch)
        })?;
        self.watchers.wake(user);
        Ok(())
    }
}

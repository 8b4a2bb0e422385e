//! Memberships as stored: each user's membership in each room (both ways round), read for
//! authorization, `/sync` and the member lists, and `/forget`.

use http::StatusCode;
use ruma::api::error::ErrorKind;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::member_cache::Memberships;
use super::timeline::Timeline;
use crate::error::{Error, Result};
use crate::storage::{Batch, StoreExt, Table, keys};

/// A membership as stored in the membership indices.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct MembershipRecord {
    pub membership: String,
    pub count: u64,
    /// Set by `/forget` after leaving: the room is gone from the user's view.
    #[serde(default)]
    pub forgotten: bool,
}

impl Timeline {
    /// Every user with a membership in the room, with that membership.
    pub fn room_memberships(&self, room_id: &RoomId) -> Result<Memberships> {
        let ticket = match self.member_cache.get(room_id) {
            Ok(memberships) => return Ok(memberships),
            Err(ticket) => ticket,
        };
        let prefix = keys::of_room(room_id.as_str());
        let memberships: Memberships = Arc::new(
            self.store
                .scan_prefix(Table::RoomUsers, &prefix)?
                .map(|entry| {
                    let (key, value) = entry?;
                    let record: MembershipRecord = serde_json::from_slice(&value)
                        .map_err(|e| Error::internal(format!("corrupt membership: {e}")))?;
                    let user = std::str::from_utf8(&key[prefix.len()..])
                        .ok()
                        .and_then(|u| OwnedUserId::try_from(u).ok())
                        .ok_or_else(|| Error::internal("corrupt membership key"))?;
                    Ok((user, record))
                })
                .collect::<Result<_>>()?,
        );
        self.member_cache.keep(room_id, ticket, memberships.clone());
        Ok(memberships)
    }

    /// A user's membership in a room (`join`, `invite`, `leave`, `ban`, `knock`), if any.
    pub fn membership(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<MembershipRecord>> {
        let record: Option<MembershipRecord> = self.store.get_json(
            Table::UserRooms,
            &keys::user_room(user_id.as_str(), room_id.as_str()),
        )?;
        // A forgotten room is gone from the user's view.
        Ok(record.filter(|r| !r.forgotten))
    }

    /// The user's membership at timeline position `count`, counting the event there (what
    /// `unsigned.membership` says): `leave` before they ever had one.
    pub fn membership_at(
        &self,
        room_id: &RoomId,
        short: u64,
        user_id: &UserId,
        count: u64,
    ) -> Result<String> {
        // The common case without reading state history: unchanged since before the event.
        if let Some(record) = self.membership(room_id, user_id)?
            && record.count <= count
        {
            return Ok(record.membership);
        }
        Ok(self
            .state_field_at(
                short,
                "m.room.member",
                user_id.as_str(),
                count,
                "membership",
            )?
            .unwrap_or_else(|| "leave".to_owned()))
    }

    /// Forgets a room the user has left; refused while joined, invited or knocking.
    pub fn forget(&self, room_id: &RoomId, user_id: &UserId) -> Result<()> {
        let key = keys::user_room(user_id.as_str(), room_id.as_str());
        let Some(mut record) = self
            .store
            .get_json::<MembershipRecord>(Table::UserRooms, &key)?
        else {
            return Ok(());
        };
        if matches!(record.membership.as_str(), "join" | "invite" | "knock") {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::Unknown,
                "Leave the room before forgetting it",
            ));
        }
        record.forgotten = true;
        let mut batch = Batch::new();
        batch.put_json(Table::UserRooms, key, &record)?;
        self.store.write(batch)
    }

    /// Every room the user has a (not forgotten) membership in.
    pub fn memberships_of(&self, user_id: &UserId) -> Result<Vec<(OwnedRoomId, MembershipRecord)>> {
        let prefix = keys::rooms_of(user_id.as_str());
        let mut rooms = Vec::new();
        for entry in self.store.scan_prefix(Table::UserRooms, &prefix)? {
            let (key, value) = entry?;
            let record: MembershipRecord = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("corrupt membership: {e}")))?;
            if record.forgotten {
                continue;
            }
            let room = std::str::from_utf8(&key[prefix.len()..])
                .ok()
                .and_then(|r| OwnedRoomId::try_from(r).ok())
                .ok_or_else(|| Error::internal("corrupt membership key"))?;
            rooms.push((room, record));
        }
        Ok(rooms)
    }

    /// The users joined to the room.
    pub fn joined_members(&self, room_id: &RoomId) -> Result<Vec<OwnedUserId>> {
        Ok(self
            .room_memberships(room_id)?
            .iter()
            .filter(|(_, record)| record.membership == "join")
            .map(|(user, _)| user.clone())
            .collect())
    }

    /// How many users are joined to the room.
    pub fn joined_member_count(&self, room_id: &RoomId) -> Result<u64> {
        Ok(self
            .room_memberships(room_id)?
            .iter()
            .filter(|(_, record)| record.membership == "join")
            .count() as u64)
    }

    /// The rooms the user is joined to.
    pub fn joined_rooms(&self, user_id: &UserId) -> Result<Vec<OwnedRoomId>> {
        Ok(self
            .memberships_of(user_id)?
            .into_iter()
            .filter(|(_, record)| record.membership == "join")
            .map(|(room, _)| room)
            .collect())
    }
}

//! The room directory: which rooms are published, and the public room list built from their
//! current state.

use std::sync::Arc;

use ruma::directory::PublicRoomsChunk;
use ruma::room::JoinRuleKind;
use ruma::{OwnedRoomId, RoomId, UInt};

use super::timeline::Timeline;
use crate::error::{Error, Result};
use crate::storage::{Batch, Store, StoreExt, Table};

pub struct Directory {
    store: Arc<dyn Store>,
}

impl Directory {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub fn is_published(&self, room_id: &RoomId) -> Result<bool> {
        Ok(self
            .store
            .get(Table::PublicRooms, room_id.as_bytes())?
            .is_some())
    }

    pub fn set_published(&self, room_id: &RoomId, published: bool) -> Result<()> {
        self.store.write(Self::publication(room_id, published))
    }

    /// The writes that publish the room in the directory, or take it out.
    pub fn publication(room_id: &RoomId, published: bool) -> Batch {
        let mut batch = Batch::new();
        if published {
            batch.put(Table::PublicRooms, room_id.as_bytes(), Vec::new());
        } else {
            batch.delete(Table::PublicRooms, room_id.as_bytes());
        }
        batch
    }

    pub fn published_rooms(&self) -> Result<Vec<OwnedRoomId>> {
        self.store
            .scan_prefix(Table::PublicRooms, b"")?
            .map(|entry| {
                let (key, _) = entry?;
                std::str::from_utf8(&key)
                    .ok()
                    .and_then(|r| OwnedRoomId::try_from(r).ok())
                    .ok_or_else(|| Error::internal("corrupt public room key"))
            })
            .collect()
    }

    /// The published rooms matching `search` (name, topic, alias; case-insensitive), largest
    /// first, as directory entries.
    pub fn list(&self, timeline: &Timeline, search: Option<&str>) -> Result<Vec<PublicRoomsChunk>> {
        let needle = search.map(str::to_lowercase).filter(|s| !s.is_empty());
        let mut chunks = Vec::new();
        for room_id in self.published_rooms()? {
            let Some(room) = timeline.room(&room_id)? else {
                continue;
            };
            let field = |kind: &str, name: &str| -> Result<Option<String>> {
                Ok(timeline
                    .state_event(room.short, kind, "")?
                    .and_then(|e| e.content()[name].as_str().map(str::to_owned)))
            };
            let name = field("m.room.name", "name")?;
            let topic = field("m.room.topic", "topic")?;
            let alias = field("m.room.canonical_alias", "alias")?;
            if let Some(needle) = &needle {
                let haystack = [&name, &topic, &alias]
                    .iter()
                    .filter_map(|s| s.as_deref())
                    .collect::<Vec<_>>()
                    .join("\n");
                if !haystack.to_lowercase().contains(needle.as_str()) {
                    continue;
                }
            }
            let joined = timeline.joined_member_count(&room_id)?;
            let init = ruma::directory::PublicRoomsChunkInit {
                num_joined_members: UInt::new(joined).unwrap_or_default(),
                room_id: room_id.clone(),
                world_readable: field("m.room.history_visibility", "history_visibility")?
                    .as_deref()
                    == Some("world_readable"),
                guest_can_join: field("m.room.guest_access", "guest_access")?.as_deref()
                    == Some("can_join"),
            };
            let mut chunk = PublicRoomsChunk::from(init);
            chunk.name = name;
            chunk.topic = topic;
            chunk.canonical_alias = alias.and_then(|a| a.try_into().ok());
            chunk.avatar_url = field("m.room.avatar", "url")?.map(Into::into);
            chunk.join_rule = match field("m.room.join_rules", "join_rule")?.as_deref() {
                Some("public") => JoinRuleKind::Public,
                Some("knock") => JoinRuleKind::Knock,
                Some("restricted") => JoinRuleKind::Restricted,
                Some("knock_restricted") => JoinRuleKind::KnockRestricted,
                _ => JoinRuleKind::Invite,
            };
            chunks.push(chunk);
        }
        chunks.sort_by(|a, b| {
            b.num_joined_members
                .cmp(&a.num_joined_members)
                .then(a.room_id.cmp(&b.room_id))
        });
        Ok(chunks)
    }
}

/// Token of a public rooms page: the offset of its first entry.
pub fn page_token(offset: usize) -> String {
    format!("p{offset}")
}

pub fn parse_page_token(token: &str) -> Result<usize> {
    token
        .strip_prefix('p')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::invalid_param("Invalid since token"))
}

//! The room directory: which rooms are published (in the server's own list, or in an
//! appservice's network list), and the public room list built from their current state.

use std::sync::Arc;

use ruma::directory::PublicRoomsChunk;
use ruma::room::JoinRuleKind;
use ruma::{OwnedRoomId, RoomId};

use super::timeline::Timeline;
use crate::error::{Error, Result};
use crate::storage::{Batch, Store, StoreExt, Table};

pub struct Directory {
    store: Arc<dyn Store>,
}

/// Which list of published rooms: the server's own, one network's (an appservice's
/// `<appservice id>|<network id>`, Synapse's instance id), or all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing<'a> {
    Server,
    Network(&'a str),
    All,
}

impl Listing<'_> {
    /// Whether a room published under `network` (empty: the server's list) is in this one.
    fn includes(&self, network: &[u8]) -> bool {
        match self {
            Listing::Server => network.is_empty(),
            Listing::Network(id) => network == id.as_bytes(),
            Listing::All => true,
        }
    }
}

impl Directory {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Whether the room is in the server's own list.
    pub fn is_published(&self, room_id: &RoomId) -> Result<bool> {
        Ok(self
            .store
            .get(Table::PublicRooms, room_id.as_bytes())?
            .is_some_and(|network| network.is_empty()))
    }

    /// Publishes the room in a network's list (an appservice's), or takes it out of it.
    pub fn set_published_in(&self, room_id: &RoomId, network: &str, published: bool) -> Result<()> {
        let mut batch = Batch::new();
        if published {
            batch.put(Table::PublicRooms, room_id.as_bytes(), network.as_bytes());
        } else if self
            .store
            .get(Table::PublicRooms, room_id.as_bytes())?
            .as_deref()
            == Some(network.as_bytes())
        {
            batch.delete(Table::PublicRooms, room_id.as_bytes());
        }
        self.store.write(batch)
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

    /// The rooms of one list of the directory (or of all).
    pub fn published_rooms(&self, listing: Listing<'_>) -> Result<Vec<OwnedRoomId>> {
        let mut rooms = Vec::new();
        for entry in self.store.scan_prefix(Table::PublicRooms, b"")? {
            let (key, network) = entry?;
            if !listing.includes(&network) {
                continue;
            }
            let room = std::str::from_utf8(&key)
                .ok()
                .and_then(|r| OwnedRoomId::try_from(r).ok())
                .ok_or_else(|| Error::internal("corrupt public room key"))?;
            rooms.push(room);
        }
        Ok(rooms)
    }

    /// The published rooms matching `search` (name, topic, alias; case-insensitive), largest
    /// first, as directory entries.
    pub fn list(
        &self,
        timeline: &Timeline,
        search: Option<&str>,
        listing: Listing<'_>,
    ) -> Result<Vec<PublicRoomsChunk>> {
        let needle = search.map(str::to_lowercase).filter(|s| !s.is_empty());
        let mut chunks = Vec::new();
        for room_id in self.published_rooms(listing)? {
            let Some(summary) = super::summary::summary(timeline, &room_id)? else {
                continue;
            };
            let alias = summary.canonical_alias.as_ref().map(|a| a.to_string());
            if let Some(needle) = &needle {
                let haystack = [&summary.name, &summary.topic, &alias]
                    .iter()
                    .filter_map(|s| s.as_deref())
                    .collect::<Vec<_>>()
                    .join("\n");
                if !haystack.to_lowercase().contains(needle.as_str()) {
                    continue;
                }
            }
            let init = ruma::directory::PublicRoomsChunkInit {
                num_joined_members: summary.num_joined_members,
                room_id,
                world_readable: summary.world_readable,
                guest_can_join: summary.guest_can_join,
            };
            let mut chunk = PublicRoomsChunk::from(init);
            chunk.join_rule = match summary.join_rule.kind() {
                kind @ (JoinRuleKind::Public
                | JoinRuleKind::Knock
                | JoinRuleKind::Restricted
                | JoinRuleKind::KnockRestricted) => kind,
                _ => JoinRuleKind::Invite,
            };
            chunk.name = summary.name;
            chunk.topic = summary.topic;
            chunk.canonical_alias = summary.canonical_alias;
            chunk.avatar_url = summary.avatar_url;
            chunk.room_type = summary.room_type;
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

//! The one interface every search backend implements: apply changes durably, answer queries
//! in a stable order that pages resume from.

use async_trait::async_trait;
use ruma::{OwnedEventId, OwnedRoomId};
use serde::{Deserialize, Serialize};

use super::analyzer::QueryWord;
use super::document::Document;
use crate::error::Result;

/// A change to the index.
#[derive(Clone, Debug)]
pub enum Change {
    /// Add the document, replacing any document of the same event.
    Put(Box<Document>),
    /// Remove the event's document, if there is one.
    Remove(OwnedEventId),
}

/// The searchable keys of the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Body,
    Name,
    Topic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Order {
    /// Best match first; equal matches newest first.
    Rank,
    /// Newest first.
    Recent,
}

/// A room the searcher may find events in, and up to which timeline position (the position
/// of their leave, for a room they left).
#[derive(Clone, Debug)]
pub struct RoomScope {
    pub room_id: OwnedRoomId,
    pub upto: Option<u64>,
}

/// What to find. Every word must occur in one of `keys`; the other fields narrow the
/// documents down.
#[derive(Clone, Debug)]
pub struct Query {
    /// The search term as the user typed it (for backends with their own analysis).
    pub term: String,
    pub words: Vec<QueryWord>,
    pub keys: Vec<Key>,
    pub rooms: Vec<RoomScope>,
    pub senders: Option<Vec<String>>,
    pub not_senders: Vec<String>,
    /// Exact event types (wildcards are applied by the caller).
    pub types: Option<Vec<String>>,
    pub not_types: Vec<String>,
    pub has_url: Option<bool>,
    pub order: Order,
}

/// Where a page ends, so the next one starts right after it. `rank` is the score's bits (an
/// `f32` survives the round trip through a token exactly that way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    pub count: u64,
    /// Hits before this one, for backends that page by offset.
    #[serde(default)]
    pub offset: u64,
}

#[derive(Clone, Debug)]
pub struct Hit {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub count: u64,
    /// The score, for `rank` ordering.
    pub rank: Option<f64>,
    /// Resuming from here yields the hits after this one.
    pub resume: Resume,
}

#[derive(Clone, Debug, Default)]
pub struct Hits {
    pub hits: Vec<Hit>,
    /// Every document the query matches (not only those after the resume point).
    pub total: u64,
}

#[async_trait]
pub trait SearchIndex: Send + Sync {
    /// Gets the backend ready (creates the index, applies its settings); the indexer calls it
    /// before its first batch, and again until it succeeds.
    async fn prepare(&self) -> Result<()> {
        Ok(())
    }

    /// Applies the changes in order; once this returns they survive a crash.
    async fn apply(&self, changes: Vec<Change>) -> Result<()>;

    /// Up to `limit` hits after `after`, in the query's order: descending rank then count, or
    /// descending count. The order of two documents never changes between calls, so pages
    /// neither repeat nor skip.
    async fn search(&self, query: &Query, after: Option<Resume>, limit: usize) -> Result<Hits>;

    /// Removes every document (before a rebuild).
    async fn clear(&self) -> Result<()>;
}

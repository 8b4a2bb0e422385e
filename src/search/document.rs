//! What of an event is searchable: the spec's keys `content.body` (with a file's `filename`,
//! so files are found by name), `content.name` and `content.topic`. Encrypted events have no
//! plaintext on the server and are never indexed.

use ruma::events::TimelineEventType;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rooms::pdu::StoredPdu;

/// The event types that carry searchable text.
pub fn indexable(kind: &TimelineEventType) -> bool {
    matches!(
        kind,
        TimelineEventType::RoomMessage
            | TimelineEventType::RoomName
            | TimelineEventType::RoomTopic
            | TimelineEventType::Sticker
    )
}

/// The searchable part of one event, as every backend indexes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's timeline position: the order of `recent` results and of pagination.
    pub count: u64,
    pub origin_server_ts: u64,
    /// `content.body`, and a file's `filename` when it says something else.
    pub body: Vec<String>,
    pub name: Option<String>,
    pub topic: Option<String>,
    /// `content.url` is set (the filter's `contains_url`).
    pub has_url: bool,
}

fn text(content: &Value, field: &str) -> Option<String> {
    content[field]
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
}

impl Document {
    /// The document of the event at `count`; `None` when it has nothing to search (a redacted
    /// or encrypted event, an empty message).
    pub fn of(count: u64, event: &StoredPdu) -> Option<Document> {
        let json = event.to_client_event();
        let kind = json["type"].as_str()?;
        let content = &json["content"];
        let mut body: Vec<String> = text(content, "body").into_iter().collect();
        if let Some(filename) = text(content, "filename")
            && !body.contains(&filename)
        {
            body.push(filename);
        }
        let (name, topic) = match kind {
            "m.room.name" => (text(content, "name"), None),
            "m.room.topic" => (None, text(content, "topic")),
            _ => (None, None),
        };
        if body.is_empty() && name.is_none() && topic.is_none() {
            return None;
        }
        Some(Document {
            event_id: event.event_id.to_string(),
            room_id: event.room_id.to_string(),
            sender: json["sender"].as_str()?.to_owned(),
            kind: kind.to_owned(),
            count,
            origin_server_ts: json["origin_server_ts"].as_u64().unwrap_or(0),
            body,
            name,
            topic,
            has_url: content["url"].is_string(),
        })
    }

    /// The text under each key, for highlights.
    pub fn texts(&self) -> impl Iterator<Item = (super::index::Key, &str)> {
        use super::index::Key;
        self.body
            .iter()
            .map(|t| (Key::Body, t.as_str()))
            .chain(self.name.iter().map(|t| (Key::Name, t.as_str())))
            .chain(self.topic.iter().map(|t| (Key::Topic, t.as_str())))
    }
}

//! What a sync filter keeps of the events other than the timeline's: account data, presence,
//! ephemeral and state events by type, sender, room and limit; and `event_fields`, the parts of
//! each room event a client wants.

use ruma::api::client::filter::{Filter, RoomEventFilter};
use ruma::{OwnedRoomId, OwnedUserId, RoomId};
use serde_json::{Map, Value};

use crate::rooms::pagination::type_and_sender_pass;

/// The type, sender, room and limit conditions of a filter section.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    types: Option<Vec<String>>,
    not_types: Vec<String>,
    senders: Option<Vec<OwnedUserId>>,
    not_senders: Vec<OwnedUserId>,
    rooms: Option<Vec<OwnedRoomId>>,
    not_rooms: Vec<OwnedRoomId>,
    limit: Option<usize>,
}

fn limit(limit: Option<ruma::UInt>) -> Option<usize> {
    limit.map(|l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX))
}

impl From<&Filter> for Selector {
    fn from(filter: &Filter) -> Self {
        Self {
            types: filter.types.clone(),
            not_types: filter.not_types.clone(),
            senders: filter.senders.clone(),
            not_senders: filter.not_senders.clone(),
            limit: limit(filter.limit),
            ..Self::default()
        }
    }
}

impl From<&RoomEventFilter> for Selector {
    fn from(filter: &RoomEventFilter) -> Self {
        Self {
            types: filter.types.clone(),
            not_types: filter.not_types.clone(),
            senders: filter.senders.clone(),
            not_senders: filter.not_senders.clone(),
            rooms: filter.rooms.clone(),
            not_rooms: filter.not_rooms.clone(),
            limit: limit(filter.limit),
        }
    }
}

impl Selector {
    /// Whether this section of a room is wanted at all.
    pub fn wants_room(&self, room_id: &RoomId) -> bool {
        self.rooms
            .as_ref()
            .is_none_or(|rooms| rooms.iter().any(|r| r == room_id))
            && !self.not_rooms.iter().any(|r| r == room_id)
    }

    /// Whether an event (client format; account data has no sender) passes.
    pub fn passes(&self, event: &Value) -> bool {
        type_and_sender_pass(
            self.types.as_deref(),
            &self.not_types,
            self.senders.as_deref(),
            &self.not_senders,
            event["type"].as_str().unwrap_or_default(),
            event["sender"].as_str().unwrap_or_default(),
        )
    }

    /// The events that pass, at most `limit` of them.
    pub fn select(&self, events: Vec<Value>) -> Vec<Value> {
        events
            .into_iter()
            .filter(|e| self.passes(e))
            .take(self.limit.unwrap_or(usize::MAX))
            .collect()
    }

    /// The events of a room's section, none when the room is not wanted.
    pub fn select_in(&self, room_id: &RoomId, events: Vec<Value>) -> Vec<Value> {
        if self.wants_room(room_id) {
            self.select(events)
        } else {
            Vec::new()
        }
    }
}

/// The `event_fields` of a filter: dotted paths (`content.body`; `\.` is a literal dot).
#[derive(Clone, Debug, Default)]
pub struct Fields(Option<Vec<Vec<String>>>);

impl Fields {
    pub fn new(fields: Option<&[String]>) -> Self {
        Self(fields.map(|fields| fields.iter().map(|f| split_path(f)).collect()))
    }

    /// The event with only the wanted fields (all of it when no fields were named).
    pub fn project(&self, event: Value) -> Value {
        let Some(paths) = &self.0 else {
            return event;
        };
        let mut kept = Value::Object(Map::new());
        for path in paths {
            let Some(value) = path.iter().try_fold(&event, |v, part| v.get(part)) else {
                continue;
            };
            let mut target = &mut kept;
            for (i, part) in path.iter().enumerate() {
                let Some(object) = target.as_object_mut() else {
                    break;
                };
                if i + 1 == path.len() {
                    object.insert(part.clone(), value.clone());
                    break;
                }
                target = object
                    .entry(part.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
            }
        }
        kept
    }
}

fn split_path(field: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.push(chars.next().unwrap_or('\\')),
            '.' => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn event_fields_keep_only_the_named_paths() {
        let event = json!({
            "type": "m.room.message",
            "sender": "@a:x",
            "content": {"body": "hi", "msgtype": "m.text", "m.relates_to": {"rel_type": "m.thread"}},
            "unsigned": {"age": 5},
            "a.b": 1,
        });
        let fields = Fields::new(Some(&[
            "type".into(),
            "content.body".into(),
            "content.m\\.relates_to.rel_type".into(),
            "a\\.b".into(),
            "content.missing".into(),
        ]));
        assert_eq!(
            fields.project(event.clone()),
            json!({"type": "m.room.message", "content": {"body": "hi", "m.relates_to": {"rel_type": "m.thread"}}, "a.b": 1})
        );
        assert_eq!(Fields::new(None).project(event.clone()), event);
    }

    #[test]
    fn selectors_filter_by_type_sender_room_and_limit() {
        let filter: Filter = serde_json::from_value(
            json!({"types": ["m.*"], "not_types": ["m.secret"], "not_senders": ["@b:x"], "limit": 2}),
        )
        .unwrap();
        let selector = Selector::from(&filter);
        let events = vec![
            json!({"type": "m.a", "sender": "@a:x"}),
            json!({"type": "m.secret", "sender": "@a:x"}),
            json!({"type": "m.b", "sender": "@b:x"}),
            json!({"type": "other", "sender": "@a:x"}),
            json!({"type": "m.c", "sender": "@a:x"}),
            json!({"type": "m.d", "sender": "@a:x"}),
        ];
        let kept: Vec<_> = selector
            .select(events)
            .into_iter()
            .map(|e| e["type"].clone())
            .collect();
        assert_eq!(kept, vec![json!("m.a"), json!("m.c")]);

        let room_filter: RoomEventFilter =
            serde_json::from_value(json!({"not_rooms": ["!quiet:x"]})).unwrap();
        let selector = Selector::from(&room_filter);
        let quiet: &RoomId = "!quiet:x".try_into().unwrap();
        let loud: &RoomId = "!loud:x".try_into().unwrap();
        assert!(!selector.wants_room(quiet));
        assert!(selector.wants_room(loud));
    }
}

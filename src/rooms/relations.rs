//! Relations between events (`m.relates_to`): edits, threads, references, annotations. Each
//! relation is indexed under its parent when the child is stored, so the aggregations bundled
//! into served events (`unsigned.m.relations`) and the `/relations` and `/threads` endpoints
//! read indices rather than the timeline.

use std::collections::BTreeSet;

use http::StatusCode;
use ruma::api::error::ErrorKind;
use ruma::{EventId, OwnedEventId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::pagination::{self, token};
use super::pdu::{Recipient, StoredPdu};
use super::timeline::Timeline;
use super::visibility::Viewer;
use crate::error::{Error, Result};
use crate::storage::{Direction, KeyRange, StoreExt, Table, keys};

/// How deep `recurse=true` follows relations of relations.
pub const MAX_RECURSION: u64 = 3;

/// An index entry: the child of a relation.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Child {
    pub event_id: OwnedEventId,
    pub kind: String,
    pub sender: String,
    pub rel_type: String,
    /// The annotation key (reactions), to refuse duplicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The relation an event's content declares: `(rel_type, parent)`. Replies (`m.in_reply_to`
/// without `rel_type`) are not relations.
pub fn relation_of(content: &Value) -> Option<(String, OwnedEventId)> {
    let relates = content.get("m.relates_to")?;
    let rel_type = relates.get("rel_type")?.as_str()?;
    let parent = OwnedEventId::try_from(relates.get("event_id")?.as_str()?).ok()?;
    Some((rel_type.to_owned(), parent))
}

/// Checks a new event's relation against the rules: an edit only by the original sender, of
/// a non-state event that is not itself an edit, with the same type; one reaction per key.
pub fn check(
    timeline: &Timeline,
    short: u64,
    sender: &UserId,
    kind: &str,
    content: &Value,
) -> Result<()> {
    let Some((rel_type, parent_id)) = relation_of(content) else {
        return Ok(());
    };
    let parent = match timeline.position(&parent_id)? {
        Some((s, _)) if s == short => timeline.get(&parent_id)?,
        _ => None,
    };
    match rel_type.as_str() {
        "m.replace" => {
            let parent = parent
                .ok_or_else(|| Error::invalid_param("The edited event is not in this room"))?;
            let original = parent.to_client_event();
            if original["sender"] != sender.as_str() {
                return Err(Error::forbidden(
                    "Only the original sender may edit an event",
                ));
            }
            if original.get("state_key").is_some() {
                return Err(Error::invalid_param("State events cannot be edited"));
            }
            if original["type"] != kind {
                return Err(Error::invalid_param(
                    "An edit must have the type of the edited event",
                ));
            }
            if relation_of(&original["content"]).is_some_and(|(r, _)| r == "m.replace") {
                return Err(Error::invalid_param(
                    "Edits cannot be edited; edit the original",
                ));
            }
        }
        "m.annotation" => {
            let key = content["m.relates_to"]["key"].as_str().unwrap_or_default();
            let duplicate = children(timeline, short, &parent_id, Some("m.annotation"))?
                .iter()
                .any(|(_, c)| {
                    c.sender == sender.as_str() && c.kind == kind && c.key.as_deref() == Some(key)
                });
            if duplicate {
                return Err(Error::new(
                    StatusCode::BAD_REQUEST,
                    ErrorKind::DuplicateAnnotation,
                    "You already reacted with this key",
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// The children of `parent` (of one relation type, or all), oldest first, with their counts.
pub fn children(
    timeline: &Timeline,
    short: u64,
    parent: &EventId,
    rel_type: Option<&str>,
) -> Result<Vec<(u64, Child)>> {
    let prefix = keys::relations_of(short, parent.as_str(), rel_type);
    timeline
        .store
        .scan_prefix(Table::Relations, &prefix)?
        .map(|entry| {
            let (key, value) = entry?;
            let count =
                keys::trailing_u64(&key).ok_or_else(|| Error::internal("corrupt relation key"))?;
            let child = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("corrupt relation: {e}")))?;
            Ok((count, child))
        })
        .collect()
}

impl Timeline {
    /// Thread roots by latest activity, newest first, at or below position `before`.
    pub fn threads(&self, short: u64, before: Option<u64>) -> Result<Vec<(u64, OwnedEventId)>> {
        let upper = before.map_or(u64::MAX, |b| b.saturating_add(1));
        let range = KeyRange::between(&keys::pdu(short, 0), &keys::pdu(short, upper));
        self.store
            .scan(Table::ThreadActivity, range, Direction::Backward)?
            .map(|entry| {
                let (key, value) = entry?;
                let (_, count) =
                    keys::parse_pdu(&key).ok_or_else(|| Error::internal("corrupt thread key"))?;
                let root = String::from_utf8(value)
                    .ok()
                    .and_then(|s| OwnedEventId::try_from(s).ok())
                    .ok_or_else(|| Error::internal("corrupt thread entry"))?;
                Ok((count, root))
            })
            .collect()
    }
}

/// An event (at timeline position `count`) in client format as `to` sees it: with the user's membership at the event
/// (`unsigned.membership`, which clients read to explain messages they cannot decrypt) and
/// the bundled aggregations (`unsigned.m.relations`).
pub fn serve(
    timeline: &Timeline,
    short: u64,
    (count, event): (u64, &StoredPdu),
    to: Recipient<'_>,
) -> Result<Value> {
    let mut json = event.to_client_event_for(to);
    json["unsigned"]["membership"] = timeline
        .membership_at(&event.room_id, short, to.user, count)?
        .into();
    let all = children(timeline, short, &event.event_id, None)?;
    if all.is_empty() {
        return Ok(json);
    }
    let mut relations = serde_json::Map::new();
    let sender = json["sender"].as_str().unwrap_or_default().to_owned();
    let latest_edit = all
        .iter()
        .rfind(|(_, c)| c.kind_is_edit(&sender))
        .map(|(_, c)| c.event_id.clone());
    if let Some(edit) = latest_edit.and_then(|id| timeline.get(&id).ok().flatten()) {
        relations.insert("m.replace".into(), edit.to_client_event());
    }
    let thread: Vec<&(u64, Child)> = all
        .iter()
        .filter(|(_, c)| c.rel_type_is("m.thread"))
        .collect();
    if let Some((_, latest)) = thread.last()
        && let Some(latest_event) = timeline.get(&latest.event_id)?
    {
        let participated =
            sender == to.user.as_str() || thread.iter().any(|(_, c)| c.sender == to.user.as_str());
        relations.insert(
            "m.thread".into(),
            json!({
                "latest_event": latest_event.to_client_event(),
                "count": thread.len(),
                "current_user_participated": participated,
            }),
        );
    }
    let references: Vec<Value> = all
        .iter()
        .filter(|(_, c)| c.rel_type_is("m.reference"))
        .map(|(_, c)| json!({"event_id": c.event_id}))
        .collect();
    if !references.is_empty() {
        relations.insert("m.reference".into(), json!({"chunk": references}));
    }
    if !relations.is_empty() {
        json["unsigned"]["m.relations"] = Value::Object(relations);
    }
    Ok(json)
}

impl Child {
    fn kind_is_edit(&self, original_sender: &str) -> bool {
        self.rel_type_is("m.replace") && self.sender == original_sender
    }

    fn rel_type_is(&self, rel_type: &str) -> bool {
        self.rel_type == rel_type
    }
}

/// A page of `/relations`.
pub struct RelationsPage {
    pub events: Vec<(u64, StoredPdu)>,
    pub next_batch: Option<String>,
    pub recursion_depth: Option<u64>,
}

/// The events relating to `parent` that the viewer may see, newest first (backwards) or oldest
/// first, from position `from`, `limit` at a time; with `recurse`, relations of relations too.
#[allow(clippy::too_many_arguments)]
pub fn page(
    timeline: &Timeline,
    viewer: &Viewer<'_>,
    short: u64,
    parent: &EventId,
    rel_type: Option<&str>,
    event_type: Option<&str>,
    from: Option<u64>,
    direction: Direction,
    limit: usize,
    recurse: bool,
) -> Result<RelationsPage> {
    let mut found: Vec<(u64, Child)> = children(timeline, short, parent, rel_type)?;
    let mut depth = 1;
    if recurse {
        let mut frontier: Vec<OwnedEventId> =
            found.iter().map(|(_, c)| c.event_id.clone()).collect();
        let mut seen: BTreeSet<OwnedEventId> = frontier.iter().cloned().collect();
        while depth < MAX_RECURSION && !frontier.is_empty() {
            let mut next = Vec::new();
            for id in &frontier {
                for (count, child) in children(timeline, short, id, rel_type)? {
                    if seen.insert(child.event_id.clone()) {
                        next.push(child.event_id.clone());
                        found.push((count, child));
                    }
                }
            }
            if !next.is_empty() {
                depth += 1;
            }
            frontier = next;
        }
    }
    found.sort_by_key(|(count, _)| *count);
    if direction == Direction::Backward {
        found.reverse();
    }
    let limit = limit.clamp(1, pagination::MAX_LIMIT);
    let mut events = Vec::new();
    let mut next_batch = None;
    for (count, child) in found {
        let in_range = match (direction, from) {
            (_, None) => true,
            (Direction::Backward, Some(f)) => count <= f,
            (Direction::Forward, Some(f)) => count > f,
        };
        if !in_range || event_type.is_some_and(|t| t != child.kind) || !viewer.can_see(count)? {
            continue;
        }
        if events.len() == limit {
            next_batch = Some(token(match direction {
                Direction::Backward => events
                    .last()
                    .map_or(0, |(c, _): &(u64, StoredPdu)| c.saturating_sub(1)),
                Direction::Forward => events.last().map_or(0, |(c, _): &(u64, StoredPdu)| *c),
            }));
            break;
        }
        if let Some(stored) = timeline.get(&child.event_id)? {
            events.push((count, stored));
        }
    }
    Ok(RelationsPage {
        events,
        next_batch,
        recursion_depth: recurse.then_some(depth),
    })
}

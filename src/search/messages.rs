//! Message search for one user (`POST /_matrix/client/v3/search`, category `room_events`): the
//! query goes to the backend scoped to the rooms the user is or was in, and every hit is
//! checked again as `/messages` would before it is shown (history visibility and membership
//! at the event, redactions). Pages resume from a token that names the last hit looked at.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ruma::api::client::filter::{RoomEventFilter, UrlFilter};
use ruma::api::client::search::search_events::v3::{
    Criteria, EventContextResult, GroupingKey, OrderBy, ResultGroup, ResultGroupMap,
    ResultGroupMapsByGroupingKey, ResultRoomEvents, SearchKeys, SearchResult, UserProfile,
};
use ruma::{OwnedRoomId, OwnedUserId, UInt};
use serde::{Deserialize, Serialize};

use super::analyzer::{self, QueryWord};
use super::document::Document;
use super::index::{Key, Order, Query, Resume, RoomScope};
use crate::error::{Error, Result};
use crate::rooms::pagination::{self, type_and_sender_pass};
use crate::rooms::pdu::raw;
use crate::rooms::pdu::{Recipient, StoredPdu};
use crate::rooms::relations;
use crate::rooms::visibility::Viewer;
use crate::services::Services;

const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;
/// Longer search terms are refused: nobody types them, and each word costs a phrase query.
pub const MAX_TERM_BYTES: usize = 4096;
const MAX_WORDS: usize = 16;
const MAX_CONTEXT: usize = 20;
const MAX_HIGHLIGHTS: usize = 50;
/// Backend queries one request makes at most while hidden hits keep its page from filling.
const MAX_ROUNDS: usize = 8;

/// What a `next_batch` token holds: the order it belongs to and the last hit looked at.
#[derive(Serialize, Deserialize)]
struct Token {
    order: Order,
    after: Resume,
}

impl Token {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(token: &str) -> Result<Token> {
        URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| Error::invalid_param("Unknown next_batch token"))
    }
}

/// What the request asked for besides the query.
pub struct Options {
    /// `event_context` was given (an absent one means no context, as Synapse does).
    pub context: bool,
}

/// A room the user may find events in: how they see it.
struct Room<'a> {
    viewer: Viewer<'a>,
    /// The position of the user's leave, for a room they left.
    upto: Option<u64>,
}

struct Found {
    count: u64,
    event: StoredPdu,
    document: Document,
    rank: Option<f64>,
}

fn keys(criteria: &Criteria) -> Result<Vec<Key>> {
    let Some(keys) = &criteria.keys else {
        return Ok(vec![Key::Body, Key::Name, Key::Topic]);
    };
    keys.iter()
        .map(|key| match key {
            SearchKeys::ContentBody => Ok(Key::Body),
            SearchKeys::ContentName => Ok(Key::Name),
            SearchKeys::ContentTopic => Ok(Key::Topic),
            other => Err(Error::invalid_param(format!(
                "Unknown search key {}",
                other.as_str()
            ))),
        })
        .collect()
}

/// Exact values for the backend; a list with a wildcard is left to the check of each hit.
fn exact(values: Option<&[String]>) -> Option<Vec<String>> {
    values
        .filter(|v| !v.iter().any(|t| t.contains('*')))
        .map(<[String]>::to_vec)
}

fn users(values: &[OwnedUserId]) -> Vec<String> {
    values.iter().map(ToString::to_string).collect()
}

/// The `room_events` results for the user.
pub async fn room_events(
    services: &Services,
    to: Recipient<'_>,
    criteria: &Criteria,
    next_batch: Option<&str>,
    options: Options,
) -> Result<ResultRoomEvents> {
    if criteria.search_term.len() > MAX_TERM_BYTES {
        return Err(Error::invalid_param(format!(
            "search_term is longer than {MAX_TERM_BYTES} bytes"
        )));
    }
    let order = match criteria.order_by {
        Some(OrderBy::Recent) => Order::Recent,
        _ => Order::Rank,
    };
    let mut after = match next_batch {
        Some(token) => {
            let token = Token::decode(token)?;
            if token.order != order {
                return Err(Error::invalid_param(
                    "next_batch belongs to a search in another order",
                ));
            }
            Some(token.after)
        }
        None => None,
    };
    let filter = &criteria.filter;
    let limit = filter
        .limit
        .map_or(DEFAULT_LIMIT, |l| {
            usize::try_from(u64::from(l)).unwrap_or(MAX_LIMIT)
        })
        .clamp(1, MAX_LIMIT);
    let words = analyzer::query(&criteria.search_term, MAX_WORDS);
    let keys = keys(criteria)?;

    let rooms = rooms(services, to, filter)?;
    let query = Query {
        term: criteria.search_term.clone(),
        words: words.clone(),
        keys: keys.clone(),
        rooms: rooms
            .iter()
            .map(|(room_id, room)| RoomScope {
                room_id: room_id.clone(),
                upto: room.upto,
            })
            .collect(),
        senders: filter.senders.as_deref().map(users),
        not_senders: users(&filter.not_senders),
        types: exact(filter.types.as_deref()),
        not_types: filter
            .not_types
            .iter()
            .filter(|t| !t.contains('*'))
            .cloned()
            .collect(),
        has_url: match filter.url_filter {
            Some(UrlFilter::EventsWithUrl) => Some(true),
            Some(UrlFilter::EventsWithoutUrl) => Some(false),
            _ => None,
        },
        order,
    };

    // Hits the user may not see are passed over; ask again until the page is full, a few
    // times at most: a page may come back short, with a next_batch to go on from.
    let mut found: Vec<(OwnedRoomId, Found)> = Vec::new();
    let mut total = None;
    let mut more = false;
    'pages: for _ in 0..MAX_ROUNDS {
        // One more than needed, to know whether there are more.
        let wanted = (limit - found.len()) * 2 + 1;
        let hits = services
            .search
            .index()
            .search(&query, after, wanted)
            .await?;
        total.get_or_insert(hits.total);
        more = hits.hits.len() == wanted;
        for hit in hits.hits {
            if found.len() == limit {
                more = true;
                break 'pages;
            }
            after = Some(hit.resume);
            let Some(room) = rooms.get(&hit.room_id) else {
                continue;
            };
            if let Some(item) = check(services, room, filter, hit.count, hit.rank, &hit.event_id)? {
                found.push((hit.room_id, item));
            }
        }
        if !more {
            break;
        }
    }

    let mut response = ResultRoomEvents::new();
    response.count = total.map(UInt::new_saturating);
    response.next_batch = more
        .then_some(after)
        .flatten()
        .map(|after| Token { order, after }.encode());
    response.highlights = highlights(&found, &keys, &words);
    for (room_id, item) in &found {
        let room = &rooms[room_id];
        let short = room.viewer.short();
        let mut result = SearchResult::new();
        result.rank = item.rank;
        result.result = Some(raw(&relations::serve(
            &services.timeline,
            short,
            (item.count, &item.event),
            to,
        )?)?);
        if options.context {
            result.context = context(services, room, item, criteria, to)?;
        }
        response.results.push(result);
    }
    response.groups = groups(&found, &criteria.groupings.group_by, &response.next_batch);
    if criteria.include_state == Some(true) {
        for (room_id, _) in &found {
            if response.state.contains_key(room_id) {
                continue;
            }
            let room = &rooms[room_id];
            let state = services
                .timeline
                .state_events_at(room.viewer.short(), room.upto)?
                .iter()
                .map(|event| raw(&event.to_client_event()))
                .collect::<Result<_>>()?;
            response.state.insert(room_id.clone(), state);
        }
    }
    Ok(response)
}

/// The rooms the user may find events in: those they are in, and those they left (up to the
/// leave), narrowed by the filter's room lists. Rooms of an invite only, or forgotten, are out.
fn rooms<'a>(
    services: &'a Services,
    to: Recipient<'a>,
    filter: &RoomEventFilter,
) -> Result<HashMap<OwnedRoomId, Room<'a>>> {
    let mut rooms = HashMap::new();
    for (room_id, membership) in services.timeline.memberships_of(to.user)? {
        let upto = match membership.membership.as_str() {
            "join" => None,
            "leave" | "ban" => Some(membership.count),
            _ => continue,
        };
        if filter.rooms.as_ref().is_some_and(|r| !r.contains(&room_id))
            || filter.not_rooms.contains(&room_id)
        {
            continue;
        }
        let Some(record) = services.timeline.room(&room_id)? else {
            continue;
        };
        let viewer = Viewer::new(&services.timeline, record.short, &room_id, to.user)?;
        rooms.insert(room_id, Room { viewer, upto });
    }
    Ok(rooms)
}

/// The hit as the user may see it, or `None`: visibility as `/messages` decides, the event
/// still searchable (not redacted since it was indexed), the filter's wildcard type lists.
fn check(
    services: &Services,
    room: &Room<'_>,
    filter: &RoomEventFilter,
    count: u64,
    rank: Option<f64>,
    event_id: &ruma::EventId,
) -> Result<Option<Found>> {
    if room.upto.is_some_and(|upto| count > upto) || !room.viewer.can_see(count)? {
        return Ok(None);
    }
    let Some(event) = services.timeline.event_at(room.viewer.short(), count)? else {
        return Ok(None);
    };
    if event.event_id != event_id {
        return Ok(None);
    }
    let Some(document) = Document::of(count, &event) else {
        return Ok(None);
    };
    if !type_and_sender_pass(
        filter.types.as_deref(),
        &filter.not_types,
        filter.senders.as_deref(),
        &filter.not_senders,
        &document.kind,
        &document.sender,
    ) {
        return Ok(None);
    }
    Ok(Some(Found {
        count,
        event,
        document,
        rank,
    }))
}

/// The words of the results that matched, as written there.
fn highlights(found: &[(OwnedRoomId, Found)], keys: &[Key], words: &[QueryWord]) -> Vec<String> {
    let mut highlights: Vec<String> = Vec::new();
    for (_, item) in found {
        for (key, text) in item.document.texts() {
            if !keys.contains(&key) {
                continue;
            }
            for word in analyzer::highlights(text, words) {
                if highlights.len() < MAX_HIGHLIGHTS && !highlights.contains(&word) {
                    highlights.push(word);
                }
            }
        }
    }
    highlights
}

fn context(
    services: &Services,
    room: &Room<'_>,
    item: &Found,
    criteria: &Criteria,
    to: Recipient<'_>,
) -> Result<EventContextResult> {
    let wanted = &criteria.event_context;
    let limit = |n: UInt| {
        usize::try_from(u64::from(n))
            .unwrap_or(MAX_CONTEXT)
            .min(MAX_CONTEXT)
    };
    let (before, mut after) = pagination::around(
        &services.timeline,
        &room.viewer,
        item.count,
        (limit(wanted.before_limit), limit(wanted.after_limit)),
        &RoomEventFilter::default(),
    )?;
    // Nothing after the user's leave.
    if let Some(upto) = room.upto {
        after.events.retain(|(count, _)| *count <= upto);
    }
    let short = room.viewer.short();
    let serve = |(count, event): &(u64, StoredPdu)| {
        raw(&relations::serve(
            &services.timeline,
            short,
            (*count, event),
            to,
        )?)
    };
    let mut context = EventContextResult::new();
    context.start = before.end.clone();
    context.end = after.end.clone();
    context.events_before = before.events.iter().map(serve).collect::<Result<_>>()?;
    context.events_after = after.events.iter().map(serve).collect::<Result<_>>()?;
    if wanted.include_profile {
        let shown = before
            .events
            .iter()
            .chain(after.events.iter())
            .map(|(count, event)| (*count, event))
            .chain(std::iter::once((item.count, &item.event)));
        for (count, event) in shown {
            let Some(sender) = event.to_client_event()["sender"]
                .as_str()
                .and_then(|s| OwnedUserId::try_from(s).ok())
            else {
                continue;
            };
            if context.profile_info.contains_key(&sender) {
                continue;
            }
            context
                .profile_info
                .insert(sender.clone(), profile_at(services, short, &sender, count)?);
        }
    }
    Ok(context)
}

/// The sender's display name and avatar as their member event had them at `count`.
fn profile_at(
    services: &Services,
    short: u64,
    sender: &OwnedUserId,
    count: u64,
) -> Result<UserProfile> {
    let mut profile = UserProfile::new();
    let member = services
        .timeline
        .state_id_at(short, "m.room.member", sender.as_str(), count)?
        .map(|id| services.timeline.get(&id))
        .transpose()?
        .flatten();
    if let Some(member) = member {
        let content = member.content();
        profile.displayname = content["displayname"].as_str().map(str::to_owned);
        profile.avatar_url = content["avatar_url"].as_str().map(|url| url.into());
    }
    Ok(profile)
}

fn groups(
    found: &[(OwnedRoomId, Found)],
    group_by: &[ruma::api::client::search::search_events::v3::Grouping],
    next_batch: &Option<String>,
) -> ResultGroupMapsByGroupingKey {
    let mut maps = ResultGroupMapsByGroupingKey::new();
    for grouping in group_by {
        let mut groups: BTreeMap<String, ResultGroup> = BTreeMap::new();
        let key_of: fn(&OwnedRoomId, &Found) -> String = match grouping.key {
            Some(GroupingKey::RoomId) => |room_id, _| room_id.to_string(),
            Some(GroupingKey::Sender) => |_, item| item.document.sender.clone(),
            _ => continue,
        };
        for (room_id, item) in found {
            let key = key_of(room_id, item);
            let order = groups.len() + 1;
            let group = groups.entry(key).or_insert_with(|| {
                let mut group = ResultGroup::new();
                group.order = Some(UInt::new_saturating(order as u64));
                group.next_batch = next_batch.clone();
                group
            });
            group.results.push(item.event.event_id.clone());
        }
        let map = match grouping.key {
            Some(GroupingKey::RoomId) => ResultGroupMap::RoomId(
                groups
                    .into_iter()
                    .filter_map(|(k, v)| OwnedRoomId::try_from(k).ok().map(|k| (k, v)))
                    .collect(),
            ),
            _ => ResultGroupMap::Sender(
                groups
                    .into_iter()
                    .filter_map(|(k, v)| OwnedUserId::try_from(k).ok().map(|k| (k, v)))
                    .collect(),
            ),
        };
        maps.insert(map);
    }
    maps
}

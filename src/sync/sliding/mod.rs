//! Simplified sliding sync (MSC4186, `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`),
//! in the shapes matrix-rust-sdk (Element X) and Synapse use: room lists ordered by latest
//! activity (`bump_stamp`), windows of them by `ranges`, explicit `room_subscriptions`, and the
//! extensions (to-device, e2ee, account data, receipts, typing).
//!
//! A connection (user, device, `conn_id`) remembers, per `pos`, what it has sent of each room
//! ([`Connections`]), so the next request gets only what changed. The per-room sections
//! (timeline, state, unread counts, members) are the same code as `/sync`'s.

mod connections;
mod lists;

use std::collections::{BTreeMap, BTreeSet};

use ruma::api::client::filter::RoomEventFilter;
use ruma::api::client::sync::sync_events::v5::Request;
use ruma::{DeviceId, UserId};
use serde_json::{Map, Value, json};

use self::connections::RoomSent;
pub use self::connections::{Connections, Sent};
pub use self::lists::space_filters;
use self::lists::{
    Candidate, Plan, Wanted, candidates, direct_rooms, extension_rooms, is_dm_room, plan,
};
use super::{
    account_data_since, device_lists, member_summary, state_section, stripped_state, sync_event,
    timeline_section, unread,
};
use crate::error::{Error, Result};
use crate::rooms::pagination::token;
use crate::rooms::pdu::Recipient;
use crate::rooms::relations;
use crate::rooms::visibility::Viewer;
use crate::services::Services;

/// Most timeline events per room, whatever a list asks.
const MAX_TIMELINE_LIMIT: usize = 100;

/// Whether `required_state` asks for the state event (`kind`, `key`): `*` matches any type or
/// key, `$ME` the user's own key, `$LAZY` (members) the senders of the events sent.
fn required(
    wanted: &BTreeSet<(String, String)>,
    user: &UserId,
    lazy: &BTreeSet<String>,
    kind: &str,
    key: &str,
) -> bool {
    wanted.iter().any(|(t, k)| {
        (t == "*" || t == kind)
            && (k == "*"
                || k == key
                || (k == "$ME" && key == user.as_str())
                || (k == "$LAZY" && kind == "m.room.member" && lazy.contains(key)))
    })
}

/// Builds the answer to a request from what the connection had been sent (`previous`), up to
/// the server count `upto`; returns it, what is now sent, and whether it holds anything new.
pub fn build(
    services: &Services,
    user: &UserId,
    device: &DeviceId,
    req: &Request,
    spaces: &BTreeMap<String, Vec<ruma::OwnedRoomId>>,
    previous: &Sent,
    upto: u64,
) -> Result<(Map<String, Value>, Sent, bool)> {
    let typing_serial = services.typing.serial();
    let initial_connection = previous.count == 0;
    let candidates = candidates(services, user, previous)?;
    let direct = direct_rooms(services, user)?;
    let plan = plan(services, user, req, spaces, &candidates, &direct)?;
    let mut sent = previous.clone();
    sent.count = upto;
    sent.typing = typing_serial;
    let mut changed = false;

    let mut lists = Map::new();
    for (name, (count, _)) in &plan.lists {
        lists.insert(name.clone(), json!({ "count": count }));
        if previous.lists.get(name) != Some(count) {
            changed = true;
        }
        sent.lists.insert(name.clone(), *count);
    }

    let mut rooms = Map::new();
    for (room_id, wanted) in &plan.rooms {
        let Some(candidate) = candidates.iter().find(|c| &c.room_id == room_id) else {
            continue;
        };
        let before = previous.rooms.get(room_id);
        if let Some((room, now)) = room_section(
            services,
            user,
            device,
            candidate,
            wanted,
            before,
            upto,
            is_dm_room(services, candidate, &direct)?,
        )? {
            rooms.insert(room_id.to_string(), room);
            changed = true;
            if matches!(candidate.membership.membership.as_str(), "leave" | "ban") {
                sent.rooms.remove(room_id);
            } else {
                sent.rooms.insert(room_id.clone(), now);
            }
        } else if let Some(before) = before {
            let mut still = before.clone();
            still.upto = upto;
            sent.rooms.insert(room_id.clone(), still);
        }
    }

    let (extensions, extensions_changed) =
        extensions(services, user, device, req, previous, &plan, upto)?;
    changed |= extensions_changed;

    let mut response = Map::new();
    response.insert("lists".into(), Value::Object(lists));
    response.insert("rooms".into(), Value::Object(rooms));
    response.insert("extensions".into(), Value::Object(extensions));
    if let Some(txn_id) = &req.txn_id {
        response.insert("txn_id".into(), json!(txn_id));
    }
    Ok((response, sent, changed || initial_connection))
}

/// One room's section, or `None` when nothing changed since it was last sent.
#[allow(clippy::too_many_arguments)]
fn room_section(
    services: &Services,
    user: &UserId,
    device: &DeviceId,
    candidate: &Candidate,
    wanted: &Wanted,
    before: Option<&RoomSent>,
    upto: u64,
    is_dm: bool,
) -> Result<Option<(Value, RoomSent)>> {
    let timeline = &services.timeline;
    let short = candidate.short;
    let room_id = &candidate.room_id;
    let membership = &candidate.membership.membership;
    let membership_changed = before.is_none_or(|b| &b.membership != membership);
    let mut room = Map::new();

    if membership == "invite" {
        if !membership_changed {
            return Ok(None);
        }
        room.insert("initial".into(), json!(true));
        let state = stripped_state(timeline, room_id, (short != 0).then_some(short), user)?;
        // The name as the invitee may see it: from what they are shown of the room.
        if let Some(name) = state
            .iter()
            .find(|e| e["type"] == "m.room.name")
            .and_then(|e| e["content"]["name"].as_str())
        {
            room.insert("name".into(), json!(name));
        }
        room.insert("invite_state".into(), json!(state));
        room.insert("bump_stamp".into(), json!(candidate.bump));
        room.insert("is_dm".into(), json!(is_dm));
        let now = RoomSent {
            upto,
            required: wanted.required.clone(),
            unread: (0, 0),
            membership: membership.clone(),
        };
        return Ok(Some((Value::Object(room), now)));
    }

    // A room the user left is followed up to the leave.
    let until = if membership == "join" {
        upto
    } else {
        candidate.membership.count.min(upto)
    };
    let initial = before.is_none() || membership_changed;
    let after = if initial {
        None
    } else {
        before.map(|b| b.upto)
    };
    let viewer = Viewer::new(timeline, short, room_id, user)?;
    let (events, limited) = timeline_section(
        services,
        &viewer,
        short,
        (after, until),
        &RoomEventFilter::default(),
        wanted.timeline_limit,
    )?;
    let lazy: BTreeSet<String> = events
        .iter()
        .filter_map(|(_, e)| e.to_client_event()["sender"].as_str().map(str::to_owned))
        .collect();
    let keep = |kind: &str, key: &str| required(&wanted.required, user, &lazy, kind, key);
    let mut state: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut add_state = |events: Vec<Value>| {
        for event in events {
            let key = (
                event["type"].as_str().unwrap_or_default().to_owned(),
                event["state_key"].as_str().unwrap_or_default().to_owned(),
            );
            state.insert(key, event);
        }
    };
    add_state(state_section(services, short, after, until + 1, &keep)?);
    if let Some(before) = before.filter(|_| !initial) {
        // State newly asked for is sent whole.
        let added: BTreeSet<(String, String)> = wanted
            .required
            .difference(&before.required)
            .cloned()
            .collect();
        if !added.is_empty() {
            let keep_added = |kind: &str, key: &str| required(&added, user, &lazy, kind, key);
            add_state(state_section(
                services,
                short,
                None,
                until + 1,
                &keep_added,
            )?);
        }
        // Members lazily loaded for the new senders.
        if wanted.required.iter().any(|(_, k)| k == "$LAZY") {
            let keep_lazy = |kind: &str, key: &str| kind == "m.room.member" && lazy.contains(key);
            add_state(state_section(services, short, None, until + 1, &keep_lazy)?);
        }
    }
    let (counts, _) = unread(services, short, user, false)?;
    let unread_now = (
        counts["notification_count"].as_u64().unwrap_or(0),
        counts["highlight_count"].as_u64().unwrap_or(0),
    );
    let now = RoomSent {
        upto,
        required: wanted.required.clone(),
        unread: unread_now,
        membership: membership.clone(),
    };
    if !initial
        && events.is_empty()
        && state.is_empty()
        && before.is_some_and(|b| b.unread == unread_now && b.required == wanted.required)
    {
        return Ok(None);
    }

    let recipient = Recipient { user, device };
    let previous_upto = after.unwrap_or(u64::MAX);
    let num_live = events.iter().filter(|(c, _)| *c > previous_upto).count();
    let start = events.first().map_or(until + 1, |(c, _)| *c);
    let served: Vec<Value> = events
        .iter()
        .map(|(count, e)| relations::serve(timeline, short, (*count, e), recipient).map(sync_event))
        .collect::<Result<_>>()?;
    if initial {
        room.insert("initial".into(), json!(true));
    }
    if let Some(name) = timeline
        .state_event(short, "m.room.name", "")?
        .and_then(|e| e.content()["name"].as_str().map(str::to_owned))
        .filter(|n| !n.is_empty())
    {
        room.insert("name".into(), json!(name));
    }
    if let Some(avatar) = timeline.state_event(short, "m.room.avatar", "")? {
        // A removed avatar (no url) is sent as null.
        room.insert("avatar".into(), avatar.content()["url"].clone());
    }
    let summary = member_summary(services, room_id, user)?;
    if initial || membership_changed {
        let heroes: Vec<Value> = summary
            .heroes
            .iter()
            .map(|hero| {
                let mut entry = json!({ "user_id": hero });
                if let Some(member) = timeline
                    .state_event(short, "m.room.member", hero.as_str())
                    .ok()
                    .flatten()
                {
                    let content = member.content();
                    for (field, name) in
                        [("displayname", "displayname"), ("avatar_url", "avatar_url")]
                    {
                        if content[field].is_string() {
                            entry[name] = content[field].clone();
                        }
                    }
                }
                entry
            })
            .collect();
        room.insert("heroes".into(), Value::Array(heroes));
    }
    room.insert("is_dm".into(), json!(is_dm));
    room.insert("timeline".into(), Value::Array(served));
    room.insert(
        "required_state".into(),
        Value::Array(state.into_values().collect()),
    );
    room.insert("limited".into(), json!(limited));
    room.insert("prev_batch".into(), json!(token(start.saturating_sub(1))));
    room.insert("num_live".into(), json!(num_live));
    room.insert("bump_stamp".into(), json!(candidate.bump));
    room.insert("joined_count".into(), json!(summary.joined));
    room.insert("invited_count".into(), json!(summary.invited));
    room.insert("notification_count".into(), json!(unread_now.0));
    room.insert("highlight_count".into(), json!(unread_now.1));
    Ok(Some((Value::Object(room), now)))
}

/// The extensions' sections; the flag tells whether any holds something new.
fn extensions(
    services: &Services,
    user: &UserId,
    device: &DeviceId,
    req: &Request,
    previous: &Sent,
    plan: &Plan,
    upto: u64,
) -> Result<(Map<String, Value>, bool)> {
    let ext = &req.extensions;
    let since = (previous.count > 0).then_some(previous.count);
    let mut out = Map::new();
    let mut changed = false;

    if ext.to_device.enabled == Some(true) {
        let from = match ext.to_device.since.as_deref() {
            None => 0,
            Some(token) => token
                .parse::<u64>()
                .map_err(|_| Error::invalid_param("Malformed to_device since"))?,
        };
        // Asking from a position means the device has the messages up to it.
        if from > 0 {
            services.to_device.acknowledge(user, device, from)?;
        }
        let (mut events, position) = services.to_device.pending(user, device, from, upto)?;
        if let Some(limit) = ext.to_device.limit {
            events.truncate(
                usize::try_from(u64::from(limit))
                    .unwrap_or(usize::MAX)
                    .max(1),
            );
        }
        changed |= !events.is_empty();
        out.insert(
            "to_device".into(),
            json!({"next_batch": position.to_string(), "events": events}),
        );
    }

    if ext.e2ee.enabled == Some(true) {
        let mut e2ee = json!({
            "device_one_time_keys_count": services.keys.one_time_key_counts(user, device)?,
            "device_unused_fallback_key_types": services.keys.unused_fallback_key_types(user, device)?,
        });
        if let Some(since) = since {
            let memberships = services.timeline.memberships_of(user)?;
            let joined = memberships
                .iter()
                .filter(|(_, m)| m.membership == "join")
                .map(|(room, _)| room.clone())
                .collect();
            let (changed_users, left) =
                device_lists(services, user, &memberships, &joined, since, upto)?;
            // The user's own sends answer too: that is when a device makes new room keys,
            // which clients back up when this connection returns.
            changed |= !changed_users.is_empty()
                || !left.is_empty()
                || services.timeline.activity.sent_after(user, since);
            e2ee["device_lists"] = json!({"changed": changed_users, "left": left});
        }
        out.insert("e2ee".into(), e2ee);
    }

    if ext.account_data.enabled == Some(true) {
        let (global, mut by_room) = account_data_since(services, user, since)?;
        let covered = extension_rooms(
            plan,
            ext.account_data.lists.as_ref(),
            ext.account_data.rooms.as_ref(),
        );
        // A room sent for the first time on this connection gets all its account data.
        let mut everything: Option<super::RoomAccountData> = None;
        let mut rooms = Map::new();
        for room_id in &covered {
            let mut events = by_room.remove(room_id).unwrap_or_default();
            if since.is_some() && !previous.rooms.contains_key(room_id) {
                if everything.is_none() {
                    everything = Some(account_data_since(services, user, None)?.1);
                }
                events = everything
                    .as_mut()
                    .and_then(|all| all.remove(room_id))
                    .unwrap_or_default();
            }
            if !events.is_empty() {
                rooms.insert(room_id.to_string(), Value::Array(events));
            }
        }
        changed |= !global.is_empty() || !rooms.is_empty();
        out.insert(
            "account_data".into(),
            json!({"global": global, "rooms": rooms}),
        );
    }

    if ext.receipts.enabled == Some(true) {
        let covered = extension_rooms(
            plan,
            ext.receipts.lists.as_ref(),
            ext.receipts.rooms.as_ref(),
        );
        let mut rooms = Map::new();
        for room_id in &covered {
            let Some(record) = services.timeline.room(room_id)? else {
                continue;
            };
            let after = previous.rooms.get(room_id).map(|r| r.upto);
            let receipts = services.receipts.changed(record.short, after, upto)?;
            if let Some(event) = crate::rooms::receipts::receipt_event(&receipts, user) {
                rooms.insert(room_id.to_string(), event);
            }
        }
        changed |= !rooms.is_empty();
        out.insert("receipts".into(), json!({ "rooms": rooms }));
    }

    if ext.typing.enabled == Some(true) {
        let covered = extension_rooms(plan, ext.typing.lists.as_ref(), ext.typing.rooms.as_ref());
        let mut rooms = Map::new();
        for room_id in &covered {
            let typing_since = previous
                .rooms
                .contains_key(room_id)
                .then_some(previous.typing)
                .filter(|_| since.is_some());
            if let Some(users) = services.typing.changed(room_id, typing_since) {
                rooms.insert(
                    room_id.to_string(),
                    json!({"type": "m.typing", "content": {"user_ids": users}}),
                );
            }
        }
        changed |= !rooms.is_empty();
        out.insert("typing".into(), json!({ "rooms": rooms }));
    }
    Ok((out, changed))
}

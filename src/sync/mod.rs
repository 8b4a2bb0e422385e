//! `/sync`: everything that changed for a user between two positions of the server-wide
//! count, as the spec's sync response. It waits on the [`watchers`](crate::watchers) that
//! every service wakes when it changes something a user should hear of.
//!
//! A sync reads up to the store's committed count (never past a change still being written)
//! and answers that count as `next_batch`, so consecutive syncs see every change exactly once.

pub mod filter;
pub mod sliding;

/// Wakes the syncs of the user and of everyone who shares a joined room with them (their
/// presence or keys changed).
pub fn wake_sharers(services: &Services, user: &UserId) -> Result<()> {
    services.watchers.wake(user);
    for room_id in services.timeline.joined_rooms(user)? {
        services.timeline.wake_room(&room_id)?;
    }
    Ok(())
}

/// A sync is a sign of life: the user's presence becomes what the sync says (unless
/// `offline`), and stays so while the returned guard lives.
pub fn syncing<'a>(
    services: &'a Services,
    user: &UserId,
    set_presence: &ruma::presence::PresenceState,
) -> Result<Option<crate::presence::Syncing<'a>>> {
    if *set_presence == ruma::presence::PresenceState::Offline {
        return Ok(None);
    }
    if services.presence.touch(user, set_presence.clone()) {
        wake_sharers(services, user)?;
        crate::federation::presence::announce(services, user)?;
    }
    Ok(Some(services.presence.syncing(user)))
}

/// A long-poll: `attempt` gets the committed count and whether this is its last chance (the
/// deadline passed); until it answers, the request sleeps until a change concerns the user.
/// It is registered for wake-ups before each read, so a change between the read and the
/// wait still wakes it.
pub async fn long_poll<T>(
    services: &Services,
    user: &UserId,
    timeout: std::time::Duration,
    mut attempt: impl FnMut(u64, bool) -> Result<Option<T>>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notify = services.watchers.watch(user);
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let last = tokio::time::Instant::now() >= deadline;
        if let Some(answer) = attempt(services.store.committed_count(), last)? {
            return Ok(answer);
        }
        if tokio::time::timeout_at(deadline, notified).await.is_ok() {
            // Woken by the user's own send, perhaps: its response goes out first.
            services
                .watchers
                .sends_settled(user, SEND_ANSWER_FIRST)
                .await;
        }
    }
}

/// How long a woken long-poll lets the user's own send requests finish first (a send slowed by
/// a busy disk can take tens of milliseconds).
const SEND_ANSWER_FIRST: std::time::Duration = std::time::Duration::from_millis(250);

/// Whether `other` is the user or is joined to one of the rooms the user is joined to.
fn shares_a_room(
    services: &Services,
    user: &UserId,
    other: &UserId,
    joined: &BTreeSet<OwnedRoomId>,
) -> Result<bool> {
    Ok(other == user
        || services
            .timeline
            .joined_rooms(other)?
            .iter()
            .any(|room| joined.contains(room)))
}

use std::collections::{BTreeMap, BTreeSet};

use ruma::api::client::filter::RoomEventFilter;
use ruma::{DeviceId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::{Map, Value, json};

use self::filter::{Fields, Selector};
use crate::error::{Error, Result};
use crate::rooms::members::MembershipRecord;
use crate::rooms::notifications::Unread;
use crate::rooms::pagination::{passes, token};
use crate::rooms::pdu::{Recipient, StoredPdu};
use crate::rooms::relations;
use crate::rooms::timeline::Timeline;
use crate::rooms::visibility::Viewer;
use crate::services::Services;
use crate::storage::Direction;

/// Default number of timeline events per room.
pub const DEFAULT_TIMELINE_LIMIT: usize = 10;
/// Most timeline events per room, whatever the filter asks.
pub const MAX_TIMELINE_LIMIT: usize = 100;

/// What a sync asks for, from its parameters and filter.
pub struct Options {
    pub since: Option<u64>,
    /// The typing serial of the `since` token.
    pub typing_since: Option<u64>,
    /// The presence serial of the `since` token.
    pub presence_since: Option<u64>,
    /// The to-device position of the `since` token (messages up to it were received).
    pub to_device_since: Option<u64>,
    pub full_state: bool,
    pub timeline_limit: usize,
    pub timeline_filter: RoomEventFilter,
    pub lazy_load_members: bool,
    pub rooms: Option<Vec<OwnedRoomId>>,
    pub not_rooms: Vec<OwnedRoomId>,
    pub include_leave: bool,
    /// Unread counts per thread (`unread_thread_notifications`) instead of one per room.
    pub thread_notifications: bool,
    pub state: Selector,
    pub ephemeral: Selector,
    pub room_account_data: Selector,
    pub account_data: Selector,
    pub presence: Selector,
    pub fields: Fields,
}

impl Options {
    /// The options of a sync from its filter and `since` token parts.
    pub fn new(
        filter: &ruma::api::client::filter::FilterDefinition,
        since: Option<Since>,
        full_state: bool,
    ) -> Self {
        let room = &filter.room;
        let limit = room.timeline.limit.map_or(DEFAULT_TIMELINE_LIMIT, |l| {
            usize::try_from(u64::from(l)).unwrap_or(MAX_TIMELINE_LIMIT)
        });
        Self {
            since: since.map(|s| s.count),
            typing_since: since.and_then(|s| s.typing),
            presence_since: since.and_then(|s| s.presence),
            to_device_since: since.map(|s| s.to_device.unwrap_or(s.count)),
            full_state,
            timeline_limit: limit.clamp(1, MAX_TIMELINE_LIMIT),
            lazy_load_members: !room.state.lazy_load_options.is_disabled(),
            timeline_filter: room.timeline.clone(),
            rooms: room.rooms.clone(),
            not_rooms: room.not_rooms.clone(),
            include_leave: room.include_leave,
            thread_notifications: room.timeline.unread_thread_notifications,
            state: Selector::from(&room.state),
            ephemeral: Selector::from(&room.ephemeral),
            room_account_data: Selector::from(&room.account_data),
            account_data: Selector::from(&filter.account_data),
            presence: Selector::from(&filter.presence),
            fields: Fields::new(filter.event_fields.as_deref()),
        }
    }
}

/// A client event without `room_id`, as sync sections carry them.
pub(super) fn sync_event(json: Value) -> Value {
    let mut json = json;
    if let Some(object) = json.as_object_mut() {
        object.remove("room_id");
    }
    json
}

/// The stripped state an invitee or knocker sees of a room: of the room's state here, or for
/// an invite from another server into a room this server is not in (`short` is none, or the
/// room's state here is from before), what that server sent with it.
pub(super) fn stripped_state(
    timeline: &Timeline,
    room_id: &RoomId,
    short: Option<u64>,
    user: &UserId,
) -> Result<Vec<Value>> {
    if let Some(invite) = timeline.remote_invite(user, room_id)? {
        return Ok(invite.state);
    }
    let mut events = Vec::new();
    let Some(short) = short else {
        return Ok(events);
    };
    for kind in crate::rooms::state::INVITE_STATE_TYPES {
        if let Some(stored) = timeline.state_event(short, kind, "")? {
            events.push(stripped(&stored));
        }
    }
    if let Some(member) = timeline.state_event(short, "m.room.member", user.as_str())? {
        // The inviter's own member event too, so that clients can say who invited.
        let sender = member.to_client_event()["sender"].clone();
        if let Some(inviter) = sender.as_str().filter(|s| *s != user.as_str())
            && let Some(inviter) = timeline.state_event(short, "m.room.member", inviter)?
        {
            events.push(stripped(&inviter));
        }
        events.push(stripped(&member));
    }
    Ok(events)
}

fn stripped(stored: &StoredPdu) -> Value {
    let event = stored.to_client_event();
    json!({
        "type": event["type"],
        "state_key": event["state_key"],
        "content": event["content"],
        "sender": event["sender"],
    })
}

/// The timeline of a room between two positions for a viewer: the newest `limit` visible
/// events passing `filter` after `after` up to `upto`, oldest first, and whether older ones
/// were left out.
pub(super) fn timeline_section(
    services: &Services,
    viewer: &Viewer<'_>,
    short: u64,
    (after, upto): (Option<u64>, u64),
    filter: &RoomEventFilter,
    limit: usize,
) -> Result<(Vec<(u64, StoredPdu)>, bool)> {
    let lower = after.map_or(0, |a| a + 1);
    let mut events = Vec::new();
    let mut limited = false;
    for entry in
        services
            .timeline
            .scan_events(short, lower, upto.saturating_add(1), Direction::Backward)?
    {
        let (count, stored) = entry?;
        if !passes(filter, &stored) || !viewer.can_see(count)? {
            continue;
        }
        if events.len() == limit {
            limited = true;
            break;
        }
        events.push((count, stored));
    }
    events.reverse();
    Ok((events, limited))
}

/// The state section: the state at `start - 1` (all of it for a first sync of the room, else
/// what changed after `since`) that `keep` (type, state key) wants, left out events the
/// timeline holds.
pub(super) fn state_section(
    services: &Services,
    short: u64,
    since: Option<u64>,
    start: u64,
    keep: &dyn Fn(&str, &str) -> bool,
) -> Result<Vec<Value>> {
    let at = start.saturating_sub(1);
    let keys: Vec<(String, String)> = match since {
        None => services
            .timeline
            .current_state(short)?
            .into_iter()
            .map(|(key, _)| key)
            .collect(),
        Some(since) if since >= at => Vec::new(),
        Some(since) => services.timeline.state_changed_between(short, since, at)?,
    };
    let mut events = Vec::new();
    for (event_type, state_key) in keys {
        if !keep(&event_type, &state_key) {
            continue;
        }
        if let Some(id) = services
            .timeline
            .state_id_at(short, &event_type, &state_key, at)?
            && let Some(stored) = services.timeline.get(&id)?
        {
            events.push(sync_event(stored.to_client_event()));
        }
    }
    Ok(events)
}

/// How many users are joined to and invited into a room, and up to five of them other than
/// `user` (the "heroes" clients name a room without a name after).
pub(super) struct MemberSummary {
    pub joined: u64,
    pub invited: u64,
    pub heroes: Vec<OwnedUserId>,
}

pub(super) fn member_summary(
    services: &Services,
    room_id: &ruma::RoomId,
    user: &UserId,
) -> Result<MemberSummary> {
    let mut summary = MemberSummary {
        joined: 0,
        invited: 0,
        heroes: Vec::new(),
    };
    for (member, record) in services.timeline.room_memberships(room_id)?.iter() {
        match record.membership.as_str() {
            "join" => summary.joined += 1,
            "invite" => summary.invited += 1,
            _ => continue,
        }
        if member != user && summary.heroes.len() < 5 {
            summary.heroes.push(member.clone());
        }
    }
    Ok(summary)
}

fn summary(services: &Services, room_id: &ruma::RoomId, user: &UserId) -> Result<Value> {
    let MemberSummary {
        joined,
        invited,
        heroes,
    } = member_summary(services, room_id, user)?;
    Ok(
        json!({"m.heroes": heroes, "m.joined_member_count": joined, "m.invited_member_count": invited}),
    )
}

/// The unread counts of a joined room: one count for the whole room, or the main timeline's
/// and each thread's when the client asked for threads apart.
pub(super) fn unread(
    services: &Services,
    short: u64,
    user: &UserId,
    threads_apart: bool,
) -> Result<(Value, Value)> {
    let read = services.receipts.read_positions(short, user)?;
    let counts = services.timeline.unread_counts(user, short, &read)?;
    let as_json =
        |u: Unread| json!({"highlight_count": u.highlights, "notification_count": u.notifications});
    if threads_apart {
        let threads: Map<String, Value> = counts
            .threads
            .into_iter()
            .map(|(root, u)| (root, as_json(u)))
            .collect();
        Ok((as_json(counts.main), Value::Object(threads)))
    } else {
        let total = counts.threads.values().fold(counts.main, |sum, u| sum + *u);
        Ok((as_json(total), json!({})))
    }
}

/// Account data events by room.
pub(super) type RoomAccountData = BTreeMap<OwnedRoomId, Vec<Value>>;

/// Account data events changed after `since` (all of them, push rules included, for a first
/// sync): the global ones, and each room's.
pub(super) fn account_data_since(
    services: &Services,
    user: &UserId,
    since: Option<u64>,
) -> Result<(Vec<Value>, RoomAccountData)> {
    let mut global = Vec::new();
    let mut rooms = RoomAccountData::new();
    for (room, event_type) in services
        .account_data
        .changed_since(user, since.unwrap_or(0))?
    {
        let Some(content) = services
            .account_data
            .get(user, room.as_deref(), &event_type)?
        else {
            continue;
        };
        let content: Value = serde_json::from_str(content.get()).unwrap_or_default();
        let event = json!({"type": event_type, "content": content});
        match room {
            None => global.push(event),
            Some(room) => rooms.entry(room).or_default().push(event),
        }
    }
    if since.is_none() && !global.iter().any(|e| e["type"] == "m.push_rules") {
        let rules = services.push_rules.get(user)?;
        global.push(json!({"type": "m.push_rules", "content": {"global": rules}}));
    }
    Ok((global, rooms))
}

/// Builds the sync response for changes after `options.since` up to `upto`; the flag tells
/// whether it holds anything (an incremental sync with nothing new keeps waiting).
pub fn build(
    services: &Services,
    user: &UserId,
    device: &DeviceId,
    options: &Options,
    upto: u64,
) -> Result<(Value, bool)> {
    let recipient = Recipient { user, device };
    // Read the typing serial first: a change after it is sent again next time, never lost.
    let typing_serial = services.typing.serial();
    let presence_serial = services.presence.serial();
    let since = options.since.map(|s| s.min(upto));
    let full = options.full_state;
    let mut joined_rooms: BTreeSet<OwnedRoomId> = BTreeSet::new();
    let mut join = Map::new();
    let mut invite = Map::new();
    let mut leave = Map::new();
    let mut knock = Map::new();

    let (global_data, mut room_data) = account_data_since(services, user, since)?;
    let global_data = options.account_data.select(global_data);
    let project = |events: Vec<Value>| -> Vec<Value> {
        events
            .into_iter()
            .map(|e| options.fields.project(e))
            .collect()
    };

    let memberships = services.timeline.memberships_of(user)?;
    for (room_id, record) in &memberships {
        if record.membership == "join" {
            joined_rooms.insert(room_id.clone());
        }
        if options.rooms.as_ref().is_some_and(|r| !r.contains(room_id))
            || options.not_rooms.contains(room_id)
        {
            continue;
        }
        if record.count > upto {
            continue;
        }
        let changed = since.is_none_or(|s| record.count > s);
        // A room joined after `since` is new to the client: send it whole.
        let room_since = since.filter(|_| !full && !changed);
        let typing = if record.membership == "join" {
            services
                .typing
                .changed(room_id, room_since.and(options.typing_since))
        } else {
            None
        };
        // A joined room where nothing happened, with no room account data or typing change:
        // pass over it without reading it.
        if let Some(s) = room_since
            && record.membership == "join"
            && typing.is_none()
            && !room_data.contains_key(room_id)
            && !services.timeline.activity.changed_after(room_id, s)
        {
            continue;
        }
        if matches!(record.membership.as_str(), "invite" | "knock") {
            if changed || full {
                let short = services.timeline.room(room_id)?.map(|room| room.short);
                let state = stripped_state(&services.timeline, room_id, short, user)?;
                let (section, key) = if record.membership == "invite" {
                    (&mut invite, "invite_state")
                } else {
                    (&mut knock, "knock_state")
                };
                section.insert(room_id.to_string(), json!({key: {"events": state}}));
            }
            continue;
        }
        let Some(room) = services.timeline.room(room_id)? else {
            // A purged room: its events are gone, but the client still hears it left.
            if matches!(record.membership.as_str(), "leave" | "ban") && changed && since.is_some() {
                leave.insert(
                    room_id.to_string(),
                    json!({"timeline": {"events": []}, "state": {"events": []}, "account_data": {"events": []}}),
                );
            }
            continue;
        };
        match record.membership.as_str() {
            "join" => {
                let data = options
                    .room_account_data
                    .select_in(room_id, room_data.remove(room_id).unwrap_or_default());
                let viewer = Viewer::new(&services.timeline, room.short, room_id, user)?;
                let (events, limited) = timeline_section(
                    services,
                    &viewer,
                    room.short,
                    (room_since, upto),
                    &options.timeline_filter,
                    options.timeline_limit,
                )?;
                let start = events.first().map_or(upto + 1, |(c, _)| *c);
                let members = options.lazy_load_members.then(|| {
                    let mut senders: BTreeSet<String> = events
                        .iter()
                        .filter_map(|(_, e)| {
                            e.to_client_event()["sender"].as_str().map(str::to_owned)
                        })
                        .collect();
                    senders.insert(user.to_string());
                    senders
                });
                let state = options.state.select_in(
                    room_id,
                    state_section(services, room.short, room_since, start, &|kind, key| {
                        kind != "m.room.member" || members.as_ref().is_none_or(|m| m.contains(key))
                    })?,
                );
                let receipts = services.receipts.changed(room.short, room_since, upto)?;
                let mut ephemeral: Vec<Value> =
                    crate::rooms::receipts::receipt_event(&receipts, user)
                        .into_iter()
                        .collect();
                if let Some(users) = typing {
                    ephemeral.push(json!({"type": "m.typing", "content": {"user_ids": users}}));
                }
                let ephemeral = options.ephemeral.select_in(room_id, ephemeral);
                if room_since.is_some()
                    && events.is_empty()
                    && state.is_empty()
                    && data.is_empty()
                    && ephemeral.is_empty()
                {
                    continue;
                }
                let (notifications, thread_notifications) =
                    unread(services, room.short, user, options.thread_notifications)?;
                let timeline: Vec<Value> = events
                    .iter()
                    .map(|(count, e)| {
                        relations::serve(&services.timeline, room.short, (*count, e), recipient)
                            .map(sync_event)
                    })
                    .collect::<Result<_>>()?;
                join.insert(
                    room_id.to_string(),
                    json!({
                        "timeline": {"events": project(timeline), "limited": limited, "prev_batch": token(start.saturating_sub(1))},
                        "state": {"events": project(state)},
                        "ephemeral": {"events": ephemeral},
                        "account_data": {"events": data},
                        "summary": summary(services, room_id, user)?,
                        "unread_notifications": notifications,
                        "unread_thread_notifications": thread_notifications,
                    }),
                );
            }
            "leave" | "ban"
                if (changed && since.is_some()) || (since.is_none() && options.include_leave) =>
            {
                let viewer = Viewer::new(&services.timeline, room.short, room_id, user)?;
                let (events, limited) = timeline_section(
                    services,
                    &viewer,
                    room.short,
                    (since, record.count),
                    &options.timeline_filter,
                    options.timeline_limit,
                )?;
                let start = events.first().map_or(record.count + 1, |(c, _)| *c);
                let state = options.state.select_in(
                    room_id,
                    state_section(services, room.short, since, start, &|_, _| true)?,
                );
                let timeline: Vec<Value> = events
                    .iter()
                    .map(|(_, e)| sync_event(e.to_client_event_for(recipient)))
                    .collect();
                let data = options
                    .room_account_data
                    .select_in(room_id, room_data.remove(room_id).unwrap_or_default());
                leave.insert(
                    room_id.to_string(),
                    json!({
                        "timeline": {"events": project(timeline), "limited": limited, "prev_batch": token(start.saturating_sub(1))},
                        "state": {"events": project(state)},
                        "account_data": {"events": data},
                    }),
                );
            }
            _ => {}
        }
    }

    let presence = options.presence.select(presence_events(
        services,
        user,
        &joined_rooms,
        since.and(options.presence_since),
    )?);
    let (to_device, to_device_position) =
        services
            .to_device
            .pending(user, device, options.to_device_since.unwrap_or(0), upto)?;
    let (changed, left) = match since {
        Some(since) => device_lists(services, user, &memberships, &joined_rooms, since, upto)?,
        None => Default::default(),
    };
    let has_changes = !presence.is_empty()
        || !join.is_empty()
        || !invite.is_empty()
        || !leave.is_empty()
        || !knock.is_empty()
        || !global_data.is_empty()
        || !to_device.is_empty()
        || !changed.is_empty()
        || !left.is_empty();
    let response = json!({
        "next_batch": format!("{}_t{typing_serial}_p{presence_serial}_d{to_device_position}", token(upto)),
        "rooms": {"join": join, "invite": invite, "leave": leave, "knock": knock},
        "account_data": {"events": global_data},
        "presence": {"events": presence},
        "to_device": {"events": to_device},
        "device_lists": {"changed": changed, "left": left},
        "device_one_time_keys_count": services.keys.one_time_key_counts(user, device)?,
        "device_unused_fallback_key_types": services.keys.unused_fallback_key_types(user, device)?,
    });
    Ok((response, has_changes))
}

/// Whose devices the user should fetch again (`changed`) or stop tracking (`left`) after
/// `since` up to `upto`: users sharing a room whose devices or cross-signing keys changed,
/// and users who started or stopped sharing a room with the user.
pub(super) fn device_lists(
    services: &Services,
    user: &UserId,
    memberships: &[(OwnedRoomId, MembershipRecord)],
    joined: &BTreeSet<OwnedRoomId>,
    since: u64,
    upto: u64,
) -> Result<(BTreeSet<OwnedUserId>, BTreeSet<OwnedUserId>)> {
    let shares = |other: &UserId| shares_a_room(services, user, other, joined);
    let mut changed = BTreeSet::new();
    let mut left = BTreeSet::new();
    let (shared, own) = services.keys.changed_between(user, since, upto)?;
    for other in shared {
        if shares(&other)? {
            changed.insert(other);
        }
    }
    changed.extend(own);
    for (room_id, record) in memberships {
        if record.count > upto {
            continue;
        }
        if record.count > since {
            // The user joined or left the room: its members start or may stop sharing.
            for member in services.timeline.joined_members(room_id)? {
                if member == user {
                    continue;
                }
                if record.membership == "join" {
                    changed.insert(member);
                } else if !shares(&member)? {
                    left.insert(member);
                }
            }
        } else if record.membership == "join"
            && services.timeline.activity.changed_after(room_id, since)
            && let Some(room) = services.timeline.room(room_id)?
        {
            for (event_type, state_key) in services
                .timeline
                .state_changed_between(room.short, since, upto)?
            {
                let Ok(member) = OwnedUserId::try_from(state_key) else {
                    continue;
                };
                if event_type != "m.room.member" || member == user {
                    continue;
                }
                if shares(&member)? {
                    changed.insert(member);
                } else {
                    left.insert(member);
                }
            }
        }
    }
    Ok((changed, left))
}

/// [`device_lists`] on their own, for `/keys/changes`.
pub fn device_list_changes(
    services: &Services,
    user: &UserId,
    since: u64,
    upto: u64,
) -> Result<(BTreeSet<OwnedUserId>, BTreeSet<OwnedUserId>)> {
    let memberships = services.timeline.memberships_of(user)?;
    let joined = memberships
        .iter()
        .filter(|(_, record)| record.membership == "join")
        .map(|(room, _)| room.clone())
        .collect();
    device_lists(services, user, &memberships, &joined, since, upto)
}

/// `m.presence` events of the user and of those who share a joined room with them, changed
/// after presence serial `since`.
fn presence_events(
    services: &Services,
    user: &UserId,
    joined_rooms: &BTreeSet<OwnedRoomId>,
    since: Option<u64>,
) -> Result<Vec<Value>> {
    let mut events = Vec::new();
    for other in services.presence.changed_since(since) {
        if shares_a_room(services, user, &other, joined_rooms)? {
            let status = services.presence.get(&other);
            events
                .push(json!({"type": "m.presence", "sender": other, "content": status.content()}));
        }
    }
    Ok(events)
}

/// The parts of a `since` token (`s<count>_t<typing>_p<presence>_d<to-device>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Since {
    pub count: u64,
    pub typing: Option<u64>,
    pub presence: Option<u64>,
    pub to_device: Option<u64>,
}

/// Reads a `since` token. A count from the future (another server's token, or garbage) is
/// refused.
pub fn parse_since(token: &str, committed: u64) -> Result<Since> {
    let count = crate::rooms::pagination::parse_token(token)?;
    if count > committed {
        return Err(Error::invalid_param(
            "The since token is not from this server",
        ));
    }
    let mut since = Since {
        count,
        ..Since::default()
    };
    for part in token.split('_').skip(1) {
        let invalid = || Error::invalid_param("Invalid since token");
        let (slot, number) = match part.split_at_checked(1) {
            Some(("t", n)) => (&mut since.typing, n),
            Some(("p", n)) => (&mut since.presence, n),
            Some(("d", n)) => (&mut since.to_device, n),
            _ => return Err(invalid()),
        };
        *slot = Some(number.parse().map_err(|_| invalid())?);
    }
    if since.to_device.is_some_and(|d| d > committed) {
        return Err(Error::invalid_param("Invalid since token"));
    }
    Ok(since)
}

//! Which rooms a request covers: the user's rooms newest activity first, each list's filters
//! and ranges, and the explicit room subscriptions.

use std::collections::{BTreeMap, BTreeSet};

use ruma::api::client::sync::sync_events::v5::{Request, request};
use ruma::directory::RoomTypeFilter;
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde::Deserialize;
use serde_json::Value;

use super::MAX_TIMELINE_LIMIT;
use super::connections::Sent;
use crate::error::{Error, Result};
use crate::rooms::members::MembershipRecord;
use crate::services::Services;

/// Each list's `filters.spaces`, which ruma's request type does not carry: read from the body
/// as sent.
pub fn space_filters(body: &[u8]) -> Result<BTreeMap<String, Vec<OwnedRoomId>>> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        lists: BTreeMap<String, List>,
    }
    #[derive(Deserialize)]
    struct List {
        #[serde(default)]
        filters: Option<Filters>,
    }
    #[derive(Deserialize)]
    struct Filters {
        #[serde(default)]
        spaces: Option<Vec<OwnedRoomId>>,
    }
    let body: Body = serde_json::from_slice(body)
        .map_err(|e| Error::invalid_param(format!("Invalid list filters: {e}")))?;
    Ok(body
        .lists
        .into_iter()
        .filter_map(|(name, list)| Some((name, list.filters?.spaces?)))
        .collect())
}

/// The rooms of the given spaces the user has joined: their `m.space.child` rooms.
fn rooms_in_spaces(
    services: &Services,
    user: &UserId,
    spaces: &[OwnedRoomId],
) -> Result<BTreeSet<OwnedRoomId>> {
    let mut rooms = BTreeSet::new();
    for space in spaces {
        let joined = services
            .timeline
            .membership(space, user)?
            .is_some_and(|m| m.membership == "join");
        if !joined {
            continue;
        }
        if let Some(record) = services.timeline.room(space)? {
            rooms.extend(services.timeline.space_children(record.short)?);
        }
    }
    Ok(rooms)
}

/// What a room is sent with: the union of what the lists and subscriptions it is in ask.
#[derive(Clone, Debug, Default)]
pub(super) struct Wanted {
    pub(super) required: BTreeSet<(String, String)>,
    pub(super) timeline_limit: usize,
}

impl Wanted {
    pub(super) fn add(
        &mut self,
        required: &[(ruma::events::StateEventType, String)],
        limit: ruma::UInt,
    ) {
        self.required
            .extend(required.iter().map(|(t, k)| (t.to_string(), k.clone())));
        let limit = usize::try_from(u64::from(limit)).unwrap_or(MAX_TIMELINE_LIMIT);
        self.timeline_limit = self.timeline_limit.max(limit.min(MAX_TIMELINE_LIMIT));
    }
}

/// A room the user may have in a list.
pub(super) struct Candidate {
    pub(super) user: OwnedUserId,
    pub(super) room_id: OwnedRoomId,
    pub(super) membership: MembershipRecord,
    /// The room's short id; 0 for a room this server is not in (invited to by another
    /// server), which has no state here.
    pub(super) short: u64,
    pub(super) bump: u64,
}

/// The rooms of the user's lists: joined and invited rooms, and rooms the user left since the
/// connection last sent them (so that the client learns of it), newest activity first.
pub(super) fn candidates(
    services: &Services,
    user: &UserId,
    previous: &Sent,
) -> Result<Vec<Candidate>> {
    let mut rooms = Vec::new();
    for (room_id, membership) in services.timeline.memberships_of(user)? {
        let listed = match membership.membership.as_str() {
            "join" | "invite" => true,
            "leave" | "ban" => previous
                .rooms
                .get(&room_id)
                .is_some_and(|sent| sent.membership != membership.membership),
            _ => false,
        };
        if !listed {
            continue;
        }
        let record = services.timeline.room(&room_id)?;
        if record.is_none() && membership.membership != "invite" {
            continue;
        }
        let bump = match (membership.membership.as_str(), &record) {
            ("join", Some(record)) => record.bump.max(1),
            // Invites and leaves sort by when they happened.
            _ => membership.count,
        };
        rooms.push(Candidate {
            user: user.to_owned(),
            room_id,
            membership,
            short: record.map_or(0, |r| r.short),
            bump,
        });
    }
    rooms.sort_by(|a, b| b.bump.cmp(&a.bump).then_with(|| a.room_id.cmp(&b.room_id)));
    Ok(rooms)
}

/// The rooms `m.direct` names (the user's DMs).
pub(super) fn direct_rooms(services: &Services, user: &UserId) -> Result<BTreeSet<String>> {
    let Some(content) = services.account_data.get(user, None, "m.direct")? else {
        return Ok(BTreeSet::new());
    };
    let content: Value = serde_json::from_str(content.get()).unwrap_or_default();
    Ok(content
        .as_object()
        .into_iter()
        .flat_map(|by_user| by_user.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect())
}

/// Whether a room passes a list's filters.
pub(super) fn passes(
    services: &Services,
    candidate: &Candidate,
    filters: &request::ListFilters,
    direct: &BTreeSet<String>,
) -> Result<bool> {
    let timeline = &services.timeline;
    if let Some(is_invite) = filters.is_invite
        && is_invite != (candidate.membership.membership == "invite")
    {
        return Ok(false);
    }
    if let Some(is_dm) = filters.is_dm
        && is_dm != is_dm_room(services, candidate, direct)?
    {
        return Ok(false);
    }
    if let Some(is_encrypted) = filters.is_encrypted {
        let encrypted = timeline
            .state_event_id(candidate.short, "m.room.encryption", "")?
            .is_some();
        if is_encrypted != encrypted {
            return Ok(false);
        }
    }
    if !filters.room_types.is_empty() || !filters.not_room_types.is_empty() {
        let kind = timeline
            .state_event(candidate.short, "m.room.create", "")?
            .and_then(|create| create.content()["type"].as_str().map(str::to_owned));
        let matches = |filter: &RoomTypeFilter| match filter {
            RoomTypeFilter::Default => kind.is_none(),
            other => kind.as_deref() == other.as_str(),
        };
        if !filters.room_types.is_empty() && !filters.room_types.iter().any(matches) {
            return Ok(false);
        }
        if filters.not_room_types.iter().any(matches) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A DM: named in `m.direct`, or (for an invite) marked `is_direct` by the inviter.
pub(super) fn is_dm_room(
    services: &Services,
    candidate: &Candidate,
    direct: &BTreeSet<String>,
) -> Result<bool> {
    Ok(direct.contains(candidate.room_id.as_str())
        || (candidate.membership.membership == "invite" && invited_as_direct(services, candidate)?))
}

/// What one request asks for, resolved against the user's rooms.
pub(super) struct Plan {
    /// Each list's count, and the rooms in its ranges.
    pub(super) lists: BTreeMap<String, (usize, Vec<OwnedRoomId>)>,
    /// Every room to consider sending, with what it is sent with.
    pub(super) rooms: BTreeMap<OwnedRoomId, Wanted>,
    /// Rooms of explicit subscriptions.
    pub(super) subscribed: BTreeSet<OwnedRoomId>,
}

pub(super) fn plan(
    services: &Services,
    user: &UserId,
    req: &Request,
    spaces: &BTreeMap<String, Vec<OwnedRoomId>>,
    candidates: &[Candidate],
    direct: &BTreeSet<String>,
) -> Result<Plan> {
    let mut plan = Plan {
        lists: BTreeMap::new(),
        rooms: BTreeMap::new(),
        subscribed: BTreeSet::new(),
    };
    for (name, list) in &req.lists {
        let in_spaces = match spaces.get(name) {
            Some(spaces) => Some(rooms_in_spaces(services, user, spaces)?),
            None => None,
        };
        let mut members = Vec::new();
        for candidate in candidates {
            let keep = in_spaces
                .as_ref()
                .is_none_or(|rooms| rooms.contains(&candidate.room_id))
                && match &list.filters {
                    None => true,
                    Some(filters) => passes(services, candidate, filters, direct)?,
                };
            if keep {
                members.push(candidate.room_id.clone());
            }
        }
        let mut in_range = Vec::new();
        for (start, end) in &list.ranges {
            let start = usize::try_from(u64::from(*start)).unwrap_or(usize::MAX);
            let end = usize::try_from(u64::from(*end)).unwrap_or(usize::MAX);
            for room_id in members
                .iter()
                .skip(start)
                .take(end.saturating_sub(start) + 1)
            {
                if !in_range.contains(room_id) {
                    in_range.push(room_id.clone());
                }
            }
        }
        for room_id in &in_range {
            plan.rooms.entry(room_id.clone()).or_default().add(
                &list.room_details.required_state,
                list.room_details.timeline_limit,
            );
        }
        plan.lists.insert(name.clone(), (members.len(), in_range));
    }
    for (room_id, subscription) in &req.room_subscriptions {
        // Only rooms the user is in (or invited to) can be subscribed to.
        if candidates.iter().any(|c| &c.room_id == room_id) {
            plan.rooms
                .entry(room_id.clone())
                .or_default()
                .add(&subscription.required_state, subscription.timeline_limit);
            plan.subscribed.insert(room_id.clone());
        }
    }
    Ok(plan)
}

/// The rooms an extension covers: those of the lists it names (all, by default) and of the
/// subscriptions it names (all, by default, or with `*`).
pub(super) fn extension_rooms(
    plan: &Plan,
    lists: Option<&Vec<String>>,
    rooms: Option<&Vec<request::ExtensionRoomConfig>>,
) -> BTreeSet<OwnedRoomId> {
    let mut covered = BTreeSet::new();
    for (name, (_, in_range)) in &plan.lists {
        if lists.is_none_or(|names| names.contains(name)) {
            covered.extend(in_range.iter().cloned());
        }
    }
    match rooms {
        None => covered.extend(plan.subscribed.iter().cloned()),
        Some(configs) => {
            for config in configs {
                match config {
                    request::ExtensionRoomConfig::AllSubscribed => {
                        covered.extend(plan.subscribed.iter().cloned())
                    }
                    request::ExtensionRoomConfig::Room(room_id)
                        if plan.subscribed.contains(room_id) =>
                    {
                        covered.insert(room_id.clone());
                    }
                    _ => {}
                }
            }
        }
    }
    covered
}

/// Whether the user's invite was marked `is_direct` by the inviter.
pub(super) fn invited_as_direct(services: &Services, candidate: &Candidate) -> Result<bool> {
    let user = &candidate.user;
    if let Some(invite) = services.timeline.remote_invite(user, &candidate.room_id)? {
        return Ok(invite.is_direct());
    }
    let short = candidate.short;
    Ok(services
        .timeline
        .state_event(short, "m.room.member", user.as_str())?
        .is_some_and(|member| member.content()["is_direct"] == true))
}

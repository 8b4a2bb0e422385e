//! The timeline: appending events to a room. Appends to one room are serialised by a per-room
//! lock, so the local DAG stays a line (each event's `prev_events` is the event before it);
//! every event is built from the current state, passes the room version's authorization rules
//! (ruma's state-res), and is written with its indices in one atomic batch. Reads never take
//! the lock: they see the store as of the last finished append.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use ruma::api::error::ErrorKind;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, DeviceId, EventId, OwnedEventId, OwnedRoomId,
    OwnedServerName, RoomId, RoomVersionId, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::pdu::{self, Pdu, StoredPdu};
use crate::error::{Error, Result};
use crate::federation::keys::ServerKeys;
use crate::storage::{Batch, Direction, KeyRange, Store, StoreExt, Table, keys};

/// What the store keeps about a room.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RoomRecord {
    /// Short numeric id used in timeline and state keys.
    pub short: u64,
    pub version: RoomVersionId,
    /// The latest event (the room's single forward extremity) and its depth.
    pub last_event: Option<OwnedEventId>,
    pub last_depth: u64,
}

/// An event a local user asks to send.
/// Unread notifying events and highlights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unread {
    pub notifications: u64,
    pub highlights: u64,
}

/// A user's unread counts in a room: the main timeline, and each thread by its root.
#[derive(Debug, Default)]
pub struct UnreadCounts {
    pub main: Unread,
    pub threads: std::collections::BTreeMap<String, Unread>,
}

#[derive(Clone, Debug)]
pub struct NewEvent {
    pub kind: TimelineEventType,
    pub content: Box<RawValue>,
    pub state_key: Option<String>,
}

/// A membership as stored in the membership indices.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct MembershipRecord {
    pub membership: String,
    pub count: u64,
    /// Set by `/forget` after leaving: the room is gone from the user's view.
    #[serde(default)]
    pub forgotten: bool,
}

/// A state change recorded per event, so state at any point can be rebuilt.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct StateChange {
    event_type: String,
    state_key: String,
    event_id: OwnedEventId,
    replaces: Option<OwnedEventId>,
}

pub struct Timeline {
    store: Arc<dyn Store>,
    keys: Arc<ServerKeys>,
    server_name: OwnedServerName,
    watchers: Arc<crate::sync::watchers::Watchers>,
    push_rules: Arc<crate::push::rules::PushRules>,
    locks: Mutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<()>>>>,
    pub activity: super::activity::Activity,
}

fn bad_content(event_type: &str, error: impl std::fmt::Display) -> Error {
    Error::bad_json(format!("Invalid content for {event_type}: {error}"))
}

/// Refuses content of the state events the authorization rules read, when it does not parse.
fn check_content(kind: &TimelineEventType, content: &RawValue) -> Result<()> {
    use ruma::events::room::{
        create::RoomCreateEventContent, history_visibility::RoomHistoryVisibilityEventContent,
        join_rules::RoomJoinRulesEventContent, member::RoomMemberEventContent,
        power_levels::RoomPowerLevelsEventContent,
    };
    let json = content.get();
    if !json.trim_start().starts_with('{') {
        return Err(Error::bad_json("Event content must be a JSON object"));
    }
    let name = kind.to_string();
    let result = match kind {
        TimelineEventType::RoomCreate => {
            serde_json::from_str::<RoomCreateEventContent>(json).map(drop)
        }
        TimelineEventType::RoomMember => {
            serde_json::from_str::<RoomMemberEventContent>(json).map(drop)
        }
        TimelineEventType::RoomPowerLevels => {
            serde_json::from_str::<RoomPowerLevelsEventContent>(json).map(drop)
        }
        TimelineEventType::RoomJoinRules => {
            serde_json::from_str::<RoomJoinRulesEventContent>(json).map(drop)
        }
        TimelineEventType::RoomHistoryVisibility => {
            serde_json::from_str::<RoomHistoryVisibilityEventContent>(json).map(drop)
        }
        _ => Ok(()),
    };
    result.map_err(|e| bad_content(&name, e))
}

impl Timeline {
    pub fn new(
        store: Arc<dyn Store>,
        keys: Arc<ServerKeys>,
        server_name: OwnedServerName,
        watchers: Arc<crate::sync::watchers::Watchers>,
        push_rules: Arc<crate::push::rules::PushRules>,
    ) -> Self {
        Self {
            activity: super::activity::Activity::new(store.committed_count()),
            store,
            keys,
            server_name,
            watchers,
            push_rules,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Wakes the sleeping `/sync` of everyone the room's latest event concerns: its joined,
    /// invited and knocking users, and the target of a membership change.
    pub fn wake_room(&self, room_id: &RoomId, target: Option<&str>) -> Result<()> {
        for (user, record) in self.room_memberships(room_id)? {
            if matches!(record.membership.as_str(), "join" | "invite" | "knock") {
                self.watchers.wake(&user);
            }
        }
        if let Some(user) = target.and_then(|u| <&UserId>::try_from(u).ok()) {
            self.watchers.wake(user);
        }
        Ok(())
    }

    /// Every user with a membership in the room, with that membership.
    pub fn room_memberships(
        &self,
        room_id: &RoomId,
    ) -> Result<Vec<(ruma::OwnedUserId, MembershipRecord)>> {
        let prefix = keys::of_room(room_id.as_str());
        self.store
            .scan_prefix(Table::RoomUsers, &prefix)?
            .map(|entry| {
                let (key, value) = entry?;
                let record: MembershipRecord = serde_json::from_slice(&value)
                    .map_err(|e| Error::internal(format!("corrupt membership: {e}")))?;
                let user = std::str::from_utf8(&key[prefix.len()..])
                    .ok()
                    .and_then(|u| ruma::OwnedUserId::try_from(u).ok())
                    .ok_or_else(|| Error::internal("corrupt membership key"))?;
                Ok((user, record))
            })
            .collect()
    }

    fn room_lock(&self, room_id: &RoomId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(room_id.to_owned()).or_default().clone()
    }

    pub fn room(&self, room_id: &RoomId) -> Result<Option<RoomRecord>> {
        self.store.get_json(Table::Rooms, room_id.as_bytes())
    }

    /// Where an event sits: its room's short id and its count.
    pub fn position(&self, event_id: &EventId) -> Result<Option<(u64, u64)>> {
        Ok(self
            .store
            .get(Table::EventIds, event_id.as_bytes())?
            .and_then(|k| keys::parse_pdu(&k)))
    }

    pub fn get(&self, event_id: &EventId) -> Result<Option<StoredPdu>> {
        match self.position(event_id)? {
            None => Ok(None),
            Some((short, count)) => self.store.get_json(Table::Pdus, &keys::pdu(short, count)),
        }
    }

    fn get_parsed(&self, event_id: &EventId) -> Option<Pdu> {
        self.get(event_id)
            .ok()
            .flatten()
            .and_then(|s| Pdu::from_stored(&s).ok())
    }

    /// The event id of a piece of current state.
    pub fn state_event_id(
        &self,
        short: u64,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<OwnedEventId>> {
        match self.store.get(
            Table::RoomState,
            &keys::room_state(short, event_type, state_key),
        )? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .ok()
                .and_then(|s| OwnedEventId::try_from(s).ok())
                .map(Some)
                .ok_or_else(|| Error::internal("corrupt room state entry")),
        }
    }

    /// A piece of current state, parsed.
    pub fn state_event(
        &self,
        short: u64,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<StoredPdu>> {
        match self.state_event_id(short, event_type, state_key)? {
            None => Ok(None),
            Some(id) => self.get(&id),
        }
    }

    /// The event id a piece of state had at timeline position `count` (after the event with
    /// that count was applied).
    pub fn state_id_at(
        &self,
        short: u64,
        event_type: &str,
        state_key: &str,
        count: u64,
    ) -> Result<Option<OwnedEventId>> {
        let lower = keys::state_history(short, event_type, state_key, 0);
        let upper = keys::state_history(short, event_type, state_key, count.saturating_add(1));
        let mut scan = self.store.scan(
            Table::StateHistory,
            KeyRange::between(&lower, &upper),
            Direction::Backward,
        )?;
        match scan.next() {
            None => Ok(None),
            Some(entry) => {
                let (_, value) = entry?;
                String::from_utf8(value)
                    .ok()
                    .and_then(|s| OwnedEventId::try_from(s).ok())
                    .map(Some)
                    .ok_or_else(|| Error::internal("corrupt state history entry"))
            }
        }
    }

    /// A string field of the content of a piece of state at timeline position `count`.
    pub fn state_field_at(
        &self,
        short: u64,
        event_type: &str,
        state_key: &str,
        count: u64,
        field: &str,
    ) -> Result<Option<String>> {
        let Some(id) = self.state_id_at(short, event_type, state_key, count)? else {
            return Ok(None);
        };
        Ok(self
            .get(&id)?
            .and_then(|s| content_field(&s.pdu, field).map(str::to_owned)))
    }

    /// The whole current state: (type, state key) → event id.
    pub fn current_state(&self, short: u64) -> Result<Vec<((String, String), OwnedEventId)>> {
        let prefix = keys::pdus_of(short);
        self.store
            .scan(
                Table::RoomState,
                KeyRange::prefix(&prefix),
                Direction::Forward,
            )?
            .map(|entry| {
                let (key, value) = entry?;
                let pair = keys::parse_room_state(&key)
                    .ok_or_else(|| Error::internal("corrupt state key"))?;
                let id = String::from_utf8(value)
                    .ok()
                    .and_then(|s| OwnedEventId::try_from(s).ok())
                    .ok_or_else(|| Error::internal("corrupt state value"))?;
                Ok((pair, id))
            })
            .collect()
    }

    /// A user's membership in a room (`join`, `invite`, `leave`, `ban`, `knock`), if any.
    pub fn membership(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<MembershipRecord>> {
        let record: Option<MembershipRecord> = self.store.get_json(
            Table::UserRooms,
            &keys::user_room(user_id.as_str(), room_id.as_str()),
        )?;
        // A forgotten room is gone from the user's view.
        Ok(record.filter(|r| !r.forgotten))
    }

    /// Forgets a room the user has left; refused while joined, invited or knocking.
    pub fn forget(&self, room_id: &RoomId, user_id: &UserId) -> Result<()> {
        let key = keys::user_room(user_id.as_str(), room_id.as_str());
        let Some(mut record) = self
            .store
            .get_json::<MembershipRecord>(Table::UserRooms, &key)?
        else {
            return Ok(());
        };
        if matches!(record.membership.as_str(), "join" | "invite" | "knock") {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::Unknown,
                "Leave the room before forgetting it",
            ));
        }
        record.forgotten = true;
        let mut batch = Batch::new();
        batch.put_json(Table::UserRooms, key, &record)?;
        self.store.write(batch)
    }

    /// Every room the user has a (not forgotten) membership in.
    pub fn memberships_of(&self, user_id: &UserId) -> Result<Vec<(OwnedRoomId, MembershipRecord)>> {
        let prefix = keys::rooms_of(user_id.as_str());
        let mut rooms = Vec::new();
        for entry in self.store.scan_prefix(Table::UserRooms, &prefix)? {
            let (key, value) = entry?;
            let record: MembershipRecord = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("corrupt membership: {e}")))?;
            if record.forgotten {
                continue;
            }
            let room = std::str::from_utf8(&key[prefix.len()..])
                .ok()
                .and_then(|r| OwnedRoomId::try_from(r).ok())
                .ok_or_else(|| Error::internal("corrupt membership key"))?;
            rooms.push((room, record));
        }
        Ok(rooms)
    }

    /// The (type, state key) pairs whose state changed after position `after` up to `upto`.
    pub fn state_changed_between(
        &self,
        short: u64,
        after: u64,
        upto: u64,
    ) -> Result<Vec<(String, String)>> {
        let range = KeyRange::between(
            &keys::pdu(short, after.saturating_add(1)),
            &keys::pdu(short, upto.saturating_add(1)),
        );
        let mut changed = std::collections::BTreeSet::new();
        for entry in self
            .store
            .scan(Table::StateChanges, range, Direction::Forward)?
        {
            let (_, value) = entry?;
            let change: StateChange = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("corrupt state change: {e}")))?;
            changed.insert((change.event_type, change.state_key));
        }
        Ok(changed.into_iter().collect())
    }

    /// The users joined to the room.
    pub fn joined_members(&self, room_id: &RoomId) -> Result<Vec<ruma::OwnedUserId>> {
        Ok(self
            .room_memberships(room_id)?
            .into_iter()
            .filter(|(_, record)| record.membership == "join")
            .map(|(user, _)| user)
            .collect())
    }

    /// How many users are joined to the room.
    pub fn joined_member_count(&self, room_id: &RoomId) -> Result<u64> {
        Ok(self.joined_members(room_id)?.len() as u64)
    }

    /// The rooms the user is joined to.
    pub fn joined_rooms(&self, user_id: &UserId) -> Result<Vec<OwnedRoomId>> {
        Ok(self
            .memberships_of(user_id)?
            .into_iter()
            .filter(|(_, record)| record.membership == "join")
            .map(|(room, _)| room)
            .collect())
    }

    /// Creates a room with its `m.room.create` event and returns its id. In room version 12
    /// the id is derived from the create event; before, it is random on this server.
    pub async fn create_room(
        &self,
        creator: &UserId,
        version: RoomVersionId,
        content: serde_json::Map<String, serde_json::Value>,
    ) -> Result<OwnedRoomId> {
        let rules = pdu::rules(&version)?;
        let mut content = content;
        content.insert("room_version".into(), version.as_str().into());
        if !rules.authorization.use_room_create_sender {
            content.insert("creator".into(), creator.as_str().into());
        }
        let content_raw = serde_json::value::to_raw_value(&content)
            .map_err(|e| Error::internal(format!("create content: {e}")))?;
        check_content(&TimelineEventType::RoomCreate, &content_raw)?;

        let room_id_field = if rules.authorization.room_create_event_id_as_room_id {
            None
        } else {
            let local =
                crate::random::string(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", 18);
            Some(
                OwnedRoomId::try_from(format!("!{local}:{}", self.server_name))
                    .map_err(|e| Error::internal(format!("room id: {e}")))?,
            )
        };
        let mut object = self.pdu_object(
            room_id_field.as_deref(),
            creator,
            &TimelineEventType::RoomCreate,
            &content_raw,
            Some(""),
            Vec::new(),
            Vec::new(),
            1,
        )?;
        let event_id = pdu::hash_sign_and_id(
            &mut object,
            self.server_name.as_str(),
            self.keys.key_pair(),
            &rules,
        )?;
        let room_id = match room_id_field {
            Some(id) => id,
            None => OwnedRoomId::try_from(format!("!{}", &event_id.as_str()[1..]))
                .map_err(|e| Error::internal(format!("room id from create event: {e}")))?,
        };
        let stored = StoredPdu {
            event_id,
            room_id: room_id.clone(),
            pdu: object,
        };
        let parsed = Pdu::from_stored(&stored)?;
        ruma::state_res::check_state_independent_auth_rules(
            &rules.authorization,
            &parsed,
            |id: &EventId| self.get_parsed(id),
        )
        .map_err(Error::forbidden)?;

        let lock = self.room_lock(&room_id);
        let _guard = lock.lock().await;
        if self.room(&room_id)?.is_some() {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::RoomInUse,
                "Room already exists",
            ));
        }
        let record = RoomRecord {
            short: self.store.next_count()?,
            version,
            last_event: None,
            last_depth: 0,
        };
        self.write(record, &stored, &parsed, None, &[])?;
        Ok(room_id)
    }

    /// The room's power levels as the authorization rules read them (creators included).
    pub fn power_levels(
        &self,
        record: &RoomRecord,
    ) -> Result<ruma::events::room::power_levels::RoomPowerLevels> {
        use ruma::events::room::power_levels::{
            RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource,
        };
        let rules = pdu::rules(&record.version)?;
        let mut creators = Vec::new();
        if let Some(create) = self.state_event(record.short, "m.room.create", "")? {
            creators.extend(Pdu::from_stored(&create).map(|p| p.sender));
            if rules.authorization.additional_room_creators {
                let extra = create.content()["additional_creators"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                creators.extend(
                    extra
                        .iter()
                        .filter_map(|u| u.as_str())
                        .filter_map(|u| ruma::OwnedUserId::try_from(u).ok()),
                );
            }
        }
        let source = match self.state_event(record.short, "m.room.power_levels", "")? {
            Some(stored) => RoomPowerLevelsSource::Original(
                serde_json::from_value::<RoomPowerLevelsEventContent>(stored.content())
                    .map_err(|e| Error::internal(format!("stored power levels: {e}")))?,
            ),
            None => RoomPowerLevelsSource::None,
        };
        Ok(RoomPowerLevels::new(source, &rules.authorization, creators))
    }

    /// Redacts `target`: sends the redaction event (idempotent per transaction) and replaces the
    /// stored event by its redacted form. Redacting another user's event needs the redact level.
    pub async fn redact(
        &self,
        record: &RoomRecord,
        target: &StoredPdu,
        sender: &UserId,
        event: NewEvent,
        transaction: (&DeviceId, &str),
    ) -> Result<OwnedEventId> {
        let target_sender = Pdu::from_stored(target)?.sender;
        let levels = self.power_levels(record)?;
        let allowed = if target_sender == sender {
            levels.user_can_redact_own_event(sender)
        } else {
            levels.user_can_redact_event_of_other(sender)
        };
        if !allowed {
            return Err(Error::forbidden("You may not redact this event"));
        }
        let room_id = target.room_id.clone();
        let redaction_id = self
            .append(&room_id, sender, event, Some(transaction))
            .await?;
        let Some((short, count)) = self.position(&target.event_id)? else {
            return Err(Error::internal("redacted event vanished"));
        };
        let rules = pdu::rules(&record.version)?;
        let mut redacted = pdu::redact(target.pdu.clone(), &rules)?;
        let mut unsigned = CanonicalJsonObject::new();
        if let Some(redaction) = self.get(&redaction_id)? {
            let event: CanonicalJsonObject = serde_json::from_value(redaction.to_client_event())
                .map_err(|e| Error::internal(format!("redaction event: {e}")))?;
            unsigned.insert("redacted_because".into(), CanonicalJsonValue::Object(event));
        }
        redacted.insert("unsigned".into(), CanonicalJsonValue::Object(unsigned));
        let stored = StoredPdu {
            event_id: target.event_id.clone(),
            room_id,
            pdu: redacted,
        };
        let mut batch = Batch::new();
        // A redacted event no longer counts in its parent's aggregations.
        if let Some((rel_type, parent)) = super::relations::relation_of(&target.content()) {
            batch.delete(
                Table::Relations,
                keys::relation(short, parent.as_str(), &rel_type, count),
            );
        }
        batch.put_json(Table::Pdus, keys::pdu(short, count), &stored)?;
        self.store.write(batch)?;
        Ok(redaction_id)
    }

    /// Who the event notifies, and whether it highlights them, by each one's push rules: the
    /// room's joined members (and an invitee) other than the sender.
    async fn notified_members(
        &self,
        record: &RoomRecord,
        stored: &StoredPdu,
        parsed: &Pdu,
    ) -> Result<Vec<(ruma::OwnedUserId, bool)>> {
        use ruma::push::{PushConditionPowerLevelsCtx, PushConditionRoomCtx};
        let room_id = &stored.room_id;
        let joined = self.joined_members(room_id)?;
        let member_count = joined.len() as u64;
        let mut candidates: Vec<ruma::OwnedUserId> =
            joined.into_iter().filter(|u| *u != parsed.sender).collect();
        if parsed.kind == TimelineEventType::RoomMember
            && let Some(target) = parsed
                .state_key
                .as_deref()
                .and_then(|k| ruma::OwnedUserId::try_from(k).ok())
            && target != parsed.sender
            && !candidates.contains(&target)
        {
            candidates.push(target);
        }
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let power: PushConditionPowerLevelsCtx = self.power_levels(record)?.into();
        let raw = serde_json::value::to_raw_value(&stored.to_client_event())
            .map(ruma::serde::Raw::<ruma::events::AnySyncTimelineEvent>::from_json)
            .map_err(|e| Error::internal(format!("event for push rules: {e}")))?;
        let mut notified = Vec::new();
        for user in candidates {
            let display_name = self
                .state_event(record.short, "m.room.member", user.as_str())?
                .and_then(|m| m.content()["displayname"].as_str().map(str::to_owned))
                .unwrap_or_else(|| user.localpart().to_owned());
            let mut context = PushConditionRoomCtx::new(
                room_id.clone(),
                ruma::UInt::new(member_count).unwrap_or_default(),
                user.clone(),
                display_name,
            );
            context.power_levels = Some(power.clone());
            let ruleset = self.push_rules.cached(&user)?;
            let actions = ruleset.get_actions(&raw, &context).await;
            if actions.iter().any(|a| a.should_notify()) {
                notified.push((user, actions.iter().any(|a| a.is_highlight())));
            }
        }
        Ok(notified)
    }

    /// The user's unread notifications in a room: notifying events after what the user has
    /// read, in the main timeline and per thread.
    pub fn unread_counts(
        &self,
        user_id: &UserId,
        short: u64,
        read: &super::receipts::ReadPositions,
    ) -> Result<UnreadCounts> {
        let prefix = keys::notifications_of(user_id.as_str(), short);
        let lower = keys::notification(user_id.as_str(), short, read.everywhere() + 1);
        let range = KeyRange {
            lower,
            upper: keys::prefix_successor(&prefix),
        };
        let mut counts = UnreadCounts::default();
        for entry in self
            .store
            .scan(Table::Notifications, range, Direction::Forward)?
        {
            let (key, value) = entry?;
            let count = keys::trailing_u64(&key).unwrap_or_default();
            let notification: serde_json::Value =
                serde_json::from_slice(&value).unwrap_or_default();
            let thread = notification["thread"].as_str();
            if count <= read.of(thread) {
                continue;
            }
            let slot = match thread {
                None => &mut counts.main,
                Some(root) => counts.threads.entry(root.to_owned()).or_default(),
            };
            slot.notifications += 1;
            slot.highlights += u64::from(notification["highlight"] == true);
        }
        Ok(counts)
    }

    /// Builds, authorises and stores an event from a local user; returns its event id. With a
    /// transaction (device, txn id) the same request returns the same event id forever.
    pub async fn append(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        event: NewEvent,
        transaction: Option<(&DeviceId, &str)>,
    ) -> Result<OwnedEventId> {
        let lock = self.room_lock(room_id);
        let _guard = lock.lock().await;

        let txn_key = transaction
            .map(|(device, txn)| keys::transaction(sender.as_str(), device.as_str(), txn));
        if let Some(key) = &txn_key
            && let Some(id) = self.store.get(Table::Transactions, key)?
        {
            return OwnedEventId::try_from(String::from_utf8_lossy(&id).into_owned())
                .map_err(|_| Error::internal("corrupt transaction entry"));
        }

        let record = self
            .room(room_id)?
            .ok_or_else(|| Error::not_found("Unknown room"))?;
        let rules = pdu::rules(&record.version)?;
        check_content(&event.kind, &event.content)?;
        if event.state_key.is_none() {
            let content: serde_json::Value =
                serde_json::from_str(event.content.get()).unwrap_or_default();
            super::relations::check(
                self,
                record.short,
                sender,
                &event.kind.to_string(),
                &content,
            )?;
        }

        let auth_types = ruma::state_res::auth_types_for_event(
            &event.kind,
            sender,
            event.state_key.as_deref(),
            &event.content,
            &rules.authorization,
        )
        .map_err(|e| Error::bad_json(format!("Invalid event: {e}")))?;
        let mut auth_events = Vec::new();
        for (event_type, state_key) in &auth_types {
            if let Some(id) =
                self.state_event_id(record.short, &event_type.to_string(), state_key)?
            {
                auth_events.push(id);
            }
        }
        if rules.authorization.room_create_event_id_as_room_id {
            // v12: the create event is implied by the room id, never listed.
        } else if let Some(create) = self.state_event_id(record.short, "m.room.create", "")?
            && !auth_events.contains(&create)
        {
            auth_events.push(create);
        }
        let prev_events: Vec<OwnedEventId> = record.last_event.iter().cloned().collect();

        let mut object = self.pdu_object(
            Some(room_id),
            sender,
            &event.kind,
            &event.content,
            event.state_key.as_deref(),
            prev_events,
            auth_events,
            record.last_depth + 1,
        )?;
        let event_id = pdu::hash_sign_and_id(
            &mut object,
            self.server_name.as_str(),
            self.keys.key_pair(),
            &rules,
        )?;
        let stored = StoredPdu {
            event_id: event_id.clone(),
            room_id: room_id.to_owned(),
            pdu: object,
        };
        let parsed = Pdu::from_stored(&stored)?;

        ruma::state_res::check_state_independent_auth_rules(
            &rules.authorization,
            &parsed,
            |id: &EventId| self.get_parsed(id),
        )
        .map_err(Error::forbidden)?;
        let short = record.short;
        ruma::state_res::check_state_dependent_auth_rules(
            &rules.authorization,
            &parsed,
            |event_type: &StateEventType, state_key: &str| {
                self.state_event(short, &event_type.to_string(), state_key)
                    .ok()
                    .flatten()
                    .and_then(|s| Pdu::from_stored(&s).ok())
            },
        )
        .map_err(Error::forbidden)?;

        let notified = self.notified_members(&record, &stored, &parsed).await?;
        self.write(record, &stored, &parsed, txn_key, &notified)?;
        Ok(event_id)
    }

    #[allow(clippy::too_many_arguments)]
    fn pdu_object(
        &self,
        room_id: Option<&RoomId>,
        sender: &UserId,
        kind: &TimelineEventType,
        content: &RawValue,
        state_key: Option<&str>,
        prev_events: Vec<OwnedEventId>,
        auth_events: Vec<OwnedEventId>,
        depth: u64,
    ) -> Result<CanonicalJsonObject> {
        let mut json = serde_json::json!({
            "auth_events": auth_events,
            "content": serde_json::from_str::<serde_json::Value>(content.get())
                .map_err(|e| Error::bad_json(format!("Invalid content: {e}")))?,
            "depth": depth,
            "origin_server_ts": crate::now_ms(),
            "prev_events": prev_events,
            "sender": sender,
            "type": kind.to_string(),
        });
        if let Some(room_id) = room_id {
            json["room_id"] = room_id.as_str().into();
        }
        if let Some(state_key) = state_key {
            json["state_key"] = state_key.into();
        }
        serde_json::from_value::<CanonicalJsonObject>(json)
            .map_err(|e| Error::bad_json(format!("Event is not canonical JSON: {e}")))
    }

    /// Stores a PDU with its indices in one commit; returns its count.
    fn write(
        &self,
        record: RoomRecord,
        stored: &StoredPdu,
        parsed: &Pdu,
        txn_key: Option<Vec<u8>>,
        notified: &[(ruma::OwnedUserId, bool)],
    ) -> Result<u64> {
        let count = self.store.commit(&mut |count| {
            self.activity.record(&stored.room_id, count);
            let mut batch =
                self.batch_for(record.clone(), stored, parsed, txn_key.as_deref(), count)?;
            let content: serde_json::Value =
                serde_json::from_str(parsed.content.get()).unwrap_or_default();
            let thread = super::relations::relation_of(&content)
                .filter(|(rel_type, _)| rel_type == "m.thread")
                .map(|(_, root)| root);
            for (user, highlight) in notified {
                let mut notification = serde_json::json!({"highlight": highlight});
                if let Some(root) = &thread {
                    notification["thread"] = root.as_str().into();
                }
                batch.put_json(
                    Table::Notifications,
                    keys::notification(user.as_str(), record.short, count),
                    &notification,
                )?;
            }
            Ok(batch)
        })?;
        self.wake_room(
            &stored.room_id,
            parsed
                .state_key
                .as_deref()
                .filter(|_| parsed.kind == TimelineEventType::RoomMember),
        )?;
        Ok(count)
    }

    /// The batch that stores a PDU at `count` with all its indices.
    fn batch_for(
        &self,
        mut record: RoomRecord,
        stored: &StoredPdu,
        parsed: &Pdu,
        txn_key: Option<&[u8]>,
        count: u64,
    ) -> Result<Batch> {
        let short = record.short;
        let mut batch = Batch::new();
        batch.put_json(Table::Pdus, keys::pdu(short, count), stored)?;
        batch.put(
            Table::EventIds,
            stored.event_id.as_bytes(),
            keys::pdu(short, count),
        );
        if let Some(state_key) = &parsed.state_key {
            let event_type = parsed.kind.to_string();
            let replaces = self.state_event_id(short, &event_type, state_key)?;
            batch.put(
                Table::RoomState,
                keys::room_state(short, &event_type, state_key),
                stored.event_id.as_bytes(),
            );
            batch.put(
                Table::StateHistory,
                keys::state_history(short, &event_type, state_key, count),
                stored.event_id.as_bytes(),
            );
            batch.put_json(
                Table::StateChanges,
                keys::pdu(short, count),
                &StateChange {
                    event_type,
                    state_key: state_key.clone(),
                    event_id: stored.event_id.clone(),
                    replaces,
                },
            )?;
            if parsed.kind == TimelineEventType::RoomMember {
                #[derive(Deserialize)]
                struct Membership {
                    membership: String,
                }
                let membership: Membership = serde_json::from_str(parsed.content.get())
                    .map_err(|e| Error::bad_json(format!("Invalid membership: {e}")))?;
                // A profile change (join to join) is no new membership: keep its count, so that
                // `/sync` does not treat the room as newly joined.
                let previous: Option<MembershipRecord> = self.store.get_json(
                    Table::UserRooms,
                    &keys::user_room(state_key, stored.room_id.as_str()),
                )?;
                let since = previous
                    .filter(|p| p.membership == membership.membership && !p.forgotten)
                    .map_or(count, |p| p.count);
                let record = MembershipRecord {
                    membership: membership.membership.clone(),
                    count: since,
                    forgotten: false,
                };
                batch.put_json(
                    Table::UserRooms,
                    keys::user_room(state_key, stored.room_id.as_str()),
                    &record,
                )?;
                batch.put_json(
                    Table::RoomUsers,
                    keys::room_user(stored.room_id.as_str(), state_key),
                    &record,
                )?;
            }
        }
        if parsed.state_key.is_none() {
            self.index_relation(&mut batch, short, count, stored, parsed)?;
        }
        if let Some(key) = txn_key {
            batch.put(
                Table::Transactions,
                key.to_vec(),
                stored.event_id.as_bytes(),
            );
        }
        record.last_event = Some(stored.event_id.clone());
        record.last_depth = u64::from(parsed.depth);
        batch.put_json(Table::Rooms, stored.room_id.as_bytes(), &record)?;
        Ok(batch)
    }

    /// Adds the relation an event declares (if any) to the relation and thread indices.
    fn index_relation(
        &self,
        batch: &mut Batch,
        short: u64,
        count: u64,
        stored: &StoredPdu,
        parsed: &Pdu,
    ) -> Result<()> {
        let content: serde_json::Value =
            serde_json::from_str(parsed.content.get()).unwrap_or_default();
        let Some((rel_type, parent)) = super::relations::relation_of(&content) else {
            return Ok(());
        };
        let child = super::relations::Child {
            event_id: stored.event_id.clone(),
            kind: parsed.kind.to_string(),
            sender: parsed.sender.to_string(),
            key: (rel_type == "m.annotation")
                .then(|| content["m.relates_to"]["key"].as_str().map(str::to_owned))
                .flatten(),
            rel_type: rel_type.clone(),
        };
        batch.put_json(
            Table::Relations,
            keys::relation(short, parent.as_str(), &rel_type, count),
            &child,
        )?;
        if rel_type == "m.thread" {
            let root_key = keys::thread_root(short, parent.as_str());
            if let Some(previous) = self
                .store
                .get(Table::ThreadRoots, &root_key)?
                .and_then(|v| keys::trailing_u64(&v))
            {
                batch.delete(Table::ThreadActivity, keys::pdu(short, previous));
            }
            batch.put(Table::ThreadRoots, root_key, keys::u64_be(count).to_vec());
            batch.put(
                Table::ThreadActivity,
                keys::pdu(short, count),
                parent.as_bytes(),
            );
        }
        Ok(())
    }

    /// The children of a relation parent, oldest first, with their counts.
    pub fn relation_children(
        &self,
        short: u64,
        parent: &EventId,
        rel_type: Option<&str>,
    ) -> Result<Vec<(u64, super::relations::Child)>> {
        let prefix = keys::relations_of(short, parent.as_str(), rel_type);
        self.store
            .scan_prefix(Table::Relations, &prefix)?
            .map(|entry| {
                let (key, value) = entry?;
                let count = keys::trailing_u64(&key)
                    .ok_or_else(|| Error::internal("corrupt relation key"))?;
                let child = serde_json::from_slice(&value)
                    .map_err(|e| Error::internal(format!("corrupt relation: {e}")))?;
                Ok((count, child))
            })
            .collect()
    }

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

    /// The room's events with `lower <= count < upper`, walked in `direction`.
    pub fn scan_events(
        &self,
        short: u64,
        lower: u64,
        upper: u64,
        direction: Direction,
    ) -> Result<impl Iterator<Item = Result<(u64, StoredPdu)>> + '_> {
        let range = KeyRange::between(&keys::pdu(short, lower), &keys::pdu(short, upper));
        Ok(self
            .store
            .scan(Table::Pdus, range, direction)?
            .map(|entry| {
                let (key, value) = entry?;
                let (_, count) =
                    keys::parse_pdu(&key).ok_or_else(|| Error::internal("corrupt PDU key"))?;
                let stored = serde_json::from_slice(&value)
                    .map_err(|e| Error::internal(format!("corrupt PDU: {e}")))?;
                Ok((count, stored))
            }))
    }

    /// The room's events in timeline order, as (count, stored PDU).
    pub fn events(&self, short: u64, direction: Direction) -> Result<Vec<(u64, StoredPdu)>> {
        self.store
            .scan(
                Table::Pdus,
                KeyRange::prefix(&keys::pdus_of(short)),
                direction,
            )?
            .map(|entry| {
                let (key, value) = entry?;
                let (_, count) =
                    keys::parse_pdu(&key).ok_or_else(|| Error::internal("corrupt PDU key"))?;
                let stored = serde_json::from_slice(&value)
                    .map_err(|e| Error::internal(format!("corrupt PDU: {e}")))?;
                Ok((count, stored))
            })
            .collect()
    }
}

/// Reads a string field of a PDU's content.
pub fn content_field<'a>(pdu: &'a CanonicalJsonObject, field: &str) -> Option<&'a str> {
    match pdu.get("content") {
        Some(CanonicalJsonValue::Object(content)) => match content.get(field) {
            Some(CanonicalJsonValue::String(s)) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fixture {
        _dir: tempfile::TempDir,
        timeline: Arc<Timeline>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::storage::rocksdb::RocksStore::open(dir.path(), 8).unwrap());
        let name: OwnedServerName = "example.org".try_into().unwrap();
        let keys = Arc::new(ServerKeys::load_or_generate(&store, name.clone()).unwrap());
        Fixture {
            _dir: dir,
            timeline: Arc::new(Timeline::new(
                store.clone(),
                keys,
                name,
                Default::default(),
                Arc::new(crate::push::rules::PushRules::new(Arc::new(
                    crate::users::account_data::AccountData::new(store, Default::default()),
                ))),
            )),
        }
    }

    fn event(kind: &str, content: serde_json::Value, state_key: Option<&str>) -> NewEvent {
        NewEvent {
            kind: kind.into(),
            content: serde_json::value::to_raw_value(&content).unwrap(),
            state_key: state_key.map(str::to_owned),
        }
    }

    fn user(name: &str) -> ruma::OwnedUserId {
        format!("@{name}:example.org").try_into().unwrap()
    }

    /// A room where alice is joined and holds power 100, with a public join rule.
    async fn room(t: &Timeline, version: RoomVersionId) -> OwnedRoomId {
        let alice = user("alice");
        // v12 creators hold unlimited power and must not be listed in `users`.
        let users = if version == RoomVersionId::V12 {
            json!({})
        } else {
            json!({alice.as_str(): 100})
        };
        let room = t
            .create_room(&alice, version, Default::default())
            .await
            .unwrap();
        t.append(
            &room,
            &alice,
            event(
                "m.room.member",
                json!({"membership": "join"}),
                Some(alice.as_str()),
            ),
            None,
        )
        .await
        .unwrap();
        t.append(
            &room,
            &alice,
            event("m.room.power_levels", json!({"users": users}), Some("")),
            None,
        )
        .await
        .unwrap();
        t.append(
            &room,
            &alice,
            event(
                "m.room.join_rules",
                json!({"join_rule": "public"}),
                Some(""),
            ),
            None,
        )
        .await
        .unwrap();
        room
    }

    #[tokio::test]
    async fn v12_room_ids_derive_from_the_create_event() {
        let f = fixture();
        let alice = user("alice");
        let room = f
            .timeline
            .create_room(&alice, RoomVersionId::V12, Default::default())
            .await
            .unwrap();
        assert!(
            room.server_name().is_none(),
            "v12 room ids carry no server name: {room}"
        );
        let create_id = OwnedEventId::try_from(format!("${}", &room.as_str()[1..])).unwrap();
        let stored = f
            .timeline
            .get(&create_id)
            .unwrap()
            .expect("the create event is stored");
        assert!(
            !stored.pdu.contains_key("room_id"),
            "a v12 create event has no room_id"
        );
        assert_eq!(content_field(&stored.pdu, "room_version"), Some("12"));

        let v11 = f
            .timeline
            .create_room(&alice, RoomVersionId::V11, Default::default())
            .await
            .unwrap();
        assert_eq!(v11.server_name().unwrap().as_str(), "example.org");
        assert!(matches!(
            f.timeline
                .create_room(&alice, RoomVersionId::V9, Default::default())
                .await,
            Err(Error::Matrix { .. })
        ));
    }

    #[tokio::test]
    async fn events_chain_linearly_and_carry_their_auth_events() {
        let f = fixture();
        let t = &f.timeline;
        let room = room(t, RoomVersionId::V12).await;
        let id = t
            .append(
                &room,
                &user("alice"),
                event("m.room.message", json!({"body": "hi"}), None),
                None,
            )
            .await
            .unwrap();
        let record = t.room(&room).unwrap().unwrap();
        assert_eq!(record.last_event.as_ref(), Some(&id));
        assert_eq!(record.last_depth, 5);

        let events = t.events(record.short, Direction::Forward).unwrap();
        assert_eq!(events.len(), 5);
        for pair in events.windows(2) {
            let prev = Pdu::from_stored(&pair[1].1).unwrap().prev_events;
            assert_eq!(
                prev,
                vec![pair[0].1.event_id.clone()],
                "each event follows the one before"
            );
            assert!(pair[0].0 < pair[1].0, "counts increase");
        }
        let message = Pdu::from_stored(&events[4].1).unwrap();
        let power = t
            .state_event_id(record.short, "m.room.power_levels", "")
            .unwrap()
            .unwrap();
        let member = t
            .state_event_id(record.short, "m.room.member", "@alice:example.org")
            .unwrap()
            .unwrap();
        assert!(message.auth_events.contains(&power) && message.auth_events.contains(&member));
        assert_eq!(
            t.membership(&room, &user("alice"))
                .unwrap()
                .unwrap()
                .membership,
            "join"
        );
    }

    #[tokio::test]
    async fn authorization_rules_are_enforced() {
        let f = fixture();
        let t = &f.timeline;
        let room = room(t, RoomVersionId::V11).await;
        let bob = user("bob");
        // Not joined: cannot send.
        let err = t
            .append(
                &room,
                &bob,
                event("m.room.message", json!({"body": "x"}), None),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(err.errcode(), "M_FORBIDDEN");
        // Cannot join on someone else's behalf.
        let err = t
            .append(
                &room,
                &bob,
                event(
                    "m.room.member",
                    json!({"membership": "join"}),
                    Some("@carol:example.org"),
                ),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(err.errcode(), "M_FORBIDDEN");
        // Joins a public room, then, at power 0, cannot rename it or kick alice.
        t.append(
            &room,
            &bob,
            event(
                "m.room.member",
                json!({"membership": "join"}),
                Some(bob.as_str()),
            ),
            None,
        )
        .await
        .unwrap();
        let err = t
            .append(
                &room,
                &bob,
                event("m.room.name", json!({"name": "mine"}), Some("")),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(err.errcode(), "M_FORBIDDEN");
        let err = t
            .append(
                &room,
                &bob,
                event(
                    "m.room.member",
                    json!({"membership": "leave"}),
                    Some("@alice:example.org"),
                ),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(err.errcode(), "M_FORBIDDEN");
        // Invalid content of a rule-bearing state event is bad JSON, not an auth failure.
        let err = t
            .append(
                &room,
                &user("alice"),
                event(
                    "m.room.power_levels",
                    json!({"users": "everyone"}),
                    Some(""),
                ),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(err.errcode(), "M_BAD_JSON");
        // Nothing refused was stored.
        let record = t.room(&room).unwrap().unwrap();
        assert_eq!(t.events(record.short, Direction::Forward).unwrap().len(), 5);
    }

    #[tokio::test]
    async fn transactions_are_idempotent() {
        let f = fixture();
        let t = &f.timeline;
        let room = room(t, RoomVersionId::V12).await;
        let alice = user("alice");
        let device: &DeviceId = "PHONE".into();
        let first = t
            .append(
                &room,
                &alice,
                event("m.room.message", json!({"body": "once"}), None),
                Some((device, "t1")),
            )
            .await
            .unwrap();
        let again = t
            .append(
                &room,
                &alice,
                event("m.room.message", json!({"body": "once"}), None),
                Some((device, "t1")),
            )
            .await
            .unwrap();
        assert_eq!(first, again);
        let other: &DeviceId = "LAPTOP".into();
        let third = t
            .append(
                &room,
                &alice,
                event("m.room.message", json!({"body": "once"}), None),
                Some((other, "t1")),
            )
            .await
            .unwrap();
        assert_ne!(first, third, "transaction ids are per device");
    }

    #[tokio::test]
    async fn concurrent_appends_make_one_line() {
        let f = fixture();
        let room = room(&f.timeline, RoomVersionId::V12).await;
        let tasks: Vec<_> = (0..4)
            .map(|n| {
                let t = f.timeline.clone();
                let room = room.clone();
                tokio::spawn(async move {
                    let device: ruma::OwnedDeviceId = format!("DEV{n}").into();
                    for i in 0..50 {
                        t.append(
                            &room,
                            &user("alice"),
                            event("m.room.message", json!({"body": format!("{n}/{i}")}), None),
                            Some((&device, &format!("txn{i}"))),
                        )
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let record = f.timeline.room(&room).unwrap().unwrap();
        let events = f.timeline.events(record.short, Direction::Forward).unwrap();
        assert_eq!(events.len(), 4 + 200);
        for pair in events.windows(2) {
            assert_eq!(
                Pdu::from_stored(&pair[1].1).unwrap().prev_events,
                vec![pair[0].1.event_id.clone()]
            );
        }
    }

    #[tokio::test]
    async fn stored_pdus_are_valid_signed_pdus_another_server_would_accept() {
        let f = fixture();
        let t = &f.timeline;
        let room = room(t, RoomVersionId::V12).await;
        t.append(
            &room,
            &user("alice"),
            event("m.room.message", json!({"body": "검증"}), None),
            None,
        )
        .await
        .unwrap();
        let record = t.room(&room).unwrap().unwrap();
        let rules = pdu::rules(&record.version).unwrap();
        let key_id = t.keys.key_id();
        let public_keys = std::collections::BTreeMap::from([(
            "example.org".to_owned(),
            std::collections::BTreeMap::from([(key_id, t.keys.verify_key())]),
        )]);
        for (_, stored) in t.events(record.short, Direction::Forward).unwrap() {
            ruma::state_res::check_pdu_format(&stored.pdu, &rules.event_format)
                .unwrap_or_else(|e| panic!("{}: {e}", stored.event_id));
            let verified =
                ruma::signatures::verify_event(&public_keys, &stored.pdu, &rules).unwrap();
            assert_eq!(
                verified,
                ruma::signatures::Verified::All,
                "{}",
                stored.event_id
            );
            assert_eq!(pdu::event_id(&stored.pdu, &rules).unwrap(), stored.event_id);
        }
    }
}

//! The timeline: each room's events in the order this server accepted them, and the ways
//! events get there. Appends to one room are serialised by a per-room lock, so the local DAG
//! stays a line (each event's `prev_events` is the event before it); every event is built from
//! the current state, passes the room version's authorization rules (ruma's state-res), and is
//! written with its indices in one atomic commit ([`super::draft`]). Reads never take the lock:
//! they see the store as of the last finished commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ruma::events::TimelineEventType;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, DeviceId, EventId, OwnedEventId, OwnedRoomId,
    OwnedServerName, RoomId, RoomVersionId, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::pdu::{self, Pdu, StoredPdu};
use crate::error::{Error, Result};
use crate::federation::keys::ServerKeys;
use crate::storage::{Direction, KeyRange, Store, StoreExt, Table, keys};

/// What the store keeps about a room.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct RoomRecord {
    /// Short numeric id used in timeline and state keys.
    pub short: u64,
    pub version: RoomVersionId,
    /// The room's forward extremities: the events nothing refers to yet, which the next
    /// event names as its `prev_events`. (Records from before federation held the one latest
    /// event as `last_event`.)
    #[serde(default, alias = "last_event", deserialize_with = "one_or_many")]
    pub extremities: Vec<OwnedEventId>,
    /// The greatest depth of the room's events.
    pub last_depth: u64,
    /// The snapshot of the current state ([`super::snapshot`]); 0 for a room whose events
    /// all predate snapshots, until its next state change.
    #[serde(default)]
    pub snapshot: u64,
    /// The position of the latest event that moves the room up a room list (a message, not a
    /// profile change): sliding sync's `bump_stamp`.
    #[serde(default)]
    pub bump: u64,
    /// For a room joined through another server: the band of positions below the join kept
    /// for the history before it, fetched on demand ([`super::history`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<super::history::History>,
}

/// Reads the extremities of a record: a list, or the one `last_event` (maybe null) of older
/// records.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<OwnedEventId>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Many(Vec<OwnedEventId>),
        One(Option<OwnedEventId>),
    }
    Ok(match Stored::deserialize(deserializer)? {
        Stored::Many(many) => many,
        Stored::One(one) => one.into_iter().collect(),
    })
}

/// Event types that move a room up its users' room lists (as Synapse and Element count them).
pub const BUMP_EVENT_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "m.beacon_info",
];

/// An event a local user asks to send.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub kind: TimelineEventType,
    pub content: Box<RawValue>,
    pub state_key: Option<String>,
}

pub struct Timeline {
    pub(super) store: Arc<dyn Store>,
    pub(super) keys: Arc<ServerKeys>,
    pub(super) server_name: OwnedServerName,
    pub(super) watchers: Arc<crate::watchers::Watchers>,
    pub(super) push_rules: Arc<crate::push::rules::PushRules>,
    pub(super) pushers: Arc<crate::push::pushers::Pushers>,
    pub(super) audit: Arc<crate::admin::audit::Audit>,
    pub(super) appservices: Arc<crate::appservice::Appservices>,
    locks: Mutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<()>>>>,
    /// The `origin_server_ts` of the latest create event: each one gets its own millisecond.
    last_create_ts: AtomicU64,
    pub activity: super::activity::Activity,
    pub(super) member_cache: super::member_cache::MemberCache,
}

fn bad_content(event_type: &str, error: impl std::fmt::Display) -> Error {
    Error::bad_json(format!("Invalid content for {event_type}: {error}"))
}

/// Refuses content of the state events the authorization rules read, when it does not parse.
pub(super) fn check_content(kind: &TimelineEventType, content: &RawValue) -> Result<()> {
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
    // Each argument is a service the timeline writes through or wakes; built once.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        keys: Arc<ServerKeys>,
        server_name: OwnedServerName,
        watchers: Arc<crate::watchers::Watchers>,
        push_rules: Arc<crate::push::rules::PushRules>,
        pushers: Arc<crate::push::pushers::Pushers>,
        audit: Arc<crate::admin::audit::Audit>,
        appservices: Arc<crate::appservice::Appservices>,
    ) -> Self {
        Self {
            pushers,
            audit,
            appservices,
            activity: super::activity::Activity::new(store.committed_count()),
            member_cache: Default::default(),
            store,
            keys,
            server_name,
            watchers,
            push_rules,
            locks: Mutex::new(HashMap::new()),
            last_create_ts: AtomicU64::new(0),
        }
    }

    /// Wakes the sleeping `/sync` of everyone a change in the room concerns: its joined,
    /// invited and knocking users.
    pub fn wake_room(&self, room_id: &RoomId) -> Result<()> {
        for (user, record) in self.room_memberships(room_id)?.iter() {
            if matches!(record.membership.as_str(), "join" | "invite" | "knock") {
                self.watchers.wake(user);
            }
        }
        Ok(())
    }

    /// The time of a new create event: now, or a millisecond after the previous one. A v12
    /// room id is the create event's hash, so two rooms made by one user in the same
    /// millisecond would otherwise get the same id.
    pub(super) fn create_ts(&self) -> u64 {
        let now = crate::now_ms();
        let previous = self
            .last_create_ts
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(now);
        now.max(previous + 1)
    }

    /// Adds the content hash and this server's signature to a PDU; returns its event id.
    pub fn sign(
        &self,
        object: &mut CanonicalJsonObject,
        rules: &ruma::room_version_rules::RoomVersionRules,
    ) -> Result<OwnedEventId> {
        pdu::hash_sign_and_id(
            object,
            self.server_name.as_str(),
            self.keys.key_pair(),
            rules,
        )
    }

    /// The lock that serialises writes to the room (held by drafts, and by a purge).
    pub fn room_lock(&self, room_id: &RoomId) -> Arc<tokio::sync::Mutex<()>> {
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

    /// An event of a timeline, or an outlier (an event of another server's room known only
    /// as state or as an auth event).
    pub fn get(&self, event_id: &EventId) -> Result<Option<StoredPdu>> {
        match self.position(event_id)? {
            None => self.store.get_json(Table::Outliers, event_id.as_bytes()),
            Some((short, count)) => self.store.get_json(Table::Pdus, &keys::pdu(short, count)),
        }
    }

    pub(super) fn get_parsed(&self, event_id: &EventId) -> Option<Pdu> {
        self.get(event_id)
            .ok()
            .flatten()
            .and_then(|s| Pdu::from_stored(&s).ok())
    }

    /// The event a device already sent in a transaction, if any.
    fn sent_in(
        &self,
        sender: &UserId,
        device: &DeviceId,
        txn: &str,
    ) -> Result<Option<OwnedEventId>> {
        match self.store.get(
            Table::Transactions,
            &keys::transaction(sender.as_str(), device.as_str(), txn),
        )? {
            None => Ok(None),
            Some(id) => OwnedEventId::try_from(String::from_utf8_lossy(&id).into_owned())
                .map(Some)
                .map_err(|_| Error::internal("corrupt transaction entry")),
        }
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
        self.append_at(room_id, sender, event, transaction, None)
            .await
    }

    /// [`Timeline::append`] with the event's `origin_server_ts` given (an appservice's `ts`).
    pub async fn append_at(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        event: NewEvent,
        transaction: Option<(&DeviceId, &str)>,
        ts: Option<u64>,
    ) -> Result<OwnedEventId> {
        let mut draft = self.draft();
        draft.set_origin_server_ts(ts);
        draft.lock(room_id).await;
        if let Some((device, txn)) = transaction
            && let Some(id) = self.sent_in(sender, device, txn)?
        {
            return Ok(id);
        }
        let event_id = draft.send(room_id, sender, event, transaction).await?;
        draft.commit()?;
        Ok(event_id)
    }

    /// Redacts `target`: sends the redaction event (idempotent per transaction) and, in the same
    /// commit, replaces the stored event by its redacted form. Redacting another user's event
    /// needs the redact level.
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
        let mut draft = self.draft();
        draft.lock(&room_id).await;
        let (device, txn) = transaction;
        if let Some(id) = self.sent_in(sender, device, txn)? {
            return Ok(id);
        }
        let redaction_id = draft
            .send(&room_id, sender, event, Some(transaction))
            .await?;
        let Some((short, count)) = self.position(&target.event_id)? else {
            return Err(Error::internal("redacted event vanished"));
        };
        // Read again under the room's lock: the stored event is what gets redacted.
        let target = self
            .get(&target.event_id)?
            .ok_or_else(|| Error::internal("redacted event vanished"))?;
        let rules = pdu::rules(&record.version)?;
        let mut redacted = pdu::redact(target.pdu.clone(), &rules)?;
        let mut unsigned = CanonicalJsonObject::new();
        if let Some(redaction) = draft.get(&redaction_id)? {
            let event: CanonicalJsonObject = serde_json::from_value(redaction.to_client_event())
                .map_err(|e| Error::internal(format!("redaction event: {e}")))?;
            unsigned.insert("redacted_because".into(), CanonicalJsonValue::Object(event));
        }
        redacted.insert("unsigned".into(), CanonicalJsonValue::Object(unsigned));
        let stored = StoredPdu {
            pdu: redacted,
            ..target.clone()
        };
        // A redacted event no longer counts in its parent's aggregations, nor lets anyone
        // download the files it named.
        let content = target.content();
        if let Some((rel_type, parent)) = super::relations::relation_of(&content) {
            draft.also().delete(
                Table::Relations,
                keys::relation(short, parent.as_str(), &rel_type, count),
            );
        }
        for media_id in crate::media::references::media_ids(self.server_name.as_str(), &content) {
            draft
                .also()
                .delete(Table::MediaRefs, keys::media_ref(&media_id, short, count));
        }
        draft
            .also()
            .put_json(Table::Pdus, keys::pdu(short, count), &stored)?;
        draft.unindex(&redaction_id, &target.event_id);
        draft.commit()?;
        Ok(redaction_id)
    }
    /// The positions and `origin_server_ts` of the events `sender` sent in the room at or
    /// after position `from` (membership changes aside), oldest first.
    pub fn events_sent_by(
        &self,
        short: u64,
        sender: &UserId,
        from: u64,
    ) -> Result<impl Iterator<Item = Result<(u64, u64)>> + '_> {
        let prefix = keys::sent_events_of(short, sender.as_str());
        let range = KeyRange {
            lower: keys::sent_event(short, sender.as_str(), from),
            upper: keys::prefix_successor(&prefix),
        };
        Ok(self
            .store
            .scan(Table::SentEvents, range, Direction::Forward)?
            .map(|entry| {
                let (key, value) = entry?;
                match (keys::trailing_u64(&key), keys::trailing_u64(&value)) {
                    (Some(count), Some(ts)) => Ok((count, ts)),
                    _ => Err(Error::internal("corrupt sent event entry")),
                }
            }))
    }

    /// The room's event at position `count`, if there is one.
    pub fn event_at(&self, short: u64, count: u64) -> Result<Option<StoredPdu>> {
        self.store.get_json(Table::Pdus, &keys::pdu(short, count))
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
    use std::collections::BTreeSet;

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
                    crate::users::account_data::AccountData::new(store.clone(), Default::default()),
                ))),
                Arc::new(crate::push::pushers::Pushers::new(store.clone(), 20).unwrap()),
                Arc::new(crate::admin::audit::Audit::new(store).unwrap()),
                Arc::new(
                    crate::appservice::Appservices::load(&crate::config::Config::default())
                        .unwrap(),
                ),
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

    impl Timeline {
        /// Creates a room with its create event alone.
        async fn create_room(
            &self,
            creator: &UserId,
            version: RoomVersionId,
            content: serde_json::Map<String, serde_json::Value>,
        ) -> Result<OwnedRoomId> {
            let mut draft = self.draft();
            let room_id = draft.create(creator, version, content).await?;
            draft.commit()?;
            Ok(room_id)
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
    async fn rooms_created_in_the_same_millisecond_get_their_own_ids() {
        let f = fixture();
        let alice = user("alice");
        // One draft makes them all within a millisecond or two: identical create events but
        // for the time, so v12 ids would collide.
        let mut draft = f.timeline.draft();
        let mut rooms = Vec::new();
        for _ in 0..20 {
            rooms.push(
                draft
                    .create(&alice, RoomVersionId::V12, Default::default())
                    .await
                    .unwrap(),
            );
        }
        draft.commit().unwrap();
        let distinct: std::collections::BTreeSet<_> = rooms.iter().collect();
        assert_eq!(distinct.len(), 20);
        for room in &rooms {
            assert!(
                f.timeline.room(room).unwrap().is_some(),
                "{room} was stored"
            );
        }
        // And one after another, each in its own commit.
        for _ in 0..20 {
            f.timeline
                .create_room(&alice, RoomVersionId::V12, Default::default())
                .await
                .unwrap();
        }
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
        assert_eq!(record.extremities, vec![id.clone()]);
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

    #[tokio::test]
    async fn every_event_knows_the_state_before_and_after_it() {
        let f = fixture();
        let t = &f.timeline;
        let room = room(t, RoomVersionId::V11).await;
        let alice = user("alice");
        let topic = |text: &str| event("m.room.topic", json!({"topic": text}), Some(""));
        let first = t.append(&room, &alice, topic("one"), None).await.unwrap();
        let message = t
            .append(
                &room,
                &alice,
                event("m.room.message", json!({"body": "hi"}), None),
                None,
            )
            .await
            .unwrap();
        let second = t.append(&room, &alice, topic("two"), None).await.unwrap();
        let key = ("m.room.topic".to_owned(), String::new());

        let before_first = t.state_at_event(&first, false).unwrap().unwrap();
        let after_first = t.state_at_event(&first, true).unwrap().unwrap();
        assert!(!before_first.contains_key(&key));
        assert_eq!(after_first[&key], first);
        assert_eq!(after_first.len(), before_first.len() + 1);
        // A message changes nothing.
        assert_eq!(
            t.state_at_event(&message, false).unwrap().unwrap(),
            after_first
        );
        assert_eq!(
            t.state_at_event(&message, true).unwrap().unwrap(),
            after_first
        );
        let after_second = t.state_at_event(&second, true).unwrap().unwrap();
        assert_eq!(after_second[&key], second);
        // The latest snapshot is the current state.
        let short = t.room(&room).unwrap().unwrap().short;
        let current: crate::rooms::snapshot::StateMap =
            t.current_state(short).unwrap().into_iter().collect();
        assert_eq!(after_second, current);
        // The create event starts from nothing.
        let create = t
            .state_event_id(short, "m.room.create", "")
            .unwrap()
            .unwrap();
        assert!(
            t.state_at_event(&create, false)
                .unwrap()
                .unwrap()
                .is_empty()
        );
        let unknown = EventId::parse("$unknown").unwrap();
        assert_eq!(t.state_at_event(&unknown, false).unwrap(), None);
    }

    #[tokio::test]
    async fn rooms_from_before_snapshots_keep_working() {
        let f = fixture();
        let t = &f.timeline;
        let room = room(t, RoomVersionId::V11).await;
        let alice = user("alice");
        let short = t.room(&room).unwrap().unwrap().short;
        // Make the room look as older versions stored it: a `last_event`, no snapshots.
        let mut old = serde_json::to_value(t.room(&room).unwrap().unwrap()).unwrap();
        let last = old["extremities"][0].clone();
        let object = old.as_object_mut().unwrap();
        object.remove("extremities");
        object.remove("snapshot");
        object.insert("last_event".into(), last.clone());
        t.store
            .put(
                Table::Rooms,
                room.as_bytes().to_vec(),
                serde_json::to_vec(&old).unwrap(),
            )
            .unwrap();
        let mut batch = crate::storage::Batch::new();
        for table in [Table::StateSnapshots, Table::EventState] {
            for entry in t
                .store
                .scan(table, KeyRange::all(), Direction::Forward)
                .unwrap()
            {
                batch.delete(table, entry.unwrap().0);
            }
        }
        t.store.write(batch).unwrap();
        let record = t.room(&room).unwrap().unwrap();
        assert_eq!(
            record.extremities,
            vec![OwnedEventId::try_from(last.as_str().unwrap()).unwrap()]
        );
        assert_eq!(record.snapshot, 0);

        let join_rules = t
            .state_event_id(short, "m.room.join_rules", "")
            .unwrap()
            .unwrap();
        let old_state = t.state_at_event(&join_rules, false).unwrap().unwrap();
        assert_eq!(
            old_state.len(),
            3,
            "create, member, power levels: {old_state:?}"
        );
        let named = t
            .append(
                &room,
                &alice,
                event("m.room.name", json!({"name": "n"}), Some("")),
                None,
            )
            .await
            .unwrap();
        let before = t.state_at_event(&named, false).unwrap().unwrap();
        let after = t.state_at_event(&named, true).unwrap().unwrap();
        assert_eq!(before.len(), 4);
        assert_eq!(after.len(), 5);
        let current: crate::rooms::snapshot::StateMap =
            t.current_state(short).unwrap().into_iter().collect();
        assert_eq!(after, current);
        let record = t.room(&room).unwrap().unwrap();
        assert_eq!(record.extremities, vec![named]);
        assert_ne!(record.snapshot, 0);
        let null: RoomRecord = serde_json::from_value(json!({
            "short": 1, "version": "11", "last_event": null, "last_depth": 0
        }))
        .unwrap();
        assert!(null.extremities.is_empty());
    }

    #[tokio::test]
    async fn auth_chains_reach_the_create_event() {
        let f = fixture();
        let t = &f.timeline;
        let room_id = room(t, RoomVersionId::V11).await;
        let alice = user("alice");
        let message = t
            .append(
                &room_id,
                &alice,
                event("m.room.message", json!({"body": "hi"}), None),
                None,
            )
            .await
            .unwrap();
        let short = t.room(&room_id).unwrap().unwrap().short;
        let id = |kind: &str, key: &str| t.state_event_id(short, kind, key).unwrap().unwrap();
        let (create, member, power) = (
            id("m.room.create", ""),
            id("m.room.member", alice.as_str()),
            id("m.room.power_levels", ""),
        );
        let chain = t.auth_chain([message]).unwrap();
        assert_eq!(
            chain,
            BTreeSet::from([create.clone(), member.clone(), power.clone()])
        );
        // The create event authorises everything and is authorised by nothing.
        assert!(t.auth_chain([create.clone()]).unwrap().is_empty());
        assert_eq!(t.auth_chain([member]).unwrap(), BTreeSet::from([create]));
        // From version 12 the create event is implied, and still part of the chain.
        let v12 = room(t, RoomVersionId::V12).await;
        let message = t
            .append(
                &v12,
                &alice,
                event("m.room.message", json!({"body": "hi"}), None),
                None,
            )
            .await
            .unwrap();
        let create = OwnedEventId::try_from(format!("${}", &v12.as_str()[1..])).unwrap();
        let chain = t.auth_chain([message]).unwrap();
        assert!(chain.contains(&create), "{chain:?}");
        assert_eq!(
            chain.len(),
            3,
            "create, power levels, alice's join: {chain:?}"
        );
    }
}

//! Read receipts (`m.read`, private `m.read.private`, per thread) kept per (room, type, thread,
//! user), with a change log under the server count so `/sync` can send what changed.

use std::sync::Arc;

use ruma::{EventId, OwnedEventId, OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::pdu::StoredPdu;
use super::timeline::Timeline;
use crate::error::{Error, Result};
use crate::storage::{Batch, Direction, KeyRange, Store, StoreExt, Table, keys};

/// The thread of an unthreaded receipt.
pub const UNTHREADED: &str = "";

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Receipt {
    pub user_id: OwnedUserId,
    pub receipt_type: String,
    pub thread: String,
    pub event_id: OwnedEventId,
    pub ts: u64,
}

pub struct Receipts {
    store: Arc<dyn Store>,
}

impl Receipts {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Records a receipt and wakes the room's syncs; a receipt for an event before the user's
    /// current one of the same type and thread is ignored.
    pub fn set(
        &self,
        timeline: &Timeline,
        room_id: &RoomId,
        short: u64,
        user_id: &UserId,
        receipt_type: &str,
        thread: &str,
        event_id: &EventId,
    ) -> Result<()> {
        let receipt = Receipt {
            user_id: user_id.to_owned(),
            receipt_type: receipt_type.to_owned(),
            thread: thread.to_owned(),
            event_id: event_id.to_owned(),
            ts: crate::now_ms(),
        };
        let position = timeline
            .position(event_id)?
            .filter(|(s, _)| *s == short)
            .map(|(_, position)| position)
            .ok_or_else(|| Error::not_found("No such event in this room"))?;
        // A receipt never moves back (a client catching up on an old device sends receipts
        // for events the user read long ago): it would make read messages unread again.
        let current = self.store.get(
            Table::UserReceipts,
            &keys::user_receipt(user_id.as_str(), short, receipt_type, thread),
        )?;
        if current
            .as_deref()
            .and_then(keys::trailing_u64)
            .is_some_and(|current| current > position)
        {
            return Ok(());
        }
        // A read that lowers the user's unread count changes their app's badge: each of their
        // pushers is told, from the same commit.
        let mut pushers = timeline.pushers.active_ids(user_id);
        if !pushers.is_empty() {
            let before = self.read_positions(short, user_id)?;
            let after = before.with(thread, position);
            let unread = |read: &ReadPositions| -> Result<u64> {
                let counts = timeline.unread_counts(user_id, short, read)?;
                Ok(counts
                    .threads
                    .values()
                    .fold(counts.main, |sum, u| sum + *u)
                    .notifications)
            };
            if unread(&after)? >= unread(&before)? {
                pushers.clear();
            }
        }
        self.store.commit(&mut |count| {
            timeline.activity.record(room_id, count);
            let mut batch = Batch::new();
            for pusher in &pushers {
                crate::push::queue::badge(&mut batch, *pusher, count);
            }
            batch.put(
                Table::UserReceipts,
                keys::user_receipt(user_id.as_str(), short, receipt_type, thread),
                keys::u64_be(position).to_vec(),
            );
            batch.put_json(
                Table::Receipts,
                keys::receipt(short, receipt_type, thread, user_id.as_str()),
                &receipt,
            )?;
            batch.put_json(Table::ReceiptChanges, keys::pdu(short, count), &receipt)?;
            Ok(batch)
        })?;
        timeline.pushers.work.queued(pushers);
        timeline.wake_room(room_id)
    }

    /// Receipts of a room changed after `after` up to `upto` (all current ones when `after` is
    /// `None`), latest per (user, type, thread).
    pub fn changed(&self, short: u64, after: Option<u64>, upto: u64) -> Result<Vec<Receipt>> {
        let parse = |value: &[u8]| -> Result<Receipt> {
            serde_json::from_slice(value)
                .map_err(|e| Error::internal(format!("corrupt receipt: {e}")))
        };
        let mut latest: std::collections::BTreeMap<(String, String, String), Receipt> =
            Default::default();
        let entries: Vec<Receipt> = match after {
            None => self
                .store
                .scan_prefix(Table::Receipts, &keys::pdus_of(short))?
                .map(|entry| parse(&entry?.1))
                .collect::<Result<_>>()?,
            Some(after) => {
                let range = KeyRange::between(
                    &keys::pdu(short, after.saturating_add(1)),
                    &keys::pdu(short, upto.saturating_add(1)),
                );
                self.store
                    .scan(Table::ReceiptChanges, range, Direction::Forward)?
                    .map(|entry| parse(&entry?.1))
                    .collect::<Result<_>>()?
            }
        };
        for receipt in entries {
            latest.insert(
                (
                    receipt.user_id.to_string(),
                    receipt.receipt_type.clone(),
                    receipt.thread.clone(),
                ),
                receipt,
            );
        }
        Ok(latest.into_values().collect())
    }
}

/// The `m.receipt` ephemeral event for `viewer`: private receipts only when they are the viewer's.
pub fn receipt_event(receipts: &[Receipt], viewer: &UserId) -> Option<Value> {
    let mut content: Map<String, Value> = Map::new();
    for receipt in receipts {
        if receipt.receipt_type == "m.read.private" && receipt.user_id != viewer {
            continue;
        }
        let mut entry = json!({"ts": receipt.ts});
        if receipt.thread != UNTHREADED {
            entry["thread_id"] = receipt.thread.clone().into();
        }
        let by_event = content
            .entry(receipt.event_id.to_string())
            .or_insert_with(|| json!({}));
        by_event[&receipt.receipt_type][receipt.user_id.as_str()] = entry;
    }
    (!content.is_empty()).then(|| json!({"type": "m.receipt", "content": content}))
}

impl Receipts {
    /// The user's own receipt of a type in a room's main timeline, if any.
    pub fn get(&self, short: u64, receipt_type: &str, user_id: &UserId) -> Result<Option<Receipt>> {
        self.store.get_json(
            Table::Receipts,
            &keys::receipt(short, receipt_type, UNTHREADED, user_id.as_str()),
        )
    }
}

/// Who has and has not read an event ("who hasn't read this yet", a Sori extension): over the
/// users joined when it was sent, a public `m.read` receipt at that event or a later one (in
/// the main timeline or unthreaded) counts as read, and so does having sent that event or a
/// later one in the room (sending implies reading what came before). A reader's time is the
/// earliest of the two.
pub struct ReadBy {
    pub read: Vec<(OwnedUserId, u64)>,
    pub unread: Vec<OwnedUserId>,
}

impl Receipts {
    /// Who of the room `short` has read `event`, which sits at `event_count`.
    pub fn read_by(
        &self,
        timeline: &Timeline,
        short: u64,
        event: &StoredPdu,
        event_count: u64,
    ) -> Result<ReadBy> {
        // Members joined when the event was sent.
        let mut joined = Vec::new();
        for ((event_type, state_key), _) in timeline.current_state(short)? {
            if event_type != "m.room.member" {
                continue;
            }
            let membership = timeline.state_field_at(
                short,
                &event_type,
                &state_key,
                event_count,
                "membership",
            )?;
            if membership.as_deref() == Some("join")
                && let Ok(user) = OwnedUserId::try_from(state_key)
            {
                joined.push(user);
            }
        }
        // Each member's furthest public read receipt, as a timeline position.
        let mut furthest: std::collections::HashMap<OwnedUserId, (u64, u64)> = Default::default();
        let prefix = keys::receipt_prefix(short, "m.read");
        for entry in self.store.scan(
            Table::Receipts,
            KeyRange::prefix(&prefix),
            Direction::Forward,
        )? {
            let (_, value) = entry?;
            let receipt: Receipt = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("corrupt receipt: {e}")))?;
            if !(receipt.thread == UNTHREADED || receipt.thread == "main") {
                continue;
            }
            if let Some((s, position)) = timeline.position(&receipt.event_id)?
                && s == short
            {
                let best = furthest
                    .entry(receipt.user_id.clone())
                    .or_insert((position, receipt.ts));
                if position > best.0 {
                    *best = (position, receipt.ts);
                }
            }
        }
        let author = event.to_client_event();
        let (author, sent_ts) = (
            author["sender"].as_str().unwrap_or_default().to_owned(),
            author["origin_server_ts"].as_u64().unwrap_or_default(),
        );
        let mut read = Vec::new();
        let mut unread = Vec::new();
        for user in joined {
            let by_receipt = furthest
                .get(&user)
                .filter(|(position, _)| *position >= event_count)
                .map(|(_, ts)| *ts);
            let by_sending = if user.as_str() == author {
                Some(sent_ts)
            } else {
                match timeline.events_sent_by(short, &user, event_count)?.next() {
                    Some(sent) => Some(sent?.1),
                    None => None,
                }
            };
            match by_receipt.into_iter().chain(by_sending).min() {
                Some(ts) => read.push((user, ts)),
                None => unread.push(user),
            }
        }
        Ok(ReadBy { read, unread })
    }
}

/// How far a user has read a room: by unthreaded receipts (everything), main-timeline receipts
/// and each thread's receipts; `m.read` and `m.read.private` alike.
#[derive(Clone, Debug, Default)]
pub struct ReadPositions {
    unthreaded: u64,
    main: u64,
    threads: std::collections::HashMap<String, u64>,
}

impl ReadPositions {
    /// The furthest position read in the main timeline, or in a thread (by its root).
    pub fn of(&self, thread: Option<&str>) -> u64 {
        let threaded = match thread {
            None => self.main,
            Some(root) => self.threads.get(root).copied().unwrap_or(0),
        };
        threaded.max(self.unthreaded)
    }

    /// Below this position everything is read, in every thread.
    pub fn everywhere(&self) -> u64 {
        self.unthreaded
    }

    /// The positions after a receipt at `position` in `thread` (a receipt's thread: unthreaded,
    /// `main` or a root).
    pub fn with(&self, thread: &str, position: u64) -> ReadPositions {
        let mut positions = self.clone();
        let slot = match thread {
            UNTHREADED => &mut positions.unthreaded,
            "main" => &mut positions.main,
            root => positions.threads.entry(root.to_owned()).or_default(),
        };
        *slot = (*slot).max(position);
        positions
    }
}

impl Receipts {
    pub fn read_positions(&self, short: u64, user_id: &UserId) -> Result<ReadPositions> {
        let prefix = keys::user_receipts_of(user_id.as_str(), short);
        let mut positions = ReadPositions::default();
        for entry in self.store.scan_prefix(Table::UserReceipts, &prefix)? {
            let (key, value) = entry?;
            let (Some(position), Some(thread)) = (
                keys::trailing_u64(&value),
                key[prefix.len()..]
                    .split(|b| *b == keys::SEP)
                    .nth(1)
                    .and_then(|t| std::str::from_utf8(t).ok()),
            ) else {
                continue;
            };
            let slot = match thread {
                UNTHREADED => &mut positions.unthreaded,
                "main" => &mut positions.main,
                root => positions.threads.entry(root.to_owned()).or_default(),
            };
            *slot = (*slot).max(position);
        }
        Ok(positions)
    }
}

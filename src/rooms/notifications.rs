//! Notifications: which members an event notifies or highlights by their push rules (decided
//! when the event is written), and each user's unread counts per room and thread.

use ruma::events::TimelineEventType;
use ruma::events::room::power_levels::RoomPowerLevels;
use ruma::push::Action;
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};

use super::pdu::{Pdu, StoredPdu};
use super::receipts::ReadPositions;
use super::timeline::Timeline;
use crate::error::{Error, Result};
use crate::storage::{Direction, KeyRange, StoreExt, Table, keys};

/// Unread notifying events and highlights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unread {
    pub notifications: u64,
    pub highlights: u64,
    /// Of the notifications, calls (`m.call.invite`): missed calls, for push gateways.
    pub calls: u64,
}

impl std::ops::Add for Unread {
    type Output = Unread;

    fn add(self, other: Unread) -> Unread {
        Unread {
            notifications: self.notifications + other.notifications,
            highlights: self.highlights + other.highlights,
            calls: self.calls + other.calls,
        }
    }
}

/// An event that notifies a user, as stored (the user, room and count are the key).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct NotificationRecord {
    #[serde(default)]
    pub highlight: bool,
    /// The thread the event is in, by its root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// What the user's push rules said to do (tweaks: sound, highlight).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// The event is a call invitation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub call: bool,
}

/// A member an event notifies: what their push rules said, and which of their pushers get
/// it.
#[derive(Clone, Debug)]
pub struct Notified {
    pub user: OwnedUserId,
    pub actions: Vec<Action>,
    pub pushers: Vec<u64>,
}

impl Notified {
    pub fn highlight(&self) -> bool {
        self.actions.iter().any(Action::is_highlight)
    }
}

/// A user's unread counts in a room: the main timeline, and each thread by its root.
#[derive(Debug, Default)]
pub struct UnreadCounts {
    pub main: Unread,
    pub threads: std::collections::BTreeMap<String, Unread>,
}

/// Whom an event may notify, each with the display name the push rules match against: the
/// room's joined members other than the sender; for a membership change only its target (an
/// invitee, a kicked member), as Synapse does: the default rules notify no one else of one,
/// and asking every member's rules made each join to a room of thousands cost thousands.
/// `display_name` reads a member's name from the room's state; it is read only when the
/// event has a `body` for it to be found in (the one rule that uses it).
pub(super) fn candidates(
    joined: &[OwnedUserId],
    parsed: &Pdu,
    has_body: bool,
    display_name: impl Fn(&UserId) -> Result<Option<String>>,
) -> Result<Vec<(OwnedUserId, String)>> {
    let users: Vec<OwnedUserId> = if parsed.kind == TimelineEventType::RoomMember {
        parsed
            .state_key
            .as_deref()
            .and_then(|k| OwnedUserId::try_from(k).ok())
            .filter(|target| *target != parsed.sender)
            .into_iter()
            .collect()
    } else {
        joined
            .iter()
            .filter(|u| **u != parsed.sender)
            .cloned()
            .collect()
    };
    users
        .into_iter()
        .map(|user| {
            let name = match has_body {
                true => display_name(&user)?,
                false => None,
            };
            let name = name.unwrap_or_else(|| user.localpart().to_owned());
            Ok((user, name))
        })
        .collect()
}

impl Timeline {
    /// Who of `candidates` the event notifies, and whether it highlights them, by each one's
    /// push rules in a room of `member_count` joined members.
    pub(super) async fn notified(
        &self,
        stored: &StoredPdu,
        member_count: u64,
        power: RoomPowerLevels,
        candidates: Vec<(OwnedUserId, String)>,
    ) -> Result<Vec<Notified>> {
        use ruma::push::{PushConditionPowerLevelsCtx, PushConditionRoomCtx};
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let room_id: &OwnedRoomId = &stored.room_id;
        let power: PushConditionPowerLevelsCtx = power.into();
        let raw = serde_json::value::to_raw_value(&stored.to_client_event())
            .map(ruma::serde::Raw::<ruma::events::AnySyncTimelineEvent>::from_json)
            .map_err(|e| Error::internal(format!("event for push rules: {e}")))?;
        let mut notified = Vec::new();
        for (user, display_name) in candidates {
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
                notified.push(Notified {
                    pushers: self.pushers.active_ids(&user),
                    user,
                    actions: actions.to_vec(),
                });
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
        read: &ReadPositions,
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
            let notification: NotificationRecord =
                serde_json::from_slice(&value).unwrap_or_default();
            let thread = notification.thread.as_deref();
            if count <= read.of(thread) {
                continue;
            }
            let slot = match thread {
                None => &mut counts.main,
                Some(root) => counts.threads.entry(root.to_owned()).or_default(),
            };
            slot.notifications += 1;
            slot.highlights += u64::from(notification.highlight);
            slot.calls += u64::from(notification.call);
        }
        Ok(counts)
    }

    /// How the event at (short, count) notifies the user, if it does.
    pub fn notification(
        &self,
        user_id: &UserId,
        short: u64,
        count: u64,
    ) -> Result<Option<NotificationRecord>> {
        self.store.get_json(
            Table::Notifications,
            &keys::notification(user_id.as_str(), short, count),
        )
    }

    /// The user's notifications before timeline position `before` (from the latest when
    /// `None`), newest first, at most `limit`, only highlights if asked: over every room the
    /// user has been in, each room's own index read backwards and merged.
    pub fn notifications_before(
        &self,
        user_id: &UserId,
        before: Option<u64>,
        limit: usize,
        only_highlights: bool,
    ) -> Result<Vec<(OwnedRoomId, u64, u64, NotificationRecord)>> {
        let mut found = Vec::new();
        for (room_id, _) in self.memberships_of(user_id)? {
            let Some(room) = self.room(&room_id)? else {
                continue;
            };
            let prefix = keys::notifications_of(user_id.as_str(), room.short);
            let range = KeyRange {
                lower: prefix.clone(),
                upper: match before {
                    Some(before) => Some(keys::notification(user_id.as_str(), room.short, before)),
                    None => keys::prefix_successor(&prefix),
                },
            };
            let mut taken = 0;
            for entry in self
                .store
                .scan(Table::Notifications, range, Direction::Backward)?
            {
                let (key, value) = entry?;
                let count = keys::trailing_u64(&key).unwrap_or_default();
                let record: NotificationRecord = serde_json::from_slice(&value).unwrap_or_default();
                if only_highlights && !record.highlight {
                    continue;
                }
                found.push((room_id.clone(), room.short, count, record));
                taken += 1;
                if taken == limit {
                    break;
                }
            }
        }
        found.sort_by(|a, b| b.2.cmp(&a.2));
        found.truncate(limit);
        Ok(found)
    }
}

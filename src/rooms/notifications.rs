//! Notifications: which members an event notifies or highlights by their push rules (decided
//! when the event is written), and each user's unread counts per room and thread.

use ruma::events::TimelineEventType;
use ruma::events::room::power_levels::RoomPowerLevels;
use ruma::{OwnedRoomId, OwnedUserId, UserId};

use super::pdu::{Pdu, StoredPdu};
use super::receipts::ReadPositions;
use super::timeline::Timeline;
use crate::error::{Error, Result};
use crate::storage::{Direction, KeyRange, Table, keys};

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

/// Whom an event may notify, each with the display name the push rules match against: the
/// room's joined members other than the sender, and the target of a membership change (an
/// invitee). `display_name` reads a member's name from the room's state.
pub(super) fn candidates(
    joined: &[OwnedUserId],
    parsed: &Pdu,
    display_name: impl Fn(&UserId) -> Result<Option<String>>,
) -> Result<Vec<(OwnedUserId, String)>> {
    let mut users: Vec<OwnedUserId> = joined
        .iter()
        .filter(|u| **u != parsed.sender)
        .cloned()
        .collect();
    if parsed.kind == TimelineEventType::RoomMember
        && let Some(target) = parsed
            .state_key
            .as_deref()
            .and_then(|k| OwnedUserId::try_from(k).ok())
        && target != parsed.sender
        && !users.contains(&target)
    {
        users.push(target);
    }
    users
        .into_iter()
        .map(|user| {
            let name = display_name(&user)?.unwrap_or_else(|| user.localpart().to_owned());
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
    ) -> Result<Vec<(OwnedUserId, bool)>> {
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
}

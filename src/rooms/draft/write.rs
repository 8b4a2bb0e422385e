//! How a drafted event is written: the event with every index it feeds (timeline, state,
//! memberships, relations, threads, media references, notifications, the search, push and
//! appservice outboxes), all into the draft's one batch.

use std::sync::Arc;

use ruma::events::TimelineEventType;
use ruma::{OwnedEventId, OwnedUserId, UserId};

use super::super::members::MembershipRecord;
use super::super::notifications::{NotificationRecord, Notified};
use super::super::pdu::{Pdu, StoredPdu};
use super::super::relations::Child;
use super::super::snapshot::StateDiff;
use super::super::state::StateChange;
use crate::error::Result;
use crate::storage::{Batch, Table, keys};

/// A position an index entry points at: already stored, or the n-th event of this draft,
/// whose count is known only when the draft is committed.
#[derive(Clone, Copy, Debug)]
pub(super) enum Position {
    Stored(u64),
    Drafted(usize),
}

impl Position {
    pub(super) fn count(self, first: u64) -> u64 {
        match self {
            Position::Stored(count) => count,
            Position::Drafted(index) => first + index as u64,
        }
    }
}

/// The relation an event declares, as indexed.
pub(super) struct Relation {
    pub(super) parent: OwnedEventId,
    pub(super) child: Child,
    /// For a thread event: the thread's latest event before this one.
    pub(super) thread_before: Option<Position>,
}

/// An event built and authorised, waiting for the commit.
pub(super) struct Built {
    pub(super) stored: StoredPdu,
    pub(super) parsed: Pdu,
    pub(super) short: u64,
    /// For a state event: the event it replaces in the room's state.
    pub(super) replaces: Option<OwnedEventId>,
    /// For a membership event: the membership and since when the user has held it (a profile
    /// change keeps the position of the join).
    pub(super) membership: Option<(String, Position)>,
    pub(super) relation: Option<Relation>,
    /// Files of this server the event refers to, and whether it shows each as an avatar.
    pub(super) media: Vec<(String, bool)>,
    pub(super) transaction: Option<Vec<u8>>,
    /// The users the event notifies, how, and through which pushers.
    pub(super) notified: Vec<Notified>,
    /// For a redaction: the event it takes out of the search index.
    pub(super) unindexes: Option<OwnedEventId>,
    /// What the audit log records of the event (a room created, an invite, kick, ban or
    /// unban), and on whom.
    pub(super) audited: Option<(&'static str, String)>,
    /// The snapshots of the room's state before and after the event.
    pub(super) state: (u64, u64),
    /// What the event changes in the room's current state (see `StatePlan::changes`).
    pub(super) changes: StateDiff,
    /// Memberships other than the event's own that a fork's resolution changed.
    pub(super) resolved_members: Vec<(OwnedUserId, String)>,
    /// The other servers the event is sent to (their queues get it in the same commit).
    pub(super) destinations: Vec<ruma::OwnedServerName>,
    /// The appservices that hear of the event (their queues get it in the same commit).
    pub(super) appservices: Vec<Arc<crate::appservice::Appservice>>,
}

impl Built {
    /// For a membership event: whose membership it is, as the indices store it.
    pub(super) fn membership_record(&self, first: u64) -> Option<(&UserId, MembershipRecord)> {
        let (membership, since) = self.membership.as_ref()?;
        let user = <&UserId>::try_from(self.parsed.state_key.as_deref()?).ok()?;
        Some((
            user,
            MembershipRecord {
                membership: membership.clone(),
                count: since.count(first),
                forgotten: false,
            },
        ))
    }

    /// Adds the event at `count` with all its indices to `batch`; `first` is the count of the
    /// draft's first event.
    pub(super) fn write(&self, batch: &mut Batch, count: u64, first: u64) -> Result<()> {
        let short = self.short;
        let stored = &self.stored;
        batch.put_json(Table::Pdus, keys::pdu(short, count), stored)?;
        batch.put(
            Table::EventIds,
            stored.event_id.as_bytes(),
            keys::pdu(short, count),
        );
        let (before, after) = self.state;
        super::super::snapshot::write_event(batch, short, count, before, after);
        // Membership events say nothing of what their sender read (profile changes are sent
        // to every room on the user's behalf).
        if self.parsed.kind != TimelineEventType::RoomMember {
            batch.put(
                Table::SentEvents,
                keys::sent_event(short, self.parsed.sender.as_str(), count),
                keys::u64_be(u64::from(self.parsed.origin_server_ts.get())).to_vec(),
            );
        }
        if crate::search::document::indexable(&self.parsed.kind) {
            crate::search::outbox::index(batch, short, count);
        }
        if let Some(target) = &self.unindexes {
            crate::search::outbox::remove(batch, count, target);
        }
        for destination in &self.destinations {
            crate::federation::sender::queue(batch, destination, short, count);
        }
        for appservice in &self.appservices {
            batch.put(
                Table::AppserviceQueue,
                keys::appservice_queue(appservice.id(), count),
                crate::appservice::sender::Queued::Event(short).encode(),
            );
        }
        let own_key = self
            .parsed
            .state_key
            .as_ref()
            .map(|key| (self.parsed.kind.to_string(), key.clone()));
        let took_effect = own_key
            .as_ref()
            .is_some_and(|key| self.changes.get(key) == Some(&Some(stored.event_id.clone())));
        if let Some(state_key) = &self.parsed.state_key
            && took_effect
        {
            let event_type = self.parsed.kind.to_string();
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
                    replaces: self.replaces.clone(),
                },
            )?;
            if let Some((_, record)) = self.membership_record(first) {
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
                // The room's own events now say where the user stands: an invite kept from
                // before this server was in the room (see `rooms::invites`) is over.
                batch.delete(
                    Table::RemoteInvites,
                    keys::user_room(state_key, stored.room_id.as_str()),
                );
            }
        }
        // The rest of what a fork's resolution changed in the room's state.
        for ((event_type, state_key), event_id) in &self.changes {
            if took_effect && own_key.as_ref() == Some(&(event_type.clone(), state_key.clone())) {
                continue;
            }
            let key = keys::room_state(short, event_type, state_key);
            match event_id {
                Some(event_id) => {
                    batch.put(Table::RoomState, key, event_id.as_bytes());
                    batch.put(
                        Table::StateHistory,
                        keys::state_history(short, event_type, state_key, count),
                        event_id.as_bytes(),
                    );
                }
                None => batch.delete(Table::RoomState, key),
            }
        }
        for (user, membership) in &self.resolved_members {
            let record = MembershipRecord {
                membership: membership.clone(),
                count,
                forgotten: false,
            };
            let room_id = stored.room_id.as_str();
            batch.put_json(
                Table::UserRooms,
                keys::user_room(user.as_str(), room_id),
                &record,
            )?;
            batch.put_json(
                Table::RoomUsers,
                keys::room_user(room_id, user.as_str()),
                &record,
            )?;
        }
        let mut thread = None;
        if let Some(relation) = &self.relation {
            batch.put_json(
                Table::Relations,
                keys::relation(
                    short,
                    relation.parent.as_str(),
                    &relation.child.rel_type,
                    count,
                ),
                &relation.child,
            )?;
            if relation.child.rel_type == "m.thread" {
                let root = &relation.parent;
                if let Some(before) = relation.thread_before {
                    batch.delete(Table::ThreadActivity, keys::pdu(short, before.count(first)));
                }
                batch.put(
                    Table::ThreadRoots,
                    keys::thread_root(short, root.as_str()),
                    keys::u64_be(count).to_vec(),
                );
                batch.put(
                    Table::ThreadActivity,
                    keys::pdu(short, count),
                    root.as_bytes(),
                );
                thread = Some(root);
            }
        }
        for (media_id, avatar) in &self.media {
            batch.put_json(
                Table::MediaRefs,
                keys::media_ref(media_id, short, count),
                &crate::media::access::Reference {
                    room_id: stored.room_id.clone(),
                    sender: self.parsed.sender.clone(),
                    avatar: *avatar,
                },
            )?;
        }
        if let Some(key) = &self.transaction {
            batch.put(Table::Transactions, key.clone(), stored.event_id.as_bytes());
        }
        for notified in &self.notified {
            let notification = NotificationRecord {
                highlight: notified.highlight(),
                thread: thread.map(ToString::to_string),
                actions: notified.actions.clone(),
                call: self.parsed.kind == TimelineEventType::CallInvite,
            };
            batch.put_json(
                Table::Notifications,
                keys::notification(notified.user.as_str(), short, count),
                &notification,
            )?;
            for pusher in &notified.pushers {
                crate::push::queue::event(batch, *pusher, short, count);
            }
        }
        Ok(())
    }
}

//! Storage: the [`Store`] abstraction every service writes through, and its backends.
//!
//! A store is a set of named tables (RocksDB column families) holding byte keys in byte order,
//! plus one durable, monotonic server-wide counter. Writes are atomic batches that are durable
//! when `write` returns; reads are point gets and ordered scans over a key range in either
//! direction. Key encodings live in [`keys`], so no other module builds key bytes by hand.

pub mod keys;
pub mod rocksdb;

use crate::error::{Error, Result};

/// The tables of a store. Each is one RocksDB column family (or one PostgreSQL table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// Server-wide values: the counter, the server's signing keys.
    Global,
    /// localpart → account record (password hash, role, deactivation).
    Accounts,
    /// localpart → profile fields (a JSON object: `displayname`, `avatar_url`, custom fields).
    Profiles,
    /// user id, device id → device record.
    Devices,
    /// SHA-256 of an access token → the session it opens.
    AccessTokens,
    /// SHA-256 of a refresh token → the session it renews.
    RefreshTokens,
    /// user id, filter id → filter definition.
    Filters,
    /// user id, room id (empty for global), type → account data content and its count.
    AccountData,
    /// user id, count → (room id, type): account data changes in order, for `/sync`.
    AccountDataChanges,
    /// room id → room record (short id, version, latest event).
    Rooms,
    /// short room id, count → PDU: each room's timeline in order.
    Pdus,
    /// event id → short room id, count: where a PDU sits in its timeline.
    EventIds,
    /// short room id, type, state key → event id: each room's current state.
    RoomState,
    /// short room id, count → the state change an event made (for state at any point).
    StateChanges,
    /// short room id, type, state key, count → event id: every value a piece of state had,
    /// so the state at any point of the timeline can be looked up.
    StateHistory,
    /// short room id, snapshot id, part → a layer of a state snapshot (its spine or its
    /// entries: [`crate::rooms::snapshot`]).
    StateSnapshots,
    /// short room id, count → the snapshot ids of the state before and after the event.
    EventState,
    /// event id → an event known without a place in its room's timeline (another server's
    /// room state and auth chain, as a join brought them).
    Outliers,
    /// user id, device id, transaction id → event id: idempotent sends.
    Transactions,
    /// user id, room id → membership and its count.
    UserRooms,
    /// user id, room id → an invite from another server into a room this server is not in:
    /// the event, signed by both servers, and what the invitee is shown of the room.
    RemoteInvites,
    /// room id, user id → membership.
    RoomUsers,
    /// room alias → the room it names and who created the alias.
    Aliases,
    /// room id, alias → nothing: the aliases of each room.
    RoomAliases,
    /// room id → nothing: rooms published in the room directory.
    PublicRooms,
    /// count → a user's report of an event, for admins.
    Reports,
    /// short room id, parent event id, relation type, count → the relating event.
    Relations,
    /// short room id, thread root event id → count of the thread's latest event.
    ThreadRoots,
    /// short room id, count of a thread's latest event → the thread root.
    ThreadActivity,
    /// short room id, receipt type, thread, user → the receipt (event, ts, count).
    Receipts,
    /// short room id, count → which receipt changed, for `/sync`.
    ReceiptChanges,
    /// user id, short room id, count → an event that notifies the user (and whether it
    /// highlights), by the user's push rules.
    Notifications,
    /// user id, short room id, receipt type, thread → the position of the receipt's event:
    /// how far each user has read each thread of a room.
    UserReceipts,
    /// user id, device id → the device's identity keys (signed by the device, and by the
    /// user's self-signing key once cross-signed).
    DeviceKeys,
    /// user id, device id, algorithm, key id → an unclaimed one-time key.
    OneTimeKeys,
    /// user id, device id, algorithm → the device's fallback key and whether it was used.
    FallbackKeys,
    /// user id, usage (`master`, `self_signing`, `user_signing`) → a cross-signing key.
    CrossSigningKeys,
    /// target user id, key id, signing user id → signatures one user made on another's
    /// master key (shown to the signer only).
    KeySignatures,
    /// count → user id: whose devices or cross-signing keys changed, in order.
    KeyChanges,
    /// user id, device id, count, index → a to-device message waiting for the device.
    ToDevice,
    /// user id, device id, transaction id → nothing: to-device sends already done.
    ToDeviceTransactions,
    /// sender, recipient → the count of the sender's latest to-device message to that user
    /// (files shared that way, like room key bundles, may be downloaded by the recipient).
    ToDeviceContacts,
    /// user id, version → a room key backup version (algorithm, auth data, etag).
    BackupVersions,
    /// user id, version, room id, session id → a backed-up room key.
    BackupKeys,
    /// short room id, sender, count → the event's `origin_server_ts`: each user's own events
    /// in a room but membership changes (a sender has read what came before their event).
    SentEvents,
    /// media id → the file's record (uploader, content hash, type, name) of this server.
    Media,
    /// user id, media id → expiry time: ids from `/create` still waiting for their upload.
    MediaPending,
    /// media id, short room id, count → an event that refers to the file.
    MediaRefs,
    /// media id → nothing: files any local user may download (profile avatars).
    MediaPublic,
    /// user id, UTC day → bytes uploaded that day.
    MediaUsage,
    /// media id, width, height, method, animated → a stored thumbnail of the file.
    MediaThumbnails,
    /// count, operation → what the search backend still has to do: index the event at that
    /// count (value: its short room id) or remove a redacted one (value: its event id).
    SearchOutbox,
    /// user id, app id, pushkey → a pusher: where and how to push the user's notifications.
    Pushers,
    /// pusher id, count, kind → what the pusher's gateway still has to be told: the event at
    /// that count (value: its short room id) or a new badge count (value: empty).
    PushQueue,
    /// SHA-256 of a login token → whose it is and until when (single-use `m.login.token`).
    LoginTokens,
    /// entry id → an audit log entry, each carrying the hash of the one before it.
    Audit,
    /// room id → who blocked the room and when: nobody may enter it again.
    BlockedRooms,
    /// token → a registration token: how often it may be used, was used, and until when.
    RegistrationTokens,
    /// appservice id, count → the event at that count (value: its short room id), waiting to
    /// be delivered to the appservice.
    AppserviceQueue,
    /// appservice id → the transaction being delivered (its id and last queued count), so a
    /// retry, even after a restart, sends the same transaction.
    AppserviceTransactions,
    /// server name, key id → another server's verify key and until when it is valid.
    RemoteServerKeys,
    /// server name → the latest key document that server signed (served again as a notary).
    RemoteKeyDocuments,
    /// destination server, count → the short room id of the event at that count, waiting to
    /// be sent to that server.
    FederationQueue,
    /// destination server → the transaction being sent to it (its id and last queued count),
    /// so a retry, even after a restart, sends the same transaction.
    FederationTransactions,
}

impl Table {
    pub const ALL: [Table; 64] = [
        Table::Global,
        Table::Accounts,
        Table::Profiles,
        Table::Devices,
        Table::AccessTokens,
        Table::RefreshTokens,
        Table::Filters,
        Table::AccountData,
        Table::AccountDataChanges,
        Table::Rooms,
        Table::Pdus,
        Table::EventIds,
        Table::RoomState,
        Table::StateChanges,
        Table::StateHistory,
        Table::StateSnapshots,
        Table::EventState,
        Table::Outliers,
        Table::Transactions,
        Table::UserRooms,
        Table::RemoteInvites,
        Table::RoomUsers,
        Table::Aliases,
        Table::RoomAliases,
        Table::PublicRooms,
        Table::Reports,
        Table::Relations,
        Table::ThreadRoots,
        Table::ThreadActivity,
        Table::Receipts,
        Table::ReceiptChanges,
        Table::Notifications,
        Table::UserReceipts,
        Table::DeviceKeys,
        Table::OneTimeKeys,
        Table::FallbackKeys,
        Table::CrossSigningKeys,
        Table::KeySignatures,
        Table::KeyChanges,
        Table::ToDevice,
        Table::ToDeviceTransactions,
        Table::ToDeviceContacts,
        Table::BackupVersions,
        Table::BackupKeys,
        Table::SentEvents,
        Table::Media,
        Table::MediaPending,
        Table::MediaRefs,
        Table::MediaPublic,
        Table::MediaUsage,
        Table::MediaThumbnails,
        Table::SearchOutbox,
        Table::Pushers,
        Table::PushQueue,
        Table::LoginTokens,
        Table::Audit,
        Table::BlockedRooms,
        Table::RegistrationTokens,
        Table::AppserviceQueue,
        Table::AppserviceTransactions,
        Table::RemoteServerKeys,
        Table::RemoteKeyDocuments,
        Table::FederationQueue,
        Table::FederationTransactions,
    ];

    /// The column family name; stable on disk, never rename one.
    pub fn name(self) -> &'static str {
        match self {
            Table::Global => "global",
            Table::Accounts => "accounts",
            Table::Profiles => "profiles",
            Table::Devices => "devices",
            Table::AccessTokens => "access_tokens",
            Table::RefreshTokens => "refresh_tokens",
            Table::Filters => "filters",
            Table::AccountData => "account_data",
            Table::AccountDataChanges => "account_data_changes",
            Table::Rooms => "rooms",
            Table::Pdus => "pdus",
            Table::EventIds => "event_ids",
            Table::RoomState => "room_state",
            Table::StateChanges => "state_changes",
            Table::StateHistory => "state_history",
            Table::StateSnapshots => "state_snapshots",
            Table::EventState => "event_state",
            Table::Outliers => "outliers",
            Table::Transactions => "transactions",
            Table::UserRooms => "user_rooms",
            Table::RemoteInvites => "remote_invites",
            Table::RoomUsers => "room_users",
            Table::Aliases => "aliases",
            Table::RoomAliases => "room_aliases",
            Table::PublicRooms => "public_rooms",
            Table::Reports => "reports",
            Table::Relations => "relations",
            Table::ThreadRoots => "thread_roots",
            Table::ThreadActivity => "thread_activity",
            Table::Receipts => "receipts",
            Table::ReceiptChanges => "receipt_changes",
            Table::Notifications => "notifications",
            Table::UserReceipts => "user_receipts",
            Table::DeviceKeys => "device_keys",
            Table::OneTimeKeys => "one_time_keys",
            Table::FallbackKeys => "fallback_keys",
            Table::CrossSigningKeys => "cross_signing_keys",
            Table::KeySignatures => "key_signatures",
            Table::KeyChanges => "key_changes",
            Table::ToDevice => "to_device",
            Table::ToDeviceTransactions => "to_device_transactions",
            Table::ToDeviceContacts => "to_device_contacts",
            Table::BackupVersions => "backup_versions",
            Table::BackupKeys => "backup_keys",
            Table::SentEvents => "sent_events",
            Table::Media => "media",
            Table::MediaPending => "media_pending",
            Table::MediaRefs => "media_refs",
            Table::MediaPublic => "media_public",
            Table::MediaUsage => "media_usage",
            Table::MediaThumbnails => "media_thumbnails",
            Table::SearchOutbox => "search_outbox",
            Table::Pushers => "pushers",
            Table::PushQueue => "push_queue",
            Table::LoginTokens => "login_tokens",
            Table::Audit => "audit",
            Table::BlockedRooms => "blocked_rooms",
            Table::RegistrationTokens => "registration_tokens",
            Table::AppserviceQueue => "appservice_queue",
            Table::AppserviceTransactions => "appservice_transactions",
            Table::RemoteServerKeys => "remote_server_keys",
            Table::RemoteKeyDocuments => "remote_key_documents",
            Table::FederationQueue => "federation_queue",
            Table::FederationTransactions => "federation_transactions",
        }
    }
}

/// One change inside a [`Batch`].
#[derive(Clone, Debug)]
pub enum Op {
    Put(Table, Vec<u8>, Vec<u8>),
    Delete(Table, Vec<u8>),
}

/// A set of changes applied all together or not at all.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(table, key.into(), value.into()));
    }

    /// Puts `value` serialised as JSON.
    pub fn put_json<T: serde::Serialize>(
        &mut self,
        table: Table,
        key: impl Into<Vec<u8>>,
        value: &T,
    ) -> Result<()> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::internal(format!("serialising a record: {e}")))?;
        self.put(table, key, bytes);
        Ok(())
    }

    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(table, key.into()));
    }

    /// Appends every change of `other`, after this batch's own.
    pub fn extend(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }
}

/// Which way a scan walks its range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// A half-open key range `[lower, upper)`; `upper = None` means "to the end of the table".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    pub lower: Vec<u8>,
    pub upper: Option<Vec<u8>>,
}

impl KeyRange {
    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        Self {
            lower: prefix.to_vec(),
            upper: keys::prefix_successor(prefix),
        }
    }

    /// Every key of the table.
    pub fn all() -> Self {
        Self {
            lower: Vec::new(),
            upper: None,
        }
    }

    /// Keys from `lower` (inclusive) to `upper` (exclusive).
    pub fn between(lower: &[u8], upper: &[u8]) -> Self {
        Self {
            lower: lower.to_vec(),
            upper: Some(upper.to_vec()),
        }
    }
}

/// A key and its value, as a scan yields them.
pub type Entry = (Vec<u8>, Vec<u8>);

/// An ordered scan; each item may fail independently (I/O errors surface mid-scan).
pub type Scan<'a> = Box<dyn Iterator<Item = Result<Entry>> + 'a>;

/// The storage backend every service uses.
pub trait Store: Send + Sync + 'static {
    /// Reads one value.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Applies every change of `batch` atomically; durable once this returns.
    fn write(&self, batch: Batch) -> Result<()>;

    /// Walks `range` in key order (or reverse key order).
    fn scan(&self, table: Table, range: KeyRange, direction: Direction) -> Result<Scan<'_>>;

    /// Allocates the next value of the server-wide counter. Values are strictly increasing and
    /// never handed out twice, even across restarts and crashes.
    fn next_count(&self) -> Result<u64>;

    /// The last value handed out by [`Store::next_count`] (0 before the first).
    fn current_count(&self) -> u64;

    /// Allocates `counts` consecutive counts and writes the batch `build` makes with them (it
    /// gets the first), as one step; returns the first. Commits are serialised, so when
    /// [`Store::committed_count`] reads N, everything committed with a count up to N is
    /// visible: readers that follow the count (`/sync`) never skip a change whose write was
    /// still under way.
    fn commit_many(&self, counts: u64, build: &mut dyn FnMut(u64) -> Result<Batch>) -> Result<u64>;

    /// [`Store::commit_many`] with one count.
    fn commit(&self, build: &mut dyn FnMut(u64) -> Result<Batch>) -> Result<u64> {
        self.commit_many(1, build)
    }

    /// The count of the latest [`Store::commit`].
    fn committed_count(&self) -> u64;
}

/// Typed conveniences over any [`Store`].
pub trait StoreExt: Store {
    /// Reads one JSON-encoded record.
    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        key: &[u8],
    ) -> Result<Option<T>> {
        match self.get(table, key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::internal(format!("corrupt record in table {}: {e}", table.name()))
            }),
        }
    }

    /// Writes a single put.
    fn put(&self, table: Table, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        let mut batch = Batch::new();
        batch.put(table, key, value);
        self.write(batch)
    }

    /// Every entry under `prefix`, in key order.
    fn scan_prefix(&self, table: Table, prefix: &[u8]) -> Result<Scan<'_>> {
        self.scan(table, KeyRange::prefix(prefix), Direction::Forward)
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

//! Key encodings: parts joined by `0xFF` (a byte that never occurs in UTF-8 text), numbers as
//! big-endian `u64` so that byte order is numeric order and prefix scans come out sorted.

/// Separator between the parts of a key.
pub const SEP: u8 = 0xFF;

/// Joins text parts with [`SEP`].
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(SEP);
        }
        key.extend_from_slice(part);
    }
    key
}

/// `parts` joined, followed by a trailing separator: the prefix of every key under them.
pub fn prefix(parts: &[&[u8]]) -> Vec<u8> {
    let mut key = join(parts);
    key.push(SEP);
    key
}

/// The smallest key greater than every key starting with `prefix`, or `None` when no such key
/// exists (the prefix is all `0xFF`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < u8::MAX {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

pub fn u64_be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Reads a big-endian `u64` from the last 8 bytes of a key.
pub fn trailing_u64(key: &[u8]) -> Option<u64> {
    let start = key.len().checked_sub(8)?;
    Some(u64::from_be_bytes(key[start..].try_into().ok()?))
}

/// The key of the server-wide counter in [`super::Table::Global`].
pub const COUNTER: &[u8] = b"counter";

/// The server's ed25519 signing key, in [`super::Table::Global`].
pub const SIGNING_KEY: &[u8] = b"signing_key";

/// A local account, in [`super::Table::Accounts`] and [`super::Table::Profiles`]: its localpart.
pub fn account(localpart: &str) -> Vec<u8> {
    localpart.as_bytes().to_vec()
}

/// `user ++ SEP ++ device`: a device, in [`super::Table::Devices`].
pub fn device(user_id: &str, device_id: &str) -> Vec<u8> {
    join(&[user_id.as_bytes(), device_id.as_bytes()])
}

/// Prefix of every device of a user.
pub fn devices_of(user_id: &str) -> Vec<u8> {
    prefix(&[user_id.as_bytes()])
}

/// `user ++ SEP ++ filter id`, in [`super::Table::Filters`].
pub fn filter(user_id: &str, filter_id: &str) -> Vec<u8> {
    join(&[user_id.as_bytes(), filter_id.as_bytes()])
}

/// `user ++ SEP ++ room (empty for global) ++ SEP ++ type`, in [`super::Table::AccountData`].
pub fn account_data(user_id: &str, room_id: Option<&str>, event_type: &str) -> Vec<u8> {
    join(&[
        user_id.as_bytes(),
        room_id.unwrap_or("").as_bytes(),
        event_type.as_bytes(),
    ])
}

/// Prefix of every account data change of a user.
pub fn account_data_changes_of(user_id: &str) -> Vec<u8> {
    prefix(&[user_id.as_bytes()])
}

/// `user ++ SEP ++ count`, in [`super::Table::AccountDataChanges`].
pub fn account_data_change(user_id: &str, count: u64) -> Vec<u8> {
    join(&[user_id.as_bytes(), &u64_be(count)])
}

/// `short room ++ count`: a PDU's place, in [`super::Table::Pdus`] and
/// [`super::Table::StateChanges`] (and the value of [`super::Table::EventIds`]).
pub fn pdu(short_room: u64, count: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(16);
    key.extend_from_slice(&u64_be(short_room));
    key.extend_from_slice(&u64_be(count));
    key
}

/// Splits a [`pdu`] key into short room id and count.
pub fn parse_pdu(key: &[u8]) -> Option<(u64, u64)> {
    let short = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let count = u64::from_be_bytes(key.get(8..16)?.try_into().ok()?);
    Some((short, count))
}

/// Prefix of every PDU (or state change) of a room.
pub fn pdus_of(short_room: u64) -> Vec<u8> {
    u64_be(short_room).to_vec()
}

/// `short room ++ type ++ SEP ++ state key`, in [`super::Table::RoomState`].
pub fn room_state(short_room: u64, event_type: &str, state_key: &str) -> Vec<u8> {
    let mut key = u64_be(short_room).to_vec();
    key.extend_from_slice(&join(&[event_type.as_bytes(), state_key.as_bytes()]));
    key
}

/// `short room ++ type ++ SEP ++ state key ++ SEP ++ count`, in [`super::Table::StateHistory`].
pub fn state_history(short_room: u64, event_type: &str, state_key: &str, count: u64) -> Vec<u8> {
    let mut key = room_state(short_room, event_type, state_key);
    key.push(SEP);
    key.extend_from_slice(&u64_be(count));
    key
}

/// `short room ++ parent event ++ SEP ++ rel type ++ SEP ++ count`, in [`super::Table::Relations`].
pub fn relation(short_room: u64, parent: &str, rel_type: &str, count: u64) -> Vec<u8> {
    let mut key = relations_of(short_room, parent, Some(rel_type));
    key.extend_from_slice(&u64_be(count));
    key
}

/// Prefix of the relations to `parent` (of one type, or of all).
pub fn relations_of(short_room: u64, parent: &str, rel_type: Option<&str>) -> Vec<u8> {
    let mut key = u64_be(short_room).to_vec();
    key.extend_from_slice(parent.as_bytes());
    key.push(SEP);
    if let Some(rel_type) = rel_type {
        key.extend_from_slice(rel_type.as_bytes());
        key.push(SEP);
    }
    key
}

/// `short room ++ root event`, in [`super::Table::ThreadRoots`].
pub fn thread_root(short_room: u64, root: &str) -> Vec<u8> {
    let mut key = u64_be(short_room).to_vec();
    key.extend_from_slice(root.as_bytes());
    key
}

/// `short room ++ receipt type ++ SEP ++ thread ++ SEP ++ user`, in [`super::Table::Receipts`].
pub fn receipt(short_room: u64, receipt_type: &str, thread: &str, user_id: &str) -> Vec<u8> {
    let mut key = u64_be(short_room).to_vec();
    key.extend_from_slice(&join(&[
        receipt_type.as_bytes(),
        thread.as_bytes(),
        user_id.as_bytes(),
    ]));
    key
}

/// `user ++ SEP ++ short room ++ receipt type ++ SEP ++ thread`, in
/// [`super::Table::UserReceipts`].
pub fn user_receipt(user_id: &str, short_room: u64, receipt_type: &str, thread: &str) -> Vec<u8> {
    let mut key = user_receipts_of(user_id, short_room);
    key.extend_from_slice(&join(&[receipt_type.as_bytes(), thread.as_bytes()]));
    key
}

/// Prefix of a user's receipts in one room.
pub fn user_receipts_of(user_id: &str, short_room: u64) -> Vec<u8> {
    notifications_of(user_id, short_room)
}

/// `user ++ SEP ++ short room ++ count`, in [`super::Table::Notifications`].
pub fn notification(user_id: &str, short_room: u64, count: u64) -> Vec<u8> {
    let mut key = notifications_of(user_id, short_room);
    key.extend_from_slice(&u64_be(count));
    key
}

/// Prefix of a user's notifications in one room.
pub fn notifications_of(user_id: &str, short_room: u64) -> Vec<u8> {
    let mut key = prefix(&[user_id.as_bytes()]);
    key.extend_from_slice(&u64_be(short_room));
    key
}

/// Prefix of a room's receipts of one type.
pub fn receipt_prefix(short_room: u64, receipt_type: &str) -> Vec<u8> {
    let mut key = u64_be(short_room).to_vec();
    key.extend_from_slice(&prefix(&[receipt_type.as_bytes()]));
    key
}

/// Splits a [`room_state`] key into type and state key.
pub fn parse_room_state(key: &[u8]) -> Option<(String, String)> {
    let rest = key.get(8..)?;
    let sep = rest.iter().position(|b| *b == SEP)?;
    let event_type = String::from_utf8(rest[..sep].to_vec()).ok()?;
    let state_key = String::from_utf8(rest[sep + 1..].to_vec()).ok()?;
    Some((event_type, state_key))
}

/// `short room ++ sender ++ SEP ++ count`, in [`super::Table::SentEvents`].
pub fn sent_event(short_room: u64, sender: &str, count: u64) -> Vec<u8> {
    let mut key = sent_events_of(short_room, sender);
    key.extend_from_slice(&u64_be(count));
    key
}

/// Prefix of a sender's events in one room.
pub fn sent_events_of(short_room: u64, sender: &str) -> Vec<u8> {
    let mut key = u64_be(short_room).to_vec();
    key.extend_from_slice(&prefix(&[sender.as_bytes()]));
    key
}

/// `media id ++ SEP ++ short room ++ count`, in [`super::Table::MediaRefs`].
pub fn media_ref(media_id: &str, short_room: u64, count: u64) -> Vec<u8> {
    let mut key = prefix(&[media_id.as_bytes()]);
    key.extend_from_slice(&u64_be(short_room));
    key.extend_from_slice(&u64_be(count));
    key
}

/// Prefix of the events that refer to a file.
pub fn media_refs_of(media_id: &str) -> Vec<u8> {
    prefix(&[media_id.as_bytes()])
}

/// Splits a [`media_ref`] key into short room id and count.
pub fn parse_media_ref(key: &[u8]) -> Option<(u64, u64)> {
    let tail = key.get(key.len().checked_sub(16)?..)?;
    Some((trailing_u64(&tail[..8])?, trailing_u64(tail)?))
}

/// `user ++ SEP ++ media id`, in [`super::Table::MediaPending`].
pub fn media_pending(user_id: &str, media_id: &str) -> Vec<u8> {
    join(&[user_id.as_bytes(), media_id.as_bytes()])
}

/// Prefix of a user's media ids waiting for their upload.
pub fn media_pending_of(user_id: &str) -> Vec<u8> {
    prefix(&[user_id.as_bytes()])
}

/// `user ++ SEP ++ day`, in [`super::Table::MediaUsage`].
pub fn media_usage(user_id: &str, day: u64) -> Vec<u8> {
    let mut key = prefix(&[user_id.as_bytes()]);
    key.extend_from_slice(&u64_be(day));
    key
}

/// Prefix of every thumbnail of a file's content.
pub fn media_thumbnails_of(sha256: &str) -> Vec<u8> {
    prefix(&[sha256.as_bytes()])
}

/// `media id ++ SEP ++ width ++ height ++ method ++ animated`, in
/// [`super::Table::MediaThumbnails`].
pub fn media_thumbnail(
    media_id: &str,
    width: u32,
    height: u32,
    method: &str,
    animated: bool,
) -> Vec<u8> {
    let mut key = prefix(&[media_id.as_bytes()]);
    key.extend_from_slice(&width.to_be_bytes());
    key.extend_from_slice(&height.to_be_bytes());
    key.extend_from_slice(method.as_bytes());
    key.push(SEP);
    key.push(u8::from(animated));
    key
}

/// `user ++ SEP ++ device ++ SEP ++ txn id`, in [`super::Table::Transactions`].
pub fn transaction(user_id: &str, device_id: &str, txn_id: &str) -> Vec<u8> {
    join(&[user_id.as_bytes(), device_id.as_bytes(), txn_id.as_bytes()])
}

/// `sender ++ SEP ++ recipient`, in [`super::Table::ToDeviceContacts`].
pub fn to_device_contact(sender: &str, recipient: &str) -> Vec<u8> {
    join(&[sender.as_bytes(), recipient.as_bytes()])
}

/// `user ++ SEP ++ room`, in [`super::Table::UserRooms`].
pub fn user_room(user_id: &str, room_id: &str) -> Vec<u8> {
    join(&[user_id.as_bytes(), room_id.as_bytes()])
}

/// `room ++ SEP ++ alias`, in [`super::Table::RoomAliases`].
pub fn room_alias(room_id: &str, alias: &str) -> Vec<u8> {
    join(&[room_id.as_bytes(), alias.as_bytes()])
}

/// Prefix of every entry of a room (aliases, members).
pub fn of_room(room_id: &str) -> Vec<u8> {
    prefix(&[room_id.as_bytes()])
}

/// Prefix of every room a user has a membership in.
pub fn rooms_of(user_id: &str) -> Vec<u8> {
    prefix(&[user_id.as_bytes()])
}

/// `room ++ SEP ++ user`, in [`super::Table::RoomUsers`].
pub fn room_user(room_id: &str, user_id: &str) -> Vec<u8> {
    join(&[room_id.as_bytes(), user_id.as_bytes()])
}

/// `user ++ SEP ++ device ++ SEP ++ algorithm ++ SEP ++ key id`, in
/// [`super::Table::OneTimeKeys`].
pub fn one_time_key(user_id: &str, device_id: &str, algorithm: &str, key_id: &str) -> Vec<u8> {
    join(&[
        user_id.as_bytes(),
        device_id.as_bytes(),
        algorithm.as_bytes(),
        key_id.as_bytes(),
    ])
}

/// Prefix of a device's one-time keys, of one algorithm or of all.
pub fn one_time_keys_of(user_id: &str, device_id: &str, algorithm: Option<&str>) -> Vec<u8> {
    match algorithm {
        Some(algorithm) => prefix(&[
            user_id.as_bytes(),
            device_id.as_bytes(),
            algorithm.as_bytes(),
        ]),
        None => prefix(&[user_id.as_bytes(), device_id.as_bytes()]),
    }
}

/// Splits a [`one_time_key`] key into algorithm and key id.
pub fn parse_one_time_key(key: &[u8]) -> Option<(String, String)> {
    let mut parts = key.split(|b| *b == SEP).skip(2);
    let algorithm = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let key_id = String::from_utf8(parts.next()?.to_vec()).ok()?;
    Some((algorithm, key_id))
}

/// `user ++ SEP ++ device ++ SEP ++ algorithm`, in [`super::Table::FallbackKeys`].
pub fn fallback_key(user_id: &str, device_id: &str, algorithm: &str) -> Vec<u8> {
    join(&[
        user_id.as_bytes(),
        device_id.as_bytes(),
        algorithm.as_bytes(),
    ])
}

/// `user ++ SEP ++ usage`, in [`super::Table::CrossSigningKeys`].
pub fn cross_signing_key(user_id: &str, usage: &str) -> Vec<u8> {
    join(&[user_id.as_bytes(), usage.as_bytes()])
}

/// `target ++ SEP ++ key id ++ SEP ++ signer`, in [`super::Table::KeySignatures`].
pub fn key_signature(target: &str, key_id: &str, signer: &str) -> Vec<u8> {
    join(&[target.as_bytes(), key_id.as_bytes(), signer.as_bytes()])
}

/// `count ++ operation`, in [`super::Table::SearchOutbox`]: in timeline order, and an event's
/// removal after its indexing.
pub fn search_outbox(count: u64, operation: u8) -> Vec<u8> {
    let mut key = u64_be(count).to_vec();
    key.push(operation);
    key
}

/// The count and operation of a [`search_outbox`] key.
pub fn parse_search_outbox(key: &[u8]) -> Option<(u64, u8)> {
    let (count, operation) = key.split_first_chunk::<8>()?;
    match operation {
        [operation] => Some((u64::from_be_bytes(*count), *operation)),
        _ => None,
    }
}

/// `user ++ SEP ++ app id ++ SEP ++ pushkey`, in [`super::Table::Pushers`].
pub fn pusher(user_id: &str, app_id: &str, pushkey: &str) -> Vec<u8> {
    join(&[user_id.as_bytes(), app_id.as_bytes(), pushkey.as_bytes()])
}

/// `pusher id ++ count ++ kind`, in [`super::Table::PushQueue`]: a pusher's work in timeline
/// order.
pub fn push_queue(pusher: u64, count: u64, kind: u8) -> Vec<u8> {
    let mut key = u64_be(pusher).to_vec();
    key.extend_from_slice(&u64_be(count));
    key.push(kind);
    key
}

/// The count and kind of a [`push_queue`] key.
pub fn parse_push_queue(key: &[u8]) -> Option<(u64, u8)> {
    let (_, rest) = key.split_first_chunk::<8>()?;
    let (count, kind) = rest.split_first_chunk::<8>()?;
    match kind {
        [kind] => Some((u64::from_be_bytes(*count), *kind)),
        _ => None,
    }
}

/// `appservice id ++ SEP ++ count`, in [`super::Table::AppserviceQueue`].
pub fn appservice_queue(appservice: &str, count: u64) -> Vec<u8> {
    let mut key = appservice_queue_of(appservice);
    key.extend_from_slice(&u64_be(count));
    key
}

/// `destination ++ SEP ++ count`, in [`super::Table::FederationQueue`].
pub fn federation_queue(destination: &str, count: u64) -> Vec<u8> {
    let mut key = federation_queue_of(destination);
    key.extend_from_slice(&u64_be(count));
    key
}

/// The prefix of a destination's entries in [`super::Table::FederationQueue`].
pub fn federation_queue_of(destination: &str) -> Vec<u8> {
    prefix(&[destination.as_bytes()])
}

/// `server name ++ SEP ++ key id`, in [`super::Table::RemoteServerKeys`].
pub fn remote_server_key(server: &str, key_id: &str) -> Vec<u8> {
    let mut key = remote_server_keys_of(server);
    key.extend_from_slice(key_id.as_bytes());
    key
}

/// Prefix of one server's keys.
pub fn remote_server_keys_of(server: &str) -> Vec<u8> {
    prefix(&[server.as_bytes()])
}

/// Prefix of one appservice's queue.
pub fn appservice_queue_of(appservice: &str) -> Vec<u8> {
    prefix(&[appservice.as_bytes()])
}

/// An audit log entry: its id, so entries sort in the order they were appended.
pub fn audit_entry(id: u64) -> Vec<u8> {
    u64_be(id).to_vec()
}

/// `count`, in [`super::Table::KeyChanges`].
pub fn key_change(count: u64) -> Vec<u8> {
    u64_be(count).to_vec()
}

/// `user ++ SEP ++ device ++ SEP ++ count ++ index`, in [`super::Table::ToDevice`].
pub fn to_device(user_id: &str, device_id: &str, count: u64, index: u32) -> Vec<u8> {
    let mut key = prefix(&[user_id.as_bytes(), device_id.as_bytes()]);
    key.extend_from_slice(&u64_be(count));
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// Prefix of a device's to-device inbox.
pub fn to_device_of(user_id: &str, device_id: &str) -> Vec<u8> {
    prefix(&[user_id.as_bytes(), device_id.as_bytes()])
}

/// The count of a [`to_device`] key.
pub fn to_device_count(key: &[u8]) -> Option<u64> {
    let start = key.len().checked_sub(12)?;
    Some(u64::from_be_bytes(key[start..start + 8].try_into().ok()?))
}

/// `user ++ SEP ++ version`, in [`super::Table::BackupVersions`].
pub fn backup_version(user_id: &str, version: u64) -> Vec<u8> {
    join(&[user_id.as_bytes(), &u64_be(version)])
}

/// `user ++ SEP ++ version ++ SEP ++ room ++ SEP ++ session`, in [`super::Table::BackupKeys`];
/// `room` and `session` may be left out for the prefix of a version or of a room.
pub fn backup_key(
    user_id: &str,
    version: u64,
    room_id: Option<&str>,
    session: Option<&str>,
) -> Vec<u8> {
    let version = u64_be(version);
    match (room_id, session) {
        (Some(room), Some(session)) => join(&[
            user_id.as_bytes(),
            &version,
            room.as_bytes(),
            session.as_bytes(),
        ]),
        (Some(room), None) => prefix(&[user_id.as_bytes(), &version, room.as_bytes()]),
        _ => prefix(&[user_id.as_bytes(), &version]),
    }
}

/// Splits a [`backup_key`] key into room and session.
pub fn parse_backup_key(key: &[u8]) -> Option<(String, String)> {
    // The version is 8 raw bytes that may hold 0xFF, so split after it by position.
    let user_end = key.iter().position(|b| *b == SEP)?;
    let rest = key.get(user_end + 1 + 8 + 1..)?;
    let sep = rest.iter().position(|b| *b == SEP)?;
    let room = String::from_utf8(rest[..sep].to_vec()).ok()?;
    let session = String::from_utf8(rest[sep + 1..].to_vec()).ok()?;
    Some((room, session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_increments_the_last_byte_that_can_grow() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    fn backup_keys_split_even_when_the_version_holds_a_separator_byte() {
        let key = backup_key("@a:x", 0xFF, Some("!r:x"), Some("sess"));
        assert_eq!(parse_backup_key(&key), Some(("!r:x".into(), "sess".into())));
        assert!(key.starts_with(&backup_key("@a:x", 0xFF, Some("!r:x"), None)));
        assert!(key.starts_with(&backup_key("@a:x", 0xFF, None, None)));
    }

    #[test]
    fn to_device_keys_sort_by_count_and_give_it_back() {
        let a = to_device("@a:x", "D", 9, 1);
        let b = to_device("@a:x", "D", 10, 0);
        assert!(a < b && a.starts_with(&to_device_of("@a:x", "D")));
        assert_eq!(to_device_count(&b), Some(10));
    }

    #[test]
    fn big_endian_counts_sort_numerically() {
        let a = account_data_change("@a:x", 9);
        let b = account_data_change("@a:x", 10);
        let c = account_data_change("@a:x", 256);
        assert!(a < b && b < c);
        assert_eq!(trailing_u64(&c), Some(256));
    }

    #[test]
    fn separator_keeps_users_apart() {
        // "@a:x" must not be a prefix match for "@a:xy".
        let p = devices_of("@a:x");
        assert!(device("@a:x", "D").starts_with(&p));
        assert!(!device("@a:xy", "D").starts_with(&p));
    }
}

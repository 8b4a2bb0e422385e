//! Who may download a file (`[media] access`). With `room_members`: its uploader; anyone who
//! can see (by membership and history visibility, as `/messages` decides) an event that refers
//! to it; every local user for avatars. A file no readable event refers to may be an encrypted
//! attachment, whose event the server cannot read: it is given to those who can see an
//! encrypted event its uploader sent after the upload, in a room they share, and to those the
//! uploader sent a to-device message after the upload (a room key bundle shared on invite is
//! such a file).

use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};

use super::MediaRecord;
use crate::config::MediaAccess;
use crate::error::{Error, Result};
use crate::rooms::visibility::Viewer;
use crate::services::Services;
use crate::storage::{StoreExt, Table, keys};

/// How many of the uploader's later events in a room are looked at for an encrypted one.
const ENCRYPTED_LOOKAHEAD: usize = 50;

/// An event that refers to a file, as indexed when the event is written.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Reference {
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    /// The event shows the file as an avatar (a room's, or its sender's).
    #[serde(default)]
    pub avatar: bool,
}

/// Whether `user` may download the file `media_id`.
pub fn may_download(
    services: &Services,
    user: &UserId,
    media_id: &str,
    record: &MediaRecord,
) -> Result<bool> {
    if services.config.media.access == MediaAccess::AnyUser || record.uploader == user {
        return Ok(true);
    }
    if services
        .store
        .get(Table::MediaPublic, media_id.as_bytes())?
        .is_some()
    {
        return Ok(true);
    }
    let timeline = &services.timeline;
    let mut referenced = false;
    for entry in services
        .store
        .scan_prefix(Table::MediaRefs, &keys::media_refs_of(media_id))?
    {
        referenced = true;
        let (key, value) = entry?;
        let (short, count) =
            keys::parse_media_ref(&key).ok_or_else(|| Error::internal("corrupt media ref key"))?;
        let reference: Reference = serde_json::from_slice(&value)
            .map_err(|e| Error::internal(format!("corrupt media ref: {e}")))?;
        if reference.avatar && reference.sender == record.uploader {
            return Ok(true);
        }
        if Viewer::new(timeline, short, &reference.room_id, user)?.can_see(count)? {
            return Ok(true);
        }
    }
    if referenced {
        return Ok(false);
    }
    if services
        .to_device
        .last_sent(&record.uploader, user)?
        .is_some_and(|count| count > record.position)
    {
        return Ok(true);
    }
    for (room_id, _) in timeline.memberships_of(user)? {
        let Some(room) = timeline.room(&room_id)? else {
            continue;
        };
        let viewer = Viewer::new(timeline, room.short, &room_id, user)?;
        let later = timeline
            .events_sent_by(room.short, &record.uploader, record.position + 1)?
            .take(ENCRYPTED_LOOKAHEAD);
        for sent in later {
            let (count, _) = sent?;
            let encrypted = timeline
                .event_at(room.short, count)?
                .is_some_and(|e| e.to_client_event()["type"] == "m.room.encrypted");
            if encrypted && viewer.can_see(count)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

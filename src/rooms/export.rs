//! A room's events as JSON lines, for auditors: who sent what and when, with the content as
//! stored (encrypted events stay ciphertext; redacted ones stay redacted).

use ruma::RoomId;

use super::pdu::StoredPdu;
use super::timeline::Timeline;
use crate::error::{Error, Result};
use crate::storage::{Direction, KeyRange, Table, keys};

/// About how much one chunk of an export holds before it is handed on.
pub const CHUNK_BYTES: usize = 256 * 1024;

impl Timeline {
    /// The room's events after position `after` (0 = from the start), one JSON object per
    /// line, up to about [`CHUNK_BYTES`]; and the position to go on from when there is more.
    pub fn export_chunk(&self, room_id: &RoomId, after: u64) -> Result<(Vec<u8>, Option<u64>)> {
        let record = self
            .room(room_id)?
            .ok_or_else(|| Error::not_found("No such room"))?;
        let prefix = keys::pdus_of(record.short);
        let lower = keys::pdu(record.short, after.saturating_add(1));
        let upper = keys::prefix_successor(&prefix);
        let range = KeyRange { lower, upper };
        let mut out = Vec::new();
        for item in self.store.scan(Table::Pdus, range, Direction::Forward)? {
            let (key, value) = item?;
            let count = keys::parse_pdu(&key)
                .map(|(_, count)| count)
                .unwrap_or(after);
            let stored: StoredPdu = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("corrupt event at {count}: {e}")))?;
            let pdu = &stored.pdu;
            let mut line = serde_json::json!({
                "event_id": stored.event_id,
                "type": pdu.get("type"),
                "sender": pdu.get("sender"),
                "origin_server_ts": pdu.get("origin_server_ts"),
                "content": pdu.get("content"),
            });
            for optional in ["state_key", "redacts"] {
                if let Some(value) = pdu.get(optional) {
                    line[optional] = serde_json::to_value(value).unwrap_or_default();
                }
            }
            serde_json::to_writer(&mut out, &line)
                .map_err(|e| Error::internal(format!("writing an export line: {e}")))?;
            out.push(b'\n');
            if out.len() >= CHUNK_BYTES {
                return Ok((out, Some(count)));
            }
        }
        Ok((out, None))
    }
}

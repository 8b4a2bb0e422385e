//! Blocked rooms: room ids an admin closed for good on this server. Nobody local may join,
//! be invited to or knock on one again, and it cannot be re-created under the same id.

use ruma::{OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};

use super::timeline::Timeline;
use crate::error::{Error, Result};
use crate::storage::{Batch, StoreExt, Table};

/// Who blocked a room, and when.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Block {
    pub user_id: OwnedUserId,
    pub ts: u64,
}

impl Timeline {
    /// Who blocked the room, if it is blocked.
    pub fn blocked(&self, room_id: &RoomId) -> Result<Option<Block>> {
        self.store.get_json(Table::BlockedRooms, room_id.as_bytes())
    }

    /// Blocks or unblocks the room.
    pub fn set_blocked(&self, room_id: &RoomId, by: &UserId, blocked: bool) -> Result<()> {
        let mut batch = Batch::new();
        if blocked {
            batch.put_json(
                Table::BlockedRooms,
                room_id.as_bytes(),
                &Block {
                    user_id: by.to_owned(),
                    ts: crate::now_ms(),
                },
            )?;
        } else {
            batch.delete(Table::BlockedRooms, room_id.as_bytes());
        }
        self.store.write(batch)
    }

    /// Refuses entering a blocked room.
    pub fn refuse_if_blocked(&self, room_id: &RoomId) -> Result<()> {
        if self.blocked(room_id)?.is_some() {
            return Err(Error::forbidden(
                "This room has been blocked on this server",
            ));
        }
        Ok(())
    }
}

//! Event reports: what users flag for the server's admins (content moderation).

use std::sync::Arc;

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{Batch, Direction, KeyRange, Store, StoreExt, Table, keys};

/// Longest reason kept.
pub const MAX_REASON_CHARS: usize = 1000;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Report {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub reporter: OwnedUserId,
    pub reason: Option<String>,
    pub ts: u64,
}

pub struct Reports {
    store: Arc<dyn Store>,
}

impl Reports {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub fn add(&self, report: &Report) -> Result<()> {
        if report
            .reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
        {
            return Err(Error::bad_json("reason is longer than 1000 characters"));
        }
        let mut batch = Batch::new();
        batch.put_json(
            Table::Reports,
            keys::u64_be(self.store.next_count()?),
            report,
        )?;
        self.store.write(batch)
    }

    /// Every report with its id, oldest first (for the admin API).
    pub fn all(&self) -> Result<Vec<(u64, Report)>> {
        self.store
            .scan(Table::Reports, KeyRange::all(), Direction::Forward)?
            .map(|entry| {
                let (key, value) = entry?;
                let report = serde_json::from_slice(&value)
                    .map_err(|e| Error::internal(format!("corrupt report: {e}")))?;
                Ok((keys::trailing_u64(&key).unwrap_or(0), report))
            })
            .collect()
    }

    pub fn get(&self, id: u64) -> Result<Option<Report>> {
        self.store.get_json(Table::Reports, &keys::u64_be(id))
    }

    /// Deletes a report; `false` if there was none.
    pub fn delete(&self, id: u64) -> Result<bool> {
        if self.get(id)?.is_none() {
            return Ok(false);
        }
        let mut batch = Batch::new();
        batch.delete(Table::Reports, keys::u64_be(id));
        self.store.write(batch)?;
        Ok(true)
    }
}

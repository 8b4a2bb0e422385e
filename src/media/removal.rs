//! Taking files away (the admin API): quarantine keeps a file but serves it to nobody;
//! deletion removes its record, its thumbnails and, once nothing else has the same content,
//! the stored bytes. Both are audited in the batch that makes them.

use ruma::UserId;
use serde_json::json;

use super::{Content, Media, MediaRecord};
use crate::admin::audit::{Audit, Origin};
use crate::error::{Error, Result};
use crate::storage::{Batch, KeyRange, StoreExt, Table, keys};

impl Media {
    /// Quarantines a file of this server: it stays stored but nobody can download it.
    /// `false` for an unknown file.
    pub fn quarantine(
        &self,
        media_id: &str,
        by: &UserId,
        audit: &Audit,
        origin: &Origin,
    ) -> Result<bool> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut record) = self.get(media_id)? else {
            return Ok(false);
        };
        if record.quarantined_by.is_some() {
            return Ok(true);
        }
        record.quarantined_by = Some(by.to_owned());
        let mut batch = Batch::new();
        batch.put_json(Table::Media, media_id.as_bytes(), &record)?;
        audit.write(
            batch,
            [origin.record("media_quarantine", self.mxc(media_id), json!({}))],
        )?;
        Ok(true)
    }

    /// Deletes a file of this server. `false` for an unknown file.
    pub async fn delete(&self, media_id: &str, audit: &Audit, origin: &Origin) -> Result<bool> {
        let orphans = {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            let Some(record) = self.get(media_id)? else {
                return Ok(false);
            };
            let mut batch = Batch::new();
            batch.delete(Table::Media, media_id.as_bytes());
            batch.delete(Table::MediaPublic, media_id.as_bytes());
            batch.delete(
                Table::MediaPending,
                keys::media_pending(record.uploader.as_str(), media_id),
            );
            let mut orphans = Vec::new();
            if let Some(content) = &record.content
                && !self.content_used_elsewhere(media_id, &content.sha256)?
            {
                // The thumbnails belong to the content, which nothing else has now.
                let prefix = keys::media_thumbnails_of(&content.sha256);
                for entry in self.db.scan_prefix(Table::MediaThumbnails, &prefix)? {
                    let (key, value) = entry?;
                    let thumbnail: Content = serde_json::from_slice(&value)
                        .map_err(|e| Error::internal(format!("corrupt thumbnail: {e}")))?;
                    orphans.push(thumbnail.sha256);
                    batch.delete(Table::MediaThumbnails, key);
                }
                orphans.push(content.sha256.clone());
            }
            audit.write(
                batch,
                [origin.record("media_delete", self.mxc(media_id), json!({}))],
            )?;
            orphans
        };
        // The bytes go after the records: a crash in between leaves bytes nothing refers to,
        // never a record without its bytes.
        for sha256 in orphans {
            if let Err(e) = self.files.delete(&sha256).await {
                tracing::warn!(error = %e, "could not delete stored media bytes");
            }
        }
        Ok(true)
    }

    /// Every file record of this server, with its media id.
    pub fn records(&self) -> Result<impl Iterator<Item = Result<(String, MediaRecord)>> + '_> {
        Ok(self
            .db
            .scan(
                Table::Media,
                KeyRange::all(),
                crate::storage::Direction::Forward,
            )?
            .map(|entry| {
                let (key, value) = entry?;
                let record: MediaRecord = serde_json::from_slice(&value)
                    .map_err(|e| Error::internal(format!("corrupt media record: {e}")))?;
                Ok((String::from_utf8_lossy(&key).into_owned(), record))
            }))
    }

    /// Whether another file record has the same content.
    fn content_used_elsewhere(&self, media_id: &str, sha256: &str) -> Result<bool> {
        for entry in self.records()? {
            let (id, record) = entry?;
            if id != media_id && record.content.is_some_and(|c| c.sha256 == sha256) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The files a user uploaded, newest first.
    pub fn uploads_of(&self, user: &UserId) -> Result<Vec<(String, MediaRecord)>> {
        let mut found = Vec::new();
        for entry in self.records()? {
            let (id, record) = entry?;
            if record.uploader == user && record.content.is_some() {
                found.push((id, record));
            }
        }
        found.sort_by_key(|(_, record)| std::cmp::Reverse(record.created_ms));
        Ok(found)
    }
}

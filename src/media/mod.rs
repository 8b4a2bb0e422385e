//! Media: the files users upload. An upload streams into a temporary file while it is hashed
//! and counted ([`upload`]), never whole in memory; its bytes are stored once per content hash
//! in a [`store::MediaStore`], and each media id keeps its own record (uploader, type, name) in
//! the database. [`access`] decides who may download a file, from the events that refer to it
//! ([`references`], indexed as events are written).

pub mod access;
pub mod references;
pub mod removal;
pub mod s3;
pub mod scan;
pub mod store;
pub mod thumbnail;
pub mod upload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::StatusCode;
use ruma::api::error::{ErrorKind, LimitExceededErrorData, RetryAfter};
use ruma::{OwnedServerName, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};

use self::store::{ByteRange, ByteStream, LocalStore, MediaStore};
use self::thumbnail::Wanted;
use self::upload::Limits;
use crate::config::{Config, MediaBackend, MediaConfig};
use crate::error::{Error, Result};
use crate::storage::{Batch, Store, StoreExt, Table, keys};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// What the database keeps about a media id of this server.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct MediaRecord {
    pub uploader: OwnedUserId,
    pub created_ms: u64,
    /// The server's count when the id was made: events its uploader sends later may carry it.
    pub position: u64,
    /// The file, once uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// For an id from `/create` still waiting for its upload: when it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    /// The admin who quarantined the file: it is kept but served to nobody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined_by: Option<OwnedUserId>,
}

/// An uploaded file: its content hash (the key of its bytes), size, type and name.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Content {
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// What the uploader said about a file.
pub struct Described {
    pub content_type: String,
    pub filename: Option<String>,
    /// The request's `Content-Length`, when it gave one.
    pub declared_size: Option<u64>,
}

/// Where an upload goes: a new media id, or one made earlier with `/create`.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    New,
    Pending(&'a str),
}

pub struct Media {
    config: MediaConfig,
    server_name: OwnedServerName,
    db: Arc<dyn Store>,
    files: Box<dyn MediaStore>,
    /// Uploads in progress.
    tmp: PathBuf,
    /// Serialises the read-modify-write of records and usage counters.
    lock: Mutex<()>,
    /// Thumbnails being made at once (each holds a decoded picture in memory).
    thumbnailers: tokio::sync::Semaphore,
    scanner: Option<scan::Scanner>,
}

impl Media {
    pub fn new(config: &Config, db: Arc<dyn Store>) -> Result<Self> {
        let root = config.media_path();
        let tmp = root.join("tmp");
        // Uploads a crash cut short left their temporary files behind; nothing refers to them.
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)
            .map_err(|e| Error::internal(format!("cannot create {}: {e}", tmp.display())))?;
        let files: Box<dyn MediaStore> = match config.media.backend {
            MediaBackend::Local => Box::new(LocalStore::new(&root.join("content"))?),
            MediaBackend::S3 => Box::new(s3::S3Store::new(&config.media.s3)?),
        };
        Ok(Self {
            config: config.media.clone(),
            server_name: config.server_name.clone(),
            db,
            files,
            tmp,
            lock: Mutex::new(()),
            thumbnailers: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().min(4)),
            ),
            scanner: scan::Scanner::new(&config.media.clamav)?,
        })
    }

    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    /// The `mxc://` URI of a media id of this server.
    pub fn mxc(&self, media_id: &str) -> String {
        format!("mxc://{}/{media_id}", self.server_name)
    }

    /// Whether `server_name` is this server (the only one whose files are served for now).
    pub fn is_local(&self, server_name: &str) -> bool {
        server_name == self.server_name.as_str()
    }

    /// The record of a media id of this server; `None` for ids that are malformed, unknown,
    /// or made with `/create` and expired unused.
    pub fn get(&self, media_id: &str) -> Result<Option<MediaRecord>> {
        if !references::is_media_id(media_id) {
            return Ok(None);
        }
        let record: Option<MediaRecord> = self.db.get_json(Table::Media, media_id.as_bytes())?;
        Ok(record.filter(|r| r.expires_ms.is_none_or(|at| crate::now_ms() < at)))
    }

    /// Makes a media id to upload to later (`POST /_matrix/media/v1/create`); returns it and
    /// when it expires unused.
    pub fn create(&self, user: &UserId) -> Result<(String, u64)> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let now = crate::now_ms();
        let mut pending = 0;
        let prefix = keys::media_pending_of(user.as_str());
        for entry in self.db.scan_prefix(Table::MediaPending, &prefix)? {
            let (_, value) = entry?;
            if keys::trailing_u64(&value).is_some_and(|at| at > now) {
                pending += 1;
            }
        }
        if pending >= self.config.max_pending_uploads {
            return Err(Error::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorKind::LimitExceeded(LimitExceededErrorData::new()),
                "Too many media ids waiting for their upload",
            ));
        }
        let media_id = new_media_id();
        let expires_ms = now + self.config.unused_expires_secs * 1000;
        let record = MediaRecord {
            uploader: user.to_owned(),
            created_ms: now,
            position: self.db.current_count(),
            content: None,
            expires_ms: Some(expires_ms),
            quarantined_by: None,
        };
        let mut batch = Batch::new();
        batch.put_json(Table::Media, media_id.as_bytes(), &record)?;
        batch.put(
            Table::MediaPending,
            keys::media_pending(user.as_str(), &media_id),
            keys::u64_be(expires_ms).to_vec(),
        );
        self.db.write(batch)?;
        Ok((media_id, expires_ms))
    }

    /// Receives an upload into `target` and stores it; returns the media id. Nothing is
    /// visible (or kept) unless the whole file arrived within the limits.
    pub async fn upload(
        &self,
        user: &UserId,
        target: Target<'_>,
        described: Described,
        body: Body,
    ) -> Result<String> {
        if let Target::Pending(media_id) = target {
            self.check_pending(user, media_id)?;
        }
        let max = self.config.max_upload_size;
        if described.declared_size.is_some_and(|size| size > max) {
            upload::discard_small(body, described.declared_size).await;
            return Err(Error::too_large(format!(
                "The file is larger than {max} bytes"
            )));
        }
        let quota = self.quota_left(user)?;
        if let (Some(left), Some(size)) = (quota, described.declared_size)
            && size > left
        {
            upload::discard_small(body, described.declared_size).await;
            return Err(over_quota());
        }
        let limits = Limits {
            max,
            quota,
            over_quota,
        };
        let file = upload::receive(body, &self.tmp, limits).await?;
        self.store(
            user,
            target,
            file,
            described.content_type,
            described.filename,
            true,
        )
        .await
    }

    /// Stores a picture the server fetched for a user (a link preview's): scanned like an
    /// upload, not counted against the user's allowance, and downloadable by every local user.
    pub async fn store_fetched(
        &self,
        user: &UserId,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<String> {
        let file = upload::TempFile::from_bytes(&self.tmp, &bytes).await?;
        let media_id = self
            .store(
                user,
                Target::New,
                file,
                content_type.to_owned(),
                None,
                false,
            )
            .await?;
        self.db
            .put(Table::MediaPublic, media_id.as_bytes().to_vec(), Vec::new())?;
        Ok(media_id)
    }

    /// Scans a received file, stores its content and writes its record.
    async fn store(
        &self,
        user: &UserId,
        target: Target<'_>,
        file: upload::TempFile,
        content_type: String,
        filename: Option<String>,
        counted: bool,
    ) -> Result<String> {
        // Nothing is stored, or visible, before the scanner had its say.
        if let Some(scanner) = &self.scanner {
            scanner.check(file.path()).await?;
        }
        let content = Content {
            sha256: file.sha256.clone(),
            size: file.size,
            content_type,
            filename,
        };
        self.files.put(&content.sha256, file).await?;
        self.record_upload(user, target, content, counted)
    }

    fn check_pending(&self, user: &UserId, media_id: &str) -> Result<MediaRecord> {
        let record = self
            .get(media_id)?
            .ok_or_else(|| Error::not_found("Unknown or expired media id"))?;
        if record.uploader != user {
            return Err(Error::forbidden("This media id was made for another user"));
        }
        if record.content.is_some() {
            return Err(Error::new(
                StatusCode::CONFLICT,
                ErrorKind::CannotOverwriteMedia,
                "This media id already has its file",
            ));
        }
        Ok(record)
    }

    /// Writes the record of a stored upload and (when `counted`) counts it against the user's
    /// day.
    fn record_upload(
        &self,
        user: &UserId,
        target: Target<'_>,
        content: Content,
        counted: bool,
    ) -> Result<String> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let now = crate::now_ms();
        let mut batch = Batch::new();
        let (media_id, record) = match target {
            Target::New => (
                new_media_id(),
                MediaRecord {
                    uploader: user.to_owned(),
                    created_ms: now,
                    position: self.db.current_count(),
                    content: None,
                    expires_ms: None,
                    quarantined_by: None,
                },
            ),
            // Checked again under the lock: two uploads to one id race here.
            Target::Pending(media_id) => {
                let record = self.check_pending(user, media_id)?;
                batch.delete(
                    Table::MediaPending,
                    keys::media_pending(user.as_str(), media_id),
                );
                (media_id.to_owned(), record)
            }
        };
        let size = content.size;
        let record = MediaRecord {
            content: Some(content),
            expires_ms: None,
            ..record
        };
        batch.put_json(Table::Media, media_id.as_bytes(), &record)?;
        if counted {
            let usage_key = keys::media_usage(user.as_str(), now / DAY_MS);
            let used = self.usage(&usage_key)?;
            batch.put(
                Table::MediaUsage,
                usage_key,
                keys::u64_be(used + size).to_vec(),
            );
        }
        self.db.write(batch)?;
        Ok(media_id)
    }

    fn usage(&self, key: &[u8]) -> Result<u64> {
        Ok(self
            .db
            .get(Table::MediaUsage, key)?
            .and_then(|v| keys::trailing_u64(&v))
            .unwrap_or(0))
    }

    /// Bytes the user may still upload today, when there is a daily allowance.
    fn quota_left(&self, user: &UserId) -> Result<Option<u64>> {
        let quota = self.config.daily_upload_bytes;
        if quota == 0 {
            return Ok(None);
        }
        let used = self.usage(&keys::media_usage(user.as_str(), crate::now_ms() / DAY_MS))?;
        if used >= quota {
            return Err(over_quota());
        }
        Ok(Some(quota - used))
    }

    /// Streams an uploaded file (or a range of it).
    pub async fn read(&self, content: &Content, range: Option<ByteRange>) -> Result<ByteStream> {
        self.files.read(&content.sha256, range).await
    }

    /// The thumbnail of an uploaded picture: made (and stored) on first request, read from
    /// storage after that.
    pub async fn thumbnail(&self, content: &Content, wanted: Wanted) -> Result<Content> {
        let key = keys::media_thumbnail(
            &content.sha256,
            wanted.width,
            wanted.height,
            wanted.method.as_str(),
            wanted.animated,
        );
        if let Some(stored) = self.db.get_json(Table::MediaThumbnails, &key)? {
            return Ok(stored);
        }
        if !content.content_type.starts_with("image/") {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::Unknown,
                "Only pictures have thumbnails",
            ));
        }
        let max_bytes = self.config.thumbnail_max_source_bytes;
        if content.size > max_bytes {
            return Err(Error::too_large(
                "The picture is too large to make a thumbnail of",
            ));
        }
        let _permit = self
            .thumbnailers
            .acquire()
            .await
            .map_err(|_| Error::internal("thumbnailers closed"))?;
        // Another request may have made it while this one waited.
        if let Some(stored) = self.db.get_json(Table::MediaThumbnails, &key)? {
            return Ok(stored);
        }
        let source =
            store::collect(self.files.read(&content.sha256, None).await?, max_bytes).await?;
        let max_pixels = self.config.thumbnail_max_source_pixels;
        let made =
            tokio::task::spawn_blocking(move || thumbnail::make(&source, &wanted, max_pixels))
                .await
                .map_err(|e| Error::internal(format!("making a thumbnail: {e}")))??;
        let file = upload::TempFile::from_bytes(&self.tmp, &made.bytes).await?;
        let stored = Content {
            sha256: file.sha256.clone(),
            size: file.size,
            content_type: made.content_type.to_owned(),
            filename: None,
        };
        self.files.put(&stored.sha256, file).await?;
        let mut batch = Batch::new();
        batch.put_json(Table::MediaThumbnails, key, &stored)?;
        self.db.write(batch)?;
        Ok(stored)
    }

    /// Forgets media ids from `/create` whose time ran out unused.
    pub fn expire_pending(&self) -> Result<usize> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let now = crate::now_ms();
        let mut batch = Batch::new();
        let mut expired = 0;
        for entry in self.db.scan_prefix(Table::MediaPending, b"")? {
            let (key, value) = entry?;
            if keys::trailing_u64(&value).is_some_and(|at| at <= now) {
                if let Some(media_id) = key.rsplit(|b| *b == keys::SEP).next() {
                    batch.delete(Table::Media, media_id.to_vec());
                }
                batch.delete(Table::MediaPending, key);
                expired += 1;
            }
        }
        if expired > 0 {
            self.db.write(batch)?;
        }
        Ok(expired)
    }

    /// Lets every local user fetch the file a user made their profile avatar, when it is the
    /// user's own upload (nobody can publish someone else's file this way).
    pub fn publish_avatar(&self, user: &UserId, url: &str) -> Result<()> {
        let Some(media_id) = url
            .strip_prefix("mxc://")
            .and_then(|rest| rest.split_once('/'))
            .filter(|(server, _)| self.is_local(server))
            .map(|(_, id)| id)
        else {
            return Ok(());
        };
        match self.get(media_id)? {
            Some(record) if record.uploader == user => {
                self.db
                    .put(Table::MediaPublic, media_id.as_bytes().to_vec(), Vec::new())
            }
            _ => Ok(()),
        }
    }
}

/// A content type without its parameters, lowercased (`Text/HTML; charset=x` → `text/html`).
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn new_media_id() -> String {
    crate::random::string(
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        24,
    )
}

/// The refusal of an upload over the user's daily allowance: try again after midnight UTC.
fn over_quota() -> Error {
    let now = crate::now_ms();
    let until_midnight = DAY_MS - now % DAY_MS;
    let mut data = LimitExceededErrorData::new();
    data.retry_after = Some(RetryAfter::Delay(std::time::Duration::from_millis(
        until_midnight,
    )));
    Error::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::LimitExceeded(data),
        "Daily upload allowance used up",
    )
}

//! Where file contents live: the [`MediaStore`] trait, keyed by content hash so that the same
//! bytes are stored once, and its local-directory backend.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::upload::TempFile;
use crate::error::{Error, Result};

/// A stream of a file's bytes.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Bytes `start..=end` of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// The number of bytes (a range holds at least one).
    pub fn count(&self) -> u64 {
        self.end - self.start + 1
    }
}

/// File contents by key (the lowercase hex SHA-256 of the content).
pub trait MediaStore: Send + Sync {
    /// Stores a received file under `key`, unless the same content is already there.
    fn put<'a>(&'a self, key: &'a str, file: TempFile) -> BoxFuture<'a, Result<()>>;

    /// Streams the content (or a range of it).
    fn read<'a>(
        &'a self,
        key: &'a str,
        range: Option<ByteRange>,
    ) -> BoxFuture<'a, Result<ByteStream>>;

    /// Removes the content under `key` (nothing to remove is no error).
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// A key is a SHA-256 in lowercase hex; anything else is refused before it reaches a path.
fn check_key(key: &str) -> Result<()> {
    if key.len() == 64
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(Error::internal(format!("invalid content key {key:?}")))
    }
}

/// Where a key lives inside a store: `ab/cd/<key>`, so that no directory grows too large.
pub(super) fn sharded(key: &str) -> Result<String> {
    check_key(key)?;
    Ok(format!("{}/{}/{key}", &key[..2], &key[2..4]))
}

/// Reads a whole stream into memory, refusing more than `limit` bytes.
pub async fn collect(mut stream: ByteStream, limit: u64) -> Result<Vec<u8>> {
    use futures_util::StreamExt;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::internal(format!("reading media: {e}")))?;
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(Error::too_large(format!(
                "The file is larger than {limit} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Contents in a local directory: `<root>/ab/cd/<key>`.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::internal(format!("cannot create {}: {e}", root.display())))?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        Ok(self.root.join(sharded(key)?))
    }
}

impl MediaStore for LocalStore {
    fn put<'a>(&'a self, key: &'a str, file: TempFile) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            if tokio::fs::try_exists(&path).await.unwrap_or(false) {
                return Ok(());
            }
            let dir = path.parent().expect("content paths have a parent");
            let io = |e: std::io::Error| Error::internal(format!("storing media: {e}"));
            tokio::fs::create_dir_all(dir).await.map_err(io)?;
            // The temporary file was synced; the rename makes it appear whole or not at all,
            // and syncing the directory makes the rename itself durable.
            tokio::fs::rename(file.path(), &path).await.map_err(io)?;
            file.keep();
            tokio::fs::File::open(dir)
                .await
                .map_err(io)?
                .sync_all()
                .await
                .map_err(io)
        })
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        range: Option<ByteRange>,
    ) -> BoxFuture<'a, Result<ByteStream>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            let io = |e: std::io::Error| Error::internal(format!("reading media {key}: {e}"));
            let mut file = tokio::fs::File::open(&path).await.map_err(io)?;
            let stream: ByteStream = match range {
                None => Box::pin(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024)),
                Some(range) => {
                    file.seek(std::io::SeekFrom::Start(range.start))
                        .await
                        .map_err(io)?;
                    Box::pin(tokio_util::io::ReaderStream::with_capacity(
                        file.take(range.count()),
                        64 * 1024,
                    ))
                }
            };
            Ok(stream)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path_of(key)?).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::internal(format!("deleting media {key}: {e}"))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn contents_are_stored_once_and_read_whole_or_in_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let store = LocalStore::new(&dir.path().join("content")).unwrap();
        let first = TempFile::from_bytes(&tmp, b"0123456789").await.unwrap();
        let key = first.sha256.clone();
        store.put(&key, first).await.unwrap();
        let again = TempFile::from_bytes(&tmp, b"0123456789").await.unwrap();
        store.put(&key, again).await.unwrap();
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "no temp left");

        let all = collect(store.read(&key, None).await.unwrap(), 100)
            .await
            .unwrap();
        assert_eq!(all, b"0123456789");
        let part = store
            .read(&key, Some(ByteRange { start: 2, end: 5 }))
            .await
            .unwrap();
        assert_eq!(collect(part, 100).await.unwrap(), b"2345");
        assert!(
            collect(store.read(&key, None).await.unwrap(), 5)
                .await
                .is_err()
        );
        // Keys are hashes only: nothing else reaches the file system.
        assert!(store.read("../../etc/passwd", None).await.is_err());
    }
}

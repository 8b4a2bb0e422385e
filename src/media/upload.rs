//! Receiving an upload: the request body is streamed into a temporary file while it is hashed
//! (SHA-256) and counted, so no file is ever whole in memory. The temporary file is removed
//! when the upload fails or is abandoned, unless a store took it over.

use std::path::{Path, PathBuf};

use axum::body::Body;
use futures_util::StreamExt;
use http::StatusCode;
use ruma::api::error::ErrorKind;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

/// A received file in the temporary directory, with its hash and size. Dropped, it is deleted.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    pub size: u64,
    kept: bool,
}

impl TempFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands the file over to the caller (who moved it elsewhere): it is no longer deleted.
    pub fn keep(mut self) -> PathBuf {
        self.kept = true;
        self.path.clone()
    }

    /// Writes `bytes` to a new temporary file in `dir`, durably.
    pub async fn from_bytes(dir: &Path, bytes: &[u8]) -> Result<TempFile> {
        let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
        let mut file = new_file(dir).await?;
        let (sha256, size) = write_all(&mut file.1, stream, u64::MAX, None)
            .await
            .map_err(|e| match e {
                Received::Failed(error) => error,
                _ => Error::internal("writing a temporary file"),
            })?;
        Ok(TempFile {
            path: file.0,
            sha256,
            size,
            kept: false,
        })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Why a body was not received.
enum Received {
    /// More than the size limit.
    TooLarge,
    /// More than what the user may still upload today.
    OverQuota,
    Failed(Error),
}

async fn new_file(dir: &Path) -> Result<(PathBuf, tokio::fs::File)> {
    let name = crate::random::string(b"abcdefghijklmnopqrstuvwxyz0123456789", 24);
    let path = dir.join(format!("upload-{name}"));
    let file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| Error::internal(format!("cannot create {}: {e}", path.display())))?;
    Ok((path, file))
}

/// Copies `stream` into `file`, hashing and counting, and syncs it; refuses past `max` bytes
/// (or `quota` bytes, when given) the moment the limit is crossed.
async fn write_all<S, B, E>(
    file: &mut tokio::fs::File,
    stream: S,
    max: u64,
    quota: Option<u64>,
) -> std::result::Result<(String, u64), Received>
where
    S: futures_util::Stream<Item = std::result::Result<B, E>>,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut size: u64 = 0;
    let mut writer = tokio::io::BufWriter::with_capacity(64 * 1024, file);
    futures_util::pin_mut!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Received::Failed(Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::Unknown,
                format!("The upload did not arrive whole: {e}"),
            ))
        })?;
        let chunk = chunk.as_ref();
        size += chunk.len() as u64;
        if size > max {
            return Err(Received::TooLarge);
        }
        if quota.is_some_and(|q| size > q) {
            return Err(Received::OverQuota);
        }
        hash.update(chunk);
        writer
            .write_all(chunk)
            .await
            .map_err(|e| Received::Failed(Error::internal(format!("writing an upload: {e}"))))?;
    }
    let io =
        |e: std::io::Error| Received::Failed(Error::internal(format!("writing an upload: {e}")));
    writer.flush().await.map_err(io)?;
    writer.into_inner().sync_all().await.map_err(io)?;
    Ok((hex(hash.finish().as_ref()), size))
}

/// What may be received: at most `max` bytes, and at most `quota` when the user has a daily
/// allowance left (`over_quota` is the error then).
pub struct Limits {
    pub max: u64,
    pub quota: Option<u64>,
    pub over_quota: fn() -> Error,
}

/// Bodies up to this size are read (and thrown away) before a refusal is answered.
const DISCARD_LIMIT: u64 = 64 * 1024;

/// Reads and drops a refused body when it is small: answering before the client has sent it
/// makes the connection close under the client, which then sees a reset instead of the
/// answer. Large bodies are not read: the refusal exists to spare that.
pub async fn discard_small(body: Body, declared_size: Option<u64>) {
    if declared_size.is_some_and(|size| size <= DISCARD_LIMIT) {
        let mut stream = body.into_data_stream();
        while let Some(Ok(_)) = stream.next().await {}
    }
}

/// Receives a request body into a temporary file in `dir`.
pub async fn receive(body: Body, dir: &Path, limits: Limits) -> Result<TempFile> {
    let (path, mut file) = new_file(dir).await?;
    // From here on the guard removes the file whatever happens (errors, a dropped request).
    let mut temp = TempFile {
        path,
        sha256: String::new(),
        size: 0,
        kept: false,
    };
    match write_all(&mut file, body.into_data_stream(), limits.max, limits.quota).await {
        Ok((sha256, size)) => {
            temp.sha256 = sha256;
            temp.size = size;
            Ok(temp)
        }
        Err(Received::TooLarge) => Err(Error::too_large(format!(
            "The file is larger than {} bytes",
            limits.max
        ))),
        Err(Received::OverQuota) => Err((limits.over_quota)()),
        Err(Received::Failed(error)) => Err(error),
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: u64, quota: Option<u64>) -> Limits {
        Limits {
            max,
            quota,
            over_quota: || Error::limit_exceeded(1000),
        }
    }

    fn files_in(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[tokio::test]
    async fn a_body_is_hashed_counted_and_kept_on_disk_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let temp = receive(Body::from("hello world"), dir.path(), limits(11, None))
            .await
            .unwrap();
        assert_eq!(temp.size, 11);
        assert_eq!(
            temp.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(std::fs::read(temp.path()).unwrap(), b"hello world");
        drop(temp);
        assert_eq!(files_in(dir.path()), 0, "dropped uploads leave nothing");
    }

    #[tokio::test]
    async fn limits_stop_the_upload_and_remove_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = receive(Body::from("hello world"), dir.path(), limits(10, None))
            .await
            .unwrap_err();
        assert_eq!(err.errcode(), "M_TOO_LARGE");
        let err = receive(Body::from("hello world"), dir.path(), limits(100, Some(5)))
            .await
            .unwrap_err();
        assert_eq!(err.errcode(), "M_LIMIT_EXCEEDED");
        // A stream that breaks off is refused too.
        let broken = futures_util::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"part")),
            Err(std::io::Error::other("connection reset")),
        ]);
        let err = receive(Body::from_stream(broken), dir.path(), limits(100, None))
            .await
            .unwrap_err();
        assert_eq!(err.errcode(), "M_UNKNOWN");
        assert_eq!(files_in(dir.path()), 0);
        // An empty body is a file of no bytes.
        let empty = receive(Body::empty(), dir.path(), limits(100, None))
            .await
            .unwrap();
        assert_eq!(empty.size, 0);
    }
}

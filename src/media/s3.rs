//! File contents in S3-compatible object storage (AWS S3, MinIO, Ceph…), through
//! `object_store`'s S3 client. Uploads go up in parts of 5 MiB, two at a time per file and at
//! most eight in memory over all uploads, so neither a 300 MB file nor many files at once sit
//! in memory; downloads stream, ranges included.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutPayload};

use super::store::{ByteRange, ByteStream, MediaStore, sharded};
use super::upload::TempFile;
use crate::config::S3Config;
use crate::error::{Error, Result};

/// Size of the parts of a multipart upload (S3's smallest allowed part is 5 MiB).
const PART: usize = 5 * 1024 * 1024;
/// Room past the bytes read: `read_to_end` grows (doubles) a full buffer before it sees the
/// end.
const SLACK: usize = 1024;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 2;
/// Parts in memory at once over all uploads (and single puts): 40 MiB.
const PARTS_IN_MEMORY: usize = 8;

pub struct S3Store {
    client: AmazonS3,
    /// Parts held in memory at once, over all uploads: memory stays bounded however many
    /// files go up together.
    parts: Arc<tokio::sync::Semaphore>,
}

/// Reads the next part (up to [`PART`] bytes) of a file straight into its own buffer, on a
/// blocking thread (no intermediate copy); hands the file back for the next one.
async fn read_part(file: std::fs::File) -> Result<(std::fs::File, Vec<u8>)> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut part = Vec::with_capacity(PART + SLACK);
        (&file).take(PART as u64).read_to_end(&mut part)?;
        Ok::<_, std::io::Error>((file, part))
    })
    .await
    .map_err(|e| Error::internal(format!("reading an upload: {e}")))?
    .map_err(|e| Error::internal(format!("reading an upload: {e}")))
}

fn part_done(
    joined: std::result::Result<object_store::Result<()>, tokio::task::JoinError>,
) -> Result<()> {
    joined
        .map_err(|e| Error::internal(format!("S3 part upload task: {e}")))?
        .map_err(|e| failed("upload part", e))
}

fn failed(what: &str, error: object_store::Error) -> Error {
    Error::internal(format!("S3 {what}: {error}"))
}

impl S3Store {
    pub fn new(config: &S3Config) -> Result<Self> {
        if config.bucket.is_empty() {
            return Err(Error::internal(
                "media.s3.bucket is needed with backend = \"s3\"",
            ));
        }
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_virtual_hosted_style_request(!config.path_style);
        if !config.endpoint.is_empty() {
            builder = builder
                .with_endpoint(&config.endpoint)
                .with_allow_http(config.endpoint.starts_with("http://"));
        }
        let client = builder
            .build()
            .map_err(|e| Error::internal(format!("media.s3: {e}")))?;
        Ok(Self {
            client,
            parts: Arc::new(tokio::sync::Semaphore::new(PARTS_IN_MEMORY)),
        })
    }

    fn path_of(key: &str) -> Result<ObjectPath> {
        Ok(ObjectPath::from(sharded(key)?))
    }

    async fn exists(&self, path: &ObjectPath) -> Result<bool> {
        match self.client.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(failed("head", error)),
        }
    }

    async fn upload(&self, path: &ObjectPath, file: &TempFile) -> Result<()> {
        let io = |e: std::io::Error| Error::internal(format!("reading an upload: {e}"));
        let mut source = std::fs::File::open(file.path()).map_err(io)?;
        if file.size <= PART as u64 {
            let _permit = self.part_permit().await?;
            let bytes;
            (source, bytes) = read_part(source).await?;
            drop(source);
            self.client
                .put(path, PutPayload::from(bytes))
                .await
                .map_err(|e| failed("put", e))?;
            return Ok(());
        }
        let mut upload = self
            .client
            .put_multipart(path)
            .await
            .map_err(|e| failed("multipart upload", e))?;
        // Each part goes up in its own task, so it completes (and frees its memory) whatever
        // this one waits for.
        let mut in_flight = std::collections::VecDeque::new();
        let sent = async {
            loop {
                // A part's memory is held from its first byte read until S3 has it.
                let permit = self.part_permit().await?;
                let part;
                (source, part) = read_part(source).await?;
                if part.is_empty() {
                    break;
                }
                let request = upload.put_part(PutPayload::from(part));
                in_flight.push_back(tokio::spawn(async move {
                    let result = request.await;
                    drop(permit);
                    result
                }));
                if in_flight.len() >= PARTS_IN_FLIGHT
                    && let Some(oldest) = in_flight.pop_front()
                {
                    part_done(oldest.await)?;
                }
            }
            while let Some(oldest) = in_flight.pop_front() {
                part_done(oldest.await)?;
            }
            Ok::<(), Error>(())
        }
        .await;
        match sent {
            Ok(()) => upload
                .complete()
                .await
                .map(drop)
                .map_err(|e| failed("complete upload", e)),
            Err(error) => {
                let _ = upload.abort().await;
                Err(error)
            }
        }
    }

    async fn part_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        self.parts
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::internal("S3 part budget closed"))
    }
}

impl MediaStore for S3Store {
    fn put<'a>(&'a self, key: &'a str, file: TempFile) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let path = Self::path_of(key)?;
            if self.exists(&path).await? {
                return Ok(());
            }
            // The temporary file is removed when `file` is dropped, stored or not.
            self.upload(&path, &file).await
        })
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        range: Option<ByteRange>,
    ) -> BoxFuture<'a, Result<ByteStream>> {
        Box::pin(async move {
            let path = Self::path_of(key)?;
            let options = GetOptions::new().with_range(range.map(|r| r.start..r.end + 1));
            let result = self
                .client
                .get_opts(&path, options)
                .await
                .map_err(|e| failed("get", e))?;
            let stream: ByteStream = result
                .into_stream()
                .map(|chunk| chunk.map_err(std::io::Error::other))
                .boxed();
            Ok(stream)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let path = Self::path_of(key)?;
            match self.client.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(failed("delete", e)),
            }
        })
    }
}

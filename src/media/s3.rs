//! File contents in S3-compatible object storage (AWS S3, MinIO, Ceph…), through
//! `object_store`'s S3 client. Uploads go up in parts of a few MiB, two at a time, so a
//! 300 MB file never sits in memory; downloads stream, ranges included.

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use super::store::{ByteRange, ByteStream, MediaStore, check_key};
use super::upload::TempFile;
use crate::config::S3Config;
use crate::error::{Error, Result};

/// Size of the parts of a multipart upload (S3's smallest allowed part is 5 MiB).
const PART: usize = 5 * 1024 * 1024;
/// Parts in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

pub struct S3Store {
    client: AmazonS3,
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
        Ok(Self { client })
    }

    fn path_of(key: &str) -> Result<ObjectPath> {
        check_key(key)?;
        Ok(ObjectPath::from(format!(
            "{}/{}/{key}",
            &key[..2],
            &key[2..4]
        )))
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
        let mut source = tokio::fs::File::open(file.path()).await.map_err(io)?;
        if file.size <= PART as u64 {
            let mut bytes = Vec::with_capacity(file.size as usize);
            source.read_to_end(&mut bytes).await.map_err(io)?;
            self.client
                .put(path, PutPayload::from(bytes))
                .await
                .map_err(|e| failed("put", e))?;
            return Ok(());
        }
        let upload = self
            .client
            .put_multipart(path)
            .await
            .map_err(|e| failed("multipart upload", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buffer = vec![0u8; 1024 * 1024];
        loop {
            let read = source.read(&mut buffer).await.map_err(io)?;
            if read == 0 {
                break;
            }
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|e| failed("upload part", e))?;
            writer.write(&buffer[..read]);
        }
        writer
            .finish()
            .await
            .map_err(|e| failed("complete upload", e))?;
        Ok(())
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
}

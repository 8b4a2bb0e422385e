//! `sori-load media`: a big upload and its download (throughput, and the server's memory
//! growth while the file streams through), many uploads at once, and thumbnail latency (made
//! on the first request, read back from storage after that).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::{Client, percentile, register, rss_mib};

const MIB: u64 = 1024 * 1024;

/// Samples the server's resident memory every 20 ms until stopped; answers the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<f64>,
}

impl RssSampler {
    fn start(pid: Option<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            while !flag.load(Ordering::Relaxed) {
                if let Some(rss) = pid.and_then(rss_mib) {
                    peak = peak.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        });
        Self { stop, task }
    }

    async fn peak(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(0.0)
    }
}

/// A body of `size` bytes made on the fly, 1 MiB at a time (the load generator holds none of
/// it either).
fn generated_body(size: u64, seed: u8) -> reqwest::Body {
    let chunk: bytes::Bytes = (0..MIB)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into();
    let chunks = size.div_ceil(MIB);
    let stream = futures_util::stream::iter((0..chunks).map(move |n| {
        let len = (size - n * MIB).min(MIB) as usize;
        Ok::<_, std::io::Error>(chunk.slice(..len))
    }));
    reqwest::Body::wrap_stream(stream)
}

async fn upload(
    client: &Client,
    body: reqwest::Body,
    content_type: &str,
) -> Result<String, String> {
    let response = client
        .http
        .post(format!("{}/_matrix/media/v3/upload", client.url))
        .bearer_auth(&client.token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("upload: {e}"))?;
    let status = response.status();
    let value: Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("upload: {status} {value}"));
    }
    let uri = value["content_uri"]
        .as_str()
        .ok_or("upload: no content_uri")?;
    Ok(uri.trim_start_matches("mxc://").to_owned())
}

/// Downloads `path` under `/_matrix/client/v1/media/`, counting the bytes without keeping them.
async fn fetch(client: &Client, path: &str) -> Result<u64, String> {
    let response = client
        .http
        .get(format!("{}/_matrix/client/v1/media/{path}", client.url))
        .bearer_auth(&client.token)
        .send()
        .await
        .map_err(|e| format!("download: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("download {path}: {}", response.status()));
    }
    let mut stream = response.bytes_stream();
    let mut total = 0;
    while let Some(chunk) = stream.next().await {
        total += chunk.map_err(|e| e.to_string())?.len() as u64;
    }
    Ok(total)
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

/// A photo-like picture to make thumbnails of.
fn picture(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85)
        .encode_image(&image)
        .expect("encode a picture");
    bytes
}

pub async fn run(
    url: String,
    size_mib: u64,
    concurrency: usize,
    concurrent_mib: u64,
    thumbnails: usize,
    pid: Option<u32>,
) -> Result<Value, String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(|e| e.to_string())?;
    let client = register(&http, &url, &format!("media{}", std::process::id())).await?;
    let idle = pid.and_then(rss_mib);

    // One big file up, then down.
    let size = size_mib * MIB;
    let sampler = RssSampler::start(pid);
    let started = Instant::now();
    let big = upload(&client, generated_body(size, 7), "application/octet-stream").await?;
    let up = started.elapsed();
    let up_peak = sampler.peak().await;
    let sampler = RssSampler::start(pid);
    let started = Instant::now();
    let received = fetch(&client, &format!("download/{big}")).await?;
    let down = started.elapsed();
    let down_peak = sampler.peak().await;
    if received != size {
        return Err(format!("downloaded {received} bytes of {size}"));
    }
    println!(
        "{size_mib} MiB upload:   {:.1} s, {:.0} MB/s",
        up.as_secs_f64(),
        mb_per_s(size, up)
    );
    println!(
        "{size_mib} MiB download: {:.1} s, {:.0} MB/s",
        down.as_secs_f64(),
        mb_per_s(size, down)
    );
    if let Some(idle) = idle {
        println!(
            "server RSS: {idle:.1} MiB before; peak {up_peak:.1} MiB uploading (+{:.1}), {down_peak:.1} MiB downloading (+{:.1})",
            up_peak - idle,
            down_peak - idle
        );
    }

    // Many uploads at once.
    let each = concurrent_mib * MIB;
    let sampler = RssSampler::start(pid);
    let started = Instant::now();
    let mut uploads = tokio::task::JoinSet::new();
    for n in 0..concurrency {
        let client = client.clone();
        uploads.spawn(async move {
            let began = Instant::now();
            upload(
                &client,
                generated_body(each, n as u8),
                "application/octet-stream",
            )
            .await
            .map(|_| began.elapsed())
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = uploads.join_next().await {
        latencies.push(done.map_err(|e| e.to_string())??);
    }
    let all = started.elapsed();
    let concurrent_peak = sampler.peak().await;
    latencies.sort();
    println!(
        "{concurrency} concurrent uploads of {concurrent_mib} MiB: {:.1} s, {:.0} MB/s in all; each p50 {:.0} ms p95 {:.0} ms",
        all.as_secs_f64(),
        mb_per_s(each * concurrency as u64, all),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
    );
    if let Some(idle) = idle {
        println!(
            "server RSS peak during them: {concurrent_peak:.1} MiB (+{:.1})",
            concurrent_peak - idle
        );
    }

    // Thumbnails of a 12-megapixel photo: each size made once, then read back.
    let photo = upload(
        &client,
        reqwest::Body::from(picture(4000, 3000)),
        "image/jpeg",
    )
    .await?;
    let sizes: Vec<(u32, u32)> = (0..thumbnails.max(1))
        .map(|n| (96 + 32 * n as u32, 96 + 24 * n as u32))
        .collect();
    let mut first = Vec::new();
    let mut stored = Vec::new();
    for pass in [&mut first, &mut stored] {
        for (width, height) in &sizes {
            let started = Instant::now();
            fetch(
                &client,
                &format!("thumbnail/{photo}?width={width}&height={height}&method=scale"),
            )
            .await?;
            pass.push(started.elapsed());
        }
        pass.sort();
    }
    println!(
        "thumbnail of a 4000x3000 JPEG: first request p50 {:.1} ms p95 {:.1} ms; stored p50 {:.2} ms p95 {:.2} ms",
        percentile(&first, 0.50),
        percentile(&first, 0.95),
        percentile(&stored, 0.50),
        percentile(&stored, 0.95),
    );

    Ok(json!({
        "upload_mb_s": mb_per_s(size, up),
        "download_mb_s": mb_per_s(size, down),
        "rss_idle_mib": idle,
        "rss_upload_peak_mib": pid.map(|_| up_peak),
        "rss_download_peak_mib": pid.map(|_| down_peak),
        "concurrent_mb_s": mb_per_s(each * concurrency as u64, all),
        "rss_concurrent_peak_mib": pid.map(|_| concurrent_peak),
        "thumbnail_first_p50_ms": percentile(&first, 0.50),
        "thumbnail_stored_p50_ms": percentile(&stored, 0.50),
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_picture_is_a_jpeg_of_the_asked_size() {
        let bytes = super::picture(40, 30);
        let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .unwrap();
        assert_eq!(reader.format(), Some(image::ImageFormat::Jpeg));
        assert_eq!(reader.into_dimensions().unwrap(), (40, 30));
    }
}

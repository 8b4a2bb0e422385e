//! `sori-load push`: push notification latency and recovery. Runs its own push gateway on
//! loopback (the server must allow it: `[outbound] ip_range_whitelist = ["127.0.0.1/32"]`),
//! gives every user a pusher there, sends messages at a steady rate and times each send to
//! the gateway's POST; then fails the gateway for a while and measures how fast the queued
//! notifications drain once it is back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Client, percentile, register, rss_mib};

/// What the gateway saw: when each notification arrived (since the epoch) and how many
/// requests it refused.
#[derive(Default)]
struct Seen {
    arrivals: Vec<(Duration, u64)>,
    refused: usize,
    down: bool,
}

/// Serves `POST /_matrix/push/v1/notify` with keep-alive, as a real gateway would.
async fn gateway(epoch: Instant) -> Result<(String, Arc<Mutex<Seen>>), String> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    let address = super::responder::serve(Arc::new(move |_, _, body: &[u8]| {
        let arrived = epoch.elapsed();
        let notification: Value = serde_json::from_slice(body).unwrap_or_default();
        let mut seen = shared.lock().unwrap();
        if seen.down {
            seen.refused += 1;
            ("503 Unavailable", r#"{"error":"down"}"#.to_owned())
        } else {
            if let Some(sent) = notification["notification"]["content"]["sent_us"].as_u64() {
                seen.arrivals.push((arrived, sent));
            }
            ("200 OK", r#"{"rejected":[]}"#.to_owned())
        }
    }))
    .await?;
    Ok((format!("http://{address}/_matrix/push/v1/notify"), seen))
}

/// Sends `count` messages at `rate` per second, message i from user i mod users into that
/// user's room, stamped with the send time.
async fn send_at_rate(
    clients: &Arc<Vec<Client>>,
    rooms: &Arc<Vec<String>>,
    epoch: Instant,
    rate: f64,
    range: std::ops::Range<usize>,
) -> Result<(), String> {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    let mut senders = tokio::task::JoinSet::new();
    for i in range {
        ticker.tick().await;
        let (clients, rooms) = (clients.clone(), rooms.clone());
        senders.spawn(async move {
            let n = i % clients.len();
            let room = &rooms[n % rooms.len()];
            let body = json!({"msgtype": "m.text", "body": format!("push {i}"),
                              "sent_us": epoch.elapsed().as_micros() as u64});
            clients[n]
                .call(
                    reqwest::Method::PUT,
                    &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/p{i}"),
                    &body,
                )
                .await
        });
    }
    while let Some(result) = senders.join_next().await {
        result.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Waits until the gateway took `expected` notifications (or `limit` passed); returns how
/// many it took.
async fn wait_for(seen: &Mutex<Seen>, expected: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let got = seen.lock().unwrap().arrivals.len();
        if got >= expected || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    url: String,
    users: usize,
    room_count: usize,
    rate: f64,
    seconds: u64,
    outage_seconds: u64,
    pid: Option<u32>,
) -> Result<Value, String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let epoch = Instant::now();
    let (gateway_url, seen) = gateway(epoch).await?;
    let run = std::process::id();
    let users = users.max(2);
    let room_count = room_count.clamp(1, users / 2);
    let mut clients = Vec::new();
    for n in 0..users {
        clients.push(register(&http, &url, &format!("push{run}u{n}")).await?);
    }
    let mut rooms = Vec::new();
    for client in clients.iter().take(room_count) {
        rooms.push(client.create_room().await?);
    }
    for (n, client) in clients.iter().enumerate().skip(room_count) {
        client.join(&rooms[n % room_count]).await?;
    }
    for (n, client) in clients.iter().enumerate() {
        client
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/pushers/set",
                &json!({"kind": "http", "app_id": "io.sori.load", "pushkey": format!("key{n}"),
                        "app_display_name": "load", "device_display_name": "load", "lang": "en",
                        "data": {"url": gateway_url}}),
            )
            .await?;
    }
    let mut members = vec![0usize; room_count];
    for n in 0..users {
        members[n % room_count] += 1;
    }
    // Every message notifies the other members of its room.
    let expected = |range: std::ops::Range<usize>| -> usize {
        range.map(|i| members[(i % users) % room_count] - 1).sum()
    };
    println!("{users} users in {room_count} rooms, one pusher each; {rate} msg/s for {seconds} s");
    let clients = Arc::new(clients);
    let rooms = Arc::new(rooms);

    // Steady load.
    let total = (rate * seconds as f64) as usize;
    let mut peak_rss: f64 = pid.and_then(rss_mib).unwrap_or(0.0);
    let sampler = {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(pid.and_then(rss_mib).unwrap_or(0.0));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            peak
        });
        (stop, task)
    };
    send_at_rate(&clients, &rooms, epoch, rate, 0..total).await?;
    let want = expected(0..total);
    let got = wait_for(&seen, want, Duration::from_secs(60)).await;
    let mut latencies: Vec<Duration> = seen
        .lock()
        .unwrap()
        .arrivals
        .iter()
        .map(|(arrived, sent)| arrived.saturating_sub(Duration::from_micros(*sent)))
        .collect();
    latencies.sort();
    println!("steady: {got} notifications (expected {want})");
    println!(
        "send->gateway POST   p50 {:.2} ms   p95 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    );

    // Outage: the gateway refuses everything while messages keep coming, then comes back.
    let outage_total = (rate * outage_seconds as f64) as usize;
    seen.lock().unwrap().down = true;
    send_at_rate(&clients, &rooms, epoch, rate, total..total + outage_total).await?;
    let backlog = expected(total..total + outage_total);
    let refused = seen.lock().unwrap().refused;
    seen.lock().unwrap().down = false;
    let back = Instant::now();
    let before = seen.lock().unwrap().arrivals.len();
    let got = wait_for(&seen, before + backlog, Duration::from_secs(120)).await - before;
    let drained = back.elapsed();
    let (first, last) = {
        let seen = seen.lock().unwrap();
        let after: Vec<Duration> = seen.arrivals[before..].iter().map(|(a, _)| *a).collect();
        (
            after.iter().min().copied().unwrap_or_default(),
            after.iter().max().copied().unwrap_or_default(),
        )
    };
    let spread = last.saturating_sub(first).as_secs_f64().max(0.001);
    sampler.0.store(true, std::sync::atomic::Ordering::Relaxed);
    peak_rss = peak_rss.max(sampler.1.await.unwrap_or(0.0));
    println!(
        "outage of {outage_seconds} s: {refused} refused attempts, backlog {backlog}; {got} delivered within {:.1} s of recovery",
        drained.as_secs_f64()
    );
    println!(
        "drain: {:.0} notifications/s once deliveries resumed (first {:.2} s after recovery, by backoff)",
        got as f64 / spread,
        first
            .saturating_sub(back.duration_since(epoch))
            .as_secs_f64()
    );
    if pid.is_some() {
        println!("server RSS peak {peak_rss:.1} MiB");
    }
    Ok(json!({
        "notifications": latencies.len(),
        "expected": want,
        "p50_ms": percentile(&latencies, 0.50),
        "p95_ms": percentile(&latencies, 0.95),
        "p99_ms": percentile(&latencies, 0.99),
        "backlog": backlog,
        "drained": got,
        "drain_per_s": got as f64 / spread,
        "drain_seconds": drained.as_secs_f64(),
        "rss_peak_mib": pid.map(|_| peak_rss),
    }))
}

//! `sori-load appservice`: how fast Sori delivers events to an appservice. Runs the
//! appservice itself on `--listen` (the server must have its registration: that URL, these
//! tokens, and an exclusive user namespace starting with `@<prefix>`), puts one of its users
//! in every room, then times messages as fast as `--concurrency` senders go (send →
//! transaction, and events per second), and the drain of a backlog built while the
//! appservice refused transactions.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Client, percentile, register};

#[derive(Default)]
struct Seen {
    /// When each message arrived (since the epoch) and when it was sent.
    arrivals: Vec<(Duration, u64)>,
    transactions: usize,
    refused: usize,
    down: bool,
}

async fn appservice(listen: &str, epoch: Instant) -> Result<Arc<Mutex<Seen>>, String> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    super::responder::serve_on(
        listen,
        Arc::new(move |method: &str, path: &str, body: &[u8]| {
            if method != "PUT" || !path.starts_with("/_matrix/app/v1/transactions/") {
                return ("200 OK", "{}".to_owned());
            }
            let arrived = epoch.elapsed();
            let mut seen = shared.lock().unwrap();
            if seen.down {
                seen.refused += 1;
                return (
                    "503 Unavailable",
                    r#"{"errcode":"M_UNKNOWN","error":"down"}"#.to_owned(),
                );
            }
            let transaction: Value = serde_json::from_slice(body).unwrap_or_default();
            seen.transactions += 1;
            for event in transaction["events"].as_array().into_iter().flatten() {
                if let Some(sent) = event["content"]["sent_us"].as_u64() {
                    seen.arrivals.push((arrived, sent));
                }
            }
            ("200 OK", "{}".to_owned())
        }),
    )
    .await?;
    Ok(seen)
}

/// Sends messages `range` from `concurrency` senders at once, as fast as they are answered.
async fn send_all(
    clients: &Arc<Vec<Client>>,
    rooms: &Arc<Vec<String>>,
    epoch: Instant,
    range: std::ops::Range<usize>,
    concurrency: usize,
) -> Result<(), String> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(range.start));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (clients, rooms, next) = (clients.clone(), rooms.clone(), next.clone());
        let end = range.end;
        senders.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= end {
                    return Ok::<(), String>(());
                }
                let n = i % clients.len();
                let room = &rooms[n % rooms.len()];
                let body = json!({"msgtype": "m.text", "body": format!("bridged {i}"),
                                  "sent_us": epoch.elapsed().as_micros() as u64});
                clients[n]
                    .call(
                        reqwest::Method::PUT,
                        &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/a{i}"),
                        &body,
                    )
                    .await?;
            }
        });
    }
    while let Some(result) = senders.join_next().await {
        result.map_err(|e| e.to_string())??;
    }
    Ok(())
}

async fn wait_for(seen: &Mutex<Seen>, expected: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let got = seen.lock().unwrap().arrivals.len();
        if got >= expected || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    url: String,
    listen: String,
    as_token: String,
    prefix: String,
    users: usize,
    room_count: usize,
    messages: usize,
    concurrency: usize,
) -> Result<Value, String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let epoch = Instant::now();
    let seen = appservice(&listen, epoch).await?;
    let run = std::process::id();
    let users = users.max(1);
    let room_count = room_count.clamp(1, users);
    let mut clients = Vec::new();
    for n in 0..users {
        clients.push(register(&http, &url, &format!("as{run}u{n}")).await?);
    }
    let mut rooms = Vec::new();
    for client in clients.iter().take(room_count) {
        rooms.push(client.create_room().await?);
    }
    for (n, client) in clients.iter().enumerate().skip(room_count) {
        client.join(&rooms[n % room_count]).await?;
    }
    // The bridge's user joins every room: every message is then the bridge's to hear.
    let bridge_user = format!("{prefix}load{run}");
    let bridge = Client {
        http: http.clone(),
        url: url.clone(),
        token: as_token.clone(),
    };
    bridge
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/register",
            &json!({"type": "m.login.application_service", "username": bridge_user}),
        )
        .await?;
    let server_name = bridge.get("/_matrix/client/v3/account/whoami").await?["user_id"]
        .as_str()
        .and_then(|u| u.split_once(':'))
        .map(|(_, server)| server.to_owned())
        .ok_or("whoami: no user id")?;
    for room in &rooms {
        bridge
            .call(
                reqwest::Method::POST,
                &format!(
                    "/_matrix/client/v3/rooms/{room}/join?user_id=@{bridge_user}:{server_name}"
                ),
                &json!({}),
            )
            .await?;
    }
    println!(
        "{users} users in {room_count} rooms, the bridge's user in all; {messages} messages from {concurrency} senders"
    );
    let clients = Arc::new(clients);
    let rooms = Arc::new(rooms);

    // As fast as the senders go.
    let started = epoch.elapsed();
    send_all(&clients, &rooms, epoch, 0..messages, concurrency).await?;
    let got = wait_for(&seen, messages, Duration::from_secs(120)).await;
    let (last, mut latencies, transactions) = {
        let seen = seen.lock().unwrap();
        let last = seen
            .arrivals
            .iter()
            .map(|(a, _)| *a)
            .max()
            .unwrap_or_default();
        let latencies: Vec<Duration> = seen
            .arrivals
            .iter()
            .map(|(arrived, sent)| arrived.saturating_sub(Duration::from_micros(*sent)))
            .collect();
        (last, latencies, seen.transactions)
    };
    latencies.sort();
    let elapsed = last.saturating_sub(started).as_secs_f64().max(0.001);
    println!(
        "delivered {got}/{messages} in {elapsed:.2} s: {:.0} events/s in {transactions} transactions",
        got as f64 / elapsed
    );
    println!(
        "send->transaction   p50 {:.2} ms   p95 {:.2} ms   p99 {:.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
    );

    // A backlog built while the appservice refuses, then drained.
    seen.lock().unwrap().down = true;
    send_all(&clients, &rooms, epoch, messages..2 * messages, concurrency).await?;
    let refused = seen.lock().unwrap().refused;
    let before = seen.lock().unwrap().arrivals.len();
    seen.lock().unwrap().down = false;
    let back = Instant::now();
    let drained = wait_for(&seen, before + messages, Duration::from_secs(600)).await - before;
    let (first, last) = {
        let seen = seen.lock().unwrap();
        let after: Vec<Duration> = seen.arrivals[before..].iter().map(|(a, _)| *a).collect();
        (
            after.iter().min().copied().unwrap_or_default(),
            after.iter().max().copied().unwrap_or_default(),
        )
    };
    let spread = last.saturating_sub(first).as_secs_f64().max(0.001);
    println!(
        "backlog of {messages} ({refused} refused attempts): {drained} delivered {:.1} s after recovery, {:.0} events/s once resumed",
        back.elapsed().as_secs_f64(),
        drained as f64 / spread
    );
    Ok(json!({
        "delivered": got,
        "events_per_s": got as f64 / elapsed,
        "p50_ms": percentile(&latencies, 0.50),
        "p95_ms": percentile(&latencies, 0.95),
        "p99_ms": percentile(&latencies, 0.99),
        "transactions": transactions,
        "backlog_drained": drained,
        "drain_events_per_s": drained as f64 / spread,
    }))
}

//! `sori-load`: drives a homeserver over the client-server API and reports send throughput
//! and latency. It registers its own users (the server needs open registration with dummy
//! auth and generous rate limits), creates rooms, and sends messages sequentially and
//! concurrently.
//!
//! ```sh
//! SORI_REGISTRATION__ENABLED=true sori &
//! sori-load send --url http://127.0.0.1:8008 --rooms 1 --messages 500 --concurrency 4
//! ```

mod appservice;
mod login;
mod media;
mod push;
mod responder;
mod search;

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "sori-load", about = "Load generator for Sori")]
struct Cli {
    /// After the report, print its figures as one JSON line (for scripts such as
    /// `benches/compare/run`).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send throughput and latency: `messages` sent one by one, then by `concurrency` clients.
    Send {
        #[arg(long, default_value = "http://127.0.0.1:8008")]
        url: String,
        /// Rooms to spread messages over.
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        /// Messages per phase (sequential, then concurrent).
        #[arg(long, default_value_t = 200)]
        messages: usize,
        /// Concurrent clients in the concurrent phase (each its own user).
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Send-to-delivery latency: every user waits in a `/sync` long-poll while messages are
    /// sent at a fixed rate; reports when each receiver saw each message.
    Deliver {
        #[arg(long, default_value = "http://127.0.0.1:8008")]
        url: String,
        #[arg(long, default_value_t = 20)]
        users: usize,
        /// Rooms; user i is in room i mod rooms.
        #[arg(long, default_value_t = 10)]
        rooms: usize,
        /// Messages per second, over all rooms.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The server's process id, to report its resident memory.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Push notifications: every user has a pusher at a gateway this tool runs on loopback
    /// (the server must allow it: `[outbound] ip_range_whitelist = ["127.0.0.1/32"]`); times
    /// send → gateway POST at a steady rate, then the drain after a gateway outage.
    Push {
        #[arg(long, default_value = "http://127.0.0.1:8008")]
        url: String,
        #[arg(long, default_value_t = 200)]
        users: usize,
        /// Rooms; user i is in room i mod rooms.
        #[arg(long, default_value_t = 20)]
        rooms: usize,
        /// Messages per second, over all rooms.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds of steady sending.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Seconds the gateway refuses everything while sending goes on.
        #[arg(long, default_value_t = 10)]
        outage_seconds: u64,
        /// The server's process id, to report its resident memory.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Delivery to an appservice this tool runs on `--listen` (the server has its
    /// registration: that URL, `--as-token`, an exclusive user namespace `@<prefix>…`):
    /// events per second and send → transaction latency, then a backlog's drain.
    Appservice {
        #[arg(long, default_value = "http://127.0.0.1:8008")]
        url: String,
        #[arg(long, default_value = "127.0.0.1:9009")]
        listen: String,
        #[arg(long)]
        as_token: String,
        /// The start of the appservice's user namespace (its users' localparts).
        #[arg(long, default_value = "bench_")]
        prefix: String,
        #[arg(long, default_value_t = 20)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        rooms: usize,
        #[arg(long, default_value_t = 5000)]
        messages: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Login latency: local passwords (argon2id), and LDAP and JWT logins when given what
    /// they need (the server configured for them).
    Login {
        #[arg(long, default_value = "http://127.0.0.1:8008")]
        url: String,
        /// Timed logins of each kind.
        #[arg(long, default_value_t = 200)]
        logins: usize,
        /// A directory person's login name, for LDAP logins.
        #[arg(long)]
        ldap_user: Option<String>,
        #[arg(long)]
        ldap_password: Option<String>,
        /// The server's `[jwt] secret` (HS256), for JWT logins.
        #[arg(long)]
        jwt_secret: Option<String>,
    },
    /// "Who hasn't read" (`io.sori.read_by`) in one big room: `members` join, half of them send
    /// a read receipt, then the endpoint is timed.
    ReadBy {
        #[arg(long, default_value = "http://127.0.0.1:8008")]
        url: String,
        #[arg(long, default_value_t = 1000)]
        members: usize,
        /// Timed calls.
        #[arg(long, default_value_t = 100)]
        calls: usize,
    },
    /// Media: a big file up and down (throughput, the server's memory growth with --pid),
    /// many uploads at once, and thumbnail latency (first request, then from storage).
    Media {
        #[arg(long, default_value = "http://127.0.0.1:8008")]
        url: String,
        /// Size of the big file, in MiB.
        #[arg(long, default_value_t = 300)]
        size_mib: u64,
        /// Uploads at once in the concurrent phase.
        #[arg(long, default_value_t = 20)]
        concurrency: usize,
        /// Size of each concurrent upload, in MiB.
        #[arg(long, default_value_t = 10)]
        concurrent_mib: u64,
        /// Thumbnail sizes timed (each first made, then read back).
        #[arg(long, default_value_t = 10)]
        thumbnails: usize,
        /// The server's process id, to report its resident memory.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Message search: fills rooms with Korean chat lines, reports how fast they become
    /// searchable, query latency in both orders, and the send-to-findable lag at a steady rate.
    Search {
        #[arg(long, default_value = "http://127.0.0.1:8008")]
        url: String,
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        #[arg(long, default_value_t = 20)]
        rooms: usize,
        /// Clients sending at once while filling.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Timed queries per order.
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Messages per second in the lag phase.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds of the lag phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The server's data directory (storage.path), to report the index's size.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// The server's process id, to report its resident memory.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Sync cost for a user in many rooms: times the first sync, then incremental syncs that
    /// each follow one new message in one of the rooms (the others stay idle); then the same
    /// through simplified sliding sync (a room list of the top 20).
    Rooms {
        #[arg(long, default_value = "http://127.0.0.1:8008")]
        url: String,
        #[arg(long, default_value_t = 500)]
        rooms: usize,
        /// Timed incremental syncs.
        #[arg(long, default_value_t = 200)]
        syncs: usize,
    },
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    /// Sends a request (with a JSON body unless `body` is `None`) and returns the JSON answer,
    /// or the status and body as an error.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let value: Value = response.json().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(format!("{path}: {status} {value}"))
        }
    }

    /// Creates a public room and returns its id.
    async fn create_room(&self) -> Result<String, String> {
        let room = self
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                &json!({"preset": "public_chat"}),
            )
            .await?;
        Ok(room["room_id"]
            .as_str()
            .ok_or("createRoom: no room_id")?
            .to_owned())
    }

    async fn join(&self, room_id: &str) -> Result<(), String> {
        self.call(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/rooms/{room_id}/join"),
            &json!({}),
        )
        .await
        .map(drop)
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> Result<Value, String> {
        self.send(method, path, Some(body)).await
    }
}

/// Registers a user through user-interactive auth the way clients do: the first request
/// learns the session, the second completes the `m.login.dummy` stage (Synapse needs the
/// session; a server that registers at once answers the first).
async fn register(http: &reqwest::Client, url: &str, name: &str) -> Result<Client, String> {
    let mut body = json!({"username": name, "password": format!("{name}-load-pw")});
    let mut value = Value::Null;
    for _ in 0..2 {
        let response = http
            .post(format!("{url}/_matrix/client/v3/register"))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        value = response.json().await.map_err(|e| e.to_string())?;
        if let Some(token) = value["access_token"].as_str() {
            return Ok(Client {
                http: http.clone(),
                url: url.to_owned(),
                token: token.to_owned(),
            });
        }
        if status != reqwest::StatusCode::UNAUTHORIZED {
            break;
        }
        body["auth"] = json!({"type": "m.login.dummy", "session": value["session"]});
    }
    Err(format!("register {name}: {value}"))
}

/// p-th percentile of sorted durations, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn report(label: &str, elapsed: Duration, mut latencies: Vec<Duration>) {
    latencies.sort();
    println!(
        "{label:<34} {:>6} msgs {:>9.1} msg/s   p50 {:>6.2} ms   p95 {:>6.2} ms   p99 {:>6.2} ms",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
    );
}

async fn send_phase(
    client: &Client,
    rooms: &[String],
    offset: usize,
    count: usize,
    tag: &str,
) -> Result<Vec<Duration>, String> {
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let room = &rooms[(offset + i) % rooms.len()];
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{tag}-{i}");
        let started = Instant::now();
        client
            .call(
                reqwest::Method::PUT,
                &path,
                &json!({"msgtype": "m.text", "body": format!("load {tag} {i}")}),
            )
            .await?;
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}

async fn run_send(
    url: String,
    room_count: usize,
    messages: usize,
    concurrency: usize,
) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let run = std::process::id();
    let mut clients = Vec::new();
    for n in 0..concurrency.max(1) {
        clients.push(register(&http, &url, &format!("load{run}u{n}")).await?);
    }
    let mut rooms = Vec::new();
    for _ in 0..room_count.max(1) {
        let room_id = clients[0].create_room().await?;
        for client in &clients[1..] {
            client.join(&room_id).await?;
        }
        rooms.push(room_id);
    }
    println!(
        "{} user(s), {} room(s), {messages} messages per phase",
        clients.len(),
        rooms.len()
    );

    let started = Instant::now();
    let latencies = send_phase(&clients[0], &rooms, 0, messages, "seq").await?;
    report("sequential (1 client)", started.elapsed(), latencies);

    let per_client = messages.div_ceil(clients.len());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, client) in clients.into_iter().enumerate() {
        let rooms = rooms.clone();
        tasks.spawn(
            async move { send_phase(&client, &rooms, n, per_client, &format!("c{n}")).await },
        );
    }
    let mut latencies = Vec::new();
    while let Some(result) = tasks.join_next().await {
        latencies.extend(result.map_err(|e| e.to_string())??);
    }
    report(
        &format!("concurrent ({concurrency} clients)"),
        started.elapsed(),
        latencies,
    );
    Ok(())
}

/// Resident memory of a process, from /proc (Linux).
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// One receiver: long-polls and records, for every message with a send stamp, how long after
/// sending it arrived; stops once `expected` have arrived, or at `stop` for a server that
/// loses or delays messages.
async fn receive(
    client: Client,
    epoch: Instant,
    expected: usize,
    stop: Instant,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Result<Vec<Duration>, String> {
    let mut latencies = Vec::new();
    // A timeline limit high enough that a server running behind sends every message late
    // rather than skipping some in a gap (`limited`).
    const FILTER: &str = "%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A100%7D%7D%7D";
    let first = client
        .get(&format!(
            "/_matrix/client/v3/sync?timeout=0&filter={FILTER}"
        ))
        .await?;
    let mut since = first["next_batch"]
        .as_str()
        .ok_or("no next_batch")?
        .to_owned();
    // The sender stops listening only if it gave up waiting; then there is no one to tell.
    let _ = ready.send(()).await;
    while latencies.len() < expected && Instant::now() < stop {
        let response = client
            .get(&format!(
                "/_matrix/client/v3/sync?since={since}&timeout=5000&filter={FILTER}"
            ))
            .await?;
        let arrived = epoch.elapsed();
        for room in response["rooms"]["join"]
            .as_object()
            .into_iter()
            .flat_map(|rooms| rooms.values())
        {
            for event in room["timeline"]["events"].as_array().into_iter().flatten() {
                if let Some(sent) = event["content"]["sent_us"].as_u64() {
                    latencies.push(arrived.saturating_sub(Duration::from_micros(sent)));
                }
            }
        }
        since = response["next_batch"]
            .as_str()
            .ok_or("no next_batch")?
            .to_owned();
    }
    Ok(latencies)
}

async fn run_deliver(
    url: String,
    users: usize,
    room_count: usize,
    rate: f64,
    seconds: u64,
    pid: Option<u32>,
) -> Result<Value, String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let run = std::process::id();
    let users = users.max(1);
    let room_count = room_count.clamp(1, users);
    let mut clients = Vec::new();
    for n in 0..users {
        clients.push(register(&http, &url, &format!("deliver{run}u{n}")).await?);
    }
    let mut rooms = Vec::new();
    for client in clients.iter().take(room_count) {
        rooms.push(client.create_room().await?);
    }
    for (n, client) in clients.iter().enumerate().skip(room_count) {
        client.join(&rooms[n % room_count]).await?;
    }
    let idle_rss = pid.and_then(rss_mib);
    if let Some(rss) = idle_rss {
        println!("server RSS before load: {rss:.1} MiB");
    }
    println!("{users} users in {room_count} rooms, {rate} msg/s for {seconds} s");

    // Message i comes from user i mod users, into that user's room; every member of the room
    // should see it.
    let total = (rate * seconds as f64) as usize;
    let mut per_room = vec![0; room_count];
    for i in 0..total {
        per_room[(i % users) % room_count] += 1;
    }
    let epoch = Instant::now();
    // Late messages still count (with their lateness) until well after sending ends.
    let stop = epoch + Duration::from_secs(seconds + 60);
    let mut receivers = tokio::task::JoinSet::new();
    let (ready, mut all_ready) = tokio::sync::mpsc::channel(users);
    for (n, client) in clients.iter().enumerate() {
        let expected = per_room[n % room_count];
        receivers.spawn(receive(
            client.clone(),
            epoch,
            expected,
            stop,
            ready.clone(),
        ));
    }
    drop(ready);
    // Sending starts once every receiver is past its first sync and waiting, so that a slow
    // initial sync is not counted as delivery latency.
    for _ in 0..users {
        if all_ready.recv().await.is_none() {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    let clients = std::sync::Arc::new(clients);
    let mut senders = tokio::task::JoinSet::new();
    let mut peak_rss: f64 = 0.0;
    let started = Instant::now();
    for i in 0..total {
        ticker.tick().await;
        let (clients, rooms) = (clients.clone(), rooms.clone());
        senders.spawn(async move {
            let n = i % clients.len();
            let room = &rooms[n % rooms.len()];
            let body = json!({"msgtype": "m.text", "body": format!("load {i}"), "sent_us": epoch.elapsed().as_micros() as u64});
            clients[n].call(reqwest::Method::PUT, &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/d{i}"), &body).await
        });
        if i % 50 == 0 {
            peak_rss = peak_rss.max(pid.and_then(rss_mib).unwrap_or(0.0));
        }
    }
    let sending = started.elapsed();
    while let Some(result) = senders.join_next().await {
        result.map_err(|e| e.to_string())??;
    }
    let mut latencies = Vec::new();
    while let Some(result) = receivers.join_next().await {
        latencies.extend(result.map_err(|e| e.to_string())??);
    }
    latencies.sort();
    let expected: usize = (0..users).map(|n| per_room[n % room_count]).sum();
    println!(
        "sent {total} in {:.1} s ({:.1} msg/s); {} deliveries (expected {})",
        sending.as_secs_f64(),
        total as f64 / sending.as_secs_f64(),
        latencies.len(),
        expected,
    );
    println!(
        "send->sync delivery   p50 {:.2} ms   p95 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    );
    let after_rss = pid.and_then(rss_mib);
    if let Some(rss) = after_rss {
        println!("server RSS: peak under load {peak_rss:.1} MiB, after {rss:.1} MiB");
    }
    Ok(json!({
        "sent": total,
        "send_rate": total as f64 / sending.as_secs_f64(),
        "deliveries": latencies.len(),
        "expected_deliveries": expected,
        "p50_ms": percentile(&latencies, 0.50),
        "p95_ms": percentile(&latencies, 0.95),
        "p99_ms": percentile(&latencies, 0.99),
        "rss_before_mib": idle_rss,
        "rss_peak_mib": pid.map(|_| peak_rss.max(after_rss.unwrap_or(0.0))),
    }))
}

async fn run_read_by(url: String, members: usize, calls: usize) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let run = std::process::id();
    let mut clients = Vec::new();
    let mut registering = tokio::task::JoinSet::new();
    for n in 0..members.max(2) {
        let (http, url) = (http.clone(), url.clone());
        registering.spawn(async move { register(&http, &url, &format!("readby{run}u{n}")).await });
    }
    while let Some(client) = registering.join_next().await {
        clients.push(client.map_err(|e| e.to_string())??);
    }
    let room = clients[0].create_room().await?;
    for client in &clients[1..] {
        client.join(&room).await?;
    }
    let sent = clients[0]
        .call(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/rb"),
            &json!({"msgtype": "m.text", "body": "notice"}),
        )
        .await?;
    let event = sent["event_id"]
        .as_str()
        .ok_or("send: no event_id")?
        .to_owned();
    for client in clients.iter().step_by(2) {
        client
            .call(
                reqwest::Method::POST,
                &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}"),
                &json!({}),
            )
            .await?;
    }
    let path = format!("/_matrix/client/unstable/io.sori/rooms/{room}/read_by/{event}");
    let mut latencies = Vec::new();
    let mut last = Value::Null;
    for _ in 0..calls.max(1) {
        let started = Instant::now();
        last = clients[1].get(&path).await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "read_by in a room of {} members: {} read, {} unread; p50 {:.2} ms   p95 {:.2} ms   p99 {:.2} ms",
        clients.len(),
        last["read"].as_array().map_or(0, Vec::len),
        last["unread"].as_array().map_or(0, Vec::len),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
    );
    Ok(())
}

async fn run_rooms(url: String, rooms: usize, syncs: usize) -> Result<Value, String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;
    let client = register(&http, &url, &format!("rooms{}", std::process::id())).await?;
    let mut room_ids = Vec::new();
    for _ in 0..rooms.max(1) {
        room_ids.push(client.create_room().await?);
    }
    let started = Instant::now();
    let first = client.get("/_matrix/client/v3/sync").await?;
    let initial = started.elapsed();
    let joined = first["rooms"]["join"].as_object().map_or(0, |r| r.len());
    let mut since = first["next_batch"]
        .as_str()
        .ok_or("sync: no next_batch")?
        .to_owned();
    let mut latencies = Vec::new();
    for i in 0..syncs.max(1) {
        let room = &room_ids[i % room_ids.len()];
        client
            .call(
                reqwest::Method::PUT,
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/r{i}"),
                &json!({"msgtype": "m.text", "body": "tick"}),
            )
            .await?;
        let started = Instant::now();
        let response = client
            .get(&format!("/_matrix/client/v3/sync?since={since}&timeout=0"))
            .await?;
        latencies.push(started.elapsed());
        if response["rooms"]["join"].as_object().map_or(0, |r| r.len()) != 1 {
            return Err(format!("sync {i}: expected one changed room: {response}"));
        }
        since = response["next_batch"]
            .as_str()
            .ok_or("sync: no next_batch")?
            .to_owned();
    }
    latencies.sort();
    println!(
        "user in {joined} rooms: first sync {:.1} ms; incremental sync after one message: p50 {:.2} ms   p95 {:.2} ms   p99 {:.2} ms",
        initial.as_secs_f64() * 1000.0,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
    );

    // The same user through simplified sliding sync, as Element X opens its room list: the
    // top 20 rooms with their latest event.
    let list = json!({
        "conn_id": "room-list",
        "lists": {"all": {
            "ranges": [[0, 19]],
            "timeline_limit": 1,
            "required_state": [["m.room.name", ""], ["m.room.avatar", ""], ["m.room.encryption", ""], ["m.room.member", "$ME"]],
        }},
    });
    let path = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
    let started = Instant::now();
    let first = client
        .call(reqwest::Method::POST, &format!("{path}?timeout=0"), &list)
        .await?;
    let sliding_initial = started.elapsed();
    let listed = first["lists"]["all"]["count"].as_u64().unwrap_or(0);
    let mut pos = first["pos"]
        .as_str()
        .ok_or("sliding sync: no pos")?
        .to_owned();
    let mut sliding = Vec::new();
    for i in 0..syncs.max(1) {
        let room = &room_ids[(i * 7) % room_ids.len()];
        client
            .call(
                reqwest::Method::PUT,
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/s{i}"),
                &json!({"msgtype": "m.text", "body": "tock"}),
            )
            .await?;
        let started = Instant::now();
        let response = client
            .call(
                reqwest::Method::POST,
                &format!("{path}?timeout=0&pos={pos}"),
                &list,
            )
            .await?;
        sliding.push(started.elapsed());
        if response["rooms"].get(room.as_str()).is_none() {
            return Err(format!(
                "sliding sync {i}: the room with the message is missing"
            ));
        }
        pos = response["pos"]
            .as_str()
            .ok_or("sliding sync: no pos")?
            .to_owned();
    }
    sliding.sort();
    println!(
        "sliding sync, room list of {listed} (top 20): first {:.1} ms; after one message: p50 {:.2} ms   p95 {:.2} ms   p99 {:.2} ms",
        sliding_initial.as_secs_f64() * 1000.0,
        percentile(&sliding, 0.50),
        percentile(&sliding, 0.95),
        percentile(&sliding, 0.99),
    );
    Ok(json!({
        "rooms": joined,
        "initial_sync_ms": initial.as_secs_f64() * 1000.0,
        "incremental_p50_ms": percentile(&latencies, 0.50),
        "incremental_p95_ms": percentile(&latencies, 0.95),
        "sliding_initial_ms": sliding_initial.as_secs_f64() * 1000.0,
        "sliding_incremental_p50_ms": percentile(&sliding, 0.50),
        "sliding_incremental_p95_ms": percentile(&sliding, 0.95),
    }))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Send {
            url,
            rooms,
            messages,
            concurrency,
        } => run_send(url, rooms, messages, concurrency)
            .await
            .map(|()| Value::Null),
        Command::Deliver {
            url,
            users,
            rooms,
            rate,
            seconds,
            pid,
        } => run_deliver(url, users, rooms, rate, seconds, pid).await,
        Command::Push {
            url,
            users,
            rooms,
            rate,
            seconds,
            outage_seconds,
            pid,
        } => push::run(url, users, rooms, rate, seconds, outage_seconds, pid).await,
        Command::Appservice {
            url,
            listen,
            as_token,
            prefix,
            users,
            rooms,
            messages,
            concurrency,
        } => {
            appservice::run(
                url,
                listen,
                as_token,
                prefix,
                users,
                rooms,
                messages,
                concurrency,
            )
            .await
        }
        Command::Login {
            url,
            logins,
            ldap_user,
            ldap_password,
            jwt_secret,
        } => login::run(url, logins, ldap_user.zip(ldap_password), jwt_secret).await,
        Command::ReadBy {
            url,
            members,
            calls,
        } => run_read_by(url, members, calls).await.map(|()| Value::Null),
        Command::Rooms { url, rooms, syncs } => run_rooms(url, rooms, syncs).await,
        Command::Search {
            url,
            messages,
            rooms,
            concurrency,
            queries,
            rate,
            seconds,
            data_dir,
            pid,
        } => {
            search::run(
                url,
                messages,
                rooms,
                concurrency,
                queries,
                rate,
                seconds,
                data_dir,
                pid,
            )
            .await
        }
        Command::Media {
            url,
            size_mib,
            concurrency,
            concurrent_mib,
            thumbnails,
            pid,
        } => media::run(url, size_mib, concurrency, concurrent_mib, thumbnails, pid).await,
    };
    match result {
        Ok(summary) => {
            if cli.json && !summary.is_null() {
                println!("{summary}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sori-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

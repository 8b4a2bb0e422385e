//! `sori-load`: drives a homeserver over the client-server API and reports send throughput
//! and latency. It registers its own users (the server needs open registration with dummy
//! auth and generous rate limits), creates rooms, and sends messages sequentially and
//! concurrently.
//!
//! ```sh
//! SORI_REGISTRATION__ENABLED=true sori &
//! sori-load send --url http://127.0.0.1:8008 --rooms 1 --messages 500 --concurrency 4
//! ```

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "sori-load", about = "Load generator for Sori")]
struct Cli {
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
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> Result<Value, String> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let value: Value = response.json().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(format!("{path}: {status} {value}"))
        }
    }
}

async fn register(http: &reqwest::Client, url: &str, name: &str) -> Result<Client, String> {
    let body = json!({"username": name, "password": format!("{name}-load-pw"), "auth": {"type": "m.login.dummy"}});
    let response = http
        .post(format!("{url}/_matrix/client/v3/register"))
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let value: Value = response.json().await.map_err(|e| e.to_string())?;
    let token = value["access_token"]
        .as_str()
        .ok_or(format!("register {name}: {status} {value}"))?;
    Ok(Client {
        http: http.clone(),
        url: url.to_owned(),
        token: token.to_owned(),
    })
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
        let room = clients[0]
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                &json!({"preset": "public_chat"}),
            )
            .await?;
        let room_id = room["room_id"]
            .as_str()
            .ok_or("createRoom: no room_id")?
            .to_owned();
        for client in &clients[1..] {
            client
                .call(
                    reqwest::Method::POST,
                    &format!("/_matrix/client/v3/rooms/{room_id}/join"),
                    &json!({}),
                )
                .await?;
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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Send {
            url,
            rooms,
            messages,
            concurrency,
        } => run_send(url, rooms, messages, concurrency).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sori-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

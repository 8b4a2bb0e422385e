//! `federation-bench`: Sori and Synapse federating on loopback, measured. Starts a Sori (the
//! binary in `SPEC_SORI_BIN`; use a release build for figures) and a Synapse (the tests' own,
//! `SPEC_SYNAPSE_PYTHON`), then reports:
//!
//! - send latency: a message sent on Sori until Synapse's `/sync` shows it (one at a time);
//! - intake: messages sent on Synapse as fast as it takes them, until all are read on Sori;
//!   and, without Synapse's pace, signed PDUs from a stand-in server in transactions of 50;
//! - joins: a user of each server joining a room of the other that holds 1,000 messages.
//!
//! ```sh
//! cargo build --release --bin sori && cargo build -p spec-tests --bin federation-bench
//! SPEC_SORI_BIN=$CARGO_TARGET_DIR/release/sori \
//! SPEC_SYNAPSE_PYTHON=spec-tests/services/synapse/.venv/bin/python \
//!   $CARGO_TARGET_DIR/debug/federation-bench --messages 500 --history 1000
//! ```

use std::time::{Duration, Instant};

use ruma::RoomVersionId;
use serde_json::{Value, json};
use spec_tests::remote::RemoteServer;
use spec_tests::synapse::{Synapse, SynapseUser};
use spec_tests::{ServerOptions, StatusCode, TestServer, User, create_room, register};

struct Options {
    /// Messages timed one by one for the send latency.
    latency: usize,
    /// Messages sent on Synapse for the intake.
    messages: usize,
    /// Messages in the rooms joined for the join times.
    history: usize,
}

fn options() -> Options {
    let mut options = Options {
        latency: 100,
        messages: 500,
        history: 1000,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair
            .get(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{} needs a number", pair[0]));
        match pair[0].as_str() {
            "--latency" => options.latency = value,
            "--messages" => options.messages = value,
            "--history" => options.history = value,
            other => panic!("unknown option {other} (--latency, --messages, --history)"),
        }
    }
    options
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

async fn synapse_call(
    synapse: &Synapse,
    user: &SynapseUser,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Value {
    let (status, answer) = synapse
        .request(method, path, Some(&user.access_token), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    answer
}

/// Synapse's `/sync` from `since` until an event with `body` shows in `room`; the next token.
async fn synapse_waits_for(
    synapse: &Synapse,
    user: &SynapseUser,
    room: &str,
    since: &str,
    body: &str,
) -> String {
    let mut since = since.to_owned();
    loop {
        let sync = synapse_call(
            synapse,
            user,
            reqwest::Method::GET,
            &format!("/_matrix/client/v3/sync?timeout=10000&since={since}"),
            None,
        )
        .await;
        since = sync["next_batch"].as_str().unwrap().to_owned();
        let events = &sync["rooms"]["join"][room]["timeline"]["events"];
        if events
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e["content"]["body"] == body))
        {
            return since;
        }
    }
}

async fn synapse_room(synapse: &Synapse, bob: &SynapseUser, name: &str) -> String {
    let created = synapse_call(
        synapse,
        bob,
        reqwest::Method::POST,
        "/_matrix/client/v3/createRoom",
        Some(&json!({"preset": "public_chat", "name": name})),
    )
    .await;
    created["room_id"].as_str().unwrap().to_owned()
}

async fn synapse_sends(synapse: &Synapse, bob: &SynapseUser, room: &str, txn: &str, body: &str) {
    synapse_call(
        synapse,
        bob,
        reqwest::Method::PUT,
        &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
        Some(&json!({"msgtype": "m.text", "body": body})),
    )
    .await;
}

async fn sori_joins(sori: &TestServer, alice: &User, room: &str, via: &str) -> Duration {
    let started = Instant::now();
    let (status, joined) = sori
        .post(
            &format!("/_matrix/client/v3/join/{room}?via={via}"),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    started.elapsed()
}

async fn synapse_joins(synapse: &Synapse, bob: &SynapseUser, room: &str, via: &str) -> Duration {
    let started = Instant::now();
    synapse_call(
        synapse,
        bob,
        reqwest::Method::POST,
        &format!("/_matrix/client/v3/join/{room}?server_name={via}"),
        Some(&json!({})),
    )
    .await;
    started.elapsed()
}

fn encode(id: &str) -> String {
    id.replace('@', "%40")
        .replace(':', "%3A")
        .replace('$', "%24")
        .replace('!', "%21")
}

/// Sori's own intake, without Synapse's pace: a stand-in server joins a room of Sori's, then
/// sends `messages` signed PDUs in transactions of 50, one transaction after another. The
/// time until the last transaction is answered, in seconds.
async fn stand_in_intake(sori: &TestServer, alice: &User, messages: usize) -> f64 {
    let remote = RemoteServer::start().await;
    let room = create_room(sori, alice, json!({"preset": "public_chat"})).await;
    let bob = remote.user("bob");
    let (status, made) = remote
        .get(
            sori,
            &format!(
                "/_matrix/federation/v1/make_join/{}/{}?ver=10&ver=11&ver=12",
                encode(&room),
                encode(&bob)
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let version = RoomVersionId::try_from(made["room_version"].as_str().unwrap()).unwrap();
    let mut join = made["event"].clone();
    join["origin"] = json!(remote.server_name);
    let join_id = remote.sign_event(&mut join, &version);
    let (status, joined) = remote
        .request(
            sori,
            reqwest::Method::PUT,
            &format!(
                "/_matrix/federation/v2/send_join/{}/{}",
                encode(&room),
                encode(&join_id)
            ),
            Some(&join),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let id_of = |kind: &str| {
        joined["state"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == kind)
            .map(|e| RemoteServer::event_id(e, &version))
            .unwrap()
    };
    let mut auth_events = vec![id_of("m.room.power_levels"), join_id.clone()];
    if !version
        .rules()
        .unwrap()
        .authorization
        .room_create_event_id_as_room_id
    {
        auth_events.push(id_of("m.room.create"));
    }
    // Signed beforehand, so that only Sori's work is timed.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (mut prev, mut depth) = (join_id, join["depth"].as_u64().unwrap());
    let mut pdus = Vec::with_capacity(messages);
    for i in 0..messages {
        depth += 1;
        let mut event = json!({
            "type": "m.room.message", "room_id": room, "sender": bob,
            "content": {"msgtype": "m.text", "body": format!("stand-in {i}")},
            "prev_events": [prev], "auth_events": auth_events, "depth": depth,
            "origin_server_ts": now + i as u64, "origin": remote.server_name,
        });
        prev = remote.sign_event(&mut event, &version);
        pdus.push(event);
    }
    let started = Instant::now();
    for (n, chunk) in pdus.chunks(50).enumerate() {
        let (status, answer) = remote
            .send_transaction(sori, &format!("bench{n}"), chunk)
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let refused = answer["pdus"].as_object().map_or(0, |results| {
            results
                .values()
                .filter(|r| r.get("error").is_some())
                .count()
        });
        assert_eq!(refused, 0, "{answer}");
    }
    started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let options = options();
    let (sori, synapse) = tokio::join!(
        TestServer::start_with(ServerOptions {
            federation: true,
            ..Default::default()
        }),
        Synapse::start()
    );
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;

    eprintln!("servers up; send latency");
    // Send latency, Sori → Synapse: one message at a time, each waited for.
    let room = create_room(&sori, &alice, json!({"preset": "public_chat"})).await;
    synapse_joins(&synapse, &bob, &room, &sori.server_name).await;
    let mut since = synapse_call(
        &synapse,
        &bob,
        reqwest::Method::GET,
        "/_matrix/client/v3/sync?timeout=0",
        None,
    )
    .await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut latencies = Vec::new();
    for i in 0..options.latency {
        let body = format!("latency {i}");
        let started = Instant::now();
        let (status, sent) =
            spec_tests::send_text(&sori, &alice, &room, &format!("l{i}"), &body).await;
        assert_eq!(status, StatusCode::OK, "{sent}");
        since = synapse_waits_for(&synapse, &bob, &room, &since, &body).await;
        latencies.push(started.elapsed());
    }
    latencies.sort();

    eprintln!("intake");
    // Intake, Synapse → Sori: Synapse sends as fast as it takes messages (4 at a time).
    let intake_room = synapse_room(&synapse, &bob, "intake").await;
    sori_joins(&sori, &alice, &intake_room, &synapse.server_name).await;
    // Every message of a sync, however many arrived since the last.
    let filter = "filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A1000%7D%7D%7D";
    let mut since = spec_tests::sync(&sori, &alice, "timeout=0").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = Instant::now();
    let chunks: Vec<Vec<usize>> = (0..options.messages)
        .collect::<Vec<_>>()
        .chunks(options.messages.div_ceil(4).max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let senders = chunks.iter().map(|chunk| {
        let (synapse, bob, room) = (&synapse, &bob, &intake_room);
        async move {
            for i in chunk {
                synapse_sends(synapse, bob, room, &format!("i{i}"), &format!("intake {i}")).await;
            }
        }
    });
    futures_util::future::join_all(senders).await;
    let sent_in = started.elapsed();
    // Woken by each sync, counted in the room's history (a sync carries at most 100 events).
    let mut seen = 0;
    while seen < options.messages {
        let query = format!("timeout=10000&{filter}&since={since}");
        let sync = spec_tests::sync(&sori, &alice, &query).await;
        since = sync["next_batch"].as_str().unwrap().to_owned();
        let (status, page) = sori
            .get(
                &format!("/_matrix/client/v3/rooms/{intake_room}/messages?dir=b&limit=1000"),
                alice.token(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen = spec_tests::bodies(&page)
            .iter()
            .filter(|b| b.starts_with("intake "))
            .count();
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {seen} of {} arrived; Sori refused:\n{}",
            options.messages,
            sori.log()
                .lines()
                .filter(|line| line.contains("refused"))
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let received_in = started.elapsed();

    eprintln!("stand-in intake");
    let stand_in_s = stand_in_intake(&sori, &alice, options.messages).await;
    eprintln!("joins");
    // Joins of rooms with history, both ways.
    let sori_room = create_room(&sori, &alice, json!({"preset": "public_chat"})).await;
    for i in 0..options.history {
        spec_tests::send_text(&sori, &alice, &sori_room, &format!("h{i}"), "history").await;
    }
    let synapse_joined = synapse_joins(&synapse, &bob, &sori_room, &sori.server_name).await;
    let synapse_history = synapse_room(&synapse, &bob, "history").await;
    for i in 0..options.history {
        synapse_sends(
            &synapse,
            &bob,
            &synapse_history,
            &format!("h{i}"),
            "history",
        )
        .await;
    }
    let sori_joined = sori_joins(&sori, &alice, &synapse_history, &synapse.server_name).await;

    let figures = json!({
        "send_latency_ms": {
            "p50": percentile(&latencies, 0.50),
            "p95": percentile(&latencies, 0.95),
            "max": percentile(&latencies, 1.0),
            "messages": latencies.len(),
        },
        "intake": {
            "messages": options.messages,
            "synapse_sent_s": sent_in.as_secs_f64(),
            "sori_received_s": received_in.as_secs_f64(),
            "pdus_per_s": options.messages as f64 / received_in.as_secs_f64(),
            "stand_in_s": stand_in_s,
            "stand_in_pdus_per_s": options.messages as f64 / stand_in_s,
        },
        "join_ms": {
            "history": options.history,
            "synapse_joins_sori_room": synapse_joined.as_secs_f64() * 1000.0,
            "sori_joins_synapse_room": sori_joined.as_secs_f64() * 1000.0,
        },
    });
    println!(
        "send latency Sori → Synapse ({} messages): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.95),
        percentile(&latencies, 1.0)
    );
    println!(
        "intake Synapse → Sori: {} messages sent by Synapse in {:.2} s, all read on Sori after \
         {:.2} s: {:.0} PDUs/s",
        options.messages,
        sent_in.as_secs_f64(),
        received_in.as_secs_f64(),
        options.messages as f64 / received_in.as_secs_f64()
    );
    println!(
        "intake from a stand-in server, transactions of 50 back to back: {} PDUs in {:.2} s: \
         {:.0} PDUs/s",
        options.messages,
        stand_in_s,
        options.messages as f64 / stand_in_s
    );
    println!(
        "join of a room with {} messages: Synapse user into Sori's {:.0} ms, Sori user into \
         Synapse's {:.0} ms",
        options.history,
        synapse_joined.as_secs_f64() * 1000.0,
        sori_joined.as_secs_f64() * 1000.0
    );
    println!("{figures}");
}

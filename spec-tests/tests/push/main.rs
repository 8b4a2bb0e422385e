//! Push notifications over HTTP: the pushers API and its bad input, what reaches a push
//! gateway (a recording gateway on loopback) for which events and with which counts, badge
//! updates on read, `/notifications`, and delivery through gateway failures and restarts.

mod api;
mod delivery;
mod reliability;

use std::time::Duration;

use serde_json::{Value, json};
use spec_tests::gateway::Gateway;
use spec_tests::{ServerOptions, StatusCode, TestServer, User, create_room, join, send_text};

/// Long enough for any delivery the tests wait for.
const WAIT: Duration = Duration::from_secs(20);

/// A server whose outbound guard lets requests reach loopback gateways.
async fn pushing_server() -> TestServer {
    TestServer::start_with(ServerOptions {
        extra_toml: "[outbound]\nip_range_whitelist = [\"127.0.0.1/32\"]\n".into(),
        ..Default::default()
    })
    .await
}

/// The body of a `POST /pushers/set` for an http pusher.
fn pusher(url: &str, pushkey: &str, extra_data: Value) -> Value {
    let mut data = json!({"url": url});
    if let (Some(data), Some(extra)) = (data.as_object_mut(), extra_data.as_object()) {
        data.extend(extra.clone());
    }
    json!({
        "kind": "http",
        "app_id": "io.sori.test",
        "app_display_name": "Sori Test",
        "device_display_name": "Test phone",
        "pushkey": pushkey,
        "lang": "ko",
        "data": data,
    })
}

async fn set_pusher(server: &TestServer, user: &User, body: &Value) -> (StatusCode, Value) {
    server
        .post("/_matrix/client/v3/pushers/set", user.token(), body)
        .await
}

/// Sets a pusher and asserts it was accepted.
async fn add_pusher(server: &TestServer, user: &User, url: &str, pushkey: &str) {
    let result = set_pusher(server, user, &pusher(url, pushkey, json!({}))).await;
    assert_eq!(result.0, StatusCode::OK, "{}", result.1);
}

/// The user's pushers.
async fn pushers(server: &TestServer, user: &User) -> Vec<Value> {
    let (status, body) = server.get("/_matrix/client/v3/pushers", user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["pushers"].as_array().unwrap().clone()
}

/// A room `creator` made (named `name`) that `others` joined.
async fn room(server: &TestServer, creator: &User, others: &[&User], name: &str) -> String {
    let room = create_room(
        server,
        creator,
        json!({"preset": "public_chat", "name": name}),
    )
    .await;
    for user in others {
        join(server, user, &room).await;
    }
    room
}

/// Sends a message and returns its event id.
async fn send(server: &TestServer, user: &User, room: &str, txn: &str, body: &str) -> String {
    let (status, response) = send_text(server, user, room, txn, body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    response["event_id"].as_str().unwrap().to_owned()
}

/// Sends an event of any type and returns its event id.
async fn send_event(
    server: &TestServer,
    user: &User,
    room: &str,
    kind: &str,
    txn: &str,
    content: &Value,
) -> String {
    let (status, response) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/{kind}/{txn}"),
            user.token(),
            content,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{response}");
    response["event_id"].as_str().unwrap().to_owned()
}

/// The event notifications (not badge updates) a gateway accepted.
fn event_notifications(gateway: &Gateway) -> Vec<Value> {
    gateway
        .accepted()
        .into_iter()
        .filter(|n| n.get("event_id").is_some())
        .collect()
}

/// Waits until the gateway accepted `n` event notifications; returns them.
async fn wait_events(gateway: &Gateway, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let events = event_notifications(gateway);
        if events.len() >= n {
            return events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} event notifications arrived: {:#?}",
            events.len(),
            gateway.requests()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

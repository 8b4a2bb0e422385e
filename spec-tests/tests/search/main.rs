//! Message search (`POST /_matrix/client/v3/search`) over HTTP against the embedded backend:
//! Korean recall and precision on a corpus, the spec's request and response shape, what a
//! searcher may see, bad input, and an index that survives kill -9.

mod api;
mod corpus;
mod durability;
mod meilisearch;
mod visibility;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spec_tests::{StatusCode, TestServer, User, send_text};

/// `POST /search` as the user.
async fn search(server: &TestServer, user: &User, body: &Value) -> (StatusCode, Value) {
    server
        .post("/_matrix/client/v3/search", user.token(), body)
        .await
}

/// The `room_events` results of a search for `term` (recent first), asserting success.
async fn search_term(server: &TestServer, user: &User, term: &str) -> Value {
    let (status, body) = search(
        server,
        user,
        &json!({"search_categories": {"room_events": {
            "search_term": term, "order_by": "recent", "filter": {"limit": 100}
        }}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "search {term}: {body}");
    body["search_categories"]["room_events"].clone()
}

/// The bodies of the results of a search.
fn result_bodies(room_events: &Value) -> Vec<String> {
    // An empty list is left out of the response.
    room_events["results"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| r["result"]["content"]["body"].as_str().unwrap().to_owned())
        .collect()
}

/// Sends a message and returns its event id.
async fn send(server: &TestServer, user: &User, room: &str, txn: &str, body: &str) -> String {
    let (status, response) = send_text(server, user, room, txn, body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    response["event_id"].as_str().unwrap().to_owned()
}

/// Waits until a search for `term` counts `n` results: indexing runs behind the send.
async fn wait_indexed(server: &TestServer, user: &User, term: &str, n: u64) -> Value {
    eventually(
        server,
        user,
        term,
        |found| found["count"] == n,
        &format!("{n} hits"),
    )
    .await
}

/// Waits until a search for `term` shows exactly these bodies (newest first).
async fn wait_for_bodies(server: &TestServer, user: &User, term: &str, bodies: &[&str]) -> Value {
    eventually(
        server,
        user,
        term,
        |found| result_bodies(found) == bodies,
        &format!("{bodies:?}"),
    )
    .await
}

async fn eventually(
    server: &TestServer,
    user: &User,
    term: &str,
    done: impl Fn(&Value) -> bool,
    what: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = search_term(server, user, term).await;
        if done(&found) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "a search for {term} never gave {what}: count {}, bodies {:?}",
            found["count"],
            result_bodies(&found)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

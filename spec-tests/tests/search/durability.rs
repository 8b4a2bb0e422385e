//! The index is fed from a durable outbox: kill -9 while indexing loses and duplicates
//! nothing, and `sori search reindex` rebuilds it from the timeline.

use std::collections::BTreeSet;

use serde_json::json;
use spec_tests::{TestServer, create_room, register};

use super::{search_term, send, wait_indexed};

#[tokio::test]
async fn a_kill_during_indexing_loses_and_duplicates_nothing() {
    let mut server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    let mut sent = BTreeSet::new();
    for round in 0..3 {
        for i in 0..40 {
            let id = send(
                &server,
                &alice,
                &room,
                &format!("{round}-{i}"),
                &format!("장애 보고 {round}-{i}"),
            )
            .await;
            sent.insert(id);
        }
        // Killed while the indexer is (most likely) still at work on the round.
        server.restart().await;
    }
    let n = sent.len() as u64;
    wait_indexed(&server, &alice, "장애", n).await;
    let mut found = BTreeSet::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            Some(token) => format!("/_matrix/client/v3/search?next_batch={token}"),
            None => "/_matrix/client/v3/search".to_owned(),
        };
        let (_, body) = server
            .post(
                &path,
                alice.token(),
                &json!({"search_categories": {"room_events": {
                    "search_term": "장애 보고", "filter": {"limit": 50}
                }}}),
            )
            .await;
        let events = &body["search_categories"]["room_events"];
        assert_eq!(
            events["count"], n,
            "every event indexed exactly once: {events}"
        );
        for result in events["results"].as_array().unwrap() {
            let id = result["result"]["event_id"].as_str().unwrap().to_owned();
            assert!(found.insert(id), "an event was found twice");
        }
        match events["next_batch"].as_str() {
            Some(token) => next = Some(token.to_owned()),
            None => break,
        }
    }
    assert_eq!(found, sent);
}

#[tokio::test]
async fn reindex_rebuilds_the_index_from_the_timeline() {
    let mut server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = create_room(&server, &alice, json!({"name": "재색인 테스트"})).await;
    for i in 0..30 {
        send(
            &server,
            &alice,
            &room,
            &format!("{i}"),
            &format!("색인 메시지 {i}"),
        )
        .await;
    }
    let redacted = send(&server, &alice, &room, "r", "색인 지울 메시지").await;
    // The room's name says 색인 too.
    wait_indexed(&server, &alice, "색인", 32).await;
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/redact/{redacted}/x"),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, spec_tests::StatusCode::OK);
    wait_indexed(&server, &alice, "색인", 31).await;
    // Lose the index altogether, then rebuild it offline.
    let index = server.data_dir().join("search");
    server
        .stop_for(|| std::fs::remove_dir_all(&index).unwrap())
        .await;
    let output = server.run_offline(&["search", "reindex"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // 32 searchable events here, and the admin room's name and topic.
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("reindexed 34 events"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let found = search_term(&server, &alice, "색인").await;
    assert_eq!(found["count"], 31, "{}", found["count"]);
    assert_eq!(search_term(&server, &alice, "재색인").await["count"], 1);
}

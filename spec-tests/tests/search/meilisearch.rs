//! The Meilisearch backend, against a stand-in of Meilisearch's API (see
//! `spec-tests/services/meilisearch_standin.py`): settings applied at start, visibility,
//! pagination, redactions, and an outage that loses nothing.

use std::collections::BTreeSet;

use serde_json::json;
use spec_tests::services::Meilisearch;
use spec_tests::{ServerOptions, StatusCode, TestServer, create_room, join, register};

use super::{result_bodies, search, search_term, send, wait_for_bodies, wait_indexed};

async fn server_on(meili: &Meilisearch) -> TestServer {
    TestServer::start_with(ServerOptions {
        extra_toml: meili.search_toml(),
        ..ServerOptions::default()
    })
    .await
}

#[tokio::test]
async fn meilisearch_backend_indexes_searches_pages_and_removes() {
    let meili = Meilisearch::start();
    let server = server_on(&meili).await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let shared = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    let private = create_room(&server, &bob, json!({"preset": "private_chat"})).await;
    join(&server, &bob, &shared).await;
    let mut sent = Vec::new();
    for i in 0..12 {
        sent.push(
            send(
                &server,
                &alice,
                &shared,
                &format!("a{i}"),
                &format!("배포 공지 {i}"),
            )
            .await,
        );
    }
    send(&server, &bob, &private, "b", "비밀 배포").await;
    wait_indexed(&server, &bob, "배포", 13).await;

    // The index was set up at start with what Sori filters and sorts on.
    let (status, settings) = meili.get("/indexes/test_events/settings");
    assert_eq!(status, 200, "{settings}");
    for attribute in ["room_id", "sender", "count"] {
        assert!(
            settings["filterableAttributes"]
                .as_array()
                .unwrap()
                .contains(&json!(attribute)),
            "{settings}"
        );
    }
    assert_eq!(settings["sortableAttributes"], json!(["count"]));

    // Alice sees only the shared room; every hit once, in either order.
    for order in ["recent", "rank"] {
        let mut seen = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let path = match &next {
                Some(token) => format!("/_matrix/client/v3/search?next_batch={token}"),
                None => "/_matrix/client/v3/search".to_owned(),
            };
            let (status, body) = server
                .post(
                    &path,
                    alice.token(),
                    &json!({"search_categories": {"room_events": {
                        "search_term": "배포", "order_by": order, "filter": {"limit": 5}
                    }}}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let events = &body["search_categories"]["room_events"];
            for result in events["results"].as_array().unwrap() {
                assert_eq!(result["result"]["room_id"], shared.as_str());
                seen.push(result["result"]["event_id"].as_str().unwrap().to_owned());
            }
            match events["next_batch"].as_str() {
                Some(token) => next = Some(token.to_owned()),
                None => break,
            }
        }
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!((seen.len(), unique.len()), (12, 12), "{order}");
        if order == "recent" {
            let mut newest_first = sent.clone();
            newest_first.reverse();
            assert_eq!(seen, newest_first);
        }
    }
    // Filters reach Meilisearch as filter expressions.
    let (_, body) = search(
        &server,
        &bob,
        &json!({"search_categories": {"room_events": {
            "search_term": "배포", "filter": {"senders": ["@bob:localhost"]}
        }}}),
    )
    .await;
    assert_eq!(
        result_bodies(&body["search_categories"]["room_events"]),
        vec!["비밀 배포"]
    );

    // A redaction removes the document.
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{private}/redact/{}/r", {
                let found = search_term(&server, &bob, "비밀").await;
                found["results"][0]["result"]["event_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            }),
            bob.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_indexed(&server, &bob, "비밀", 0).await;
}

#[tokio::test]
async fn an_outage_of_meilisearch_or_a_kill_of_sori_loses_nothing() {
    let mut meili = Meilisearch::start();
    let mut server = server_on(&meili).await;
    let alice = register(&server, "alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    send(&server, &alice, &room, "0", "장애 전 메시지").await;
    wait_indexed(&server, &alice, "장애", 1).await;

    meili.stop();
    let mut sent = BTreeSet::new();
    for i in 0..20 {
        sent.insert(
            send(
                &server,
                &alice,
                &room,
                &format!("m{i}"),
                &format!("장애 중 메시지 {i}"),
            )
            .await,
        );
    }
    // Sori itself dies too while the backend is away; the outbox keeps the work.
    server.restart().await;
    meili.resume();
    let found = wait_indexed(&server, &alice, "장애", 21).await;
    assert_eq!(found["count"], 21);
    let (_, body) = search(
        &server,
        &alice,
        &json!({"search_categories": {"room_events": {
            "search_term": "장애 중", "filter": {"limit": 100}
        }}}),
    )
    .await;
    let ids: BTreeSet<String> = body["search_categories"]["room_events"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"]["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, sent);
    wait_for_bodies(&server, &alice, "전", &["장애 전 메시지"]).await;
}

//! The request and response shape of `/search`: ordering and pagination, context, profiles,
//! state, groups, highlights, filters, files, and bad input.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use spec_tests::{StatusCode, TestServer, assert_error, create_room, join, register};

use super::{result_bodies, search, search_term, send, wait_indexed};

#[tokio::test]
async fn results_carry_context_profiles_state_groups_and_highlights() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = create_room(
        &server,
        &alice,
        json!({"preset": "public_chat", "name": "개발팀", "topic": "배포 일정과 회의"}),
    )
    .await;
    send(&server, &alice, &room, "1", "안녕하세요").await;
    let hit = send(&server, &alice, &room, "2", "오늘 회의는 3시에 합니다").await;
    send(&server, &alice, &room, "3", "네 알겠습니다").await;
    wait_indexed(&server, &alice, "회의", 2).await;

    let (status, body) = search(
        &server,
        &alice,
        &json!({"search_categories": {"room_events": {
            "search_term": "회의",
            "keys": ["content.body"],
            "order_by": "recent",
            "event_context": {"before_limit": 1, "after_limit": 1, "include_profile": true},
            "include_state": true,
            "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]}
        }}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = &body["search_categories"]["room_events"];
    // Only content.body was asked for: the topic's "회의" is not a hit.
    assert_eq!(events["count"], 1, "{events}");
    let result = &events["results"][0];
    assert_eq!(result["result"]["event_id"], hit.as_str());
    assert_eq!(result["result"]["room_id"], room.as_str());
    let context = &result["context"];
    assert_eq!(context["events_before"][0]["content"]["body"], "안녕하세요");
    assert_eq!(
        context["events_after"][0]["content"]["body"],
        "네 알겠습니다"
    );
    assert!(
        context["start"].is_string() && context["end"].is_string(),
        "{context}"
    );
    assert_eq!(
        context["profile_info"]["@alice:localhost"]["displayname"],
        "alice"
    );
    assert_eq!(events["highlights"], json!(["회의는"]));
    let state = events["state"][&room].as_array().unwrap();
    assert!(
        state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "개발팀")
    );
    assert_eq!(events["groups"]["room_id"][&room]["results"], json!([hit]));
    assert_eq!(events["groups"]["sender"]["@alice:localhost"]["order"], 1);
    assert!(events.get("next_batch").is_none(), "{events}");

    // The room's name and topic are searchable under their own keys.
    let (_, body) = search(
        &server,
        &alice,
        &json!({"search_categories": {"room_events": {
            "search_term": "개발", "keys": ["content.name", "content.topic"]
        }}}),
    )
    .await;
    let results = &body["search_categories"]["room_events"]["results"];
    assert_eq!(results.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(results[0]["result"]["type"], "m.room.name");
    // Without event_context, no context.
    let found = search_term(&server, &alice, "회의는").await;
    assert!(found["results"][0].get("context").is_none(), "{found}");
}

/// Every page of a search, following next_batch; the event ids in order.
async fn every_page(server: &TestServer, user: &spec_tests::User, order: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..50 {
        let mut path = "/_matrix/client/v3/search".to_owned();
        if let Some(token) = &next {
            path.push_str(&format!("?next_batch={token}"));
        }
        let (status, body) = server
            .post(
                &path,
                user.token(),
                &json!({"search_categories": {"room_events": {
                    "search_term": "배포", "order_by": order, "filter": {"limit": 4}
                }}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let events = &body["search_categories"]["room_events"];
        assert_eq!(events["count"], 25);
        for result in events["results"].as_array().unwrap() {
            seen.push(result["result"]["event_id"].as_str().unwrap().to_owned());
        }
        match events["next_batch"].as_str() {
            Some(token) => next = Some(token.to_owned()),
            None => return seen,
        }
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn pages_through_every_hit_in_rank_and_recent_order() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    let mut sent = Vec::new();
    for i in 0..25 {
        // Different lengths and repetitions: ranks differ, and many tie.
        let body = match i % 3 {
            0 => format!("배포 {i}"),
            1 => format!("배포 배포 확인 {i}"),
            _ => format!("오늘 저녁 서버 배포를 진행합니다 {i}"),
        };
        sent.push(send(&server, &alice, &room, &format!("t{i}"), &body).await);
    }
    wait_indexed(&server, &alice, "배포", 25).await;
    let recent = every_page(&server, &alice, "recent").await;
    let mut newest_first = sent.clone();
    newest_first.reverse();
    assert_eq!(recent, newest_first);

    let ranked = every_page(&server, &alice, "rank").await;
    assert_eq!(ranked.len(), 25, "more than Synapse's 10, every hit once");
    let unique: BTreeSet<&String> = ranked.iter().collect();
    assert_eq!(unique.len(), 25, "a page repeated a hit");
    // Ranks descend across pages.
    let (_, body) = search(
        &server,
        &alice,
        &json!({"search_categories": {"room_events": {
            "search_term": "배포", "filter": {"limit": 100}
        }}}),
    )
    .await;
    let ranks: Vec<f64> = body["search_categories"]["room_events"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rank"].as_f64().unwrap())
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "{ranks:?}");
    let all_at_once: Vec<String> = body["search_categories"]["room_events"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"]["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ranked, all_at_once);
}

#[tokio::test]
async fn filters_narrow_results_and_files_are_found_by_name() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let first = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    let second = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    join(&server, &bob, &first).await;
    send(&server, &alice, &first, "1", "공지: 보안 점검").await;
    send(&server, &bob, &first, "2", "보안 점검 언제예요?").await;
    send(&server, &alice, &second, "3", "보안 교육").await;
    let (status, file) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{second}/send/m.room.message/4"),
            alice.token(),
            &json!({"msgtype": "m.file", "body": "계약서 보내드립니다",
                    "filename": "2026_보안서약서.pdf", "url": "mxc://localhost/abc"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{file}");
    wait_indexed(&server, &alice, "보안", 4).await;

    let filtered = |filter: Value| {
        let server = &server;
        let alice = &alice;
        async move {
            let (status, body) = search(
                server,
                alice,
                &json!({"search_categories": {"room_events": {
                    "search_term": "보안", "order_by": "recent", "filter": filter
                }}}),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let events = body["search_categories"]["room_events"].clone();
            let mut bodies = super::result_bodies(&events);
            bodies.sort();
            bodies
        }
    };
    assert_eq!(
        filtered(json!({"rooms": [first]})).await,
        vec!["공지: 보안 점검", "보안 점검 언제예요?"]
    );
    assert_eq!(
        filtered(json!({"not_rooms": [first]})).await,
        vec!["계약서 보내드립니다", "보안 교육"]
    );
    assert_eq!(
        filtered(json!({"senders": ["@bob:localhost"]})).await,
        vec!["보안 점검 언제예요?"]
    );
    assert_eq!(
        filtered(json!({"not_senders": ["@alice:localhost"]}))
            .await
            .len(),
        1
    );
    assert_eq!(
        filtered(json!({"contains_url": true})).await,
        vec!["계약서 보내드립니다"]
    );
    assert_eq!(filtered(json!({"contains_url": false})).await.len(), 3);
    assert_eq!(filtered(json!({"types": ["m.room.*"]})).await.len(), 4);
    assert!(
        filtered(json!({"not_types": ["m.room.message"]}))
            .await
            .is_empty()
    );
    assert!(
        filtered(json!({"rooms": ["!nowhere:localhost"]}))
            .await
            .is_empty()
    );
    // The file is found by its name, which is not in its body.
    let found = search_term(&server, &alice, "서약서").await;
    assert_eq!(result_bodies(&found), vec!["계약서 보내드립니다"]);
    assert_eq!(
        found["results"][0]["result"]["content"]["filename"],
        "2026_보안서약서.pdf"
    );
}

#[tokio::test]
async fn bad_input_gets_matrix_errors_or_empty_results() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    send(&server, &alice, &room, "1", "배포 완료").await;
    wait_indexed(&server, &alice, "배포", 1).await;
    let room_events = |criteria: Value| json!({"search_categories": {"room_events": criteria}});

    // Terms that find nothing, or mean nothing.
    for term in [
        "",
        "   ",
        "\"",
        "*",
        "-",
        "(",
        ":",
        "\\",
        "\" * - ( : \\",
        "AND OR NOT",
    ] {
        let (status, body) =
            search(&server, &alice, &room_events(json!({"search_term": term}))).await;
        assert_eq!(status, StatusCode::OK, "{term}: {body}");
        assert!(
            result_bodies(&body["search_categories"]["room_events"]).is_empty(),
            "{term}"
        );
    }
    // Syntax around a real word still finds it.
    let (_, body) = search(
        &server,
        &alice,
        &room_events(json!({"search_term": "\"배포\"*"})),
    )
    .await;
    assert_eq!(
        body["search_categories"]["room_events"]["count"], 1,
        "{body}"
    );
    // 10 KB terms are refused.
    let long = "배포 ".repeat(2500);
    let result = search(&server, &alice, &room_events(json!({"search_term": long}))).await;
    assert_error(&result, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    // 4 KB of one word is not (it is matched by its beginning).
    let one_word = "배".repeat(1300);
    let (status, _) = search(
        &server,
        &alice,
        &room_events(json!({"search_term": one_word})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Unknown, forged or foreign next_batch tokens.
    for token in ["nonsense", "eyJvcmRlciI6IlJhbmsifQ", "%00%01"] {
        let result = server
            .post(
                &format!("/_matrix/client/v3/search?next_batch={token}"),
                alice.token(),
                &room_events(json!({"search_term": "배포"})),
            )
            .await;
        assert_error(&result, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    // Limits: 0 and huge are brought into range; negative is not JSON the spec allows.
    for limit in [0, 1, 1_000_000] {
        let (status, body) = search(
            &server,
            &alice,
            &room_events(json!({"search_term": "배포", "filter": {"limit": limit}})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{limit}: {body}");
        assert_eq!(
            body["search_categories"]["room_events"]["results"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
    let result = search(
        &server,
        &alice,
        &room_events(json!({"search_term": "배포", "filter": {"limit": -5}})),
    )
    .await;
    assert_error(&result, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    // Unknown keys and orders.
    let result = search(
        &server,
        &alice,
        &room_events(json!({"search_term": "배포", "keys": ["content.secret"]})),
    )
    .await;
    assert_error(&result, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    // An unknown category is no category: nothing to search.
    let (status, body) = search(
        &server,
        &alice,
        &json!({"search_categories": {"people": {"search_term": "배포"}}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A missing search term, and no token at all.
    let result = search(&server, &alice, &room_events(json!({}))).await;
    assert_error(&result, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let result = server
        .post(
            "/_matrix/client/v3/search",
            None,
            &room_events(json!({"search_term": "배포"})),
        )
        .await;
    assert_error(&result, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    // And the message is still there, findable.
    assert_eq!(search_term(&server, &alice, "배포").await["count"], 1);
}

//! `io.sori.read_by`: who of a room's members has read a message, by public receipts and by
//! what they sent themselves.

use serde_json::{Value, json};
use spec_tests::{StatusCode, TestServer, User, assert_error, create_room, join, register};

/// Sends a message and returns its event id.
async fn send(server: &TestServer, user: &User, room: &str, txn: &str, body: &str) -> String {
    let (status, response) = spec_tests::send_text(server, user, room, txn, body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    response["event_id"].as_str().unwrap().to_owned()
}

/// The user ids under `key` (`read` entries are objects, `unread` ones strings), sorted.
fn people(v: &Value, key: &str) -> Vec<String> {
    let mut list: Vec<String> = v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .iter()
        .map(|e| {
            e.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| e["user_id"].as_str().unwrap().to_owned())
        })
        .collect();
    list.sort();
    list
}

#[tokio::test]
async fn read_by_tells_who_has_not_read_yet() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    for user in [&bob, &carol] {
        server
            .post(
                &format!("/_matrix/client/v3/rooms/{room}/join"),
                user.token(),
                &json!({}),
            )
            .await;
    }
    let first = send(&server, &alice, &room, "1", "공지 1").await;
    let second = send(&server, &alice, &room, "2", "공지 2").await;
    let read_by =
        |event: &str| format!("/_matrix/client/unstable/io.sori/rooms/{room}/read_by/{event}");
    let receipt =
        |kind: &str, event: &str| format!("/_matrix/client/v3/rooms/{room}/receipt/{kind}/{event}");

    // Nobody has sent a receipt yet: only alice, who wrote it, has read her message.
    let (status, before) = server.get(&read_by(&first), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert_eq!(people(&before, "read"), vec![alice.user_id.clone()]);
    assert_eq!(
        people(&before, "unread"),
        vec![bob.user_id.clone(), carol.user_id.clone()]
    );

    // Bob read the second message (so the first too); carol reads privately; alice reads the first.
    server
        .post(&receipt("m.read", &second), bob.token(), &json!({}))
        .await;
    server
        .post(
            &receipt("m.read.private", &second),
            carol.token(),
            &json!({}),
        )
        .await;
    server
        .post(&receipt("m.read", &first), alice.token(), &json!({}))
        .await;
    let (_, on_first) = server.get(&read_by(&first), carol.token()).await;
    assert_eq!(
        people(&on_first, "read"),
        vec![alice.user_id.clone(), bob.user_id.clone()]
    );
    assert_eq!(people(&on_first, "unread"), vec![carol.user_id.clone()]);
    assert!(on_first["read"][0]["ts"].as_u64().unwrap() > 0);
    let (_, on_second) = server.get(&read_by(&second), alice.token()).await;
    assert_eq!(
        people(&on_second, "read"),
        vec![alice.user_id.clone(), bob.user_id.clone()]
    );

    // Members who joined later are not counted for earlier messages.
    let dave = register(&server, "dave").await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            dave.token(),
            &json!({}),
        )
        .await;
    let (_, after_dave) = server.get(&read_by(&first), alice.token()).await;
    assert!(!people(&after_dave, "unread").contains(&dave.user_id));

    // Only members may ask; unknown events are not found.
    let eve = register(&server, "eve").await;
    assert_error(
        &server.get(&read_by(&first), eve.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server.get(&read_by("$nope"), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.get(&read_by(&first), None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    let (_, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(versions["unstable_features"]["io.sori.read_by"], true);
}

#[tokio::test]
async fn senders_have_read_their_own_message_and_everything_before_their_next() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    join(&server, &bob, &room).await;
    join(&server, &carol, &room).await;
    let read_by =
        |event: &str| format!("/_matrix/client/unstable/io.sori/rooms/{room}/read_by/{event}");

    let question = send(&server, &alice, &room, "q", "배포했습니까?").await;
    let (_, on_question) = server.get(&read_by(&question), carol.token()).await;
    assert_eq!(people(&on_question, "read"), vec![alice.user_id.clone()]);
    assert_eq!(
        people(&on_question, "unread"),
        vec![bob.user_id.clone(), carol.user_id.clone()],
        "the author is never listed as unread"
    );

    // Bob answers without sending a receipt: he has read the question.
    let answer = send(&server, &bob, &room, "a", "네, 배포했습니다").await;
    let (_, on_question) = server.get(&read_by(&question), carol.token()).await;
    assert_eq!(
        people(&on_question, "read"),
        vec![alice.user_id.clone(), bob.user_id.clone()]
    );
    assert_eq!(people(&on_question, "unread"), vec![carol.user_id.clone()]);
    let (_, on_answer) = server.get(&read_by(&answer), alice.token()).await;
    let answer_ts = on_answer["read"][0]["ts"].as_u64().unwrap();
    assert_eq!(people(&on_answer, "read"), vec![bob.user_id.clone()]);
    assert_eq!(
        people(&on_answer, "unread"),
        vec![alice.user_id.clone(), carol.user_id.clone()],
        "an earlier message says nothing about later ones"
    );
    // Bob read the question when he sent his answer, at the latest.
    let bob_on_question = on_question["read"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["user_id"] == bob.user_id.as_str())
        .unwrap();
    assert_eq!(bob_on_question["ts"].as_u64().unwrap(), answer_ts);

    // Changing one's profile (a member event in every room) is no sign of reading.
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", carol.user_id),
            carol.token(),
            &json!({"displayname": "캐롤"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, on_question) = server.get(&read_by(&question), alice.token()).await;
    assert_eq!(people(&on_question, "unread"), vec![carol.user_id.clone()]);
    send(&server, &carol, &room, "c", "저도요").await;
    let (_, on_question) = server.get(&read_by(&question), alice.token()).await;
    assert!(people(&on_question, "unread").is_empty(), "{on_question}");
}

//! A searcher finds only what `/messages` would show them: their rooms, up to their leave,
//! under each room's history visibility; never redacted or encrypted content.

use serde_json::json;
use spec_tests::{StatusCode, TestServer, create_room, join, register};

use super::{result_bodies, search_term, send, wait_for_bodies, wait_indexed};

#[tokio::test]
async fn other_peoples_rooms_never_and_left_rooms_only_up_to_the_leave() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let shared = create_room(&server, &bob, json!({"preset": "public_chat"})).await;
    let private = create_room(&server, &bob, json!({"preset": "private_chat"})).await;
    join(&server, &alice, &shared).await;
    send(&server, &bob, &shared, "1", "배포 전 공지").await;
    send(&server, &bob, &private, "2", "비밀 배포 계획").await;
    wait_indexed(&server, &bob, "배포", 2).await;
    assert_eq!(
        result_bodies(&search_term(&server, &alice, "배포").await),
        vec!["배포 전 공지"]
    );

    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{shared}/leave"),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    send(&server, &bob, &shared, "3", "배포 후 공지").await;
    wait_indexed(&server, &bob, "배포", 3).await;
    assert_eq!(
        result_bodies(&search_term(&server, &alice, "배포").await),
        vec!["배포 전 공지"]
    );
    // After /forget the room is gone from the user's view, search included.
    let (status, _) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{shared}/forget"),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(result_bodies(&search_term(&server, &alice, "배포").await).is_empty());
}

#[tokio::test]
async fn history_visibility_decides_what_came_before_the_searcher() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    for (n, visibility, expected) in [
        (0, "joined", vec!["일정 C"]),
        (1, "invited", vec!["일정 C", "일정 B"]),
        (2, "shared", vec!["일정 C", "일정 B", "일정 A"]),
    ] {
        let room = create_room(
            &server,
            &bob,
            json!({"preset": "private_chat", "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": {"history_visibility": visibility}
            }]}),
        )
        .await;
        send(&server, &bob, &room, &format!("{n}a"), "일정 A").await;
        let (status, body) = server
            .post(
                &format!("/_matrix/client/v3/rooms/{room}/invite"),
                bob.token(),
                &json!({"user_id": "@alice:localhost"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        send(&server, &bob, &room, &format!("{n}b"), "일정 B").await;
        join(&server, &alice, &room).await;
        send(&server, &bob, &room, &format!("{n}c"), "일정 C").await;
        wait_indexed(&server, &bob, "일정", 3 * (n + 1)).await;
        let found = search_term(&server, &alice, "일정").await;
        let in_room: Vec<String> = found["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["result"]["room_id"] == room.as_str())
            .map(|r| r["result"]["content"]["body"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(in_room, expected, "history_visibility {visibility}");
    }
}

#[tokio::test]
async fn redacted_and_encrypted_messages_are_not_found() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    let secret = send(&server, &alice, &room, "1", "서버 비밀번호는 hunter2").await;
    wait_indexed(&server, &alice, "비밀번호", 1).await;
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/redact/{secret}/r1"),
            alice.token(),
            &json!({"reason": "실수"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Redacted right after sending, perhaps before it was indexed: never found either.
    let quick = send(&server, &alice, &room, "2", "비밀번호 다시 보냅니다").await;
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/redact/{quick}/r2"),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.encrypted/3"),
            alice.token(),
            &json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "비밀번호",
                    "body": "비밀번호", "sender_key": "k", "session_id": "s", "device_id": "D"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    send(&server, &alice, &room, "4", "비밀번호 말고 다른 이야기").await;
    // Once the last message is found, everything before it was indexed (or removed).
    let found = wait_for_bodies(&server, &alice, "비밀번호", &["비밀번호 말고 다른 이야기"]).await;
    assert_eq!(found["count"], 1, "{found}");
    assert!(result_bodies(&search_term(&server, &alice, "hunter2").await).is_empty());
}

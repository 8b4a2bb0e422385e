//! Rooms shared between two Sori servers: a user of one joins a room of the other (by alias,
//! and by id with `via`), and messages go both ways.

use serde_json::json;

use spec_tests::{StatusCode, TestServer, User, register, send_text};

use super::{federating, public_room};

/// Waits until `user` on `server` reads a message `body` in `room`.
pub(crate) async fn reads(server: &TestServer, user: &User, room: &str, body: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    // Up to a minute: after an outage, the other server's next retry may be that far off.
    for _ in 0..600 {
        let (status, page) = server
            .get(
                &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=20"),
                user.token(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        bodies = spec_tests::bodies(&page);
        if bodies.iter().any(|b| b == body) {
            return bodies;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "{} never read {body:?}: {bodies:?}\n{}",
        user.user_id,
        server.log()
    );
}

#[tokio::test]
async fn a_user_joins_a_room_of_another_sori_and_they_talk() {
    let (a, b) = tokio::join!(federating(""), federating(""));
    let alice = register(&a, "alice").await;
    let bob = register(&b, "bob").await;
    let room = public_room(&a, &alice, "lobby").await;
    send_text(&a, &alice, &room, "t0", "before bob").await;

    // Bob joins by alias: his server asks alice's for the room, then joins through it.
    let (status, joined) = b
        .post(
            &format!(
                "/_matrix/client/v3/join/%23lobby%3A{}",
                a.server_name.replace(':', "%3A")
            ),
            bob.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}\n{}", b.log());
    assert_eq!(joined["room_id"], room);

    // Bob's server knows the room's state: its name, and both members.
    let (status, name) = b
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name"),
            bob.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{name}");
    assert_eq!(name["name"], "The lobby");
    let (status, members) = b
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/joined_members"),
            bob.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{members}");
    assert!(members["joined"].get(&alice.user_id).is_some(), "{members}");
    assert!(members["joined"].get(&bob.user_id).is_some(), "{members}");
    // The room shows in bob's sync with its state.
    let sync = spec_tests::sync(&b, &bob, "").await;
    let joined_room = &sync["rooms"]["join"][&room];
    assert!(joined_room.is_object(), "{sync}");
    let state_types: Vec<&str> = joined_room["state"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            joined_room["timeline"]["events"]
                .as_array()
                .into_iter()
                .flatten(),
        )
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(state_types.contains(&"m.room.name"), "{joined_room}");
    assert!(state_types.contains(&"m.room.create"), "{joined_room}");

    // Alice sees bob join; messages go both ways.
    let (status, member) = a
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{room}/state/m.room.member/{}",
                bob.user_id
            ),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(member["membership"], "join");
    send_text(&a, &alice, &room, "t1", "어서 와요").await;
    reads(&b, &bob, &room, "어서 와요").await;
    send_text(&b, &bob, &room, "t1", "고마워요").await;
    let bodies = reads(&a, &alice, &room, "고마워요").await;
    assert_eq!(
        bodies.first().map(String::as_str),
        Some("고마워요"),
        "{bodies:?}"
    );
    // Once each, in the order they were sent.
    let bodies = reads(&b, &bob, &room, "고마워요").await;
    assert_eq!(
        bodies.iter().filter(|b| *b == "어서 와요").count(),
        1,
        "{bodies:?}"
    );
}

#[tokio::test]
async fn joining_an_unknown_remote_room_says_why() {
    let (a, b) = tokio::join!(federating(""), federating(""));
    let alice = register(&a, "alice").await;
    let bob = register(&b, "bob").await;
    let private = spec_tests::create_room(&a, &alice, json!({"preset": "private_chat"})).await;
    // Invite only, and bob was not invited: alice's server refuses to prepare his join.
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/join/{private}?via={}", a.server_name),
            bob.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    // No other server to ask (a v12 room id names none, and no via): refused as any room
    // bob may not join.
    let (status, body) = b
        .post("/_matrix/client/v3/join/!nowhere", bob.token(), &json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    // A server that does not answer.
    let (status, body) = b
        .post(
            "/_matrix/client/v3/join/!somewhere:127.0.0.1:1",
            bob.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    // An alias no server has.
    let (status, body) = b
        .post(
            &format!(
                "/_matrix/client/v3/join/%23nothing%3A{}",
                a.server_name.replace(':', "%3A")
            ),
            bob.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

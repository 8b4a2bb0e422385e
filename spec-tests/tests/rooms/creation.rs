//! Room creation and upgrades happen whole or not at all: a refused initial event or a kill
//! in the middle leaves no half-built room behind.

use std::time::Duration;

use serde_json::{Value, json};
use spec_tests::{StatusCode, TestServer, User, assert_error, create_room, register};

/// The (type, state key) pairs of a room's current state.
async fn state_keys(server: &TestServer, user: &User, room: &str) -> Vec<(String, String)> {
    let (status, state) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state"),
            user.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{state}");
    let mut keys: Vec<(String, String)> = state
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["state_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    keys.sort();
    keys
}

async fn joined_rooms(server: &TestServer, user: &User) -> Vec<String> {
    let (status, body) = server
        .get("/_matrix/client/v3/joined_rooms", user.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["joined_rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_refused_initial_event_leaves_no_room_and_no_alias() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    // The bad event comes late: after the create, join, power levels, alias, join rules and
    // encryption events were built.
    let (status, body) = server
        .post(
            "/_matrix/client/v3/createRoom",
            alice.token(),
            &json!({
                "name": "절반",
                "room_alias_name": "half",
                "invite": [bob.user_id],
                "initial_state": [
                    {"type": "m.room.history_visibility", "content": {"history_visibility": 5}},
                ],
            }),
        )
        .await;
    assert_error(&(status, body), StatusCode::BAD_REQUEST, "M_BAD_JSON");
    assert!(
        joined_rooms(&server, &alice).await.is_empty(),
        "no room was left behind"
    );
    let (_, bob_sync) = server.get("/_matrix/client/v3/sync", bob.token()).await;
    assert_eq!(bob_sync["rooms"]["invite"], json!({}), "nobody was invited");
    assert_error(
        &server
            .get("/_matrix/client/v3/directory/room/%23half:localhost", None)
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    // The alias is still free.
    create_room(&server, &alice, json!({"room_alias_name": "half"})).await;
}

/// What every room the test creates must hold once it exists at all.
fn expected_state(alice: &User, bob: &User) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = [
        ("m.room.create", ""),
        ("m.room.power_levels", ""),
        ("m.room.canonical_alias", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.guest_access", ""),
        ("m.room.encryption", ""),
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.pinned_events", ""),
    ]
    .iter()
    .map(|(t, k)| (t.to_string(), k.to_string()))
    .collect();
    keys.push(("m.room.member".into(), alice.user_id.clone()));
    keys.push(("m.room.member".into(), bob.user_id.clone()));
    keys.sort();
    keys
}

#[tokio::test]
async fn a_kill_during_room_creation_leaves_whole_rooms_or_none() {
    let mut server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let expected = expected_state(&alice, &bob);
    let mut checked = 0;
    for round in 0..3u64 {
        // Four clients create rooms as fast as they can until the server is killed.
        let creators: Vec<_> = (0..4)
            .map(|client| {
                let http = server.http.clone();
                let url = server.url("/_matrix/client/v3/createRoom");
                let token = alice.access_token.clone();
                let bob = bob.user_id.clone();
                tokio::spawn(async move {
                    for n in 0.. {
                        let body = json!({
                            "name": format!("방 {round}-{client}-{n}"),
                            "topic": "crash test",
                            "room_alias_name": format!("r{round}-{client}-{n}"),
                            "invite": [bob],
                            "initial_state": [
                                {"type": "m.room.pinned_events", "content": {"pinned": []}},
                            ],
                        });
                        let sent = http.post(&url).bearer_auth(&token).json(&body).send().await;
                        if sent.is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300 + 150 * round)).await;
        server.restart().await;
        for creator in creators {
            creator.abort();
        }

        for room in joined_rooms(&server, &alice).await {
            assert_eq!(
                state_keys(&server, &alice, &room).await,
                expected,
                "room {room} is whole after the kill"
            );
            let (_, alias) = server
                .get(
                    &format!("/_matrix/client/v3/rooms/{room}/state/m.room.canonical_alias/"),
                    alice.token(),
                )
                .await;
            let alias = alias["alias"].as_str().unwrap().replace('#', "%23");
            let (status, resolved): (StatusCode, Value) = server
                .get(&format!("/_matrix/client/v3/directory/room/{alias}"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{resolved}");
            assert_eq!(
                resolved["room_id"],
                room.as_str(),
                "the alias names the room"
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "some rooms were created before the kills");
}

#[tokio::test]
async fn an_upgrade_moves_alias_and_directory_entry_with_the_tombstone() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    // Bob may upgrade (tombstone at 50) but not change the power levels (100).
    let room = create_room(
        &server,
        &alice,
        json!({
            "name": "old",
            "room_alias_name": "stays",
            "preset": "public_chat",
            "visibility": "public",
            "power_level_content_override": {
                "events": {"m.room.tombstone": 50, "m.room.power_levels": 100},
                "users": {bob.user_id.as_str(): 50},
            },
        }),
    )
    .await;
    spec_tests::join(&server, &bob, &room).await;
    let before = state_keys(&server, &alice, &room).await;
    let power_before = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"),
            alice.token(),
        )
        .await
        .1;

    // An upgrade to a version this server does not run changes nothing.
    assert_error(
        &server
            .post(
                &format!("/_matrix/client/v3/rooms/{room}/upgrade"),
                bob.token(),
                &json!({"new_version": "9"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_UNSUPPORTED_ROOM_VERSION",
    );
    assert_eq!(state_keys(&server, &alice, &room).await, before);
    assert_eq!(joined_rooms(&server, &bob).await, vec![room.clone()]);

    // Bob's upgrade goes through; the old room's power levels stay as they were, since he
    // may not change them.
    let (status, upgraded) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/upgrade"),
            bob.token(),
            &json!({"new_version": "11"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{upgraded}");
    let new_room = upgraded["replacement_room"].as_str().unwrap();
    let (_, tombstone) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.tombstone/"),
            alice.token(),
        )
        .await;
    assert_eq!(tombstone["replacement_room"], new_room);
    let power_after = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"),
            alice.token(),
        )
        .await
        .1;
    assert_eq!(power_after, power_before);
    let (_, resolved) = server
        .get("/_matrix/client/v3/directory/room/%23stays:localhost", None)
        .await;
    assert_eq!(resolved["room_id"], new_room);
    let (_, listed) = server.get("/_matrix/client/v3/publicRooms", None).await;
    let listed: Vec<&str> = listed["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![new_room]);
}

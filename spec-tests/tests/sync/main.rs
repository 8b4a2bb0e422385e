//! `/sync` over HTTP: first and incremental syncs, the long-poll, and the room sections.

mod filters;
mod invites;
mod read_by;
mod sliding;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spec_tests::{
    StatusCode, TestServer, User, assert_error, bodies, create_room, join, register, send_text,
    sync,
};

/// Sends a message and returns its event id.
async fn send(server: &TestServer, user: &User, room: &str, txn: &str, body: &str) -> String {
    let (status, response) = send_text(server, user, room, txn, body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    response["event_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_first_sync_has_the_rooms_state_and_recent_timeline() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = create_room(
        &server,
        &alice,
        json!({"name": "팀", "preset": "private_chat"}),
    )
    .await;
    for i in 0..15 {
        send(&server, &alice, &room, &format!("t{i}"), &format!("m{i}")).await;
    }
    let first = sync(&server, &alice, "").await;
    assert!(first["next_batch"].is_string());
    let joined = &first["rooms"]["join"][&room];
    let timeline = &joined["timeline"];
    assert_eq!(timeline["limited"], true);
    assert_eq!(
        bodies(&timeline["events"]),
        (5..15).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert!(
        timeline["events"][0].get("room_id").is_none(),
        "sync events carry no room_id"
    );
    let state_types: Vec<&str> = joined["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in [
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.name",
    ] {
        assert!(state_types.contains(&t), "{t} missing: {state_types:?}");
    }
    assert_eq!(joined["summary"]["m.joined_member_count"], 1);
    assert!(
        first["account_data"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.push_rules")
    );

    // prev_batch continues into /messages without overlap.
    let prev = timeline["prev_batch"].as_str().unwrap();
    let (_, older) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100&from={prev}&filter={{\"types\":[\"m.room.message\"]}}"), alice.token()).await;
    assert_eq!(
        bodies(&older["chunk"]),
        (0..5).rev().map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn incremental_syncs_are_exact_and_gaps_fill_from_prev_batch() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            bob.token(),
            &json!({}),
        )
        .await;
    let mut since = sync(&server, &bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // Few messages: all of them, once, in order.
    for i in 0..3 {
        send(
            &server,
            &alice,
            &room,
            &format!("a{i}"),
            &format!("first {i}"),
        )
        .await;
    }
    let next = sync(&server, &bob, &format!("since={since}")).await;
    let timeline = &next["rooms"]["join"][&room]["timeline"];
    assert_eq!(
        bodies(&timeline["events"]),
        vec!["first 0", "first 1", "first 2"]
    );
    assert_eq!(timeline["limited"], false);
    since = next["next_batch"].as_str().unwrap().to_owned();

    // Nothing new: an empty answer after the timeout, with the same position.
    let idle = sync(&server, &bob, &format!("since={since}&timeout=0")).await;
    assert!(
        idle["rooms"]["join"].as_object().unwrap().is_empty(),
        "{idle}"
    );

    // Away while 25 arrive: the newest 10, limited, and /messages from prev_batch fills the gap.
    for i in 0..25 {
        send(
            &server,
            &alice,
            &room,
            &format!("b{i}"),
            &format!("away {i}"),
        )
        .await;
    }
    let back = sync(&server, &bob, &format!("since={since}")).await;
    let timeline = &back["rooms"]["join"][&room]["timeline"];
    assert_eq!(timeline["limited"], true);
    let recent = bodies(&timeline["events"]);
    assert_eq!(
        recent,
        (15..25).map(|i| format!("away {i}")).collect::<Vec<_>>()
    );
    let (_, gap) = server
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100&from={}&to={since}",
                timeline["prev_batch"].as_str().unwrap()
            ),
            bob.token(),
        )
        .await;
    assert_eq!(
        bodies(&gap["chunk"]),
        (0..15)
            .rev()
            .map(|i| format!("away {i}"))
            .collect::<Vec<_>>()
    );

    // A rename while away shows in the state delta.
    since = back["next_batch"].as_str().unwrap().to_owned();
    server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"),
            alice.token(),
            &json!({"name": "renamed"}),
        )
        .await;
    for i in 0..12 {
        send(
            &server,
            &alice,
            &room,
            &format!("c{i}"),
            &format!("after rename {i}"),
        )
        .await;
    }
    let delta = sync(&server, &bob, &format!("since={since}")).await;
    let state = &delta["rooms"]["join"][&room]["state"]["events"];
    assert_eq!(state.as_array().unwrap().len(), 1, "{state}");
    assert_eq!(state[0]["content"]["name"], "renamed");
}

#[tokio::test]
async fn a_long_poll_wakes_on_a_message_and_on_account_data() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            bob.token(),
            &json!({}),
        )
        .await;
    let since = sync(&server, &bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let waiting = {
        let (server, bob, since) = (server.clone(), bob.clone(), since.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let response = sync(&server, &bob, &format!("since={since}&timeout=20000")).await;
            (started.elapsed(), response)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&server, &alice, &room, "wake", "wake up").await;
    let (elapsed, response) = waiting.await.unwrap();
    assert!(
        elapsed < Duration::from_secs(15),
        "the long-poll was not woken ({elapsed:?})"
    );
    assert_eq!(
        bodies(&response["rooms"]["join"][&room]["timeline"]["events"]),
        vec!["wake up"]
    );

    let since = response["next_batch"].as_str().unwrap().to_owned();
    let waiting = {
        let (server, bob) = (server.clone(), bob.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            (
                started.elapsed(),
                sync(&server, &bob, &format!("since={since}&timeout=20000")).await,
                started,
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/account_data/m.direct",
                bob.user_id
            ),
            bob.token(),
            &json!({}),
        )
        .await;
    let (_, response, started) = waiting.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "account data did not wake the long-poll"
    );
    assert_eq!(response["account_data"]["events"][0]["type"], "m.direct");
}

#[tokio::test]
async fn invites_joins_and_kicks_land_in_their_sections() {
    let mut server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(
        &server,
        &alice,
        json!({"preset": "private_chat", "name": "비밀"}),
    )
    .await;
    let since = sync(&server, &bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            alice.token(),
            &json!({"user_id": bob.user_id}),
        )
        .await;
    let invited = sync(&server, &bob, &format!("since={since}")).await;
    let state = &invited["rooms"]["invite"][&room]["invite_state"]["events"];
    let types: Vec<&str> = state
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"m.room.name") && types.contains(&"m.room.member"),
        "{types:?}"
    );
    let since = invited["next_batch"].as_str().unwrap().to_owned();

    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            bob.token(),
            &json!({}),
        )
        .await;
    send(&server, &alice, &room, "hi", "welcome").await;
    let joined = sync(&server, &bob, &format!("since={since}")).await;
    let room_section = &joined["rooms"]["join"][&room];
    assert!(
        bodies(&room_section["timeline"]["events"]).contains(&"welcome".to_owned()),
        "{joined}"
    );
    // A newly joined room comes whole: its create event is in the state or the timeline.
    let all: Vec<&str> = ["state", "timeline"]
        .iter()
        .flat_map(|section| room_section[*section]["events"].as_array().unwrap())
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(all.contains(&"m.room.create"), "{all:?}");
    let since = joined["next_batch"].as_str().unwrap().to_owned();

    // Tokens survive a restart.
    server.restart().await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/kick"),
            alice.token(),
            &json!({"user_id": bob.user_id}),
        )
        .await;
    let kicked = sync(&server, &bob, &format!("since={since}")).await;
    let leave = &kicked["rooms"]["leave"][&room];
    assert!(leave.is_object(), "{kicked}");
    let last = leave["timeline"]["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (
            last["type"].as_str(),
            last["content"]["membership"].as_str()
        ),
        (Some("m.room.member"), Some("leave")),
        "{kicked}"
    );
    assert!(kicked["rooms"]["join"].get(&room).is_none());
}

#[tokio::test]
async fn bad_sync_parameters_are_refused() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    assert_error(
        &server
            .get("/_matrix/client/v3/sync?since=garbage", alice.token())
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server
            .get("/_matrix/client/v3/sync?since=s99999999", alice.token())
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server
            .get("/_matrix/client/v3/sync?filter=12345", alice.token())
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server
            .get("/_matrix/client/v3/sync?filter={\"room\":5}", alice.token())
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_error(
        &server.get("/_matrix/client/v3/sync", None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    // A huge timeout is clamped, a negative one refused as a bad parameter, never a 500.
    let (status, _) = server
        .get("/_matrix/client/v3/sync?timeout=0", alice.token())
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .get("/_matrix/client/v3/sync?timeout=-5", alice.token())
        .await;
    assert!(
        status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
        "{status}"
    );
}

#[tokio::test]
async fn receipts_and_read_markers_reach_the_right_syncs() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            bob.token(),
            &json!({}),
        )
        .await;
    let first = send(&server, &alice, &room, "m1", "read me").await;
    let second = send(&server, &alice, &room, "m2", "and me").await;
    let alice_since = sync(&server, &alice, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // A long-poll wakes on a receipt.
    let waiting = {
        let (server, alice, since) = (server.clone(), alice.clone(), alice_since.clone());
        tokio::spawn(
            async move { sync(&server, &alice, &format!("since={since}&timeout=20000")).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let receipt =
        |kind: &str, event: &str| format!("/_matrix/client/v3/rooms/{room}/receipt/{kind}/{event}");
    assert_eq!(
        server
            .post(&receipt("m.read", &first), bob.token(), &json!({}))
            .await
            .0,
        StatusCode::OK
    );
    let woken = waiting.await.unwrap();
    let ephemeral = &woken["rooms"]["join"][&room]["ephemeral"]["events"];
    assert_eq!(ephemeral[0]["type"], "m.receipt", "{woken}");
    assert!(
        ephemeral[0]["content"][&first]["m.read"][&bob.user_id]["ts"]
            .as_u64()
            .unwrap()
            > 0
    );

    // A private receipt is only for its owner.
    let since = woken["next_batch"].as_str().unwrap().to_owned();
    assert_eq!(
        server
            .post(&receipt("m.read.private", &second), bob.token(), &json!({}))
            .await
            .0,
        StatusCode::OK
    );
    send(&server, &alice, &room, "m3", "nudge").await;
    let alice_view = sync(&server, &alice, &format!("since={since}")).await;
    assert!(
        alice_view["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{alice_view}"
    );
    let bob_view = sync(&server, &bob, "").await;
    let bob_receipts = &bob_view["rooms"]["join"][&room]["ephemeral"]["events"][0]["content"];
    assert!(
        bob_receipts[&second]["m.read.private"][&bob.user_id].is_object(),
        "{bob_receipts}"
    );

    // Read markers: the fully-read marker is room account data.
    let (status, _) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/read_markers"),
            bob.token(),
            &json!({"m.fully_read": second, "m.read": second}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, marker) = server
        .get(
            &format!(
                "/_matrix/client/v3/user/{}/rooms/{room}/account_data/m.fully_read",
                bob.user_id
            ),
            bob.token(),
        )
        .await;
    assert_eq!(marker["event_id"], second.as_str());

    // Refusals.
    assert_error(
        &server
            .post(&receipt("m.read", "$unknown"), bob.token(), &json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let eve = register(&server, "eve").await;
    assert_error(
        &server
            .post(&receipt("m.read", &first), eve.token(), &json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let other = create_room(&server, &alice, json!({})).await;
    let wrong_room = format!("/_matrix/client/v3/rooms/{other}/receipt/m.read/{first}");
    assert_error(
        &server.post(&wrong_room, alice.token(), &json!({})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn typing_wakes_syncs_and_ends_with_a_message_or_its_timeout() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            bob.token(),
            &json!({}),
        )
        .await;
    let since = sync(&server, &bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let typing = format!("/_matrix/client/v3/rooms/{room}/typing/{}", alice.user_id);
    let typing_events = |response: &Value| -> Vec<Value> {
        response["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .filter(|e| e["type"] == "m.typing")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };

    let waiting = {
        let (server, bob, since) = (server.clone(), bob.clone(), since.clone());
        tokio::spawn(
            async move { sync(&server, &bob, &format!("since={since}&timeout=20000")).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server
            .put(
                &typing,
                alice.token(),
                &json!({"typing": true, "timeout": 30000})
            )
            .await
            .0,
        StatusCode::OK
    );
    let woken = waiting.await.unwrap();
    assert_eq!(
        typing_events(&woken)[0]["content"]["user_ids"],
        json!([alice.user_id]),
        "{woken}"
    );

    // Sending a message ends typing.
    let since = woken["next_batch"].as_str().unwrap().to_owned();
    send(&server, &alice, &room, "done", "done typing").await;
    let after = sync(&server, &bob, &format!("since={since}")).await;
    assert_eq!(
        typing_events(&after)[0]["content"]["user_ids"],
        json!([]),
        "{after}"
    );

    // A short timeout runs out by itself, and the sync hears it.
    let since = after["next_batch"].as_str().unwrap().to_owned();
    server
        .put(
            &typing,
            alice.token(),
            &json!({"typing": true, "timeout": 200}),
        )
        .await;
    let started = sync(&server, &bob, &format!("since={since}")).await;
    assert_eq!(
        typing_events(&started)[0]["content"]["user_ids"],
        json!([alice.user_id])
    );
    let since = started["next_batch"].as_str().unwrap().to_owned();
    let expired = sync(&server, &bob, &format!("since={since}&timeout=10000")).await;
    assert_eq!(
        typing_events(&expired)[0]["content"]["user_ids"],
        json!([]),
        "{expired}"
    );

    // Only for yourself, only where you are.
    let for_bob = format!("/_matrix/client/v3/rooms/{room}/typing/{}", bob.user_id);
    assert_error(
        &server
            .put(
                &for_bob,
                alice.token(),
                &json!({"typing": true, "timeout": 1000}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let eve = register(&server, "eve").await;
    let for_eve = format!("/_matrix/client/v3/rooms/{room}/typing/{}", eve.user_id);
    assert_error(
        &server
            .put(
                &for_eve,
                eve.token(),
                &json!({"typing": true, "timeout": 1000}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}

/// The load generator runs at a tiny size, so it cannot rot: every message reaches every
/// member's long-poll.
#[tokio::test]
async fn the_load_generator_delivers_every_message() {
    let server = TestServer::start().await;
    let output = tokio::process::Command::new(spec_tests::workspace_binary("sori-load"))
        .args([
            "deliver",
            "--url",
            &server.base_url,
            "--users",
            "4",
            "--rooms",
            "2",
            "--rate",
            "20",
            "--seconds",
            "1",
        ])
        .output()
        .await
        .expect("run sori-load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // 20 messages, each to the 2 members of its room.
    assert!(stdout.contains("40 deliveries (expected 40)"), "{stdout}");
}

#[tokio::test]
async fn notification_counts_follow_push_rules_and_reset_on_read() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            bob.token(),
            &json!({}),
        )
        .await;
    let counts = async |user: &User| {
        let response = sync(&server, user, "").await;
        let unread = response["rooms"]["join"][&room]["unread_notifications"].clone();
        (
            unread["notification_count"].as_u64().unwrap(),
            unread["highlight_count"].as_u64().unwrap(),
        )
    };

    // Two messages in a two-member room notify bob; a mention also highlights.
    send(&server, &alice, &room, "n1", "hello").await;
    send(&server, &alice, &room, "n2", "again").await;
    let (status, mention) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/n3"),
            alice.token(),
            &json!({"msgtype": "m.text", "body": "bob?", "m.mentions": {"user_ids": [bob.user_id]}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(counts(&bob).await, (3, 1));
    assert_eq!(
        counts(&alice).await,
        (0, 0),
        "her own messages do not notify her"
    );

    // Reading up to the second message leaves the mention unread; reading it clears all.
    let (_, page) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=2"),
            bob.token(),
        )
        .await;
    let second = page["chunk"][1]["event_id"].as_str().unwrap().to_owned();
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{second}"),
            bob.token(),
            &json!({}),
        )
        .await;
    assert_eq!(counts(&bob).await, (1, 1));
    let mention_id = mention["event_id"].as_str().unwrap();
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read.private/{mention_id}"),
            bob.token(),
            &json!({}),
        )
        .await;
    assert_eq!(counts(&bob).await, (0, 0));

    // Muting: a room rule without actions stops the count.
    let rule = format!("/_matrix/client/v3/pushrules/global/room/{room}");
    assert_eq!(
        server
            .put(&rule, bob.token(), &json!({"actions": []}))
            .await
            .0,
        StatusCode::OK
    );
    send(&server, &alice, &room, "n4", "muted").await;
    assert_eq!(counts(&bob).await, (0, 0));
}

#[tokio::test]
async fn presence_reaches_those_who_share_a_room() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let eve = register(&server, "eve").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            bob.token(),
            &json!({}),
        )
        .await;
    let presence_of = |response: &Value, user: &User| -> Option<Value> {
        response["presence"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["sender"] == user.user_id.as_str())
            .map(|e| e["content"].clone())
    };

    // Bob syncs (online), then waits; alice sets a status: bob's long-poll wakes with it.
    let since = sync(&server, &bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let since = sync(&server, &bob, &format!("since={since}&timeout=0")).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = {
        let (server, bob, since) = (server.clone(), bob.clone(), since.clone());
        tokio::spawn(
            async move { sync(&server, &bob, &format!("since={since}&timeout=20000")).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = format!("/_matrix/client/v3/presence/{}/status", alice.user_id);
    server
        .put(
            &status,
            alice.token(),
            &json!({"presence": "online", "status_msg": "외근"}),
        )
        .await;
    let woken = waiting.await.unwrap();
    let seen = presence_of(&woken, &alice).unwrap_or_else(|| panic!("{woken}"));
    assert_eq!(
        (seen["presence"].as_str(), seen["status_msg"].as_str()),
        (Some("online"), Some("외근"))
    );

    // Syncing does not wipe the status message, and nothing changes: no presence event.
    let since = woken["next_batch"].as_str().unwrap().to_owned();
    sync(&server, &alice, "").await;
    assert_eq!(
        server.get(&status, bob.token()).await.1["status_msg"],
        "외근"
    );
    let quiet = sync(&server, &bob, &format!("since={since}&timeout=0")).await;
    assert!(presence_of(&quiet, &alice).is_none(), "{quiet}");

    // Eve shares no room: she does not see alice's presence.
    let eves = sync(&server, &eve, "").await;
    assert!(presence_of(&eves, &alice).is_none(), "{eves}");
}

#[tokio::test]
async fn a_long_poll_wakes_on_an_invite() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "private_chat"})).await;
    let since = sync(&server, &bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = {
        let (server, bob) = (server.clone(), bob.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let response = sync(&server, &bob, &format!("since={since}&timeout=20000")).await;
            (response, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            alice.token(),
            &json!({"user_id": bob.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (woken, waited) = waiting.await.unwrap();
    assert!(
        woken["rooms"]["invite"].get(&room).is_some(),
        "the invite wakes the poll: {woken}"
    );
    assert!(waited < Duration::from_secs(10), "woke after {waited:?}");
}

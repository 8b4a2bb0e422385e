//! Rooms over HTTP: creation, sending, state, membership and their refusals.

mod creation;
mod transactions;

use serde_json::{Value, json};
use spec_tests::{
    StatusCode, TestServer, User, assert_error, bodies, create_room, join, register, send_text,
};

fn state_path(room: &str, kind: &str, key: &str) -> String {
    format!("/_matrix/client/v3/rooms/{room}/state/{kind}/{key}")
}

#[tokio::test]
async fn a_created_room_has_the_preset_state_and_takes_messages() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = create_room(
        &server,
        &alice,
        json!({"name": "개발팀", "topic": "daily", "preset": "private_chat"}),
    )
    .await;
    assert!(room.starts_with('!'));

    let (status, create_event) = server
        .get(&state_path(&room, "m.room.create", ""), alice.token())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(create_event["room_version"], "12", "v12 by default");
    assert_eq!(
        server
            .get(&state_path(&room, "m.room.name", ""), alice.token())
            .await
            .1,
        json!({"name": "개발팀"})
    );
    assert_eq!(
        server
            .get(&state_path(&room, "m.room.join_rules", ""), alice.token())
            .await
            .1["join_rule"],
        "invite"
    );
    assert_eq!(
        server
            .get(
                &state_path(&room, "m.room.history_visibility", ""),
                alice.token()
            )
            .await
            .1["history_visibility"],
        "shared"
    );
    let (_, state) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state"),
            alice.token(),
        )
        .await;
    let types: Vec<&str> = state
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in [
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.history_visibility",
        "m.room.name",
        "m.room.topic",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }

    let (status, sent) = send_text(&server, &alice, &room, "t1", "안녕하세요").await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let event_id = sent["event_id"].as_str().unwrap();
    let (status, event) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(event["content"]["body"], "안녕하세요");
    assert_eq!(event["sender"], alice.user_id);
    assert_eq!(event["room_id"], room);
    assert!(
        event.get("hashes").is_none() && event.get("signatures").is_none(),
        "client format: {event}"
    );

    let (_, joined) = server
        .get("/_matrix/client/v3/joined_rooms", alice.token())
        .await;
    assert_eq!(joined["joined_rooms"], json!([room]));
}

#[tokio::test]
async fn the_same_transaction_gives_the_same_event_even_after_a_restart() {
    let mut server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    let (_, first) = send_text(&server, &alice, &room, "txn-1", "once").await;
    let (_, again) = send_text(&server, &alice, &room, "txn-1", "once").await;
    assert_eq!(first["event_id"], again["event_id"]);
    server.restart().await;
    let (status, after) = send_text(&server, &alice, &room, "txn-1", "once").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["event_id"], after["event_id"]);
    let (_, other) = send_text(&server, &alice, &room, "txn-2", "twice").await;
    assert_ne!(first["event_id"], other["event_id"]);
}

#[tokio::test]
async fn outsiders_see_nothing_and_cannot_write() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let eve = register(&server, "eve").await;
    let room = create_room(&server, &alice, json!({"preset": "private_chat"})).await;
    let (_, sent) = send_text(&server, &alice, &room, "t", "private").await;
    let event_id = sent["event_id"].as_str().unwrap();

    let unknown = "!doesnotexist:localhost";
    for target in [room.as_str(), unknown] {
        assert_error(
            &send_text(&server, &eve, target, "e1", "hi").await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
        assert_error(
            &server
                .get(
                    &format!("/_matrix/client/v3/rooms/{target}/state"),
                    eve.token(),
                )
                .await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
        assert_error(
            &server
                .get(
                    &format!("/_matrix/client/v3/rooms/{target}/event/{event_id}"),
                    eve.token(),
                )
                .await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
        assert_error(
            &server
                .post(
                    &format!("/_matrix/client/v3/rooms/{target}/join"),
                    eve.token(),
                    &json!({}),
                )
                .await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
    }
    assert_error(
        &send_text(&server, &eve, "not-a-room-id", "e", "x").await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn membership_moves_through_invite_join_kick_ban_and_unban() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let room = create_room(&server, &alice, json!({"preset": "private_chat"})).await;
    let path = |action: &str| format!("/_matrix/client/v3/rooms/{room}/{action}");
    let membership = async |user: &User| {
        let (_, content) = server
            .get(
                &state_path(&room, "m.room.member", &user.user_id),
                alice.token(),
            )
            .await;
        content["membership"].as_str().unwrap_or("none").to_owned()
    };

    // Invite-only: bob cannot walk in, an invite lets him.
    assert_error(
        &server.post(&path("join"), bob.token(), &json!({})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_eq!(
        server
            .post(
                &path("invite"),
                alice.token(),
                &json!({"user_id": bob.user_id})
            )
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(membership(&bob).await, "invite");
    let (status, joined) = server
        .post(
            &format!("/_matrix/client/v3/join/{room}"),
            bob.token(),
            &json!({}),
        )
        .await;
    assert_eq!(
        (status, joined["room_id"].as_str()),
        (StatusCode::OK, Some(room.as_str()))
    );
    assert_eq!(membership(&bob).await, "join");
    let (_, member) = server
        .get(
            &state_path(&room, "m.room.member", &bob.user_id),
            bob.token(),
        )
        .await;
    assert_eq!(
        member["displayname"], "bob",
        "the member event carries the profile"
    );

    // Bob (power 0) cannot invite (invite level 0 in private chats lets him), kick or ban.
    assert_error(
        &server
            .post(
                &path("kick"),
                bob.token(),
                &json!({"user_id": alice.user_id}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .post(
                &path("ban"),
                bob.token(),
                &json!({"user_id": alice.user_id}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .put(
                &state_path(&room, "m.room.name", ""),
                bob.token(),
                &json!({"name": "mine"}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    // Nor join on carol's behalf.
    assert_error(
        &server
            .put(
                &state_path(&room, "m.room.member", &carol.user_id),
                bob.token(),
                &json!({"membership": "join"}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    // Alice kicks, bans and unbans bob.
    assert_eq!(
        server
            .post(
                &path("kick"),
                alice.token(),
                &json!({"user_id": bob.user_id, "reason": "test"})
            )
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(membership(&bob).await, "leave");
    assert_eq!(
        server
            .post(
                &path("ban"),
                alice.token(),
                &json!({"user_id": bob.user_id})
            )
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(membership(&bob).await, "ban");
    assert_error(
        &server.post(&path("join"), bob.token(), &json!({})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_eq!(
        server
            .post(
                &path("unban"),
                alice.token(),
                &json!({"user_id": bob.user_id})
            )
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(membership(&bob).await, "leave");

    // Members list and joined members.
    let (_, members) = server.get(&path("members"), alice.token()).await;
    assert_eq!(members["chunk"].as_array().unwrap().len(), 2);
    let (_, only_joined) = server
        .get(
            &format!("{}?membership=join", path("members")),
            alice.token(),
        )
        .await;
    assert_eq!(only_joined["chunk"].as_array().unwrap().len(), 1);
    let (_, joined) = server.get(&path("joined_members"), alice.token()).await;
    assert_eq!(
        joined["joined"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec![&alice.user_id]
    );

    // Alice leaves: she reads the state as it was when she left (her leave included), and
    // the joined members no longer.
    assert_eq!(
        server
            .post(&path("leave"), alice.token(), &json!({}))
            .await
            .0,
        StatusCode::OK
    );
    let (status, state) = server.get(&path("state"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    let own = state
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == alice.user_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(own["content"]["membership"], "leave");
    assert_error(
        &server.get(&path("joined_members"), alice.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn public_rooms_can_be_joined_and_invitees_of_trusted_chats_get_power() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let public = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    assert_eq!(
        server
            .post(
                &format!("/_matrix/client/v3/rooms/{public}/join"),
                bob.token(),
                &json!({})
            )
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        send_text(&server, &bob, &public, "b1", "hello").await.0,
        StatusCode::OK
    );

    let dm = create_room(
        &server,
        &alice,
        json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [bob.user_id]}),
    )
    .await;
    let (_, invite) = server
        .get(
            &state_path(&dm, "m.room.member", &bob.user_id),
            alice.token(),
        )
        .await;
    assert_eq!(invite["membership"], "invite");
    assert_eq!(invite["is_direct"], true);
    assert_eq!(
        server
            .post(
                &format!("/_matrix/client/v3/rooms/{dm}/join"),
                bob.token(),
                &json!({})
            )
            .await
            .0,
        StatusCode::OK
    );
    // In v12 the invitee of a trusted chat is a co-creator: it may rename the room.
    assert_eq!(
        server
            .put(
                &state_path(&dm, "m.room.name", ""),
                bob.token(),
                &json!({"name": "우리"})
            )
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bad_room_requests_are_refused_without_changing_the_room() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/createRoom",
                alice.token(),
                &json!({"room_version": "1"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_UNSUPPORTED_ROOM_VERSION",
    );
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/createRoom",
                alice.token(),
                &json!({"preset": "everyone"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    let room = create_room(&server, &alice, json!({"room_version": "11"})).await;
    let (_, before) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state"),
            alice.token(),
        )
        .await;

    assert_error(
        &server
            .put(
                &state_path(&room, "m.room.power_levels", ""),
                alice.token(),
                &json!({"users": "all"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_error(
        &server
            .put(
                &state_path(&room, "m.room.member", &alice.user_id),
                alice.token(),
                &json!({"membership": 7}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    let big = "x".repeat(70_000);
    assert_error(
        &send_text(&server, &alice, &room, "big", &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    assert_error(
        &server
            .request_raw(
                reqwest::Method::PUT,
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/nobody"),
                alice.token(),
                "",
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_NOT_JSON",
    );
    let (_, after) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state"),
            alice.token(),
        )
        .await;
    let ids = |state: &Value| -> Vec<String> {
        state
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&before), ids(&after), "refused events changed no state");
}

#[tokio::test]
async fn four_clients_sending_at_once_make_one_ordered_timeline() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let alice = register(&server, "alice").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    let mut users = vec![alice.clone()];
    for name in ["bob", "carol", "dave"] {
        let user = register(&server, name).await;
        server
            .post(
                &format!("/_matrix/client/v3/rooms/{room}/join"),
                user.token(),
                &json!({}),
            )
            .await;
        users.push(user);
    }
    let tasks: Vec<_> = users
        .into_iter()
        .map(|user| {
            let server = server.clone();
            let room = room.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..50 {
                    let (status, body) = send_text(
                        &server,
                        &user,
                        &room,
                        &format!("t{i}"),
                        &format!("{} {i}", user.user_id),
                    )
                    .await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                    ids.push(body["event_id"].as_str().unwrap().to_owned());
                }
                ids
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 200, "every txn mapped to exactly one event");

    // One timeline order: paging forwards returns every message exactly once.
    let (_, page) = messages(
        &server,
        &alice,
        &room,
        "dir=f&limit=1000&filter={\"types\":[\"m.room.message\"]}",
    )
    .await;
    let mut in_timeline: Vec<String> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(in_timeline.len(), 200);
    in_timeline.sort();
    assert_eq!(in_timeline, all);
}

async fn messages(
    server: &TestServer,
    user: &User,
    room: &str,
    query: &str,
) -> (StatusCode, Value) {
    server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?{query}"),
            user.token(),
        )
        .await
}

#[tokio::test]
async fn a_hundred_messages_page_back_and_forth_with_filters() {
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
    for i in 0..100 {
        let user = if i % 2 == 0 { &alice } else { &bob };
        assert_eq!(
            send_text(&server, user, &room, &format!("m{i}"), &format!("msg {i}"))
                .await
                .0,
            StatusCode::OK
        );
    }
    let only_messages = r#"{"types":["m.room.message"]}"#;

    // Backwards from the end, 30 at a time: every message once, newest first.
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let query = match &from {
            Some(token) => format!("dir=b&limit=30&from={token}&filter={only_messages}"),
            None => format!("dir=b&limit=30&filter={only_messages}"),
        };
        let (status, page) = messages(&server, &alice, &room, &query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(bodies(&page));
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..100).rev().map(|i| format!("msg {i}")).collect();
    assert_eq!(seen, expected);

    // Forwards from the start: the same messages in order.
    let (_, first_page) = messages(
        &server,
        &alice,
        &room,
        &format!("dir=f&limit=1000&filter={only_messages}"),
    )
    .await;
    let forward = bodies(&first_page);
    assert_eq!(forward, expected.iter().rev().cloned().collect::<Vec<_>>());
    // The newest event is not the end for good: the page gives a token to wait at. From
    // there, nothing yet (and no token), until a message is sent (at the end of this test).
    let live_end = first_page["end"]
        .as_str()
        .expect("a token at the live end")
        .to_owned();
    let (_, nothing_yet) = messages(
        &server,
        &alice,
        &room,
        &format!("dir=f&from={live_end}&filter={only_messages}"),
    )
    .await;
    assert_eq!(nothing_yet["chunk"], json!([]), "{nothing_yet}");
    assert!(nothing_yet["end"].is_null(), "{nothing_yet}");

    // Forwards from a token in the middle continues right after it.
    let (_, newest) = messages(
        &server,
        &alice,
        &room,
        &format!("dir=b&limit=10&filter={only_messages}"),
    )
    .await;
    let (_, after) = messages(
        &server,
        &alice,
        &room,
        &format!(
            "dir=f&limit=100&from={}&filter={only_messages}",
            newest["end"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(
        bodies(&after),
        (90..100).map(|i| format!("msg {i}")).collect::<Vec<_>>()
    );

    // Senders filter and lazy-loaded members.
    let by_bob = format!(
        r#"{{"senders":["{}"],"lazy_load_members":true}}"#,
        bob.user_id
    );
    let (_, page) = messages(
        &server,
        &alice,
        &room,
        &format!("dir=b&limit=5&filter={by_bob}"),
    )
    .await;
    assert_eq!(
        bodies(&page),
        vec!["msg 99", "msg 97", "msg 95", "msg 93", "msg 91"]
    );
    let members: Vec<&str> = page["state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert_eq!(members, vec![bob.user_id.as_str()]);

    assert_error(
        &messages(&server, &alice, &room, "dir=b&from=garbage").await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let eve = register(&server, "eve").await;
    assert_error(
        &messages(&server, &eve, &room, "dir=b").await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    send_text(&server, &bob, &room, "m-late", "late message").await;
    let (_, late) = messages(
        &server,
        &alice,
        &room,
        &format!("dir=f&from={live_end}&filter={only_messages}"),
    )
    .await;
    assert_eq!(bodies(&late), vec!["late message"]);
}

#[tokio::test]
async fn history_visibility_decides_what_newcomers_and_leavers_see() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    server
        .put(
            &state_path(&room, "m.room.history_visibility", ""),
            alice.token(),
            &json!({"history_visibility": "joined"}),
        )
        .await;
    let (_, before) = send_text(&server, &alice, &room, "a1", "before bob").await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            bob.token(),
            &json!({}),
        )
        .await;
    send_text(&server, &alice, &room, "a2", "with bob").await;
    let (_, page) = messages(&server, &bob, &room, "dir=b&limit=50").await;
    assert_eq!(
        bodies(&page),
        vec!["with bob"],
        "joined visibility hides what came before the join"
    );
    let before_id = before["event_id"].as_str().unwrap();
    assert_error(
        &server
            .get(
                &format!("/_matrix/client/v3/rooms/{room}/event/{before_id}"),
                bob.token(),
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    // After leaving, bob still sees what he saw, and nothing new.
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            bob.token(),
            &json!({}),
        )
        .await;
    send_text(&server, &alice, &room, "a3", "after bob").await;
    let (status, page) = messages(&server, &bob, &room, "dir=b&limit=50").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bodies(&page), vec!["with bob"]);

    // With shared visibility a newcomer sees the history.
    let shared = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    send_text(&server, &alice, &shared, "s1", "old news").await;
    let carol = register(&server, "carol").await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{shared}/join"),
            carol.token(),
            &json!({}),
        )
        .await;
    let (_, page) = messages(&server, &carol, &shared, "dir=b&limit=50").await;
    assert_eq!(bodies(&page), vec!["old news"]);

    // A visibility change is shown to those the new setting lets see it: a room opened up
    // again reads as open to a newcomer, though what was said meanwhile stays hidden.
    let reopened = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    for (txn, visibility) in [("v1", "joined"), ("v2", "shared")] {
        if visibility == "shared" {
            send_text(&server, &alice, &reopened, txn, "while closed").await;
        }
        let (status, _) = server
            .put(
                &state_path(&reopened, "m.room.history_visibility", ""),
                alice.token(),
                &json!({"history_visibility": visibility}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    join(&server, &carol, &reopened).await;
    let (_, page) = messages(&server, &carol, &reopened, "dir=b&limit=50").await;
    assert!(bodies(&page).is_empty(), "{page}");
    let settings: Vec<&Value> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.history_visibility")
        .map(|e| &e["content"]["history_visibility"])
        .collect();
    assert_eq!(settings.last(), Some(&&json!("shared")), "{page}");
}

#[tokio::test]
async fn redaction_needs_power_over_others_and_strips_what_is_stored() {
    let mut server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(
        &server,
        &alice,
        json!({"preset": "public_chat", "topic": "secret plans"}),
    )
    .await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            bob.token(),
            &json!({}),
        )
        .await;
    let (_, by_alice) = send_text(&server, &alice, &room, "a", "alice's words").await;
    let (_, by_bob) = send_text(&server, &bob, &room, "b", "bob's words").await;
    let redact = |event: &Value, txn: &str| {
        format!(
            "/_matrix/client/v3/rooms/{room}/redact/{}/{txn}",
            event["event_id"].as_str().unwrap()
        )
    };
    let get = |event: &Value| {
        format!(
            "/_matrix/client/v3/rooms/{room}/event/{}",
            event["event_id"].as_str().unwrap()
        )
    };

    assert_error(
        &server
            .put(&redact(&by_alice, "r1"), bob.token(), &json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_eq!(
        server.get(&get(&by_alice), bob.token()).await.1["content"]["body"],
        "alice's words"
    );

    let (status, own) = server
        .put(
            &redact(&by_bob, "r2"),
            bob.token(),
            &json!({"reason": "typo"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{own}");
    let (status, moderated) = server
        .put(&redact(&by_alice, "r3"), alice.token(), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{moderated}");
    // The same transaction is the same redaction.
    assert_eq!(
        server
            .put(&redact(&by_alice, "r3"), alice.token(), &json!({}))
            .await
            .1,
        moderated
    );

    server.restart().await;
    let (_, event) = server.get(&get(&by_bob), alice.token()).await;
    assert_eq!(
        event["content"],
        json!({}),
        "the stored event is redacted: {event}"
    );
    assert_eq!(
        event["unsigned"]["redacted_because"]["content"]["reason"],
        "typo"
    );
    // The redaction names its target at the top too, where clients look for it.
    let because = &event["unsigned"]["redacted_because"];
    assert_eq!(because["redacts"], because["content"]["redacts"]);
    assert_eq!(because["redacts"], by_bob["event_id"]);
    assert_eq!(
        server.get(&get(&by_alice), bob.token()).await.1["content"],
        json!({})
    );

    // Redacting state keeps the event in state with its content stripped.
    let (_, topic) = server
        .get(
            &format!("{}?format=event", state_path(&room, "m.room.topic", "")),
            alice.token(),
        )
        .await;
    let topic_id = topic["event_id"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/rooms/{room}/redact/{topic_id}/r4");
    assert_eq!(
        server.put(&path, alice.token(), &json!({})).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server
            .get(&state_path(&room, "m.room.topic", ""), alice.token())
            .await
            .1,
        json!({})
    );

    assert_error(
        &server
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/redact/$unknown/r5"),
                alice.token(),
                &json!({}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn aliases_resolve_join_and_are_guarded() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(
        &server,
        &alice,
        json!({"preset": "public_chat", "room_alias_name": "general"}),
    )
    .await;
    let alias_path = |a: &str| {
        format!(
            "/_matrix/client/v3/directory/room/{}",
            a.replace('#', "%23")
        )
    };

    let (status, resolved) = server.get(&alias_path("#general:localhost"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resolved["room_id"], room);
    assert_eq!(resolved["servers"], json!(["localhost"]));
    assert_eq!(
        server
            .get(
                &state_path(&room, "m.room.canonical_alias", ""),
                alice.token()
            )
            .await
            .1["alias"],
        "#general:localhost"
    );

    // Joining by alias.
    let (status, joined) = server
        .post(
            "/_matrix/client/v3/join/%23general:localhost",
            bob.token(),
            &json!({}),
        )
        .await;
    assert_eq!(
        (status, joined["room_id"].as_str()),
        (StatusCode::OK, Some(room.as_str()))
    );

    // A taken alias, an alias of another server, an unknown one.
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/createRoom",
                alice.token(),
                &json!({"room_alias_name": "general"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_ROOM_IN_USE",
    );
    assert_error(
        &server
            .put(
                &alias_path("#general:localhost"),
                bob.token(),
                &json!({"room_id": room}),
            )
            .await,
        StatusCode::CONFLICT,
        "M_UNKNOWN",
    );
    assert_error(
        &server
            .put(
                &alias_path("#x:elsewhere.org"),
                bob.token(),
                &json!({"room_id": room}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server.get(&alias_path("#nothing:localhost"), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.get(&alias_path("not-an-alias"), None).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    // Bob (a member) adds one; only he, or a moderator, may delete it.
    assert_eq!(
        server
            .put(
                &alias_path("#bobs:localhost"),
                bob.token(),
                &json!({"room_id": room})
            )
            .await
            .0,
        StatusCode::OK
    );
    let (_, list) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/aliases"),
            bob.token(),
        )
        .await;
    let mut aliases: Vec<&str> = list["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    aliases.sort();
    assert_eq!(aliases, vec!["#bobs:localhost", "#general:localhost"]);
    assert_error(
        &server
            .delete(&alias_path("#general:localhost"), bob.token(), None)
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_eq!(
        server
            .delete(&alias_path("#bobs:localhost"), alice.token(), None)
            .await
            .0,
        StatusCode::OK
    );

    // The canonical alias must point at the room.
    let other = create_room(&server, &alice, json!({"room_alias_name": "other"})).await;
    assert_error(
        &server
            .put(
                &state_path(&room, "m.room.canonical_alias", ""),
                alice.token(),
                &json!({"alias": "#other:localhost"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_ALIAS",
    );
    assert_error(
        &server
            .put(
                &state_path(&room, "m.room.canonical_alias", ""),
                alice.token(),
                &json!({"alias": "#general:localhost", "alt_aliases": ["#gone:localhost"]}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_ALIAS",
    );
    assert_ne!(room, other);

    // Deleting the room's canonical alias takes it out of the m.room.canonical_alias event
    // too, so that neither clients nor the room directory's search show it any longer.
    assert_eq!(
        server
            .delete(&alias_path("#general:localhost"), alice.token(), None)
            .await
            .0,
        StatusCode::OK
    );
    let (status, canonical) = server
        .get(
            &state_path(&room, "m.room.canonical_alias", ""),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(canonical.get("alias").is_none(), "{canonical}");
}

#[tokio::test]
async fn the_public_room_directory_lists_filters_and_pages() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let general = create_room(&server, &alice, json!({"visibility": "public", "preset": "public_chat", "name": "General", "topic": "전사 공지"})).await;
    let dev = create_room(
        &server,
        &alice,
        json!({"visibility": "public", "preset": "public_chat", "name": "개발팀"}),
    )
    .await;
    let secret = create_room(&server, &alice, json!({"name": "Secret"})).await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{general}/join"),
            bob.token(),
            &json!({}),
        )
        .await;

    let (status, list) = server.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![general.as_str(), dev.as_str()],
        "largest first, private rooms absent"
    );
    assert_eq!(list["chunk"][0]["num_joined_members"], 2);
    assert_eq!(list["chunk"][0]["name"], "General");
    // `join_rule` may be left out when it is "public" (the spec's default).
    assert!(
        matches!(
            list["chunk"][0]["join_rule"].as_str(),
            None | Some("public")
        ),
        "{list}"
    );
    assert_eq!(list["total_room_count_estimate"], 2);

    let (_, found) = server
        .post(
            "/_matrix/client/v3/publicRooms",
            alice.token(),
            &json!({"filter": {"generic_search_term": "개발"}}),
        )
        .await;
    assert_eq!(found["chunk"].as_array().unwrap().len(), 1);
    assert_eq!(found["chunk"][0]["room_id"], dev);
    let (_, by_topic) = server
        .post(
            "/_matrix/client/v3/publicRooms",
            alice.token(),
            &json!({"filter": {"generic_search_term": "공지"}}),
        )
        .await;
    assert_eq!(by_topic["chunk"][0]["room_id"], general);

    let (_, first) = server
        .get("/_matrix/client/v3/publicRooms?limit=1", None)
        .await;
    assert_eq!(first["chunk"].as_array().unwrap().len(), 1);
    let next = first["next_batch"].as_str().unwrap();
    let (_, second) = server
        .get(
            &format!("/_matrix/client/v3/publicRooms?limit=1&since={next}"),
            None,
        )
        .await;
    assert_eq!(second["chunk"][0]["room_id"], dev);
    assert!(second["next_batch"].is_null());
    assert_error(
        &server
            .get("/_matrix/client/v3/publicRooms?since=zzz", None)
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    // Listing is per room, and only for those with the power to change it.
    let listing = |room: &str| format!("/_matrix/client/v3/directory/list/room/{room}");
    assert_eq!(
        server.get(&listing(&secret), None).await.1,
        json!({"visibility": "private"})
    );
    assert_error(
        &server
            .put(
                &listing(&general),
                bob.token(),
                &json!({"visibility": "private"}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_eq!(
        server
            .put(
                &listing(&secret),
                alice.token(),
                &json!({"visibility": "public"})
            )
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        server.get(&listing(&secret), None).await.1,
        json!({"visibility": "public"})
    );
    assert_error(
        &server.get(&listing("!unknown:localhost"), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn tags_forget_and_knock() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "private_chat"})).await;

    let tags = format!(
        "/_matrix/client/v3/user/{}/rooms/{room}/tags",
        alice.user_id
    );
    assert_eq!(
        server.get(&tags, alice.token()).await.1,
        json!({"tags": {}})
    );
    assert_eq!(
        server
            .put(
                &format!("{tags}/m.favourite"),
                alice.token(),
                &json!({"order": 0.25})
            )
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        server
            .put(&format!("{tags}/u.work"), alice.token(), &json!({}))
            .await
            .0,
        StatusCode::OK
    );
    let (_, got) = server.get(&tags, alice.token()).await;
    assert_eq!(got["tags"]["m.favourite"]["order"], 0.25);
    assert!(got["tags"]["u.work"].is_object());
    assert_eq!(
        server
            .delete(&format!("{tags}/u.work"), alice.token(), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        server.get(&tags, alice.token()).await.1["tags"]
            .as_object()
            .unwrap()
            .len(),
        1
    );
    assert_error(
        &server.get(&tags, bob.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .put(
                &format!("{tags}/{}", "t".repeat(300)),
                alice.token(),
                &json!({}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    // Knocking needs the knock join rule; then the knock shows in the room.
    let knock = format!("/_matrix/client/v3/knock/{room}");
    assert_error(
        &server
            .post(&knock, bob.token(), &json!({"reason": "let me in"}))
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    server
        .put(
            &state_path(&room, "m.room.join_rules", ""),
            alice.token(),
            &json!({"join_rule": "knock"}),
        )
        .await;
    let (status, knocked) = server
        .post(&knock, bob.token(), &json!({"reason": "let me in"}))
        .await;
    assert_eq!(
        (status, knocked["room_id"].as_str()),
        (StatusCode::OK, Some(room.as_str()))
    );
    let (_, member) = server
        .get(
            &state_path(&room, "m.room.member", &bob.user_id),
            alice.token(),
        )
        .await;
    assert_eq!(
        (member["membership"].as_str(), member["reason"].as_str()),
        (Some("knock"), Some("let me in"))
    );

    // Forget: refused while joined; after leaving the room is gone from view.
    let forget = format!("/_matrix/client/v3/rooms/{room}/forget");
    assert_error(
        &server.post(&forget, alice.token(), &json!({})).await,
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN",
    );
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(
        messages(&server, &alice, &room, "dir=b").await.0,
        StatusCode::OK,
        "left members still read what they saw"
    );
    assert_eq!(
        server.post(&forget, alice.token(), &json!({})).await.0,
        StatusCode::OK
    );
    assert_error(
        &messages(&server, &alice, &room, "dir=b").await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn context_timestamps_and_reports() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let eve = register(&server, "eve").await;
    let room = create_room(&server, &alice, json!({})).await;
    let mut ids = Vec::new();
    for i in 0..9 {
        let (_, sent) = send_text(
            &server,
            &alice,
            &room,
            &format!("c{i}"),
            &format!("line {i}"),
        )
        .await;
        ids.push(sent["event_id"].as_str().unwrap().to_owned());
    }
    let (status, context) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/context/{}?limit=4", ids[4]),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{context}");
    assert_eq!(context["event"]["content"]["body"], "line 4");
    let before: Vec<&str> = context["events_before"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect();
    let after: Vec<&str> = context["events_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(before, vec!["line 3", "line 2"]);
    assert_eq!(after, vec!["line 5", "line 6"]);
    // The tokens continue paging from the edges.
    let (_, older) = messages(
        &server,
        &alice,
        &room,
        &format!("dir=b&limit=2&from={}", context["start"].as_str().unwrap()),
    )
    .await;
    assert_eq!(bodies(&older), vec!["line 1", "line 0"]);
    let (_, newer) = messages(
        &server,
        &alice,
        &room,
        &format!("dir=f&limit=2&from={}", context["end"].as_str().unwrap()),
    )
    .await;
    assert_eq!(bodies(&newer), vec!["line 7", "line 8"]);
    assert_error(
        &server
            .get(
                &format!("/_matrix/client/v3/rooms/{room}/context/$nope"),
                alice.token(),
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    // Timestamps: the last event at or before now, the first at or after the beginning.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let ts = |dir: &str, t: u128| {
        format!("/_matrix/client/v1/rooms/{room}/timestamp_to_event?ts={t}&dir={dir}")
    };
    let (status, latest) = server.get(&ts("b", now + 1000), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{latest}");
    assert_eq!(latest["event_id"], ids[8].as_str());
    let (_, first) = server.get(&ts("f", 0), alice.token()).await;
    assert!(first["origin_server_ts"].as_u64().unwrap() > 0);
    assert_error(
        &server.get(&ts("f", now + 60_000), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.get(&ts("b", now), eve.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    // Reports: members report what they can see; outsiders learn nothing.
    let report = |id: &str| format!("/_matrix/client/v3/rooms/{room}/report/{id}");
    assert_eq!(
        server
            .post(&report(&ids[0]), alice.token(), &json!({"reason": "spam"}))
            .await,
        (StatusCode::OK, json!({}))
    );
    assert_error(
        &server
            .post(&report(&ids[0]), eve.token(), &json!({"reason": "x"}))
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .post(&report("$unknown"), alice.token(), &json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn upgrading_a_room_tombstones_it_and_carries_state_and_aliases() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let old = create_room(&server, &alice, json!({"room_version": "11", "preset": "public_chat", "name": "Ops", "room_alias_name": "ops"})).await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{old}/join"),
            bob.token(),
            &json!({}),
        )
        .await;
    let upgrade = format!("/_matrix/client/v3/rooms/{old}/upgrade");
    assert_error(
        &server
            .post(&upgrade, bob.token(), &json!({"new_version": "12"}))
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .post(&upgrade, alice.token(), &json!({"new_version": "5"}))
            .await,
        StatusCode::BAD_REQUEST,
        "M_UNSUPPORTED_ROOM_VERSION",
    );

    let (status, body) = server
        .post(&upgrade, alice.token(), &json!({"new_version": "12"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new = body["replacement_room"].as_str().unwrap().to_owned();

    let (_, tombstone) = server
        .get(&state_path(&old, "m.room.tombstone", ""), alice.token())
        .await;
    assert_eq!(tombstone["replacement_room"], new);
    let (_, create_event) = server
        .get(&state_path(&new, "m.room.create", ""), alice.token())
        .await;
    assert_eq!(create_event["predecessor"]["room_id"], old);
    assert_eq!(create_event["room_version"], "12");
    assert_eq!(
        server
            .get(&state_path(&new, "m.room.name", ""), alice.token())
            .await
            .1["name"],
        "Ops"
    );
    assert_eq!(
        server
            .get(&state_path(&new, "m.room.join_rules", ""), alice.token())
            .await
            .1["join_rule"],
        "public"
    );
    assert_eq!(
        server
            .get("/_matrix/client/v3/directory/room/%23ops:localhost", None)
            .await
            .1["room_id"],
        new
    );
    // The old room is read-only for ordinary members now.
    assert_error(
        &send_text(&server, &bob, &old, "late", "hello?").await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    // Bob follows to the new room.
    assert_eq!(
        server
            .post(
                &format!("/_matrix/client/v3/rooms/{new}/join"),
                bob.token(),
                &json!({})
            )
            .await
            .0,
        StatusCode::OK
    );
}

async fn send_content(
    server: &TestServer,
    user: &User,
    room: &str,
    kind: &str,
    txn: &str,
    content: Value,
) -> (StatusCode, Value) {
    server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/{kind}/{txn}"),
            user.token(),
            &content,
        )
        .await
}

#[tokio::test]
async fn edits_threads_references_and_reactions_aggregate() {
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
    let (_, root) = send_text(&server, &alice, &room, "root", "회의 안건").await;
    let root_id = root["event_id"].as_str().unwrap().to_owned();

    // Edits: only from the original sender.
    let edit = |body: &str| {
        json!({
            "msgtype": "m.text", "body": format!("* {body}"),
            "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": root_id},
        })
    };
    assert_error(
        &send_content(&server, &bob, &room, "m.room.message", "e0", edit("hijack")).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_eq!(
        send_content(
            &server,
            &alice,
            &room,
            "m.room.message",
            "e1",
            edit("first fix")
        )
        .await
        .0,
        StatusCode::OK
    );
    let (_, second_edit) = send_content(
        &server,
        &alice,
        &room,
        "m.room.message",
        "e2",
        edit("회의 안건 (수정)"),
    )
    .await;

    // A thread of two replies, one by bob.
    let in_thread = |body: &str| json!({"msgtype": "m.text", "body": body, "m.relates_to": {"rel_type": "m.thread", "event_id": root_id}});
    send_content(
        &server,
        &alice,
        &room,
        "m.room.message",
        "t1",
        in_thread("first reply"),
    )
    .await;
    let (_, last_reply) = send_content(
        &server,
        &bob,
        &room,
        "m.room.message",
        "t2",
        in_thread("second reply"),
    )
    .await;

    // A reference and reactions; the same reaction twice is refused.
    let (_, reference) = send_content(&server, &bob, &room, "m.room.message", "r1", json!({"msgtype": "m.text", "body": "see above", "m.relates_to": {"rel_type": "m.reference", "event_id": root_id}})).await;
    let reaction =
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": root_id, "key": "👍"}});
    assert_eq!(
        send_content(&server, &bob, &room, "m.reaction", "x1", reaction.clone())
            .await
            .0,
        StatusCode::OK
    );
    assert_error(
        &send_content(&server, &bob, &room, "m.reaction", "x2", reaction.clone()).await,
        StatusCode::BAD_REQUEST,
        "M_DUPLICATE_ANNOTATION",
    );
    assert_eq!(
        send_content(&server, &alice, &room, "m.reaction", "x3", reaction)
            .await
            .0,
        StatusCode::OK
    );

    // Bundled aggregations on the root, seen by bob.
    let (_, event) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/event/{root_id}"),
            bob.token(),
        )
        .await;
    let relations = &event["unsigned"]["m.relations"];
    assert_eq!(
        relations["m.replace"]["event_id"], second_edit["event_id"],
        "{event}"
    );
    assert_eq!(
        relations["m.replace"]["content"]["m.new_content"]["body"],
        "회의 안건 (수정)"
    );
    assert_eq!(relations["m.thread"]["count"], 2);
    assert_eq!(
        relations["m.thread"]["latest_event"]["event_id"],
        last_reply["event_id"]
    );
    assert_eq!(relations["m.thread"]["current_user_participated"], true);
    assert_eq!(
        relations["m.reference"]["chunk"],
        json!([{"event_id": reference["event_id"]}])
    );

    // /relations: all, by type, by type and event type, paged.
    let rel = |suffix: &str| format!("/_matrix/client/v1/rooms/{room}/relations/{root_id}{suffix}");
    let (_, all) = server.get(&rel(""), alice.token()).await;
    assert_eq!(all["chunk"].as_array().unwrap().len(), 7, "{all}");
    let (_, thread) = server.get(&rel("/m.thread"), alice.token()).await;
    let bodies_in_thread: Vec<&str> = thread["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies_in_thread,
        vec!["second reply", "first reply"],
        "newest first"
    );
    let (_, reactions) = server
        .get(&rel("/m.annotation/m.reaction"), alice.token())
        .await;
    assert_eq!(reactions["chunk"].as_array().unwrap().len(), 2);
    let (_, first_page) = server.get(&rel("?limit=3"), alice.token()).await;
    assert_eq!(first_page["chunk"].as_array().unwrap().len(), 3);
    let (_, rest) = server
        .get(
            &rel(&format!(
                "?limit=10&from={}",
                first_page["next_batch"].as_str().unwrap()
            )),
            alice.token(),
        )
        .await;
    assert_eq!(rest["chunk"].as_array().unwrap().len(), 4);
    assert!(rest["next_batch"].is_null());

    // /threads lists the root with its summary; "participated" includes it for bob.
    let (status, threads) = server
        .get(
            &format!("/_matrix/client/v1/rooms/{room}/threads"),
            bob.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{threads}");
    assert_eq!(threads["chunk"][0]["event_id"], root_id.as_str());
    assert_eq!(
        threads["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["count"],
        2
    );
    let carol = register(&server, "carol").await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            carol.token(),
            &json!({}),
        )
        .await;
    let (_, mine) = server
        .get(
            &format!("/_matrix/client/v1/rooms/{room}/threads?include=participated"),
            carol.token(),
        )
        .await;
    assert_eq!(mine["chunk"], json!([]));

    // A redacted reply no longer counts.
    let reply_id = last_reply["event_id"].as_str().unwrap();
    server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/redact/{reply_id}/red1"),
            bob.token(),
            &json!({}),
        )
        .await;
    let (_, event) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/event/{root_id}"),
            alice.token(),
        )
        .await;
    assert_eq!(event["unsigned"]["m.relations"]["m.thread"]["count"], 1);
}

#[tokio::test]
async fn power_levels_decide_who_may_do_what() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    // v11: alice 100 by preset; bob 50 by override; topic open to everyone; pins at 100.
    let room = create_room(
        &server,
        &alice,
        json!({
            "room_version": "11",
            "preset": "public_chat",
            "power_level_content_override": {
                "users": {alice.user_id.clone(): 100, bob.user_id.clone(): 50},
                "events": {"m.room.topic": 0, "m.room.pinned_events": 100},
            },
        }),
    )
    .await;
    for user in [&bob, &carol] {
        server
            .post(
                &format!("/_matrix/client/v3/rooms/{room}/join"),
                user.token(),
                &json!({}),
            )
            .await;
    }
    let put = async |user: &User, kind: &str, content: Value| {
        server
            .put(&state_path(&room, kind, ""), user.token(), &content)
            .await
            .0
    };
    let action = async |user: &User, what: &str, target: &User| {
        server
            .post(
                &format!("/_matrix/client/v3/rooms/{room}/{what}"),
                user.token(),
                &json!({"user_id": target.user_id}),
            )
            .await
            .0
    };
    let (ok, no) = (StatusCode::OK, StatusCode::FORBIDDEN);

    // (who, what, expected)
    assert_eq!(
        put(&carol, "m.room.topic", json!({"topic": "anyone may"})).await,
        ok,
        "events override to 0"
    );
    assert_eq!(
        put(&carol, "m.room.name", json!({"name": "no"})).await,
        no,
        "state_default 50"
    );
    assert_eq!(
        put(&bob, "m.room.name", json!({"name": "bob's"})).await,
        ok,
        "users override to 50"
    );
    assert_eq!(
        put(&bob, "m.room.pinned_events", json!({"pinned": []})).await,
        no,
        "events override to 100"
    );
    assert_eq!(
        put(&alice, "m.room.pinned_events", json!({"pinned": []})).await,
        ok
    );
    assert_eq!(
        put(
            &bob,
            "m.room.power_levels",
            json!({"users": {bob.user_id.clone(): 100}})
        )
        .await,
        no,
        "cannot raise himself"
    );
    assert_eq!(action(&carol, "kick", &bob).await, no);
    assert_eq!(
        action(&bob, "kick", &alice).await,
        no,
        "cannot kick a higher level"
    );
    assert_eq!(action(&bob, "kick", &carol).await, ok);
    assert_eq!(action(&bob, "ban", &carol).await, ok);
    assert_eq!(action(&carol, "unban", &carol).await, no);

    // The member list as it was before carol was banned.
    let (_, members) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/members"),
            alice.token(),
        )
        .await;
    let carol_now = members["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["state_key"] == carol.user_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(carol_now["content"]["membership"], "ban");
    let (_, page) = messages(&server, &alice, &room, "dir=b&limit=3").await;
    let before_ban = page["end"].as_str().unwrap();
    let (_, then) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/members?at={before_ban}"),
            alice.token(),
        )
        .await;
    let carol_then = then["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["state_key"] == carol.user_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(carol_then["content"]["membership"], "join", "{then}");
}

#[tokio::test]
async fn a_body_less_join_works_and_profile_changes_reach_the_rooms() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    // No body at all, as matrix-nio sends it: the fields are all optional.
    let (status, body) = server
        .request_raw(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            bob.token(),
            Vec::<u8>::new(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", bob.user_id),
            bob.token(),
            &json!({"displayname": "밥"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, member) = server
        .get(
            &state_path(&room, "m.room.member", bob.user_id.as_str()),
            alice.token(),
        )
        .await;
    assert_eq!(member, json!({"membership": "join", "displayname": "밥"}));
}

#[tokio::test]
async fn a_former_member_reads_the_state_as_it_was_when_they_left() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(
        &server,
        &alice,
        json!({"preset": "public_chat", "topic": "launch plans"}),
    )
    .await;
    join(&server, &bob, &room).await;
    let (status, _) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            bob.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"),
            alice.token(),
            &json!({"topic": "decided after bob left"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, topic) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"),
            bob.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{topic}");
    assert_eq!(topic["topic"], "launch plans");
    let (status, state) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state"),
            bob.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{state}");
    let topics: Vec<&Value> = state
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.topic")
        .collect();
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0]["content"]["topic"], "launch plans");
    let (status, members) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/members"),
            bob.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{members}");
    let bob_then = members["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["state_key"] == bob.user_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(bob_then["content"]["membership"], "leave");
    // A world-readable room's state is open to anyone (room previews); others stay closed.
    let carol = register(&server, "carol").await;
    let open = create_room(
        &server,
        &alice,
        json!({"preset": "public_chat", "name": "Open", "initial_state": [
            {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}
        ]}),
    )
    .await;
    let (status, state) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{open}/state"),
            carol.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert!(
        state
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.name")
    );
    let (status, joined) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{open}/joined_members"),
            carol.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert!(joined["joined"].get(&alice.user_id).is_some(), "{joined}");
    assert_error(
        &server
            .get(
                &format!("/_matrix/client/v3/rooms/{room}/state"),
                carol.token(),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    // Joined members stay for those in the room.
    assert_error(
        &server
            .get(
                &format!("/_matrix/client/v3/rooms/{room}/joined_members"),
                bob.token(),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn events_say_what_the_readers_membership_was_when_they_were_sent() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    send_text(&server, &alice, &room, "t1", "before bob").await;
    join(&server, &bob, &room).await;
    send_text(&server, &alice, &room, "t2", "after bob").await;

    let (status, page) = messages(&server, &bob, &room, "dir=b&limit=10").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let membership_at = |body: &str| {
        page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["content"]["body"] == body)
            .map(|e| e["unsigned"]["membership"].clone())
    };
    assert_eq!(membership_at("before bob"), Some(json!("leave")), "{page}");
    assert_eq!(membership_at("after bob"), Some(json!("join")), "{page}");
    let own_join = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str())
        .unwrap();
    assert_eq!(
        own_join["unsigned"]["membership"], "join",
        "the join counts"
    );
    // Alice, there from the start, was joined for both.
    let (_, hers) = messages(&server, &alice, &room, "dir=b&limit=10").await;
    assert!(
        hers["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .all(|e| e["unsigned"]["membership"] == "join"),
        "{hers}"
    );
}

#[tokio::test]
async fn a_room_summary_previews_rooms_one_may_see() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let lobby = create_room(
        &server,
        &alice,
        json!({"preset": "public_chat", "name": "Lobby", "topic": "say hi", "room_alias_name": "lobby"}),
    )
    .await;
    let summary_path = |room: &str| {
        format!(
            "/_matrix/client/v1/room_summary/{}",
            room.replace('#', "%23")
        )
    };

    // Anyone, signed in or not, may preview a public room, by id or alias.
    let (status, anonymous) = server.get(&summary_path("#lobby:localhost"), None).await;
    assert_eq!(status, StatusCode::OK, "{anonymous}");
    assert_eq!(anonymous["room_id"], lobby);
    assert_eq!(anonymous["name"], "Lobby");
    assert_eq!(anonymous["topic"], "say hi");
    assert_eq!(anonymous["canonical_alias"], "#lobby:localhost");
    // An absent join rule means public.
    assert!(
        anonymous
            .get("join_rule")
            .is_none_or(|rule| rule == "public"),
        "{anonymous}"
    );
    assert_eq!(anonymous["num_joined_members"], 1);
    assert!(anonymous["room_version"].is_string(), "{anonymous}");
    assert!(anonymous.get("membership").is_none(), "{anonymous}");
    let (status, as_bob) = server.get(&summary_path(&lobby), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{as_bob}");
    assert_eq!(as_bob["membership"], "leave");

    // An invite-only room is previewed by its members and invitees only; to others it does
    // not exist, like a room that does not.
    let private = create_room(
        &server,
        &alice,
        json!({"preset": "private_chat", "name": "Board"}),
    )
    .await;
    for path in [summary_path(&private), summary_path("!nowhere:localhost")] {
        assert_error(
            &server.get(&path, bob.token()).await,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        );
    }
    let (status, _) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{private}/invite"),
            alice.token(),
            &json!({"user_id": bob.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, invited) = server.get(&summary_path(&private), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{invited}");
    assert_eq!(invited["membership"], "invite");
    assert_eq!(invited["name"], "Board");
    assert_eq!(invited["join_rule"], "invite");
    assert_eq!(invited["encryption"], "m.megolm.v1.aes-sha2");
}

#[tokio::test]
async fn accepting_a_direct_invite_records_the_dm_in_m_direct() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let m_direct = |user: &User| {
        let (server, user) = (&server, user.clone());
        async move {
            server
                .get(
                    &format!(
                        "/_matrix/client/v3/user/{}/account_data/m.direct",
                        user.user_id
                    ),
                    user.token(),
                )
                .await
        }
    };
    // Alice already has a DM elsewhere: it stays.
    let (status, _) = server
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/account_data/m.direct",
                alice.user_id
            ),
            alice.token(),
            &json!({"@carol:localhost": ["!old:localhost"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let plain = create_room(&server, &bob, json!({"invite": [alice.user_id]})).await;
    join(&server, &alice, &plain).await;
    let (_, before) = m_direct(&alice).await;
    assert!(
        before.get(&bob.user_id).is_none(),
        "a plain invite is no DM: {before}"
    );

    let dm = create_room(
        &server,
        &bob,
        json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [alice.user_id]}),
    )
    .await;
    join(&server, &alice, &dm).await;
    let (status, direct) = m_direct(&alice).await;
    assert_eq!(status, StatusCode::OK, "{direct}");
    assert_eq!(direct[&bob.user_id], json!([dm]), "{direct}");
    assert_eq!(direct["@carol:localhost"], json!(["!old:localhost"]));
}

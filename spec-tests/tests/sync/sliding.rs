//! Simplified sliding sync (MSC4186) over HTTP, in the request and response shapes
//! matrix-rust-sdk sends and reads.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spec_tests::{
    StatusCode, TestServer, User, assert_error, create_room, join, register, send_text,
};

const PATH: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

async fn slide(
    server: &TestServer,
    user: &User,
    pos: Option<&str>,
    timeout_ms: u64,
    body: &Value,
) -> (StatusCode, Value) {
    let mut path = format!("{PATH}?timeout={timeout_ms}");
    if let Some(pos) = pos {
        path.push_str(&format!("&pos={pos}"));
    }
    server.post(&path, user.token(), body).await
}

async fn slide_ok(server: &TestServer, user: &User, pos: Option<&str>, body: &Value) -> Value {
    let (status, response) = slide(server, user, pos, 0, body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert!(response["pos"].is_string(), "{response}");
    response
}

fn list_body(ranges: Value, timeline_limit: u64) -> Value {
    json!({
        "conn_id": "room-list",
        "lists": {"all": {
            "ranges": ranges,
            "timeline_limit": timeline_limit,
            "required_state": [["m.room.name", ""], ["m.room.member", "$ME"], ["m.room.encryption", ""]],
        }},
    })
}

fn bodies(room: &Value) -> Vec<String> {
    room["timeline"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

async fn named_room(server: &TestServer, user: &User, name: &str) -> String {
    create_room(server, user, json!({"name": name, "preset": "public_chat"})).await
}

async fn say(server: &TestServer, user: &User, room: &str, txn: &str, body: &str) {
    let (status, response) = send_text(server, user, room, txn, body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
}

#[tokio::test]
async fn the_room_list_is_ordered_by_activity_and_windowed_by_ranges() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let general = named_room(&server, &alice, "일반").await;
    let dev = named_room(&server, &alice, "개발").await;
    let ops = named_room(&server, &alice, "운영").await;
    for room in [&general, &dev, &ops] {
        join(&server, &bob, room).await;
    }
    say(&server, &bob, &ops, "o1", "deploy at 3").await;
    say(&server, &bob, &general, "g1", "lunch?").await;
    say(&server, &bob, &dev, "d1", "PR ready").await;
    say(&server, &bob, &dev, "d2", "please review").await;
    // A profile change is no activity: it must not move the room up.
    server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", bob.user_id),
            bob.token(),
            &json!({"displayname": "Bob"}),
        )
        .await;

    let first = slide_ok(&server, &alice, None, &list_body(json!([[0, 1]]), 2)).await;
    assert_eq!(first["lists"]["all"]["count"], 3);
    let rooms = first["rooms"].as_object().unwrap();
    assert_eq!(rooms.len(), 2, "only the window: {first}");
    let room = &rooms[&dev];
    assert!(rooms.contains_key(&general) && !rooms.contains_key(&ops));
    assert!(room["bump_stamp"].as_u64().unwrap() > rooms[&general]["bump_stamp"].as_u64().unwrap());
    assert_eq!(room["initial"], true);
    assert_eq!(room["name"], "개발");
    assert_eq!(bodies(room), vec!["please review"]);
    assert_eq!(room["limited"], true);
    assert_eq!(room["joined_count"], 2);
    assert_eq!(room["invited_count"], 0);
    assert_eq!(room["notification_count"], 2, "real unread counts");
    assert_eq!(room["num_live"], 0);
    let state_types: Vec<(&str, &str)> = room["required_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["state_key"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(state_types.contains(&("m.room.name", "")));
    assert!(state_types.contains(&("m.room.member", alice.user_id.as_str())));
    assert!(
        !state_types.contains(&("m.room.member", bob.user_id.as_str())),
        "not asked for"
    );
    // prev_batch goes on with /messages.
    let prev = room["prev_batch"].as_str().unwrap();
    let (_, older) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{dev}/messages?dir=b&limit=1&from={prev}&filter=%7B%22types%22%3A%5B%22m.room.message%22%5D%7D"),
            alice.token(),
        )
        .await;
    assert_eq!(spec_tests::bodies(&older), vec!["PR ready"]);

    // A new message in the oldest room brings it to the top, and only it is sent again.
    let pos = first["pos"].as_str().unwrap();
    say(&server, &bob, &ops, "o2", "rollback!").await;
    let next = slide_ok(&server, &alice, Some(pos), &list_body(json!([[0, 1]]), 1)).await;
    let rooms = next["rooms"].as_object().unwrap();
    assert!(rooms.contains_key(&ops), "{next}");
    let ops_room = &rooms[&ops];
    assert_eq!(ops_room["initial"], true, "first time in the window");
    assert_eq!(bodies(ops_room), vec!["rollback!"]);
    assert!(
        !rooms.contains_key(&dev),
        "unchanged rooms are not sent again"
    );

    let pos = next["pos"].as_str().unwrap();
    say(&server, &bob, &ops, "o3", "done").await;
    let third = slide_ok(&server, &alice, Some(pos), &list_body(json!([[0, 1]]), 5)).await;
    let ops_room = &third["rooms"][&ops];
    assert!(ops_room.get("initial").is_none(), "{third}");
    assert_eq!(bodies(ops_room), vec!["done"]);
    assert_eq!(ops_room["num_live"], 1);
    assert_eq!(ops_room["limited"], false);
}

#[tokio::test]
async fn a_waiting_request_wakes_on_a_message_and_positions_are_checked() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = named_room(&server, &alice, "wake").await;
    join(&server, &bob, &room).await;
    let body = list_body(json!([[0, 9]]), 5);
    let first = slide_ok(&server, &alice, None, &body).await;
    let pos = first["pos"].as_str().unwrap().to_owned();

    // Nothing new: the request waits, then wakes at the message.
    let started = Instant::now();
    let (waited, _) = tokio::join!(slide(&server, &alice, Some(&pos), 20_000, &body), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        say(&server, &bob, &room, "w1", "ping").await;
    });
    assert_eq!(waited.0, StatusCode::OK, "{}", waited.1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woke on the message"
    );
    assert_eq!(bodies(&waited.1["rooms"][&room]), vec!["ping"]);
    // Nothing at all: the request times out with an answer.
    let pos2 = waited.1["pos"].as_str().unwrap().to_owned();
    let (status, quiet) = slide(&server, &alice, Some(&pos2), 300, &body).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        quiet["rooms"].as_object().is_none_or(|r| r.is_empty()),
        "{quiet}"
    );

    // The previous position may be used again (a retry); older, unknown and foreign ones
    // may not.
    slide_ok(&server, &alice, Some(&pos2), &body).await;
    assert_error(
        &slide(&server, &alice, Some(&pos), 0, &body).await,
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN_POS",
    );
    let other_device = spec_tests::login(&server, "alice", &alice.password).await;
    assert_error(
        &slide(&server, &other_device, Some(&pos2), 0, &body).await,
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN_POS",
    );
    assert_error(
        &slide(&server, &alice, Some("zzzzzzzz_12345"), 0, &body).await,
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN_POS",
    );
    assert_error(
        &slide(&server, &alice, Some("garbage"), 0, &body).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let (_, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(
        versions["unstable_features"]["org.matrix.simplified_msc3575"],
        true
    );
}

#[tokio::test]
async fn filters_subscriptions_and_invites() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let plain = named_room(&server, &alice, "plain").await;
    let secret = create_room(
        &server,
        &alice,
        json!({"name": "secret", "preset": "private_chat"}),
    )
    .await;
    let space = create_room(
        &server,
        &alice,
        json!({"name": "Company", "preset": "public_chat", "creation_content": {"type": "m.space"}}),
    )
    .await;
    let dm = create_room(
        &server,
        &bob,
        json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [alice.user_id]}),
    )
    .await;
    let filtered = |filters: Value| json!({"lists": {"l": {"ranges": [[0, 20]], "timeline_limit": 0, "filters": filters}}});
    let ids = |response: &Value| -> Vec<String> {
        let mut ids: Vec<String> = response["rooms"]
            .as_object()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };

    let invites = slide_ok(&server, &alice, None, &filtered(json!({"is_invite": true}))).await;
    assert_eq!(ids(&invites), vec![dm.clone()]);
    let invite = &invites["rooms"][&dm];
    assert_eq!(invite["is_dm"], true);
    let stripped = invite["invite_state"].as_array().unwrap();
    assert!(
        stripped
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str()),
        "the inviter: {invite}"
    );
    let encrypted = slide_ok(
        &server,
        &alice,
        None,
        &filtered(json!({"is_encrypted": true, "is_invite": false})),
    )
    .await;
    assert_eq!(ids(&encrypted), vec![secret.clone()]);
    let spaces = slide_ok(
        &server,
        &alice,
        None,
        &filtered(json!({"room_types": ["m.space"]})),
    )
    .await;
    assert_eq!(ids(&spaces), vec![space.clone()]);
    let not_spaces = slide_ok(
        &server,
        &alice,
        None,
        &filtered(json!({"not_room_types": ["m.space"], "is_invite": false})),
    )
    .await;
    assert_eq!(
        ids(&not_spaces),
        sorted(vec![plain.clone(), secret.clone()])
    );

    // Joining the DM and marking it in m.direct makes it a DM for the is_dm filter.
    join(&server, &alice, &dm).await;
    server
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/account_data/m.direct",
                alice.user_id
            ),
            alice.token(),
            &json!({ bob.user_id.as_str(): [dm] }),
        )
        .await;
    let dms = slide_ok(&server, &alice, None, &filtered(json!({"is_dm": true}))).await;
    assert_eq!(ids(&dms), vec![dm.clone()]);

    // A subscription sends a room outside every window, with its own settings.
    say(&server, &alice, &plain, "p1", "subscribed").await;
    let subscribed = slide_ok(
        &server,
        &alice,
        None,
        &json!({
            "lists": {"top": {"ranges": [[0, 0]], "timeline_limit": 0}},
            "room_subscriptions": {secret.as_str(): {"timeline_limit": 3, "required_state": [["*", "*"]]}},
        }),
    )
    .await;
    let secret_room = &subscribed["rooms"][&secret];
    assert!(
        secret_room["required_state"].as_array().unwrap().len() >= 5,
        "{secret_room}"
    );
    assert!(!secret_room["timeline"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn an_encryption_connection_answers_when_its_user_sends() {
    // Element X keeps a second connection with only the e2ee and to-device extensions; it backs
    // up the room keys its device made when that connection answers.
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = named_room(&server, &alice, "keys").await;
    join(&server, &bob, &room).await;
    let body = json!({
        "conn_id": "encryption",
        "extensions": {"e2ee": {"enabled": true}, "to_device": {"enabled": true}},
    });
    let first = slide_ok(&server, &alice, None, &body).await;
    let pos = first["pos"].as_str().unwrap().to_owned();

    // Someone else's message is nothing for this connection: it waits out its timeout.
    say(&server, &bob, &room, "b1", "from bob").await;
    let asked = Instant::now();
    let (status, quiet) = slide(&server, &alice, Some(&pos), 300, &body).await;
    assert_eq!(status, StatusCode::OK, "{quiet}");
    assert!(asked.elapsed() >= Duration::from_millis(250), "{quiet}");
    let pos = quiet["pos"].as_str().unwrap().to_owned();

    // Alice's own message answers it.
    let started = Instant::now();
    let (woken, _) = tokio::join!(slide(&server, &alice, Some(&pos), 20_000, &body), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        say(&server, &alice, &room, "a1", "from alice").await;
    });
    assert_eq!(woken.0, StatusCode::OK, "{}", woken.1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered at the send"
    );
    assert!(woken.1["extensions"]["e2ee"].is_object(), "{}", woken.1);
}

#[tokio::test]
async fn the_spaces_filter_keeps_the_children_of_joined_spaces() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let space = create_room(
        &server,
        &alice,
        json!({"name": "Engineering", "preset": "public_chat", "creation_content": {"type": "m.space"}}),
    )
    .await;
    let backend = named_room(&server, &alice, "backend").await;
    let removed = named_room(&server, &alice, "removed").await;
    let elsewhere = named_room(&server, &alice, "elsewhere").await;
    for (child, content) in [
        (&backend, json!({"via": ["localhost"]})),
        // A child event without `via` takes the room out of the space.
        (&removed, json!({})),
    ] {
        let (status, body) = server
            .put(
                &format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{child}"),
                alice.token(),
                &content,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let in_spaces = |spaces: Value| json!({"lists": {"l": {"ranges": [[0, 20]], "timeline_limit": 0, "filters": {"spaces": spaces}}}});
    let listed = |response: &Value| -> Vec<String> {
        response["rooms"]
            .as_object()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    };

    let response = slide_ok(&server, &alice, None, &in_spaces(json!([space]))).await;
    assert_eq!(listed(&response), vec![backend.clone()], "{response}");
    assert_eq!(response["lists"]["l"]["count"], 1);
    assert!(!listed(&response).contains(&elsewhere));

    // Only spaces the user has joined count: Bob, in the child room but not the space, gets
    // nothing through it.
    join(&server, &bob, &backend).await;
    let response = slide_ok(&server, &bob, None, &in_spaces(json!([space]))).await;
    assert_eq!(response["lists"]["l"]["count"], 0, "{response}");
    join(&server, &bob, &space).await;
    let response = slide_ok(&server, &bob, None, &in_spaces(json!([space]))).await;
    assert_eq!(listed(&response), vec![backend.clone()], "{response}");

    // A space id that is not a room id is the client's mistake.
    let refused = slide(&server, &alice, None, 0, &in_spaces(json!(["not-a-room"]))).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
}

#[tokio::test]
async fn extensions_carry_to_device_keys_account_data_receipts_and_typing() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = named_room(&server, &alice, "ext").await;
    let body = json!({
        "conn_id": "ext",
        "lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1}},
        "extensions": {
            "to_device": {"enabled": true},
            "e2ee": {"enabled": true},
            "account_data": {"enabled": true},
            "receipts": {"enabled": true},
            "typing": {"enabled": true},
        },
    });
    let first = slide_ok(&server, &alice, None, &body).await;
    let ext = &first["extensions"];
    assert!(
        ext["e2ee"]["device_one_time_keys_count"].is_object(),
        "{ext}"
    );
    assert!(
        ext["account_data"]["global"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.push_rules")
    );
    let next_batch = ext["to_device"]["next_batch"].as_str().unwrap().to_owned();
    let pos = first["pos"].as_str().unwrap().to_owned();

    // Bob joins (a device-list change for alice), sends a to-device message, reads and types.
    join(&server, &bob, &room).await;
    say(&server, &bob, &room, "e1", "hello").await;
    let (_, room_state) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1"),
            bob.token(),
        )
        .await;
    let event_id = room_state["chunk"][0]["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}"),
            bob.token(),
            &json!({}),
        )
        .await;
    server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/{}", bob.user_id),
            bob.token(),
            &json!({"typing": true, "timeout": 10000}),
        )
        .await;
    server
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/td1",
            bob.token(),
            &json!({"messages": {alice.user_id.as_str(): {alice.device_id.as_str(): {"secret": 1}}}}),
        )
        .await;
    server
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/rooms/{room}/account_data/m.tag.test",
                alice.user_id
            ),
            alice.token(),
            &json!({"x": 1}),
        )
        .await;

    let mut with_since = body.clone();
    with_since["extensions"]["to_device"]["since"] = json!(next_batch);
    let next = slide_ok(&server, &alice, Some(&pos), &with_since).await;
    let ext = &next["extensions"];
    assert_eq!(
        ext["to_device"]["events"][0]["content"]["secret"], 1,
        "{ext}"
    );
    assert!(
        ext["e2ee"]["device_lists"]["changed"]
            .as_array()
            .unwrap()
            .contains(&json!(bob.user_id)),
        "{ext}"
    );
    let receipt = &ext["receipts"]["rooms"][&room];
    assert_eq!(receipt["type"], "m.receipt");
    assert!(
        receipt["content"][&event_id]["m.read"][&bob.user_id].is_object(),
        "{receipt}"
    );
    assert_eq!(
        ext["typing"]["rooms"][&room]["content"]["user_ids"],
        json!([bob.user_id])
    );
    assert_eq!(ext["account_data"]["rooms"][&room][0]["type"], "m.tag.test");

    // Acknowledged to-device messages are not sent again.
    let next_batch = ext["to_device"]["next_batch"].as_str().unwrap().to_owned();
    let pos = next["pos"].as_str().unwrap().to_owned();
    let mut again = body.clone();
    again["extensions"]["to_device"]["since"] = json!(next_batch);
    let (_, third) = slide(&server, &alice, Some(&pos), 200, &again).await;
    assert!(
        third["extensions"]["to_device"]["events"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{third}"
    );
}

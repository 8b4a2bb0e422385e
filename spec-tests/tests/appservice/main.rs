//! The appservice API against a real Sori: a bridge registers and logs in its users, acts as
//! them, owns its namespaces, hears of the events in its users' rooms through durable
//! transactions (retried with the same id and contents, across a crash too), answers queries
//! for users and aliases Sori does not know, and is pinged; broken registrations stop the
//! start with the file's name.

use std::time::Duration;

use serde_json::{Value, json};
use spec_tests::appservice::{Reply, TestAppservice};
use spec_tests::{
    ServerOptions, StatusCode, TestServer, User, assert_error, create_room, join, register,
    send_text,
};

/// A server with the appservice registered; the registration file lives in `dir`.
async fn server_with(bridge: &TestAppservice, dir: &tempfile::TempDir) -> TestServer {
    server_with_settings(bridge, dir, "").await
}

/// [`server_with`], with more `[appservices]` settings.
async fn server_with_settings(
    bridge: &TestAppservice,
    dir: &tempfile::TempDir,
    settings: &str,
) -> TestServer {
    let path = bridge.write_registration(dir.path());
    let server = TestServer::start_with(ServerOptions {
        extra_toml: format!(
            "[appservices]\nregistration_files = [\"{}\"]\n{settings}\n",
            path.display()
        ),
        ..Default::default()
    })
    .await;
    bridge.set_homeserver(&server.base_url);
    server
}

/// Registers a bridge user with the appservice's token; returns the raw answer.
async fn register_as(server: &TestServer, token: &str, name: &str) -> (StatusCode, Value) {
    server
        .post(
            "/_matrix/client/v3/register",
            Some(token),
            &json!({"type": "m.login.application_service", "username": name}),
        )
        .await
}

async fn masquerade(
    server: &TestServer,
    bridge: &TestAppservice,
    method: reqwest::Method,
    path: &str,
    user_id: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let separator = if path.contains('?') { '&' } else { '?' };
    let path = format!(
        "{path}{separator}user_id={}",
        user_id.replace('@', "%40").replace(':', "%3A")
    );
    server
        .request(method, &path, Some(&bridge.as_token), body)
        .await
}

/// A public room `creator` makes, with the bridge's user `@bridge_kim` joined.
async fn room_with_kim(server: &TestServer, bridge: &TestAppservice, creator: &User) -> String {
    let room = create_room(server, creator, json!({"preset": "public_chat"})).await;
    let (status, _) = masquerade(
        server,
        bridge,
        reqwest::Method::POST,
        &format!("/_matrix/client/v3/rooms/{room}/join"),
        "@bridge_kim:localhost",
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    room
}

#[tokio::test]
async fn a_bridge_registers_acts_as_its_users_and_owns_its_namespaces() {
    let bridge = TestAppservice::start("bridge").await;
    let dir = tempfile::tempdir().unwrap();
    let server = server_with(&bridge, &dir).await;

    let (_, types) = server.get("/_matrix/client/v3/login", None).await;
    assert!(
        types["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["type"] == "m.login.application_service")
    );

    // Registration: its users only, no password, no user-interactive auth.
    let (status, kim) = register_as(&server, &bridge.as_token, "bridge_kim").await;
    assert_eq!(status, StatusCode::OK, "{kim}");
    assert_eq!(kim["user_id"], "@bridge_kim:localhost");
    assert!(kim["access_token"].is_string());
    assert_error(
        &register_as(&server, &bridge.as_token, "kim").await,
        StatusCode::BAD_REQUEST,
        "M_EXCLUSIVE",
    );
    assert_error(
        &register_as(&server, &bridge.as_token, "bridge_kim").await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );
    assert_error(
        &register_as(&server, "not-a-token", "bridge_lee").await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let (status, _) = server
        .post(
            "/_matrix/client/v3/register",
            None,
            &json!({"type": "m.login.application_service", "username": "bridge_lee"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Everyone else is kept out of its namespaces.
    let (status, body) = server
        .post(
            "/_matrix/client/v3/register",
            None,
            &json!({"username": "bridge_fake", "password": "a-password-1", "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].clone()),
        (StatusCode::BAD_REQUEST, json!("M_EXCLUSIVE"))
    );
    let alice = register(&server, "alice").await;
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/createRoom",
                alice.token(),
                &json!({"room_alias_name": "bridge_room"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_EXCLUSIVE",
    );

    // Acting as its users: whoami, and nobody outside its namespace or unregistered.
    let (status, me) = masquerade(
        &server,
        &bridge,
        reqwest::Method::GET,
        "/_matrix/client/v3/account/whoami",
        "@bridge_kim:localhost",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user_id"], "@bridge_kim:localhost");
    let (status, me) = server
        .get("/_matrix/client/v3/account/whoami", Some(&bridge.as_token))
        .await;
    assert_eq!(
        (status, me["user_id"].clone()),
        (StatusCode::OK, json!("@bridge_bot:localhost"))
    );
    assert_error(
        &masquerade(
            &server,
            &bridge,
            reqwest::Method::GET,
            "/_matrix/client/v3/account/whoami",
            &alice.user_id,
            None,
        )
        .await,
        StatusCode::FORBIDDEN,
        "M_EXCLUSIVE",
    );
    assert_error(
        &masquerade(
            &server,
            &bridge,
            reqwest::Method::GET,
            "/_matrix/client/v3/account/whoami",
            "@bridge_nobody:localhost",
            None,
        )
        .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    // Login as one of its users.
    let (status, login) = server
        .post(
            "/_matrix/client/v3/login",
            Some(&bridge.as_token),
            &json!({"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": "bridge_kim"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    assert_eq!(login["user_id"], "@bridge_kim:localhost");
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/login",
                Some(&bridge.as_token),
                &json!({"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": "alice"}}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_EXCLUSIVE",
    );

    // The bridge's own alias, by one of its users.
    let (status, room) = masquerade(
        &server,
        &bridge,
        reqwest::Method::POST,
        "/_matrix/client/v3/createRoom",
        "@bridge_kim:localhost",
        Some(&json!({"room_alias_name": "bridge_team", "preset": "public_chat"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{room}");

    // Bridged history keeps its own time; anyone else's `ts` is ignored.
    let (status, sent) = masquerade(
        &server,
        &bridge,
        reqwest::Method::PUT,
        &format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/old1?ts=1500000000000",
            room["room_id"].as_str().unwrap()
        ),
        "@bridge_kim:localhost",
        Some(&json!({"msgtype": "m.text", "body": "from 2017"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let (_, event) = masquerade(
        &server,
        &bridge,
        reqwest::Method::GET,
        &format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            room["room_id"].as_str().unwrap(),
            sent["event_id"].as_str().unwrap()
        ),
        "@bridge_kim:localhost",
        None,
    )
    .await;
    assert_eq!(event["origin_server_ts"], 1_500_000_000_000u64, "{event}");
    let own = create_room(&server, &alice, json!({})).await;
    let (_, sent) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{own}/send/m.room.message/t1?ts=1500000000000"),
            alice.token(),
            &json!({"msgtype": "m.text", "body": "now"}),
        )
        .await;
    let (_, event) = server
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{own}/event/{}",
                sent["event_id"].as_str().unwrap()
            ),
            alice.token(),
        )
        .await;
    assert!(event["origin_server_ts"].as_u64().unwrap() > 1_700_000_000_000);

    // The bridge's network in the room directory: listed there, not in the server's list.
    let team = room["room_id"].as_str().unwrap().to_owned();
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/directory/list/appservice/irc/{team}"),
            Some(&bridge.as_token),
            &json!({"visibility": "public"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = |body: &Value| body.to_string().contains(&team);
    let (_, main) = server
        .get("/_matrix/client/v3/publicRooms", alice.token())
        .await;
    assert!(!listed(&main), "{main}");
    let (_, network) = server
        .post(
            "/_matrix/client/v3/publicRooms",
            alice.token(),
            &json!({"third_party_instance_id": "bridge|irc"}),
        )
        .await;
    assert!(listed(&network), "{network}");
    let (_, all) = server
        .post(
            "/_matrix/client/v3/publicRooms",
            alice.token(),
            &json!({"include_all_networks": true}),
        )
        .await;
    assert!(listed(&all), "{all}");
    assert_error(
        &server
            .put(
                &format!("/_matrix/client/v3/directory/list/appservice/irc/{team}"),
                alice.token(),
                &json!({"visibility": "public"}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    // Queries: a user and an alias Sori does not know yet, which the bridge has.
    bridge.knows_user("@bridge_park:localhost");
    let (status, profile) = server
        .get(
            "/_matrix/client/v3/profile/@bridge_park:localhost",
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["displayname"], "bridge_park");
    assert_error(
        &server
            .get(
                "/_matrix/client/v3/profile/@bridge_ghost:localhost",
                alice.token(),
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    bridge.knows_alias("#bridge_lobby:localhost");
    let (status, resolved) = server
        .get(
            "/_matrix/client/v3/directory/room/%23bridge_lobby%3Alocalhost",
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert!(resolved["room_id"].as_str().unwrap().starts_with('!'));
    let asked: Vec<String> = bridge
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path.clone())
        .collect();
    assert!(
        asked
            .iter()
            .any(|p| p.starts_with("/_matrix/app/v1/users/")),
        "{asked:?}"
    );
    assert!(
        asked
            .iter()
            .any(|p| p.starts_with("/_matrix/app/v1/rooms/")),
        "{asked:?}"
    );

    // A bridge deactivates its users without a password, and brings them back by
    // registering them again.
    register_as(&server, &bridge.as_token, "bridge_leaver").await;
    let (status, body) = masquerade(
        &server,
        &bridge,
        reqwest::Method::POST,
        "/_matrix/client/v3/account/deactivate",
        "@bridge_leaver:localhost",
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(
        &masquerade(
            &server,
            &bridge,
            reqwest::Method::GET,
            "/_matrix/client/v3/account/whoami",
            "@bridge_leaver:localhost",
            None,
        )
        .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let (status, body) = register_as(&server, &bridge.as_token, "bridge_leaver").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = masquerade(
        &server,
        &bridge,
        reqwest::Method::GET,
        "/_matrix/client/v3/account/whoami",
        "@bridge_leaver:localhost",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Ping, by the appservice only.
    let (status, pong) = server
        .post(
            "/_matrix/client/v1/appservice/bridge/ping",
            Some(&bridge.as_token),
            &json!({"transaction_id": "t1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pong}");
    assert!(pong["duration_ms"].is_u64());
    let pinged = bridge
        .requests()
        .into_iter()
        .find(|r| r.path == "/_matrix/app/v1/ping")
        .unwrap();
    assert_eq!(pinged.body["transaction_id"], "t1");
    assert_eq!(pinged.authorization, format!("Bearer {}", bridge.hs_token));
    assert_error(
        &server
            .post(
                "/_matrix/client/v1/appservice/bridge/ping",
                alice.token(),
                &json!({}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .post(
                "/_matrix/client/v1/appservice/other/ping",
                Some(&bridge.as_token),
                &json!({}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn a_bridge_hears_its_users_rooms_in_order_through_retries_and_a_crash() {
    let bridge = TestAppservice::start("bridge").await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = server_with(&bridge, &dir).await;
    register_as(&server, &bridge.as_token, "bridge_kim").await;
    let alice = register(&server, "alice").await;
    let carol = register(&server, "carol").await;

    let room = room_with_kim(&server, &bridge, &alice).await;
    // A room without the bridge's users stays unheard.
    let private = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    join(&server, &carol, &private).await;
    send_text(&server, &carol, &private, "p1", "not for the bridge").await;

    // The bridge fails twice: the same transaction comes again, and then once more.
    bridge.script([Reply::Status(500), Reply::Status(503)]);
    send_text(&server, &alice, &room, "m1", "hello bridge").await;
    bridge
        .wait_for(Duration::from_secs(20), |e| {
            e["content"]["body"] == "hello bridge"
        })
        .await;
    let puts: Vec<_> = bridge
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert!(puts.len() >= 3, "{puts:#?}");
    let delivered = puts
        .iter()
        .find(|r| r.reply == Reply::Accept && r.body.to_string().contains("hello bridge"))
        .unwrap();
    for failed in puts.iter().filter(|r| r.reply != Reply::Accept) {
        assert_eq!(failed.path, delivered.path, "the same transaction id");
        assert_eq!(failed.body, delivered.body, "the same contents");
    }
    assert!(
        puts.iter()
            .all(|r| r.authorization == format!("Bearer {}", bridge.hs_token))
    );

    // Down while ten messages are sent, the server killed: all ten arrive after, once, in order.
    bridge.answer_all(Reply::Status(503));
    for i in 0..10 {
        send_text(
            &server,
            &alice,
            &room,
            &format!("d{i}"),
            &format!("during outage {i}"),
        )
        .await;
    }
    server.restart().await;
    bridge.answer_all(Reply::Accept);
    bridge
        .wait_for(Duration::from_secs(30), |e| {
            e["content"]["body"] == "during outage 9"
        })
        .await;
    let bodies: Vec<String> = bridge
        .events()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect();
    let expected: Vec<String> = std::iter::once("hello bridge".to_owned())
        .chain((0..10).map(|i| format!("during outage {i}")))
        .collect();
    assert_eq!(
        bodies, expected,
        "every message once, in order, nothing else"
    );
    let txns: Vec<u64> = bridge
        .accepted()
        .iter()
        .map(|(t, _)| t.parse().unwrap())
        .collect();
    assert!(txns.windows(2).all(|w| w[0] < w[1]), "{txns:?}");
    // The join of its user came before any message (filtered out of `bodies` above).
    let events = bridge.events();
    assert_eq!(events[0]["type"], "m.room.member");
    assert_eq!(events[0]["state_key"], "@bridge_kim:localhost");
}

#[tokio::test]
async fn a_hanging_bridge_is_given_up_on_and_sent_the_same_transaction_again() {
    let bridge = TestAppservice::start("bridge").await;
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_settings(&bridge, &dir, "timeout_secs = 1").await;
    register_as(&server, &bridge.as_token, "bridge_kim").await;
    let alice = register(&server, "alice").await;
    let room = room_with_kim(&server, &bridge, &alice).await;
    bridge
        .wait_for(Duration::from_secs(20), |e| e["type"] == "m.room.member")
        .await;

    // The bridge takes the next transaction and never answers; the server goes on serving.
    bridge.script([Reply::Hang]);
    send_text(&server, &alice, &room, "h1", "sent while it hangs").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !bridge.requests().iter().any(|r| r.reply == Reply::Hang) {
        assert!(std::time::Instant::now() < deadline, "no transaction sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = send_text(&server, &alice, &room, "h2", "and after").await;
    assert_eq!(status, StatusCode::OK);
    bridge
        .wait_for(Duration::from_secs(20), |e| {
            e["content"]["body"] == "and after"
        })
        .await;
    let puts: Vec<_> = bridge
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    let hung = puts.iter().find(|r| r.reply == Reply::Hang).unwrap();
    let retried = puts
        .iter()
        .find(|r| r.reply == Reply::Accept && r.path == hung.path)
        .expect("the hung transaction is sent again");
    assert_eq!(retried.body, hung.body, "with the same contents");
    let bodies: Vec<String> = bridge
        .events()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(bodies, ["sent while it hangs", "and after"]);
}

#[tokio::test]
async fn a_bridge_that_asks_hears_typing_receipts_presence_and_to_device_messages() {
    let bridge = TestAppservice::start("bridge").await;
    let dir = tempfile::tempdir().unwrap();
    let server = server_with(&bridge, &dir).await;
    let (_, kim) = register_as(&server, &bridge.as_token, "bridge_kim").await;
    let kim_device = kim["device_id"].as_str().unwrap().to_owned();
    let alice = register(&server, "alice").await;
    let carol = register(&server, "carol").await;
    let room = room_with_kim(&server, &bridge, &alice).await;
    let (_, sent) = send_text(&server, &alice, &room, "m1", "typed first").await;
    let event_id = sent["event_id"].as_str().unwrap().to_owned();

    server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/{}", alice.user_id),
            alice.token(),
            &json!({"typing": true, "timeout": 30000}),
        )
        .await;
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}"),
            alice.token(),
            &json!({}),
        )
        .await;
    server
        .put(
            &format!("/_matrix/client/v3/presence/{}/status", alice.user_id),
            alice.token(),
            &json!({"presence": "online", "status_msg": "at my desk"}),
        )
        .await;
    // To-device messages: the bridge's user's go to the bridge too, carol's do not.
    let (status, _) = server
        .put(
            "/_matrix/client/v3/sendToDevice/io.sori.test/td1",
            alice.token(),
            &json!({"messages": {
                "@bridge_kim:localhost": {kim_device.as_str(): {"secret": "for kim"}},
                carol.user_id.as_str(): {"*": {"secret": "for carol"}},
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let kinds = loop {
        let ephemeral = bridge.ephemeral();
        let kinds: Vec<String> = ephemeral
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        if ["m.typing", "m.receipt", "m.presence"]
            .iter()
            .all(|k| kinds.iter().any(|got| got == k))
        {
            break ephemeral;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{:#?}",
            bridge.requests()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let typing = kinds.iter().find(|e| e["type"] == "m.typing").unwrap();
    assert_eq!(typing["room_id"], room);
    assert_eq!(typing["content"]["user_ids"], json!([alice.user_id]));
    let receipt = kinds.iter().find(|e| e["type"] == "m.receipt").unwrap();
    assert!(receipt["content"][&event_id]["m.read"][&alice.user_id]["ts"].is_u64());
    let presence = kinds.iter().find(|e| e["type"] == "m.presence").unwrap();
    assert_eq!(presence["sender"], alice.user_id);
    assert_eq!(presence["content"]["status_msg"], "at my desk");

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while bridge.to_device().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no to-device message");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        bridge.to_device(),
        [json!({
            "type": "io.sori.test",
            "sender": alice.user_id,
            "content": {"secret": "for kim"},
            "to_user_id": "@bridge_kim:localhost",
            "to_device_id": kim_device,
        })]
    );
}

#[tokio::test]
async fn broken_registrations_stop_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("broken.yaml", "id: [unclosed".to_owned(), "not a registration"),
        (
            "regex.yaml",
            "id: x\nurl: null\nas_token: a\nhs_token: b\nsender_localpart: x\nnamespaces:\n  users:\n    - exclusive: true\n      regex: \"@x_(.*\"\n".to_owned(),
            "does not compile",
        ),
        ("notoken.yaml", "id: x\nurl: null\nhs_token: b\nsender_localpart: x\n".to_owned(), "as_token"),
    ];
    for (name, text, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "server_name = \"localhost\"\n[listen]\nclient = \"127.0.0.1:{port}\"\n[storage]\npath = \"{data}\"\n[appservices]\nregistration_files = [\"{file}\"]\n",
                port = spec_tests::free_port(),
                data = dir.path().join(format!("{name}-data")).display(),
                file = path.display()
            ),
        )
        .unwrap();
        let output = tokio::process::Command::new(spec_tests::sori_binary())
            .arg("--config")
            .arg(&config)
            .env_remove("SORI_CONFIG")
            .output();
        let output = tokio::time::timeout(Duration::from_secs(30), output)
            .await
            .expect("sori stops at once")
            .unwrap();
        assert!(!output.status.success());
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(
            said.contains(name) && said.contains(expected),
            "{name}: {said}"
        );
    }
}

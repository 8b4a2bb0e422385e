//! Sync filters beyond the timeline, unread counts per thread, and presence that changes by
//! time alone.

use std::sync::Arc;

use spec_tests::ServerOptions;

use super::*;

fn types(events: &Value) -> Vec<String> {
    events
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {events}"))
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn filters_pick_account_data_presence_ephemeral_state_and_fields() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(
        &server,
        &alice,
        json!({"preset": "public_chat", "name": "방"}),
    )
    .await;
    join(&server, &bob, &room).await;
    let me = &alice.user_id;
    for (path, body) in [
        (
            format!("/_matrix/client/v3/user/{me}/account_data/a.keep"),
            json!({"k": 1}),
        ),
        (
            format!("/_matrix/client/v3/user/{me}/account_data/b.drop"),
            json!({"k": 2}),
        ),
        (
            format!("/_matrix/client/v3/user/{me}/rooms/{room}/account_data/r.keep"),
            json!({"k": 3}),
        ),
        (
            format!("/_matrix/client/v3/user/{me}/rooms/{room}/account_data/r.drop"),
            json!({"k": 4}),
        ),
        (
            format!("/_matrix/client/v3/presence/{}/status", bob.user_id),
            json!({"presence": "online"}),
        ),
    ] {
        let token = if path.contains("presence") {
            bob.token()
        } else {
            alice.token()
        };
        assert_eq!(
            server.put(&path, token, &body).await.0,
            StatusCode::OK,
            "{path}"
        );
    }
    send(&server, &alice, &room, "f1", "안녕").await;
    let typing = format!("/_matrix/client/v3/rooms/{room}/typing/{}", bob.user_id);
    server
        .put(
            &typing,
            bob.token(),
            &json!({"typing": true, "timeout": 30000}),
        )
        .await;

    // Without a filter everything is there (so the filtered sync below proves something).
    // One timeline event keeps the rest of the state in the state section.
    let one = json!({"room": {"timeline": {"limit": 1}}});
    let all = sync(
        &server,
        &alice,
        &format!("filter={}", urlencode(&one.to_string())),
    )
    .await;
    let joined = &all["rooms"]["join"][&room];
    for kind in ["a.keep", "b.drop", "m.push_rules"] {
        assert!(
            types(&all["account_data"]["events"]).contains(&kind.to_owned()),
            "{all}"
        );
    }
    assert_eq!(types(&joined["account_data"]["events"]).len(), 2);
    assert!(types(&joined["ephemeral"]["events"]).contains(&"m.typing".to_owned()));
    assert!(!all["presence"]["events"].as_array().unwrap().is_empty());
    assert!(types(&joined["state"]["events"]).contains(&"m.room.power_levels".to_owned()));

    let filter = json!({
        "account_data": {"types": ["a.*"]},
        "presence": {"not_senders": [bob.user_id]},
        "event_fields": ["type", "sender", "content.body"],
        "room": {
            "ephemeral": {"not_types": ["m.typing"]},
            "account_data": {"types": ["r.keep"]},
            "state": {"types": ["m.room.name", "m.room.create"]},
            "timeline": {"limit": 1},
        },
    });
    let query = format!("filter={}", urlencode(&filter.to_string()));
    let filtered = sync(&server, &alice, &query).await;
    let joined = &filtered["rooms"]["join"][&room];
    assert_eq!(types(&filtered["account_data"]["events"]), ["a.keep"]);
    assert!(
        filtered["presence"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["sender"] != bob.user_id.as_str()),
        "{filtered}"
    );
    assert!(!types(&joined["ephemeral"]["events"]).contains(&"m.typing".to_owned()));
    assert_eq!(types(&joined["account_data"]["events"]), ["r.keep"]);
    let mut state = types(&joined["state"]["events"]);
    state.sort();
    assert_eq!(state, ["m.room.create", "m.room.name"]);
    let message = joined["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.message")
        .unwrap_or_else(|| panic!("{joined}"));
    assert_eq!(
        message,
        &json!({"type": "m.room.message", "sender": alice.user_id, "content": {"body": "안녕"}})
    );

    // A room left out by a section's `not_rooms` loses that section only.
    let filter = json!({"room": {"account_data": {"not_rooms": [room]}}});
    let query = format!("filter={}", urlencode(&filter.to_string()));
    let response = sync(&server, &alice, &query).await;
    let joined = &response["rooms"]["join"][&room];
    assert!(types(&joined["account_data"]["events"]).is_empty());
    assert!(!types(&joined["timeline"]["events"]).is_empty());
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn threads_are_counted_apart_when_the_client_asks() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    join(&server, &bob, &room).await;
    let root = send(&server, &alice, &room, "root", "스레드 시작").await;
    let mut replies = Vec::new();
    for i in 0..2 {
        let (status, reply) = server
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/reply{i}"),
                alice.token(),
                &json!({"msgtype": "m.text", "body": format!("답 {i}"),
                        "m.relates_to": {"rel_type": "m.thread", "event_id": root}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        replies.push(reply["event_id"].as_str().unwrap().to_owned());
    }
    let main = send(&server, &alice, &room, "main", "본문").await;

    let threaded = format!(
        "filter={}",
        urlencode(
            &json!({"room": {"timeline": {"unread_thread_notifications": true}}}).to_string()
        )
    );
    let counts = async |query: &str| {
        let response = sync(&server, &bob, query).await;
        let joined = &response["rooms"]["join"][&room];
        let count = |v: &Value| v["notification_count"].as_u64().unwrap();
        let main = count(&joined["unread_notifications"]);
        let thread = joined["unread_thread_notifications"].get(&root).map(count);
        (main, thread)
    };
    assert_eq!(
        counts("").await,
        (4, None),
        "one count for the room by default"
    );
    assert_eq!(
        counts(&threaded).await,
        (2, Some(2)),
        "root and main message; two replies"
    );

    // Reading the thread clears the thread only.
    let (status, body) = server
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{room}/receipt/m.read/{}",
                replies[1]
            ),
            bob.token(),
            &json!({"thread_id": root}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(counts(&threaded).await, (2, None));
    assert_eq!(counts("").await, (2, None));

    // Reading the main timeline clears the rest.
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{main}"),
            bob.token(),
            &json!({"thread_id": "main"}),
        )
        .await;
    assert_eq!(counts(&threaded).await, (0, None));
}

#[tokio::test]
async fn presence_turns_unavailable_then_offline_by_itself() {
    let server = Arc::new(
        TestServer::start_with(ServerOptions {
            extra_toml: "[presence]\nidle_after_secs = 1\noffline_after_secs = 4\n".into(),
            ..ServerOptions::default()
        })
        .await,
    );
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    join(&server, &bob, &room).await;
    // Alice syncs once (online) and then goes away; bob keeps a long-poll running.
    sync(&server, &alice, "").await;
    let mut since = sync(&server, &bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut seen = Vec::new();
    let started = Instant::now();
    while !seen.iter().any(|p| p == "offline") && started.elapsed() < Duration::from_secs(20) {
        let response = sync(&server, &bob, &format!("since={since}&timeout=10000")).await;
        since = response["next_batch"].as_str().unwrap().to_owned();
        for event in response["presence"]["events"].as_array().unwrap() {
            if event["sender"] == alice.user_id.as_str() {
                seen.push(event["content"]["presence"].as_str().unwrap().to_owned());
            }
        }
    }
    let unavailable = seen.iter().position(|p| p == "unavailable");
    let offline = seen.iter().position(|p| p == "offline");
    assert!(
        matches!((unavailable, offline), (Some(u), Some(o)) if u < o),
        "alice's presence as bob saw it: {seen:?}"
    );
    let status = format!("/_matrix/client/v3/presence/{}/status", alice.user_id);
    assert_eq!(
        server.get(&status, bob.token()).await.1["presence"],
        "offline"
    );

    // Alice comes back: her next sync brings her online, and bob's long-poll hears it.
    let waiting = {
        let (server, bob, since) = (server.clone(), bob.clone(), since.clone());
        tokio::spawn(
            async move { sync(&server, &bob, &format!("since={since}&timeout=10000")).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    sync(&server, &alice, "timeout=0").await;
    let woken = waiting.await.unwrap();
    let back = woken["presence"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["sender"] == alice.user_id.as_str())
        .unwrap_or_else(|| panic!("{woken}"));
    assert_eq!(back["content"]["presence"], "online");
}

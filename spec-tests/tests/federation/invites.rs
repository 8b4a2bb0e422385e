//! What another server sends this server's users directly, played by a stand-in server:
//! invites into a room this server is not in (what Sori checks before it signs one, what the
//! invitee is shown of the room, and turning it down), and messages to their devices.

use ruma::RoomVersionId;
use serde_json::{Value, json};

use crate::encode;
use spec_tests::remote::RemoteServer;
use spec_tests::{StatusCode, TestServer, assert_error, register};

/// An invite by `sender` of `invitee` into `room`, as an event of room version 11 (unsigned).
fn invite_event(room: &str, sender: &str, invitee: &str, origin: &str) -> Value {
    json!({
        "type": "m.room.member",
        "room_id": room,
        "sender": sender,
        "state_key": invitee,
        "content": {"membership": "invite", "is_direct": true, "displayname": "Alice"},
        "origin": origin,
        "origin_server_ts": 1_700_000_000_000u64,
        "depth": 4,
        "prev_events": ["$the-prev-event"],
        "auth_events": ["$the-create-event", "$the-power-levels", "$carols-join"],
    })
}

/// `PUT /v2/invite` of `event` (signed by the stand-in unless `signed` is false).
async fn put_invite(
    sori: &TestServer,
    remote: &RemoteServer,
    room: &str,
    event_id: &str,
    version: &str,
    event: &Value,
    state: &[Value],
) -> (StatusCode, Value) {
    let body = json!({"room_version": version, "event": event, "invite_room_state": state});
    remote
        .request(
            sori,
            reqwest::Method::PUT,
            &format!(
                "/_matrix/federation/v2/invite/{}/{}",
                encode(room),
                encode(event_id)
            ),
            Some(&body),
        )
        .await
}

#[tokio::test]
async fn an_invite_from_another_server_is_shown_and_can_be_turned_down() {
    let (sori, remote) = tokio::join!(crate::federating(""), RemoteServer::start());
    let alice = register(&sori, "alice").await;
    let carol = remote.user("carol");
    let room = format!("!plans:{}", remote.server_name);
    let v11 = RoomVersionId::V11;
    let state = [
        json!({"type": "m.room.name", "state_key": "", "sender": carol, "content": {"name": "계획"}}),
        json!({"type": "m.room.join_rules", "state_key": "", "sender": carol, "content": {"join_rule": "invite"}}),
        // Another room's event does not belong with this invite.
        json!({"type": "m.room.topic", "state_key": "", "sender": carol, "room_id": "!other:127.0.0.1", "content": {"topic": "elsewhere"}}),
    ];
    let mut event = invite_event(&room, &carol, &alice.user_id, &remote.server_name);
    let event_id = remote.sign_event(&mut event, &v11);

    let (status, signed) = put_invite(&sori, &remote, &room, &event_id, "11", &event, &state).await;
    assert_eq!(status, StatusCode::OK, "{signed}\n{}", sori.log());
    // Sent back signed by both servers, and otherwise as it came.
    let back = &signed["event"];
    assert!(back["signatures"][&sori.server_name].is_object(), "{back}");
    assert!(
        back["signatures"][&remote.server_name].is_object(),
        "{back}"
    );
    assert_eq!(RemoteServer::event_id(back, &v11), event_id);

    // Alice's sync shows the invite with what carol's server told of the room.
    let sync = spec_tests::sync(&sori, &alice, "timeout=0").await;
    let shown = &sync["rooms"]["invite"][&room]["invite_state"]["events"];
    let name: Vec<&Value> = shown
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.name")
        .collect();
    assert_eq!(name.len(), 1, "{shown}");
    assert_eq!(name[0]["content"]["name"], "계획");
    assert!(
        !shown.to_string().contains("elsewhere"),
        "another room's state is dropped: {shown}"
    );
    let own = shown
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == alice.user_id.as_str())
        .expect("the invite itself is shown");
    assert_eq!(own["sender"], carol);
    assert_eq!(own["content"]["membership"], "invite");
    assert!(sync["rooms"]["join"].get(&room).is_none(), "{sync}");

    // Sliding sync lists it too, as a DM (the inviter marked it so).
    let (status, slid) = sori
        .post(
            "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout=0",
            alice.token(),
            &json!({"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1}}, "dm": {"all": {"ranges": [[0, 9]], "filters": {"is_dm": true}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{slid}");
    assert_eq!(slid["lists"]["all"]["count"], 1, "{slid}");
    let listed = &slid["rooms"][&room];
    assert!(listed["invite_state"].is_array(), "{slid}");
    assert_eq!(listed["name"], "계획", "{slid}");

    // Alice turns it down: Sori asks carol's server to make the leave. The stand-in does not
    // give a usable one, so the invite is turned down here all the same.
    let (status, body) = sori
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            alice.token(),
            &json!({"reason": "바빠요"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", sori.log());
    let asked = remote
        .received()
        .into_iter()
        .any(|r| r.method == "GET" && r.path.starts_with("/_matrix/federation/v1/make_leave/"));
    assert!(asked, "the leave was asked of the inviter's server");
    let sync = spec_tests::sync(&sori, &alice, "timeout=0").await;
    assert!(sync["rooms"]["invite"].get(&room).is_none(), "{sync}");
    // Leaving again is no longer an invite to turn down.
    let (status, _) = sori
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_ne!(status, StatusCode::OK);
    assert!(status.is_client_error(), "{status}");
}

#[tokio::test]
async fn invites_that_are_not_what_they_say_are_refused() {
    let (sori, remote) = tokio::join!(crate::federating(""), RemoteServer::start());
    let alice = register(&sori, "alice").await;
    let carol = remote.user("carol");
    let room = format!("!plans:{}", remote.server_name);
    let v11 = RoomVersionId::V11;
    let own = sori.server_name.clone();

    // A room version this server does not know.
    let mut event = invite_event(&room, &carol, &alice.user_id, &remote.server_name);
    let event_id = remote.sign_event(&mut event, &v11);
    let result = put_invite(&sori, &remote, &room, &event_id, "99", &event, &[]).await;
    assert_error(
        &result,
        StatusCode::BAD_REQUEST,
        "M_INCOMPATIBLE_ROOM_VERSION",
    );
    assert_eq!(result.1["room_version"], "99", "{}", result.1);

    // An inviter of another server than the one asking.
    let mut event = invite_event(
        &room,
        "@mallory:127.0.0.1:1",
        &alice.user_id,
        &remote.server_name,
    );
    let event_id = remote.sign_event(&mut event, &v11);
    let result = put_invite(&sori, &remote, &room, &event_id, "11", &event, &[]).await;
    assert_error(&result, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // An invitee of another server.
    let mut event = invite_event(&room, &carol, &remote.user("dave"), &remote.server_name);
    let event_id = remote.sign_event(&mut event, &v11);
    let result = put_invite(&sori, &remote, &room, &event_id, "11", &event, &[]).await;
    assert_error(&result, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // A user this server does not have.
    let nobody = format!("@nobody:{own}");
    let mut event = invite_event(&room, &carol, &nobody, &remote.server_name);
    let event_id = remote.sign_event(&mut event, &v11);
    let result = put_invite(&sori, &remote, &room, &event_id, "11", &event, &[]).await;
    assert_error(&result, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // Not an invite at all: a join.
    let mut event = invite_event(&room, &carol, &alice.user_id, &remote.server_name);
    event["content"]["membership"] = json!("join");
    let event_id = remote.sign_event(&mut event, &v11);
    let result = put_invite(&sori, &remote, &room, &event_id, "11", &event, &[]).await;
    assert_error(&result, StatusCode::BAD_REQUEST, "M_BAD_JSON");

    // An event id in the path that is not the event's.
    let mut event = invite_event(&room, &carol, &alice.user_id, &remote.server_name);
    remote.sign_event(&mut event, &v11);
    let result = put_invite(&sori, &remote, &room, "$not-this-one", "11", &event, &[]).await;
    assert_error(&result, StatusCode::BAD_REQUEST, "M_BAD_JSON");

    // Changed after it was signed.
    let mut event = invite_event(&room, &carol, &alice.user_id, &remote.server_name);
    let event_id = remote.sign_event(&mut event, &v11);
    event["depth"] = json!(40);
    let result = put_invite(&sori, &remote, &room, &event_id, "11", &event, &[]).await;
    assert_error(&result, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // Not signed at all.
    let event = invite_event(&room, &carol, &alice.user_id, &remote.server_name);
    let event_id = RemoteServer::event_id(&event, &v11);
    let result = put_invite(&sori, &remote, &room, &event_id, "11", &event, &[]).await;
    assert_error(&result, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // None of them reached alice.
    let sync = spec_tests::sync(&sori, &alice, "timeout=0").await;
    assert!(sync["rooms"]["invite"].get(&room).is_none(), "{sync}");
}

#[tokio::test]
async fn to_device_messages_from_another_server_are_delivered_once_and_checked() {
    let (sori, remote) = tokio::join!(crate::federating(""), RemoteServer::start());
    let alice = register(&sori, "alice").await;
    let carol = remote.user("carol");
    let edu = |sender: &str, message_id: &str, text: &str| {
        json!({"edu_type": "m.direct_to_device", "content": {
            "sender": sender, "type": "org.example.hello", "message_id": message_id,
            "messages": {alice.user_id.clone(): {alice.device_id.clone(): {"text": text}},
                         "@nobody:elsewhere.example": {"*": {"text": "not ours"}}}}})
    };
    // One message, sent twice; one claiming a sender of another server.
    for (txn, edus) in [
        ("t1", vec![edu(&carol, "m1", "hello")]),
        ("t2", vec![edu(&carol, "m1", "hello")]),
        ("t3", vec![edu("@mallory:127.0.0.1:1", "m2", "forged")]),
    ] {
        let (status, body) = remote
            .send_transaction_with_edus(&sori, txn, &[], &edus)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let sync = spec_tests::sync(&sori, &alice, "timeout=0").await;
    let events = sync["to_device"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let texts: Vec<&str> = events
        .iter()
        .filter_map(|e| e["content"]["text"].as_str())
        .collect();
    assert_eq!(texts, ["hello"], "{sync}");
    assert_eq!(events[0]["sender"], carol);
}

//! `unsigned.transaction_id`: an event comes back to the device that sent it with the
//! transaction id of its send, wherever the client reads it, so that the client can replace its
//! local echo; never to another device or another user.

use serde_json::{Value, json};
use spec_tests::{StatusCode, TestServer, User, create_room, join, login, register, sync};

/// The `unsigned.transaction_id` of the event with `event_id` among `events`.
fn txn_of(events: &Value, event_id: &str) -> Option<String> {
    let event = events
        .as_array()
        .unwrap_or_else(|| panic!("a list of events: {events}"))
        .iter()
        .find(|e| e["event_id"] == event_id)
        .unwrap_or_else(|| panic!("{event_id} missing from {events}"));
    event["unsigned"]["transaction_id"]
        .as_str()
        .map(str::to_owned)
}

async fn put(server: &TestServer, user: &User, path: &str, body: Value) -> String {
    let (status, response) = server.put(path, user.token(), &body).await;
    assert_eq!(status, StatusCode::OK, "{path}: {response}");
    response["event_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_sending_device_alone_gets_its_transaction_id_back() {
    let mut server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let laptop = login(&server, "alice", &alice.password).await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    join(&server, &bob, &room).await;

    let send = |txn: &str| format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    let message = put(
        &server,
        &alice,
        &send("echo-1"),
        json!({"msgtype": "m.text", "body": "안녕"}),
    )
    .await;
    let doomed = put(
        &server,
        &alice,
        &send("echo-2"),
        json!({"msgtype": "m.text", "body": "oops"}),
    )
    .await;
    let redaction = put(
        &server,
        &alice,
        &format!("/_matrix/client/v3/rooms/{room}/redact/{doomed}/echo-3"),
        json!({"reason": "typo"}),
    )
    .await;
    let reply = put(
        &server,
        &alice,
        &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/echo-4"),
        json!({"msgtype": "m.text", "body": "in a thread",
               "m.relates_to": {"rel_type": "m.thread", "event_id": message}}),
    )
    .await;
    // The same transaction again returns the same event, which keeps its transaction id.
    let again = put(
        &server,
        &alice,
        &send("echo-1"),
        json!({"msgtype": "m.text", "body": "안녕"}),
    )
    .await;
    assert_eq!(again, message);

    let filter = "filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A50%7D%7D%7D";
    let timeline = |sync: &Value| sync["rooms"]["join"][&room]["timeline"]["events"].clone();
    for restarted in [false, true] {
        if restarted {
            server.restart().await;
        }
        // /sync
        let own = timeline(&sync(&server, &alice, filter).await);
        assert_eq!(txn_of(&own, &message).as_deref(), Some("echo-1"));
        assert_eq!(txn_of(&own, &redaction).as_deref(), Some("echo-3"));
        assert_eq!(txn_of(&own, &reply).as_deref(), Some("echo-4"));
        for other in [&laptop, &bob] {
            let theirs = timeline(&sync(&server, other, filter).await);
            for id in [&message, &redaction, &reply] {
                assert_eq!(
                    txn_of(&theirs, id),
                    None,
                    "{} sees no txn id",
                    other.device_id
                );
            }
        }

        // /messages
        let messages = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50");
        let (_, page) = server.get(&messages, alice.token()).await;
        assert_eq!(txn_of(&page["chunk"], &message).as_deref(), Some("echo-1"));
        let (_, page) = server.get(&messages, laptop.token()).await;
        assert_eq!(txn_of(&page["chunk"], &message), None);

        // /event
        let event = format!("/_matrix/client/v3/rooms/{room}/event/{message}");
        let (_, own) = server.get(&event, alice.token()).await;
        assert_eq!(own["unsigned"]["transaction_id"], "echo-1");
        let (_, theirs) = server.get(&event, bob.token()).await;
        assert!(
            theirs["unsigned"].get("transaction_id").is_none(),
            "{theirs}"
        );

        // /context
        let context = format!("/_matrix/client/v3/rooms/{room}/context/{message}?limit=4");
        let (_, own) = server.get(&context, alice.token()).await;
        assert_eq!(own["event"]["unsigned"]["transaction_id"], "echo-1");
        assert_eq!(
            txn_of(&own["events_after"], &doomed).as_deref(),
            Some("echo-2")
        );
        let (_, theirs) = server.get(&context, laptop.token()).await;
        assert!(theirs["event"]["unsigned"].get("transaction_id").is_none());

        // /relations
        let relations = format!("/_matrix/client/v1/rooms/{room}/relations/{message}");
        let (_, own) = server.get(&relations, alice.token()).await;
        assert_eq!(txn_of(&own["chunk"], &reply).as_deref(), Some("echo-4"));
        let (_, theirs) = server.get(&relations, bob.token()).await;
        assert_eq!(txn_of(&theirs["chunk"], &reply), None);
    }
}

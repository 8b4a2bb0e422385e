//! The shapes of a room's DAG that two servers make. Forks: another server changes the
//! room's state at the same moment as Sori (its event names an earlier event than Sori's
//! latest); the room's state is then the resolution of both sides (state resolution v2), the
//! same on every server, whichever arrived last. Gaps: an event that follows events Sori never
//! got has them fetched first.

use ruma::RoomVersionId;
use serde_json::{Value, json};

use spec_tests::remote::RemoteServer;
use spec_tests::{StatusCode, TestServer, User, create_room, register, send_text};

use crate::joins::{prepared_join, send_join, sent_to, state_ids};

async fn name_of(sori: &TestServer, alice: &User, room: &str) -> Value {
    let (status, name) = sori
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name"),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{name}");
    name["name"].clone()
}

/// An event of bob's, signed by the stand-in: `kind` with `content` (a state event when
/// `state_key` is given), on `prev`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bobs_event(
    remote: &RemoteServer,
    version: &RoomVersionId,
    room: &str,
    kind: &str,
    state_key: Option<&str>,
    content: Value,
    (prev, depth, ts): (&[&str], u64, u64),
    auth_events: &[String],
) -> (Value, String) {
    let mut event = json!({
        "type": kind,
        "room_id": room,
        "sender": remote.user("bob"),
        "content": content,
        "prev_events": prev,
        "auth_events": auth_events,
        "depth": depth,
        "origin_server_ts": ts,
        "origin": remote.server_name,
    });
    if let Some(state_key) = state_key {
        event["state_key"] = json!(state_key);
    }
    let id = remote.sign_event(&mut event, version);
    (event, id)
}

/// A public room of alice's that bob (of the stand-in, power 50: he may change its state)
/// joined: the room, its version, and the auth events of bob's events.
pub(crate) async fn room_with_bob(
    sori: &TestServer,
    remote: &RemoteServer,
    alice: &User,
) -> (String, RoomVersionId, Vec<String>) {
    let bob = remote.user("bob");
    let room = create_room(
        sori,
        alice,
        json!({"preset": "public_chat", "name": "처음",
               "power_level_content_override": {"users": {bob.clone(): 50}}}),
    )
    .await;
    let (join, join_id, version) = prepared_join(sori, remote, &room, &bob).await;
    let (status, joined) = send_join(sori, remote, &room, &join, &join_id, "").await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let state = state_ids(&joined, &version);
    let mut auth_events = vec![
        state[&("m.room.power_levels".to_owned(), String::new())].clone(),
        join_id.clone(),
    ];
    if !version
        .rules()
        .unwrap()
        .authorization
        .room_create_event_id_as_room_id
    {
        auth_events.push(state[&("m.room.create".to_owned(), String::new())].clone());
    }
    (room, version, auth_events)
}

/// An event both servers have: a message of alice's as the stand-in received it.
pub(crate) struct BothHave {
    pub(crate) id: String,
    pub(crate) depth: u64,
    pub(crate) ts: u64,
}

/// Alice sends `body` in `room`, and the stand-in is sent it.
pub(crate) async fn message_both_have(
    (sori, remote): (&TestServer, &RemoteServer),
    alice: &User,
    room: &str,
    version: &RoomVersionId,
    body: &str,
) -> BothHave {
    let (status, sent) = send_text(sori, alice, room, "both-have", body).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let event = sent_to(remote, body, |p| p["content"]["body"] == body).await;
    BothHave {
        id: RemoteServer::event_id(&event, version),
        depth: event["depth"].as_u64().unwrap(),
        ts: event["origin_server_ts"].as_u64().unwrap(),
    }
}

#[tokio::test]
async fn concurrent_state_changes_resolve_by_the_spec_whichever_arrives_last() {
    let (sori, remote) = tokio::join!(crate::federating(""), RemoteServer::start());
    let alice = register(&sori, "alice").await;
    let (room, version, auth_events) = room_with_bob(&sori, &remote, &alice).await;

    // The last event both servers have.
    let shared = message_both_have((&sori, &remote), &alice, &room, &version, "shared").await;
    let (shared_id, depth) = (shared.id, shared.depth);
    // Alice renames the room; bob, not having seen it, renames it too, a minute earlier by
    // his clock. Resolution orders the two by time: alice's, the later, stays.
    let (status, _) = sori
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name"),
            alice.token(),
            &json!({"name": "alice's name"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let alices = sent_to(&remote, "alice's name", |p| p["type"] == "m.room.name").await;
    let alices_ts = alices["origin_server_ts"].as_u64().unwrap();
    let alices_id = RemoteServer::event_id(&alices, &version);
    let (earlier, earlier_id) = bobs_event(
        &remote,
        &version,
        &room,
        "m.room.name",
        Some(""),
        json!({"name": "bob's earlier name"}),
        (&[shared_id.as_str()], depth + 1, alices_ts - 60_000),
        &auth_events,
    );
    let (status, result) = remote.send_transaction(&sori, "t1", &[earlier]).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["pdus"][&earlier_id], json!({}), "{result}");
    assert_eq!(name_of(&sori, &alice, &room).await, "alice's name");

    // Bob renames it again on top of his first, a minute after alice: his stays.
    let (later, later_id) = bobs_event(
        &remote,
        &version,
        &room,
        "m.room.name",
        Some(""),
        json!({"name": "bob's later name"}),
        (&[earlier_id.as_str()], depth + 2, alices_ts + 60_000),
        &auth_events,
    );
    let (status, result) = remote.send_transaction(&sori, "t2", &[later]).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["pdus"][&later_id], json!({}), "{result}");
    assert_eq!(name_of(&sori, &alice, &room).await, "bob's later name");
    let sync = spec_tests::sync(&sori, &alice, "timeout=0").await;
    let names: Vec<&Value> = sync["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .into_iter()
        .chain(sync["rooms"]["join"][&room]["timeline"]["events"].as_array())
        .flatten()
        .filter(|e| e["type"] == "m.room.name")
        .collect();
    assert!(
        names
            .last()
            .is_some_and(|e| e["content"]["name"] == "bob's later name"),
        "{names:?}"
    );

    // Alice's next message merges the fork; a message of bob's that merges it without that
    // message is made on the resolution of its two previous events.
    send_text(&sori, &alice, &room, "t1", "merged").await;
    let merged = sent_to(&remote, "alice's merge", |p| {
        p["content"]["body"] == "merged"
    })
    .await;
    let mut prev: Vec<String> = merged["prev_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    prev.sort();
    let mut expected = vec![alices_id.clone(), later_id.clone()];
    expected.sort();
    assert_eq!(prev, expected);
    let (message, message_id) = bobs_event(
        &remote,
        &version,
        &room,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "bob merges too"}),
        (
            &[alices_id.as_str(), later_id.as_str()],
            depth + 3,
            alices_ts + 61_000,
        ),
        &auth_events,
    );
    let (status, result) = remote.send_transaction(&sori, "t3", &[message]).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["pdus"][&message_id], json!({}), "{result}");
    let bodies = crate::rooms::reads(&sori, &alice, &room, "bob merges too").await;
    assert!(bodies.contains(&"merged".to_owned()), "{bodies:?}");
    assert_eq!(name_of(&sori, &alice, &room).await, "bob's later name");
}

#[tokio::test]
async fn a_gap_before_an_event_is_filled_from_its_server() {
    let (sori, remote) = tokio::join!(crate::federating(""), RemoteServer::start());
    let alice = register(&sori, "alice").await;
    let (room, version, auth_events) = room_with_bob(&sori, &remote, &alice).await;
    let shared = message_both_have((&sori, &remote), &alice, &room, &version, "shared").await;
    let (shared_id, depth, ts) = (shared.id, shared.depth, shared.ts);

    // Bob sends three messages, but only the last reaches Sori in a transaction.
    let mut chain = Vec::new();
    let mut prev = shared_id.clone();
    for i in 1..=3u64 {
        let (event, id) = bobs_event(
            &remote,
            &version,
            &room,
            "m.room.message",
            None,
            json!({"msgtype": "m.text", "body": format!("gap {i}")}),
            (&[prev.as_str()], depth + i, ts + i),
            &auth_events,
        );
        chain.push((event, id.clone()));
        prev = id;
    }
    remote.answer(
        "/_matrix/federation/v1/get_missing_events/",
        json!({"events": [chain[0].0, chain[1].0]}),
    );
    let (status, result) = remote
        .send_transaction(&sori, "t1", &[chain[2].0.clone()])
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(
        result["pdus"][&chain[2].1],
        json!({}),
        "{result}\n{}",
        sori.log()
    );
    let asked = remote
        .received()
        .into_iter()
        .find(|r| {
            r.path
                .starts_with("/_matrix/federation/v1/get_missing_events/")
        })
        .expect("the gap was asked of bob's server");
    assert_eq!(asked.method, "POST");
    assert_eq!(asked.body["latest_events"], json!([chain[2].1]));
    assert_eq!(asked.body["earliest_events"], json!([shared_id]));
    let bodies = crate::rooms::reads(&sori, &alice, &room, "gap 3").await;
    assert_eq!(
        bodies[..4],
        ["gap 3", "gap 2", "gap 1", "shared"],
        "{bodies:?}"
    );

    // A gap the server does not fill leaves the event refused, and nothing else changed.
    let (orphan, orphan_id) = bobs_event(
        &remote,
        &version,
        &room,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "orphan"}),
        (&["$never-sent"], depth + 10, ts + 10),
        &auth_events,
    );
    let (status, result) = remote.send_transaction(&sori, "t2", &[orphan]).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert!(result["pdus"][&orphan_id]["error"].is_string(), "{result}");
    let bodies = crate::rooms::reads(&sori, &alice, &room, "gap 3").await;
    assert!(!bodies.contains(&"orphan".to_owned()), "{bodies:?}");
}

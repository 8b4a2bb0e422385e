//! A user of another server joins a room of Sori's (`make_join`, `send_join` v2), played by
//! a stand-in server that signs what it sends; then that server reads the room's history
//! (`/event`, `/state`, `/state_ids`). And what a server gets when it asks for what it may
//! not have.

use ruma::RoomVersionId;
use serde_json::{Value, json};

use crate::encode;
use spec_tests::remote::RemoteServer;
use spec_tests::{StatusCode, TestServer, User, create_room, register, send_text};

/// `make_join` for `user`, signed by the stand-in: the join event and its id.
pub(crate) async fn prepared_join(
    sori: &TestServer,
    remote: &RemoteServer,
    room: &str,
    user: &str,
) -> (Value, String, RoomVersionId) {
    let (status, made) = remote
        .get(
            sori,
            &format!(
                "/_matrix/federation/v1/make_join/{}/{}?ver=10&ver=11&ver=12",
                encode(room),
                encode(user)
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let version = RoomVersionId::try_from(made["room_version"].as_str().unwrap()).unwrap();
    let mut event = made["event"].clone();
    assert_eq!(event["type"], "m.room.member");
    assert_eq!(event["state_key"], user);
    assert_eq!(event["content"]["membership"], "join");
    event["origin"] = json!(remote.server_name);
    let event_id = remote.sign_event(&mut event, &version);
    (event, event_id, version)
}

pub(crate) async fn send_join(
    sori: &TestServer,
    remote: &RemoteServer,
    room: &str,
    event: &Value,
    event_id: &str,
    query: &str,
) -> (StatusCode, Value) {
    remote
        .request(
            sori,
            reqwest::Method::PUT,
            &format!(
                "/_matrix/federation/v2/send_join/{}/{}{query}",
                encode(room),
                encode(event_id)
            ),
            Some(event),
        )
        .await
}

fn types_in(events: &Value) -> Vec<(String, String)> {
    let mut types: Vec<(String, String)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["state_key"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    types.sort();
    types
}

async fn member_of(sori: &TestServer, alice: &User, room: &str, user: &str) -> Value {
    let (status, member) = sori
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{user}"),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{member}");
    member
}

#[tokio::test]
async fn a_remote_user_joins_and_the_remote_server_reads_the_room() {
    let (sori, remote) = tokio::join!(crate::federating(""), RemoteServer::start());
    let alice = register(&sori, "alice").await;
    let room = create_room(
        &sori,
        &alice,
        json!({"preset": "public_chat", "topic": "회의"}),
    )
    .await;
    let (_, sent) = send_text(&sori, &alice, &room, "t1", "before the join").await;
    let message = sent["event_id"].as_str().unwrap().to_owned();
    let bob = remote.user("bob");

    // A server with nobody in the room may not read it.
    let state_ids = format!(
        "/_matrix/federation/v1/state_ids/{}?event_id={}",
        encode(&room),
        encode(&message)
    );
    let refused = remote.get(&sori, &state_ids).await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN, "{}", refused.1);
    assert_eq!(refused.1["errcode"], "M_FORBIDDEN");

    let (event, event_id, _) = prepared_join(&sori, &remote, &room, &bob).await;
    let (status, joined) = send_join(&sori, &remote, &room, &event, &event_id, "").await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["origin"], sori.server_name);
    assert_eq!(joined["event"]["state_key"], bob);
    let state = types_in(&joined["state"]);
    for expected in [
        ("m.room.create", ""),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.topic", ""),
        ("m.room.member", alice.user_id.as_str()),
    ] {
        assert!(
            state.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} in {state:?}"
        );
    }
    assert!(
        !state.contains(&("m.room.member".to_owned(), bob.clone())),
        "the state is the one before the join"
    );
    // The auth chain holds what authorises the state, down to the create event.
    let chain = types_in(&joined["auth_chain"]);
    assert!(
        chain.contains(&("m.room.create".to_owned(), String::new())),
        "{chain:?}"
    );
    assert!(chain.contains(&("m.room.member".to_owned(), alice.user_id.clone())));

    // Sori's users see the remote user in the room.
    assert_eq!(
        member_of(&sori, &alice, &room, &bob).await["membership"],
        "join"
    );
    let (_, members) = sori
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/joined_members"),
            alice.token(),
        )
        .await;
    assert!(members["joined"].get(&bob).is_some(), "{members}");

    // Now in the room, the remote server reads its history.
    let (status, ids) = remote.get(&sori, &state_ids).await;
    assert_eq!(status, StatusCode::OK, "{ids}");
    let ids_in_state: Vec<&str> = ids["pdu_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let full = remote
        .get(
            &sori,
            &format!(
                "/_matrix/federation/v1/state/{}?event_id={}",
                encode(&room),
                encode(&message)
            ),
        )
        .await;
    assert_eq!(full.0, StatusCode::OK, "{}", full.1);
    assert_eq!(full.1["pdus"].as_array().unwrap().len(), ids_in_state.len());
    assert_eq!(
        types_in(&full.1["pdus"]),
        state,
        "nothing changed the state between the message and the join"
    );
    assert!(!ids["auth_chain_ids"].as_array().unwrap().is_empty());

    let (status, got) = remote
        .get(
            &sori,
            &format!("/_matrix/federation/v1/event/{}", encode(&message)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["origin"], sori.server_name);
    assert_eq!(got["pdus"][0]["content"]["body"], "before the join");
    assert!(got["pdus"][0]["signatures"][&sori.server_name].is_object());

    // Asking twice changes nothing; asking about unknown events gets 404.
    let (status, again) = send_join(&sori, &remote, &room, &event, &event_id, "").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    let unknown = remote
        .get(&sori, "/_matrix/federation/v1/event/%24unknown")
        .await;
    assert_eq!(unknown.0, StatusCode::NOT_FOUND, "{}", unknown.1);
    let unknown = remote
        .get(
            &sori,
            &format!(
                "/_matrix/federation/v1/state_ids/{}?event_id=%24unknown",
                encode(&room)
            ),
        )
        .await;
    assert_eq!(unknown.0, StatusCode::NOT_FOUND, "{}", unknown.1);
    assert_eq!(unknown.1["errcode"], "M_NOT_FOUND");
}

#[tokio::test]
async fn a_join_made_before_new_messages_still_lands_and_omit_members_trims_the_answer() {
    let (sori, remote) = tokio::join!(crate::federating(""), RemoteServer::start());
    let alice = register(&sori, "alice").await;
    let room = create_room(&sori, &alice, json!({"preset": "public_chat"})).await;
    let carol = remote.user("carol");
    let (event, event_id, _) = prepared_join(&sori, &remote, &room, &carol).await;
    // Alice talks between make_join and send_join: the join follows an older event.
    let (_, sent) = send_text(&sori, &alice, &room, "t1", "meanwhile").await;
    let meanwhile = sent["event_id"].as_str().unwrap().to_owned();
    let (status, joined) = send_join(
        &sori,
        &remote,
        &room,
        &event,
        &event_id,
        "?omit_members=true",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["members_omitted"], true);
    assert!(
        types_in(&joined["state"])
            .iter()
            .all(|(kind, _)| kind != "m.room.member"),
        "{}",
        joined["state"]
    );
    assert_eq!(joined["servers_in_room"], json!([sori.server_name]));
    assert_eq!(
        member_of(&sori, &alice, &room, &carol).await["membership"],
        "join"
    );

    // The next event joins both branches.
    let (_, sent) = send_text(&sori, &alice, &room, "t2", "welcome").await;
    let welcome = sent["event_id"].as_str().unwrap();
    let (status, got) = remote
        .get(
            &sori,
            &format!("/_matrix/federation/v1/event/{}", encode(welcome)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let mut prev: Vec<String> =
        serde_json::from_value(got["pdus"][0]["prev_events"].clone()).unwrap();
    prev.sort();
    let mut expected = vec![meanwhile, event_id];
    expected.sort();
    assert_eq!(prev, expected);
}

#[tokio::test]
async fn joins_that_are_not_allowed_or_not_what_they_say_are_refused() {
    let (sori, remote) = tokio::join!(crate::federating(""), RemoteServer::start());
    let alice = register(&sori, "alice").await;
    let public = create_room(&sori, &alice, json!({"preset": "public_chat"})).await;
    let private = create_room(&sori, &alice, json!({"preset": "private_chat"})).await;
    let dave = remote.user("dave");
    let make_join = |room: &str, user: &str, ver: &str| {
        format!(
            "/_matrix/federation/v1/make_join/{}/{}?{ver}",
            encode(room),
            encode(user)
        )
    };
    let cases = [
        // A user of another server than the one asking.
        (
            make_join(&public, "@eve:elsewhere.example", "ver=11"),
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        ),
        (
            make_join("!nothere:elsewhere.example", &dave, "ver=11"),
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        ),
        (
            make_join(&public, &dave, "ver=1"),
            StatusCode::BAD_REQUEST,
            "M_INCOMPATIBLE_ROOM_VERSION",
        ),
        // Invite only: nobody invited dave.
        (
            make_join(&private, &dave, "ver=10&ver=11&ver=12"),
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        ),
    ];
    for (uri, status, errcode) in cases {
        let (got, body) = remote.get(&sori, &uri).await;
        assert_eq!(got, status, "{uri}: {body}");
        assert_eq!(body["errcode"], errcode, "{uri}: {body}");
    }

    let (event, event_id, _) = prepared_join(&sori, &remote, &public, &dave).await;
    // Another event id in the path than the event's.
    let (status, body) = send_join(&sori, &remote, &public, &event, "$other", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A changed event no longer carries a valid signature.
    let mut forged = event.clone();
    forged["origin_server_ts"] = json!(1);
    let (status, body) = send_join(&sori, &remote, &public, &forged, &event_id, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Not a join.
    let mut leave = event.clone();
    leave["content"]["membership"] = json!("leave");
    let (status, body) = send_join(&sori, &remote, &public, &leave, &event_id, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errcode"], "M_BAD_JSON");
    // Unsigned requests get 401 as everywhere in the federation API.
    let (status, body) = sori.get(&make_join(&public, &dave, "ver=11"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // None of it joined dave; the real join still works.
    let (status, member) = sori
        .get(
            &format!("/_matrix/client/v3/rooms/{public}/state/m.room.member/{dave}"),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{member}");
    let (status, joined) = send_join(&sori, &remote, &public, &event, &event_id, "").await;
    assert_eq!(status, StatusCode::OK, "{joined}");
}

/// The event id of each state event in a `send_join` answer, by (type, state key).
pub(crate) fn state_ids(
    answer: &Value,
    version: &RoomVersionId,
) -> std::collections::BTreeMap<(String, String), String> {
    answer["state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (
                    e["type"].as_str().unwrap().to_owned(),
                    e["state_key"].as_str().unwrap().to_owned(),
                ),
                RemoteServer::event_id(e, version),
            )
        })
        .collect()
}

/// Waits until the stand-in has been sent a PDU that `matches`.
pub(crate) async fn sent_to(
    remote: &RemoteServer,
    what: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..200 {
        if let Some(pdu) = remote.received_pdus().into_iter().find(|p| matches(p)) {
            return pdu;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "the remote server was never sent {what}: {:?}",
        remote.received()
    );
}

#[tokio::test]
async fn messages_flow_both_ways_once_a_remote_user_joined() {
    let (sori, remote) = tokio::join!(crate::federating(""), RemoteServer::start());
    let alice = register(&sori, "alice").await;
    let room = create_room(&sori, &alice, json!({"preset": "public_chat"})).await;
    let bob = remote.user("bob");
    let (join, join_id, version) = prepared_join(&sori, &remote, &room, &bob).await;
    let (status, joined) = send_join(&sori, &remote, &room, &join, &join_id, "").await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let state = state_ids(&joined, &version);
    let id_of = |kind: &str| state[&(kind.to_owned(), String::new())].clone();

    // Sori sends alice's message to the server of the room's remote member.
    send_text(&sori, &alice, &room, "t1", "안녕 bob").await;
    let hello = sent_to(&remote, "alice's message", |p| {
        p["content"]["body"] == "안녕 bob"
    })
    .await;
    assert_eq!(hello["sender"], alice.user_id);
    assert!(hello["signatures"][&sori.server_name].is_object());
    let hello_id = RemoteServer::event_id(&hello, &version);
    // Before room version 12 the create event is named among the auth events.
    let mut auth_events = vec![id_of("m.room.power_levels"), join_id.clone()];
    if !version
        .rules()
        .unwrap()
        .authorization
        .room_create_event_id_as_room_id
    {
        auth_events.push(id_of("m.room.create"));
    }

    // Bob answers through a transaction.
    let mut answer = json!({
        "type": "m.room.message",
        "room_id": room,
        "sender": bob,
        "content": {"msgtype": "m.text", "body": "hi alice"},
        "prev_events": [hello_id],
        "auth_events": auth_events,
        "depth": hello["depth"].as_u64().unwrap() + 1,
        "origin_server_ts": 1_700_000_000_000u64,
        "origin": remote.server_name,
    });
    let answer_id = remote.sign_event(&mut answer, &version);
    // Mallory never joined: her message fails the authorization rules. A changed copy of
    // bob's fails its signature. Neither holds up bob's message.
    let mut mallory = answer.clone();
    mallory["sender"] = json!(remote.user("mallory"));
    mallory["content"]["body"] = json!("let me in");
    let mallory_id = remote.sign_event(&mut mallory, &version);
    let mut forged = answer.clone();
    forged["content"]["body"] = json!("forged");
    forged["origin_server_ts"] = json!(1);
    let forged_id = RemoteServer::event_id(&forged, &version);
    let (status, result) = remote
        .send_transaction(&sori, "txn1", &[answer.clone(), mallory, forged])
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["pdus"][&answer_id], json!({}), "{result}");
    assert!(result["pdus"][&mallory_id]["error"].is_string(), "{result}");
    assert!(
        result["pdus"]
            .get(&forged_id)
            .is_none_or(|r| r["error"].is_string()),
        "{result}"
    );
    // The same transaction again is taken again, and changes nothing.
    let (status, again) = remote.send_transaction(&sori, "txn1", &[answer]).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["pdus"][&answer_id], json!({}));

    let (status, page) = sori
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=10"),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let bodies = spec_tests::bodies(&page);
    assert_eq!(
        bodies.iter().filter(|b| *b == "hi alice").count(),
        1,
        "{bodies:?}"
    );
    assert!(
        !bodies.iter().any(|b| b == "let me in" || b == "forged"),
        "{bodies:?}"
    );
    assert_eq!(bodies.first().map(String::as_str), Some("hi alice"));

    // Alice's next message follows bob's.
    send_text(&sori, &alice, &room, "t2", "반가워요").await;
    let next = sent_to(&remote, "alice's second message", |p| {
        p["content"]["body"] == "반가워요"
    })
    .await;
    assert_eq!(next["prev_events"], json!([answer_id]));
    // Nothing bob's server sent came back to it.
    assert!(!remote.received_pdus().iter().any(|p| p["sender"] == bob));

    // Too many PDUs in one transaction.
    let (status, body) = remote
        .send_transaction(&sori, "txn2", &vec![json!({}); 51])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// Waits until the stand-in has been sent an EDU that `matches`.
async fn edu_sent_to(remote: &RemoteServer, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        if let Some(edu) = remote.received_edus().into_iter().find(|e| matches(e)) {
            return edu;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "the remote server was never sent {what}: {:?}",
        remote.received()
    );
}

/// Syncs until the room's ephemeral events hold one that `matches`.
async fn ephemeral(
    sori: &TestServer,
    user: &User,
    room: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..100 {
        let sync = spec_tests::sync(sori, user, "").await;
        let events = sync["rooms"]["join"][room]["ephemeral"]["events"].clone();
        if let Some(found) = events.as_array().into_iter().flatten().find(|e| matches(e)) {
            return found.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no such ephemeral event in {room}");
}

#[tokio::test]
async fn typing_and_receipts_go_both_ways() {
    let (sori, remote) = tokio::join!(crate::federating(""), RemoteServer::start());
    let alice = register(&sori, "alice").await;
    let room = create_room(&sori, &alice, json!({"preset": "public_chat"})).await;
    let bob = remote.user("bob");
    let (join, join_id, _) = prepared_join(&sori, &remote, &room, &bob).await;
    let (status, joined) = send_join(&sori, &remote, &room, &join, &join_id, "").await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let (_, sent) = send_text(&sori, &alice, &room, "t1", "읽어 주세요").await;
    let message = sent["event_id"].as_str().unwrap().to_owned();

    // Alice types and reads: bob's server hears both.
    let (status, body) = sori
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/{}", alice.user_id),
            alice.token(),
            &json!({"typing": true, "timeout": 10000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let typing = edu_sent_to(&remote, "alice typing", |e| e["edu_type"] == "m.typing").await;
    assert_eq!(typing["content"]["user_id"], alice.user_id);
    assert_eq!(typing["content"]["typing"], true);
    assert_eq!(typing["content"]["room_id"], room);
    let (status, body) = sori
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{message}"),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let receipt = edu_sent_to(&remote, "alice's receipt", |e| e["edu_type"] == "m.receipt").await;
    assert_eq!(
        receipt["content"][&room]["m.read"][&alice.user_id]["event_ids"],
        json!([message])
    );

    // Bob types and reads on his server: alice sees both. A notice about a user of another
    // server than the sender's is passed over.
    let edus = [
        json!({"edu_type": "m.typing", "content": {"room_id": room, "user_id": bob, "typing": true}}),
        json!({"edu_type": "m.typing", "content": {"room_id": room, "user_id": "@carol:elsewhere.example", "typing": true}}),
        json!({"edu_type": "m.receipt", "content": {room.as_str(): {"m.read": {bob.as_str(): {
            "event_ids": [message], "data": {"ts": 1_700_000_000_000u64}}}}}}),
        json!({"edu_type": "m.something_else", "content": {}}),
    ];
    let (status, body) = remote
        .send_transaction_with_edus(&sori, "edus1", &[], &edus)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let typing = ephemeral(&sori, &alice, &room, |e| {
        e["type"] == "m.typing"
            && e["content"]["user_ids"]
                .as_array()
                .unwrap()
                .contains(&json!(bob))
    })
    .await;
    // Alice is still typing too; carol is nobody's.
    assert_eq!(typing["content"]["user_ids"], json!([alice.user_id, bob]));
    let receipts = ephemeral(&sori, &alice, &room, |e| {
        e["type"] == "m.receipt" && e["content"][&message]["m.read"].get(&bob).is_some()
    })
    .await;
    assert!(
        receipts["content"][&message]["m.read"].get(&bob).is_some(),
        "{receipts}"
    );
}

#[tokio::test]
async fn a_remote_server_scrolls_back_and_fills_gaps() {
    let (sori, remote) = tokio::join!(crate::federating(""), RemoteServer::start());
    let alice = register(&sori, "alice").await;
    let room = create_room(&sori, &alice, json!({"preset": "public_chat"})).await;
    let mut ids = Vec::new();
    for n in 1..=5 {
        let (_, sent) = send_text(&sori, &alice, &room, &format!("t{n}"), &format!("m{n}")).await;
        ids.push(sent["event_id"].as_str().unwrap().to_owned());
    }
    let backfill = format!(
        "/_matrix/federation/v1/backfill/{}?v={}&limit=3",
        encode(&room),
        encode(&ids[4])
    );
    let missing = format!(
        "/_matrix/federation/v1/get_missing_events/{}",
        encode(&room)
    );
    let gap = json!({"earliest_events": [ids[1]], "latest_events": [ids[4]], "limit": 10});
    // Nobody of the stand-in's in the room yet.
    let (status, body) = remote.get(&sori, &backfill).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = remote
        .request(&sori, reqwest::Method::POST, &missing, Some(&gap))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let bob = remote.user("bob");
    let (join, join_id, _) = prepared_join(&sori, &remote, &room, &bob).await;
    let (status, joined) = send_join(&sori, &remote, &room, &join, &join_id, "").await;
    assert_eq!(status, StatusCode::OK, "{joined}");

    // Backfill: the given event and those before it, newest first.
    let (status, page) = remote.get(&sori, &backfill).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["origin"], sori.server_name);
    assert_eq!(spec_tests::bodies(&page["pdus"]), ["m5", "m4", "m3"]);
    // Missing events: between the earliest and the latest the asker has, oldest first.
    let (status, filled) = remote
        .request(&sori, reqwest::Method::POST, &missing, Some(&gap))
        .await;
    assert_eq!(status, StatusCode::OK, "{filled}");
    assert_eq!(spec_tests::bodies(&filled["events"]), ["m3", "m4"]);
    // A limit of one gives the nearest.
    let one = json!({"earliest_events": [], "latest_events": [ids[4]], "limit": 1});
    let (status, filled) = remote
        .request(&sori, reqwest::Method::POST, &missing, Some(&one))
        .await;
    assert_eq!(status, StatusCode::OK, "{filled}");
    assert_eq!(spec_tests::bodies(&filled["events"]), ["m4"]);
}

#[tokio::test]
async fn an_invite_goes_to_the_invitees_server_and_can_be_turned_down() {
    let (sori, remote) = tokio::join!(crate::federating(""), RemoteServer::start());
    let alice = register(&sori, "alice").await;
    let room = create_room(
        &sori,
        &alice,
        json!({"preset": "private_chat", "name": "기획"}),
    )
    .await;
    let dave = remote.user("dave");
    let (status, body) = sori
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            alice.token(),
            &json!({"user_id": dave}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", sori.log());

    // The invitee's server was asked first, with the room's state as full events.
    let asked = remote
        .received()
        .into_iter()
        .find(|r| r.path.starts_with("/_matrix/federation/v2/invite/"))
        .expect("the invite went to dave's server");
    assert_eq!(asked.method, "PUT");
    assert_eq!(asked.body["event"]["state_key"], dave);
    assert_eq!(asked.body["event"]["content"]["membership"], "invite");
    let shown = types_in(&asked.body["invite_room_state"]);
    assert!(
        shown.contains(&("m.room.name".to_owned(), String::new())),
        "{shown:?}"
    );
    assert!(
        shown.contains(&("m.room.create".to_owned(), String::new())),
        "{shown:?}"
    );
    assert!(asked.body["invite_room_state"][0]["signatures"].is_object());
    // The invite as stored carries both servers' signatures.
    assert_eq!(
        member_of(&sori, &alice, &room, &dave).await["membership"],
        "invite"
    );
    // The room's servers are sent it (dave's among them), with both servers' signatures.
    let sent = sent_to(&remote, "the invite", |p| {
        p["type"] == "m.room.member" && p["state_key"] == dave.as_str()
    })
    .await;
    assert!(
        sent["signatures"][&remote.server_name].is_object(),
        "{sent}"
    );
    assert!(sent["signatures"][&sori.server_name].is_object(), "{sent}");

    // Dave turns it down: make_leave, send_leave.
    let (status, made) = remote
        .get(
            &sori,
            &format!(
                "/_matrix/federation/v1/make_leave/{}/{}",
                encode(&room),
                encode(&dave)
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let version = RoomVersionId::try_from(made["room_version"].as_str().unwrap()).unwrap();
    let mut leave = made["event"].clone();
    assert_eq!(leave["content"]["membership"], "leave");
    let leave_id = remote.sign_event(&mut leave, &version);
    let (status, body) = remote
        .request(
            &sori,
            reqwest::Method::PUT,
            &format!(
                "/_matrix/federation/v2/send_leave/{}/{}",
                encode(&room),
                encode(&leave_id)
            ),
            Some(&leave),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        member_of(&sori, &alice, &room, &dave).await["membership"],
        "leave"
    );
    // Someone else's leave, or a join sent as a leave, is refused.
    let (status, _) = remote
        .get(
            &sori,
            &format!(
                "/_matrix/federation/v1/make_leave/{}/{}",
                encode(&room),
                encode(&alice.user_id)
            ),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut join = leave.clone();
    join["content"]["membership"] = json!("join");
    let (status, body) = remote
        .request(
            &sori,
            reqwest::Method::PUT,
            &format!(
                "/_matrix/federation/v2/send_leave/{}/{}",
                encode(&room),
                encode(&leave_id)
            ),
            Some(&join),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

//! Synapse, the reference implementation, as the other server.

use serde_json::json;
use spec_tests::synapse::Synapse;
use spec_tests::{StatusCode, register};

use super::{encode, federating, public_room, set_name, upload_keys};

#[tokio::test]
async fn sori_and_synapse_read_each_others_profiles() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    set_name(&sori, &alice, "Alice on Sori").await;
    let bob = synapse.register("bob").await;
    let (status, body) = synapse
        .request(
            reqwest::Method::PUT,
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                encode(&bob.user_id)
            ),
            Some(&bob.access_token),
            Some(&json!({"displayname": "Bob on Synapse"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Synapse asks Sori (signing; Sori fetches Synapse's key over TLS to check it).
    let (status, profile) = synapse
        .request(
            reqwest::Method::GET,
            &format!("/_matrix/client/v3/profile/{}", encode(&alice.user_id)),
            Some(&bob.access_token),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{profile}\n{}\n{}",
        synapse.log(),
        sori.log()
    );
    assert_eq!(profile["displayname"], "Alice on Sori");

    // Sori asks Synapse (Synapse fetches Sori's key to check the signature).
    let (status, profile) = sori
        .get(
            &format!("/_matrix/client/v3/profile/{}", encode(&bob.user_id)),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}\n{}", synapse.log());
    assert_eq!(profile["displayname"], "Bob on Synapse");
}

#[tokio::test]
async fn sori_and_synapse_find_each_others_aliases_and_public_rooms() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;
    let sori_room = public_room(&sori, &alice, "lobby").await;
    let (status, created) = synapse
        .request(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&bob.access_token),
            Some(&json!({"preset": "public_chat", "visibility": "public",
                         "room_alias_name": "plaza", "name": "The plaza"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let synapse_room = created["room_id"].as_str().unwrap();
    let path = |alias: &str| {
        format!(
            "/_matrix/client/v3/directory/room/{}",
            alias.replace('#', "%23").replace(':', "%3A")
        )
    };

    // Synapse resolves Sori's alias and lists Sori's public rooms.
    let (status, found) = synapse
        .request(
            reqwest::Method::GET,
            &path(&format!("#lobby:{}", sori.server_name)),
            Some(&bob.access_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}\n{}", synapse.log());
    assert_eq!(found["room_id"], sori_room);
    let (status, listed) = synapse
        .request(
            reqwest::Method::GET,
            &format!("/_matrix/client/v3/publicRooms?server={}", sori.server_name),
            Some(&bob.access_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}\n{}", synapse.log());
    assert_eq!(listed["chunk"][0]["room_id"], sori_room);

    // Sori resolves Synapse's alias and lists Synapse's public rooms.
    let (status, found) = sori
        .get(
            &path(&format!("#plaza:{}", synapse.server_name)),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["room_id"], synapse_room);
    assert_eq!(found["servers"][0], synapse.server_name);
    // Synapse may list a new room a moment after it is made.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, listed) = sori
            .post(
                &format!(
                    "/_matrix/client/v3/publicRooms?server={}",
                    synapse.server_name
                ),
                alice.token(),
                &json!({"filter": {"generic_search_term": "plaza"}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        if listed["chunk"][0]["room_id"] == synapse_room {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{listed}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn sori_and_synapse_users_read_each_others_device_keys() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let key = upload_keys(&sori, &alice).await;
    let bob = synapse.register("bob").await;
    let (status, body) = synapse
        .request(
            reqwest::Method::POST,
            "/_matrix/client/v3/keys/upload",
            Some(&bob.access_token),
            Some(&json!({"device_keys": {
                "user_id": bob.user_id, "device_id": bob.device_id,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": {format!("curve25519:{}", bob.device_id): "Ym9iY3VydmU"},
                "signatures": {},
            }})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Synapse's user asks for alice's keys on Sori.
    let (status, found) = synapse
        .request(
            reqwest::Method::POST,
            "/_matrix/client/v3/keys/query",
            Some(&bob.access_token),
            Some(&json!({"device_keys": {alice.user_id.as_str(): []}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}\n{}", synapse.log());
    assert_eq!(
        found["device_keys"][&alice.user_id][&alice.device_id]["keys"]
            [format!("ed25519:{}", alice.device_id)],
        key.public,
        "{found}\n{}",
        synapse.log()
    );

    // Sori's user asks for bob's keys on Synapse.
    let (status, found) = sori
        .post(
            "/_matrix/client/v3/keys/query",
            alice.token(),
            &json!({"device_keys": {bob.user_id.as_str(): []}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["failures"], json!({}), "{found}");
    assert_eq!(
        found["device_keys"][&bob.user_id][&bob.device_id]["keys"]
            [format!("curve25519:{}", bob.device_id)],
        "Ym9iY3VydmU",
        "{found}"
    );
}

/// Waits until a user on Synapse reads a message `body` in `room`; the bodies, newest first.
async fn synapse_reads(synapse: &Synapse, token: &str, room: &str, body: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    // Up to a minute: after an outage, Sori's next retry may be that far off.
    for _ in 0..600 {
        let (status, page) = synapse
            .request(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=20"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        bodies = spec_tests::bodies(&page);
        if bodies.iter().any(|b| b == body) {
            return bodies;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "never read {body:?} on Synapse: {bodies:?}\n{}",
        synapse.log()
    );
}

#[tokio::test]
async fn a_synapse_user_joins_a_sori_room_and_they_talk_both_ways() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;
    let room = public_room(&sori, &alice, "lounge").await;
    spec_tests::send_text(&sori, &alice, &room, "t0", "before bob").await;

    // Synapse joins through Sori (make_join, send_join), checking every event it is given.
    synapse_joins(&synapse, &bob, &room, &sori.server_name).await;
    let (status, member) = sori
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{room}/state/m.room.member/{}",
                bob.user_id
            ),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(member["membership"], "join");

    // Alice's message reaches Synapse in a transaction.
    spec_tests::send_text(&sori, &alice, &room, "t1", "어서 와요").await;
    synapse_reads(&synapse, &bob.access_token, &room, "어서 와요").await;

    // Bob answers from Synapse; Sori takes Synapse's transaction.
    let (status, sent) = synapse
        .request(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/s1"),
            Some(&bob.access_token),
            Some(&json!({"msgtype": "m.text", "body": "고마워요"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let bodies = super::rooms::reads(&sori, &alice, &room, "고마워요").await;
    assert_eq!(
        bodies.first().map(String::as_str),
        Some("고마워요"),
        "{bodies:?}\n{}\n{}",
        synapse.log(),
        sori.log()
    );
}

#[tokio::test]
async fn a_sori_user_joins_a_synapse_room_and_they_talk_both_ways() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;
    let (status, created) = synapse
        .request(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&bob.access_token),
            Some(&json!({"preset": "public_chat", "name": "Synapse room"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let room = created["room_id"].as_str().unwrap().to_owned();
    let (status, _) = synapse
        .request(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/s0"),
            Some(&bob.access_token),
            Some(&json!({"msgtype": "m.text", "body": "before alice"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Alice joins through Synapse: Sori checks the state Synapse answers with.
    let synapse_name = bob.user_id.split_once(':').unwrap().1;
    let (status, joined) = sori
        .post(
            &format!("/_matrix/client/v3/join/{room}?via={synapse_name}"),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{joined}\n{}\n{}",
        sori.log(),
        synapse.log()
    );
    let (status, name) = sori
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name"),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{name}");
    assert_eq!(name["name"], "Synapse room");

    // Synapse sees alice joined; messages go both ways.
    spec_tests::send_text(&sori, &alice, &room, "t1", "안녕하세요").await;
    synapse_reads(&synapse, &bob.access_token, &room, "안녕하세요").await;
    let (status, _) = synapse
        .request(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/s1"),
            Some(&bob.access_token),
            Some(&json!({"msgtype": "m.text", "body": "반가워요"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let bodies = super::rooms::reads(&sori, &alice, &room, "반가워요").await;
    assert_eq!(
        bodies.first().map(String::as_str),
        Some("반가워요"),
        "{bodies:?}\n{}\n{}",
        sori.log(),
        synapse.log()
    );
}

#[tokio::test]
async fn a_synapse_user_is_invited_to_a_sori_room_and_joins() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;
    let room = spec_tests::create_room(
        &sori,
        &alice,
        json!({"preset": "private_chat", "name": "Partners", "is_direct": true}),
    )
    .await;
    let (status, body) = sori
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            alice.token(),
            &json!({"user_id": bob.user_id}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{body}\n{}\n{}",
        sori.log(),
        synapse.log()
    );

    // Bob's Synapse shows the invite with the room's name.
    let mut invite = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, sync) = synapse
            .request(
                reqwest::Method::GET,
                "/_matrix/client/v3/sync?timeout=0",
                Some(&bob.access_token),
                None,
            )
            .await;
        invite = sync["rooms"]["invite"][&room].clone();
        if invite.is_object() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let names: Vec<&str> = invite["invite_state"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.room.name")
        .filter_map(|e| e["content"]["name"].as_str())
        .collect();
    assert_eq!(names, ["Partners"], "{invite}\n{}", synapse.log());

    // He accepts: Synapse joins through Sori; they talk.
    let (status, joined) = synapse
        .request(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            Some(&bob.access_token),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}\n{}", synapse.log());
    spec_tests::send_text(&sori, &alice, &room, "t1", "환영합니다").await;
    synapse_reads(&synapse, &bob.access_token, &room, "환영합니다").await;
}

/// Syncs on Sori until `room` is among alice's invites; its `invite_state` events.
async fn invited(
    sori: &spec_tests::TestServer,
    user: &spec_tests::User,
    room: &str,
) -> Vec<serde_json::Value> {
    for _ in 0..100 {
        let sync = spec_tests::sync(sori, user, "timeout=0").await;
        if let Some(events) = sync["rooms"]["invite"][room]["invite_state"]["events"].as_array() {
            return events.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("never invited to {room}\n{}", sori.log());
}

#[tokio::test]
async fn a_sori_user_is_invited_to_a_synapse_room_joins_and_turns_the_next_invite_down() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;
    let create = |name: &str| json!({"preset": "private_chat", "name": name, "is_direct": true, "invite": [alice.user_id]});
    let (status, created) = synapse
        .request(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&bob.access_token),
            Some(&create("Synapse partners")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}\n{}", synapse.log());
    let room = created["room_id"].as_str().unwrap().to_owned();

    // Alice's client shows the invite with what Synapse sent of the room.
    let shown = invited(&sori, &alice, &room).await;
    let name = shown.iter().find(|e| e["type"] == "m.room.name");
    assert_eq!(
        name.map(|e| &e["content"]["name"]),
        Some(&json!("Synapse partners")),
        "{shown:?}"
    );
    assert!(
        shown.iter().any(|e| e["type"] == "m.room.create"),
        "{shown:?}"
    );
    let own = shown
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == alice.user_id.as_str())
        .expect("the invite itself is shown");
    assert_eq!(own["sender"], bob.user_id.as_str());

    // She accepts without naming a server: Sori joins through the inviter's.
    spec_tests::join(&sori, &alice, &room).await;
    let (status, direct) = sori
        .get(
            &format!(
                "/_matrix/client/v3/user/{}/account_data/m.direct",
                alice.user_id
            ),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{direct}");
    assert_eq!(direct[&bob.user_id], json!([room]), "{direct}");
    let (status, _) = synapse
        .request(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/s1"),
            Some(&bob.access_token),
            Some(&json!({"msgtype": "m.text", "body": "와 줘서 고마워요"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    super::rooms::reads(&sori, &alice, &room, "와 줘서 고마워요").await;
    let (status, sent) = spec_tests::send_text(&sori, &alice, &room, "t1", "초대 고마워요").await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    synapse_reads(&synapse, &bob.access_token, &room, "초대 고마워요").await;

    // A second invite, turned down: Synapse sees her leave, with the reason.
    let (status, created) = synapse
        .request(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&bob.access_token),
            Some(&create("Another one")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let second = created["room_id"].as_str().unwrap().to_owned();
    invited(&sori, &alice, &second).await;
    let (status, body) = sori
        .post(
            &format!("/_matrix/client/v3/rooms/{second}/leave"),
            alice.token(),
            &json!({"reason": "다음에요"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, member) = synapse
        .request(
            reqwest::Method::GET,
            &format!(
                "/_matrix/client/v3/rooms/{second}/state/m.room.member/{}",
                alice.user_id
            ),
            Some(&bob.access_token),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{member}\n{}\n{}",
        sori.log(),
        synapse.log()
    );
    assert_eq!(member["membership"], "leave", "{member}\n{}", sori.log());
    assert_eq!(member["reason"], "다음에요");
    let sync = spec_tests::sync(&sori, &alice, "timeout=0").await;
    assert!(sync["rooms"]["invite"].get(&second).is_none(), "{sync}");
    assert!(sync["rooms"]["join"].get(&room).is_some(), "{sync}");
}

#[tokio::test]
async fn synapse_back_from_an_outage_gets_every_message_in_order() {
    let (sori, mut synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;
    let room = public_room(&sori, &alice, "outage").await;
    synapse_joins(&synapse, &bob, &room, &sori.server_name).await;
    spec_tests::send_text(&sori, &alice, &room, "t0", "before the outage").await;
    synapse_reads(&synapse, &bob.access_token, &room, "before the outage").await;

    // Synapse goes down; alice goes on talking.
    synapse.stop();
    let sent: Vec<String> = (1..=20).map(|i| format!("during the outage {i}")).collect();
    for (i, body) in sent.iter().enumerate() {
        let (status, answer) =
            spec_tests::send_text(&sori, &alice, &room, &format!("t{}", i + 1), body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }

    // Back up, it is sent everything it missed, in order.
    synapse.start_again().await;
    let bodies = synapse_reads(&synapse, &bob.access_token, &room, &sent[19]).await;
    let expected: Vec<String> = sent.iter().rev().cloned().collect();
    assert_eq!(bodies, expected, "{}", sori.log());
}

/// Pages `/messages` backwards from the latest event through a server's client API until it
/// ends; the message bodies, newest first.
async fn page_back_all(
    request: impl AsyncFn(String) -> (StatusCode, serde_json::Value),
    room: &str,
) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut from = String::new();
    for _ in 0..100 {
        let (status, page) = request(format!(
            "/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50{from}"
        ))
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        bodies.extend(spec_tests::bodies(&page));
        match page["end"].as_str() {
            Some(end) => from = format!("&from={end}"),
            None => return bodies,
        }
    }
    panic!("paging never ended: {} bodies", bodies.len());
}

#[tokio::test]
async fn a_sori_newcomer_pages_back_through_a_synapse_rooms_history() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;
    let (status, created) = synapse
        .request(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&bob.access_token),
            Some(&json!({"preset": "public_chat", "name": "Old room"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let room = created["room_id"].as_str().unwrap().to_owned();
    let history: Vec<String> = (1..=200).map(|i| format!("history {i}")).collect();
    for (i, body) in history.iter().enumerate() {
        let (status, sent) = synapse
            .request(
                reqwest::Method::PUT,
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/h{i}"),
                Some(&bob.access_token),
                Some(&json!({"msgtype": "m.text", "body": body})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{sent}");
    }

    // Alice joins: Sori has the room's state, not its history, until she pages back.
    let (status, joined) = sori
        .post(
            &format!("/_matrix/client/v3/join/{room}?via={}", synapse.server_name),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}\n{}", sori.log());
    let bodies = page_back_all(async |path| sori.get(&path, alice.token()).await, &room).await;
    let expected: Vec<String> = history.iter().rev().cloned().collect();
    assert_eq!(bodies, expected, "{}", sori.log());
    // Down to the room's creation, once and in order.
    let (status, first) = sori
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=3"),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["chunk"][0]["type"], "m.room.create", "{first}");
    // Paging again asks nothing more of Synapse and gives the same.
    let again = page_back_all(async |path| sori.get(&path, alice.token()).await, &room).await;
    assert_eq!(again, expected);
}

#[tokio::test]
async fn a_synapse_newcomer_pages_back_through_a_sori_rooms_history() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;
    let room = public_room(&sori, &alice, "archive").await;
    let history: Vec<String> = (1..=200).map(|i| format!("기록 {i}")).collect();
    for (i, body) in history.iter().enumerate() {
        let (status, sent) =
            spec_tests::send_text(&sori, &alice, &room, &format!("h{i}"), body).await;
        assert_eq!(status, StatusCode::OK, "{sent}");
    }
    synapse_joins(&synapse, &bob, &room, &sori.server_name).await;
    // Synapse backfills from Sori (`/backfill`) as bob pages back.
    let bodies = page_back_all(
        async |path| {
            synapse
                .request(reqwest::Method::GET, &path, Some(&bob.access_token), None)
                .await
        },
        &room,
    )
    .await;
    let expected: Vec<String> = history.iter().rev().cloned().collect();
    assert_eq!(bodies, expected, "{}", synapse.log());
}

#[tokio::test]
async fn sori_back_from_an_outage_gets_what_synapse_sent_meanwhile() {
    let (mut sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;
    let room = public_room(&sori, &alice, "outage").await;
    synapse_joins(&synapse, &bob, &room, &sori.server_name).await;

    // Sori goes down; bob goes on talking on Synapse.
    sori.stop();
    let sent: Vec<String> = (1..=20)
        .map(|i| format!("while sori was down {i}"))
        .collect();
    for (i, body) in sent.iter().enumerate() {
        let (status, answer) = synapse
            .request(
                reqwest::Method::PUT,
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/o{i}"),
                Some(&bob.access_token),
                Some(&json!({"msgtype": "m.text", "body": body})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }

    // Back up: Synapse catches it up (its latest event; Sori fetches the gap before it).
    sori.start_again().await;
    let bodies = super::rooms::reads(&sori, &alice, &room, &sent[19]).await;
    let expected: Vec<String> = sent.iter().rev().cloned().collect();
    assert_eq!(bodies, expected, "{}\n{}", sori.log(), synapse.log());
}

#[tokio::test]
async fn to_device_messages_go_both_ways_with_synapse() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;

    let (_, first) = synapse
        .request(
            reqwest::Method::GET,
            "/_matrix/client/v3/sync?timeout=0",
            Some(&bob.access_token),
            None,
        )
        .await;
    let mut since = first["next_batch"].as_str().unwrap().to_owned();

    // Alice to bob's device on Synapse.
    let (status, body) = sori
        .put(
            "/_matrix/client/v3/sendToDevice/org.example.hello/t1",
            alice.token(),
            &json!({"messages": {bob.user_id.clone(): {bob.device_id.clone(): {"text": "안녕 bob"}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut got = Vec::new();
    for _ in 0..100 {
        let (_, sync) = synapse
            .request(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/sync?timeout=1000&since={since}"),
                Some(&bob.access_token),
                None,
            )
            .await;
        since = sync["next_batch"].as_str().unwrap_or(&since).to_owned();
        got = sync["to_device"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got.len(), 1, "{got:?}\n{}", synapse.log());
    assert_eq!(got[0]["sender"], alice.user_id.as_str());
    assert_eq!(got[0]["type"], "org.example.hello");
    assert_eq!(got[0]["content"]["text"], "안녕 bob");

    // Bob to every device of alice's on Sori.
    let (status, body) = synapse
        .request(
            reqwest::Method::PUT,
            "/_matrix/client/v3/sendToDevice/org.example.hello/s1",
            Some(&bob.access_token),
            Some(&json!({"messages": {alice.user_id.clone(): {"*": {"text": "안녕 alice"}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut got = Vec::new();
    for _ in 0..100 {
        let sync = spec_tests::sync(&sori, &alice, "timeout=1000").await;
        got = sync["to_device"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got.len(), 1, "{got:?}\n{}", sori.log());
    assert_eq!(got[0]["sender"], bob.user_id.as_str());
    assert_eq!(got[0]["content"]["text"], "안녕 alice");
}

/// Syncs on Synapse from `since` until `device_lists.changed` names `user`.
async fn synapse_hears_devices_changed(
    synapse: &Synapse,
    token: &str,
    mut since: String,
    user: &str,
) {
    for _ in 0..60 {
        let (status, sync) = synapse
            .request(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/sync?timeout=1000&since={since}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{sync}");
        if sync["device_lists"]["changed"]
            .as_array()
            .is_some_and(|users| users.iter().any(|u| u == user))
        {
            return;
        }
        since = sync["next_batch"].as_str().unwrap().to_owned();
    }
    panic!("Synapse never told of {user}'s devices\n{}", synapse.log());
}

#[tokio::test]
async fn device_list_changes_reach_the_other_server_both_ways() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;
    let room = public_room(&sori, &alice, "devices").await;
    synapse_joins(&synapse, &bob, &room, &sori.server_name).await;
    let (_, first) = synapse
        .request(
            reqwest::Method::GET,
            "/_matrix/client/v3/sync?timeout=0",
            Some(&bob.access_token),
            None,
        )
        .await;
    let bob_since = first["next_batch"].as_str().unwrap().to_owned();
    let alice_since = spec_tests::sync(&sori, &alice, "timeout=0").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // Alice signs in on a phone and publishes its keys: bob's Synapse hears of it, and finds
    // the new device when it asks.
    let phone = spec_tests::login(&sori, "alice", &alice.password).await;
    upload_keys(&sori, &phone).await;
    synapse_hears_devices_changed(&synapse, &bob.access_token, bob_since, &alice.user_id).await;
    let (status, found) = synapse
        .request(
            reqwest::Method::POST,
            "/_matrix/client/v3/keys/query",
            Some(&bob.access_token),
            Some(&json!({"device_keys": {alice.user_id.as_str(): []}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert!(
        found["device_keys"][&alice.user_id][&phone.device_id].is_object(),
        "{found}"
    );

    // Bob signs in on a second device on Synapse: alice's sync on Sori names him.
    let (status, login) = synapse
        .request(
            reqwest::Method::POST,
            "/_matrix/client/v3/login",
            None,
            Some(&json!({"type": "m.login.password",
                         "identifier": {"type": "m.id.user", "user": "bob"},
                         "password": "synapse-password-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let device = login["device_id"].as_str().unwrap();
    let (status, body) = synapse
        .request(
            reqwest::Method::POST,
            "/_matrix/client/v3/keys/upload",
            login["access_token"].as_str(),
            Some(&json!({"device_keys": {
                "user_id": bob.user_id, "device_id": device,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": {format!("curve25519:{device}"): "Ym9icGhvbmU"},
                "signatures": {},
            }})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut since = alice_since;
    for attempt in 0.. {
        let sync = spec_tests::sync(&sori, &alice, &format!("timeout=1000&since={since}")).await;
        if sync["device_lists"]["changed"]
            .as_array()
            .is_some_and(|users| users.iter().any(|u| u == bob.user_id.as_str()))
        {
            break;
        }
        assert!(
            attempt < 60,
            "Sori never told of bob's devices\n{}",
            sori.log()
        );
        since = sync["next_batch"].as_str().unwrap().to_owned();
    }
}

#[tokio::test]
async fn a_sori_user_leaves_a_synapse_room_and_joins_it_again() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;
    let room = synapse_room_named(&synapse, &bob, "Before").await;
    let join = format!("/_matrix/client/v3/join/{room}?via={}", synapse.server_name);
    let (status, body) = sori.post(&join, alice.token(), &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = sori
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // While no one of Sori's is in the room, it is renamed and talked in.
    let (status, _) = synapse
        .request(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name"),
            Some(&bob.access_token),
            Some(&json!({"name": "After"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Alice joins again, without naming a server: Sori asks the one still in the room.
    let (status, body) = sori
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", sori.log());
    let (status, name) = sori
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name"),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{name}");
    assert_eq!(name["name"], "After", "{}", sori.log());
    let (status, sent) = spec_tests::send_text(&sori, &alice, &room, "t1", "다시 왔어요").await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    synapse_reads(&synapse, &bob.access_token, &room, "다시 왔어요").await;
    let (status, _) = synapse
        .request(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/s1"),
            Some(&bob.access_token),
            Some(&json!({"msgtype": "m.text", "body": "어서 와요"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    super::rooms::reads(&sori, &alice, &room, "어서 와요").await;
}

async fn synapse_room_named(
    synapse: &Synapse,
    bob: &spec_tests::synapse::SynapseUser,
    name: &str,
) -> String {
    let (status, created) = synapse
        .request(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&bob.access_token),
            Some(&json!({"preset": "public_chat", "name": name})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    created["room_id"].as_str().unwrap().to_owned()
}

/// A room whose join rule is `knock`, created on Synapse by `bob`.
fn knock_room(name: &str) -> serde_json::Value {
    json!({"preset": "private_chat", "name": name,
           "initial_state": [{"type": "m.room.join_rules", "state_key": "",
                              "content": {"join_rule": "knock"}}]})
}

#[tokio::test]
async fn a_sori_user_knocks_on_a_synapse_room_and_is_let_in() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;
    let (status, created) = synapse
        .request(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&bob.access_token),
            Some(&knock_room("Knock knock")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let room = created["room_id"].as_str().unwrap().to_owned();

    let (status, body) = sori
        .post(
            &format!(
                "/_matrix/client/v3/knock/{room}?via={}",
                synapse.server_name
            ),
            alice.token(),
            &json!({"reason": "들어가도 될까요"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", sori.log());
    let sync = spec_tests::sync(&sori, &alice, "timeout=0").await;
    let shown = &sync["rooms"]["knock"][&room]["knock_state"]["events"];
    assert!(
        shown
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e["content"]["name"] == "Knock knock")),
        "{sync}"
    );
    let member = format!(
        "/_matrix/client/v3/rooms/{room}/state/m.room.member/{}",
        alice.user_id
    );
    let (status, knock) = synapse
        .request(reqwest::Method::GET, &member, Some(&bob.access_token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{knock}");
    assert_eq!(knock["membership"], "knock");
    assert_eq!(knock["reason"], "들어가도 될까요");

    // Bob lets her in with an invite; she joins and they talk.
    let (status, body) = synapse
        .request(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            Some(&bob.access_token),
            Some(&json!({"user_id": alice.user_id})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", synapse.log());
    invited(&sori, &alice, &room).await;
    spec_tests::join(&sori, &alice, &room).await;
    let (status, sent) = spec_tests::send_text(&sori, &alice, &room, "t1", "고마워요").await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    synapse_reads(&synapse, &bob.access_token, &room, "고마워요").await;
}

#[tokio::test]
async fn a_synapse_user_knocks_on_a_sori_room_and_is_let_in() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;
    let room = spec_tests::create_room(&sori, &alice, knock_room("문 두드리기")).await;

    let (status, body) = synapse
        .request(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/knock/{room}?via={}", sori.server_name),
            Some(&bob.access_token),
            Some(&json!({"reason": "hello"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", sori.log());
    let (status, knock) = sori
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{room}/state/m.room.member/{}",
                bob.user_id
            ),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{knock}");
    assert_eq!(knock["membership"], "knock");

    let (status, body) = sori
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            alice.token(),
            &json!({"user_id": bob.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", sori.log());
    let (status, joined) = synapse
        .request(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            Some(&bob.access_token),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}\n{}", synapse.log());
    spec_tests::send_text(&sori, &alice, &room, "t1", "환영해요").await;
    synapse_reads(&synapse, &bob.access_token, &room, "환영해요").await;
}

#[tokio::test]
async fn an_encrypted_dm_between_sori_and_synapse_users_decrypts_both_ways() {
    // matrix-nio with its own Olm/Megolm, from the Python client suite's virtualenv.
    let python = std::env::var("SPEC_NIO_PYTHON")
        .expect("SPEC_NIO_PYTHON is unset: run the tests through scripts/test");
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/clients/python/federated_e2ee.py"
    );
    let run = tokio::process::Command::new(python)
        .arg(script)
        .arg(&sori.base_url)
        .arg(&synapse.client_url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(300), run)
        .await
        .unwrap_or_else(|_| panic!("the matrix-nio script hung\n{}", sori.log()))
        .expect("run the matrix-nio script");
    assert!(
        output.status.success(),
        "{}\n{}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        sori.log(),
        synapse.log()
    );
}

#[tokio::test]
async fn the_federation_benchmark_runs_at_a_tiny_size() {
    // The figures come from release builds (see the tool's doc); this keeps the tool working.
    let bench = spec_tests::workspace_binary("federation-bench");
    let run = tokio::process::Command::new(bench)
        .args(["--latency", "3", "--messages", "10", "--history", "10"])
        .env("SPEC_SORI_BIN", spec_tests::sori_binary())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(300), run)
        .await
        .expect("the benchmark hung")
        .expect("run federation-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figures: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("figures as JSON");
    assert_eq!(figures["send_latency_ms"]["messages"], 3);
    assert_eq!(figures["intake"]["messages"], 10);
    assert!(figures["intake"]["stand_in_pdus_per_s"].as_f64().unwrap() > 0.0);
    assert!(
        figures["join_ms"]["synapse_joins_sori_room"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

/// `bob` on Synapse joins `room` through `server`; asserts it succeeded.
async fn synapse_joins(
    synapse: &Synapse,
    bob: &spec_tests::synapse::SynapseUser,
    room: &str,
    server: &str,
) {
    let (status, joined) = synapse
        .request(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/join/{room}?server_name={server}"),
            Some(&bob.access_token),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}\n{}", synapse.log());
}

#[tokio::test]
async fn presence_goes_both_ways_with_synapse() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    let bob = synapse.register("bob").await;
    let room = public_room(&sori, &alice, "presence").await;
    synapse_joins(&synapse, &bob, &room, &sori.server_name).await;
    let mut since = spec_tests::sync(&sori, &alice, "timeout=0").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bob's status on Synapse reaches alice's sync on Sori.
    let (status, body) = synapse
        .request(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/presence/{}/status", bob.user_id),
            Some(&bob.access_token),
            Some(&json!({"presence": "online", "status_msg": "회의 중"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut seen = serde_json::Value::Null;
    for _ in 0..60 {
        let sync = spec_tests::sync(&sori, &alice, &format!("timeout=1000&since={since}")).await;
        since = sync["next_batch"].as_str().unwrap().to_owned();
        if let Some(event) = sync["presence"]["events"]
            .as_array()
            .and_then(|events| events.iter().find(|e| e["sender"] == bob.user_id.as_str()))
        {
            seen = event.clone();
            break;
        }
    }
    assert_eq!(
        seen["content"]["status_msg"],
        "회의 중",
        "{seen}\n{}",
        sori.log()
    );
    assert_eq!(seen["content"]["presence"], "online");

    // Alice's status on Sori reaches Synapse.
    let (status, body) = sori
        .put(
            &format!("/_matrix/client/v3/presence/{}/status", alice.user_id),
            alice.token(),
            &json!({"presence": "unavailable", "status_msg": "점심"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut theirs = serde_json::Value::Null;
    for _ in 0..60 {
        let (_, answer) = synapse
            .request(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/presence/{}/status", alice.user_id),
                Some(&bob.access_token),
                None,
            )
            .await;
        if answer["status_msg"] == "점심" {
            theirs = answer;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        theirs["presence"],
        "unavailable",
        "{theirs}\n{}",
        synapse.log()
    );
}

//! What reaches the gateway: the notification's fields in both formats, the badge (unread
//! messages over all rooms, equal to `/sync`'s counts) and its update on read, and which
//! events notify by the default push rules (DMs, mentions, `@room`, keywords, muted rooms,
//! notices, encrypted events).

use serde_json::{Value, json};
use spec_tests::gateway::Gateway;
use spec_tests::{StatusCode, register, sync};

use super::*;

async fn read_up_to(server: &TestServer, user: &User, room: &str, event_id: &str) {
    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}"),
            user.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_message_reaches_the_gateway_with_every_field_and_the_badge() {
    let server = pushing_server().await;
    let gateway = Gateway::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", bob.user_id),
            bob.token(),
            &json!({"displayname": "Bob Kim"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let team = room(&server, &alice, &[&bob, &carol], "Team").await;
    let other = room(&server, &alice, &[&bob, &carol], "Other").await;
    let set = set_pusher(
        &server,
        &alice,
        &pusher(&gateway.url(), "alice-phone", json!({"custom": "kept"})),
    )
    .await;
    assert_eq!(set.0, StatusCode::OK, "{}", set.1);

    // One at a time: the badge is counted when the notification goes out, so a message
    // written before its predecessor's delivery would already be in that one's count.
    let first = send(&server, &bob, &team, "1", "점심 먹었어요?").await;
    wait_events(&gateway, 1).await;
    let second = send(&server, &carol, &other, "2", "회의 5분 전").await;
    wait_events(&gateway, 2).await;
    let third = send(&server, &bob, &team, "3", "third").await;
    let got = wait_events(&gateway, 3).await;
    let n = &got[0];
    assert_eq!(n["event_id"], first);
    assert_eq!(n["room_id"], team);
    assert_eq!(n["type"], "m.room.message");
    assert_eq!(n["sender"], bob.user_id);
    assert_eq!(n["sender_display_name"], "Bob Kim");
    assert_eq!(n["room_name"], "Team");
    assert_eq!(n["content"]["body"], "점심 먹었어요?");
    assert_eq!(n["content"]["msgtype"], "m.text");
    assert_eq!(n["prio"], "low", "a group message without a mention");
    assert_eq!(n["counts"]["unread"], 1);
    assert_eq!(n["counts"]["missed_calls"], 0);
    let device = &n["devices"][0];
    assert_eq!(device["app_id"], "io.sori.test");
    assert_eq!(device["pushkey"], "alice-phone");
    assert!(device["pushkey_ts"].as_u64().unwrap() > 1_600_000_000);
    assert!(
        device["pushkey_ts"].as_u64().unwrap() < 100_000_000_000,
        "seconds, not ms"
    );
    assert_eq!(
        device["data"],
        json!({"custom": "kept"}),
        "data without url"
    );
    assert_eq!(device["tweaks"], json!({}));
    assert!(n.get("user_is_target").is_none());

    // The badge counts messages over every room, in the order they were sent.
    let order: Vec<&str> = got
        .iter()
        .map(|n| n["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, vec![first.as_str(), second.as_str(), third.as_str()]);
    let badges: Vec<u64> = got
        .iter()
        .map(|n| n["counts"]["unread"].as_u64().unwrap())
        .collect();
    assert_eq!(badges, vec![1, 2, 3]);

    // /sync says the same.
    let synced = sync(&server, &alice, "").await;
    let count = |room: &str| {
        synced["rooms"]["join"][room]["unread_notifications"]["notification_count"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(count(&team) + count(&other), 3);

    // Reading the team room sends a badge-only notification with what is left.
    read_up_to(&server, &alice, &team, &third).await;
    let all = gateway.wait_accepted(4, WAIT).await;
    let badge = &all[3];
    assert!(badge.get("event_id").is_none(), "{badge}");
    assert!(badge.get("content").is_none());
    assert_eq!(badge["counts"]["unread"], 1);
    assert_eq!(badge["devices"][0]["pushkey"], "alice-phone");

    // A receipt that lowers nothing sends nothing.
    read_up_to(&server, &alice, &team, &first).await;
    read_up_to(&server, &alice, &other, &second).await;
    let all = gateway.wait_accepted(5, WAIT).await;
    assert_eq!(all[4]["counts"]["unread"], 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gateway.accepted().len(), 5, "{:#?}", gateway.accepted());

    // The sender's own message is not pushed to the sender.
    send(&server, &alice, &team, "4", "mine").await;
    send(&server, &bob, &team, "5", "after").await;
    let got = wait_events(&gateway, 4).await;
    assert_eq!(got[3]["content"]["body"], "after");
}

#[tokio::test]
async fn event_id_only_pushers_get_no_content() {
    let server = pushing_server().await;
    let gateway = Gateway::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = room(&server, &alice, &[&bob], "Quiet").await;
    let set = set_pusher(
        &server,
        &alice,
        &pusher(&gateway.url(), "k", json!({"format": "event_id_only"})),
    )
    .await;
    assert_eq!(set.0, StatusCode::OK);
    let event = send(&server, &bob, &room, "1", "secret plans").await;
    let n = &wait_events(&gateway, 1).await[0];
    assert_eq!(n["event_id"], event);
    assert_eq!(n["room_id"], room);
    assert_eq!(n["counts"]["unread"], 1);
    for absent in [
        "content",
        "sender",
        "type",
        "room_name",
        "sender_display_name",
    ] {
        assert!(n.get(absent).is_none(), "{absent} in {n}");
    }
    assert_eq!(n["devices"][0]["data"]["format"], "event_id_only");
}

#[tokio::test]
async fn direct_messages_mentions_and_room_pings_are_high_priority() {
    let server = pushing_server().await;
    let gateway = Gateway::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    add_pusher(&server, &alice, &gateway.url(), "k").await;

    // A room of two: the one-to-one rule (sound).
    let dm = room(&server, &bob, &[&alice], "DM").await;
    send(&server, &bob, &dm, "1", "hi alice").await;
    let n = &wait_events(&gateway, 1).await[0];
    assert_eq!(n["prio"], "high");
    assert_eq!(n["devices"][0]["tweaks"]["sound"], "default");

    // A mention in a group: highlight and sound.
    let group = room(&server, &bob, &[&alice, &carol], "Group").await;
    send_event(
        &server,
        &bob,
        &group,
        "m.room.message",
        "2",
        &json!({"msgtype": "m.text", "body": "alice, look",
                "m.mentions": {"user_ids": [alice.user_id]}}),
    )
    .await;
    let n = &wait_events(&gateway, 2).await[1];
    assert_eq!(n["prio"], "high");
    assert_eq!(n["devices"][0]["tweaks"]["highlight"], true);

    // @room from the room's creator (who has the power to): highlight.
    send_event(
        &server,
        &bob,
        &group,
        "m.room.message",
        "3",
        &json!({"msgtype": "m.text", "body": "@room lunch", "m.mentions": {"room": true}}),
    )
    .await;
    let n = &wait_events(&gateway, 3).await[2];
    assert_eq!(n["devices"][0]["tweaks"]["highlight"], true);

    // @room from someone without the power: an ordinary message.
    send_event(
        &server,
        &carol,
        &group,
        "m.room.message",
        "4",
        &json!({"msgtype": "m.text", "body": "@room me too", "m.mentions": {"room": true}}),
    )
    .await;
    let n = &wait_events(&gateway, 4).await[3];
    assert_eq!(n["prio"], "low");
    assert!(n["devices"][0]["tweaks"].get("highlight").is_none(), "{n}");

    // An invitation to alice: the target is told it is about her.
    let (status, body) = server
        .post(
            "/_matrix/client/v3/createRoom",
            carol.token(),
            &json!({"invite": [alice.user_id]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let invites: Vec<Value> = wait_events(&gateway, 5)
        .await
        .into_iter()
        .filter(|n| n["type"] == "m.room.member")
        .collect();
    assert_eq!(invites.len(), 1);
    assert_eq!(invites[0]["user_is_target"], true);
    assert_eq!(invites[0]["content"]["membership"], "invite");
}

#[tokio::test]
async fn rules_decide_what_is_pushed() {
    let server = pushing_server().await;
    let gateway = Gateway::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    add_pusher(&server, &alice, &gateway.url(), "k").await;
    let muted = room(&server, &bob, &[&alice, &carol], "Muted").await;
    let open = room(&server, &bob, &[&alice, &carol], "Open").await;

    // Mute a room: a room rule without a notify action.
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/pushrules/global/room/{muted}"),
            alice.token(),
            &json!({"actions": []}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A keyword.
    let (status, body) = server
        .put(
            "/_matrix/client/v3/pushrules/global/content/deploy",
            alice.token(),
            &json!({"pattern": "deploy", "actions": ["notify", {"set_tweak": "highlight"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    send(&server, &bob, &muted, "1", "nobody hears this").await;
    send_event(
        &server,
        &bob,
        &open,
        "m.room.message",
        "2",
        &json!({"msgtype": "m.notice", "body": "bot notice"}),
    )
    .await;
    let encrypted = send_event(
        &server,
        &bob,
        &open,
        "m.room.encrypted",
        "3",
        &json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEn...",
                "sender_key": "k", "device_id": "D", "session_id": "s"}),
    )
    .await;
    let keyword = send(&server, &bob, &open, "4", "we deploy at five").await;

    let got = wait_events(&gateway, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_now = event_notifications(&gateway);
    assert_eq!(got_now.len(), 2, "{got_now:#?}");
    assert_eq!(got[0]["event_id"], encrypted);
    assert_eq!(got[0]["type"], "m.room.encrypted");
    assert_eq!(got[0]["devices"][0]["tweaks"], json!({}));
    assert_eq!(got[1]["event_id"], keyword);
    assert_eq!(got[1]["devices"][0]["tweaks"]["highlight"], true);
    assert_eq!(got[1]["prio"], "high");
}

#[tokio::test]
async fn long_messages_are_cut_to_fit_a_push() {
    let server = pushing_server().await;
    let gateway = Gateway::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = room(&server, &alice, &[&bob], "Long").await;
    add_pusher(&server, &alice, &gateway.url(), "k").await;
    let long = "긴 메시지 ".repeat(2000);
    send_event(
        &server,
        &bob,
        &room,
        "m.room.message",
        "1",
        &json!({"msgtype": "m.text", "body": long, "format": "org.matrix.custom.html",
                "formatted_body": format!("<p>{long}</p>")}),
    )
    .await;
    wait_events(&gateway, 1).await;
    let request = &gateway.requests()[0];
    let size = serde_json::to_vec(&request.body).unwrap().len();
    assert!(size <= 4096, "{size} bytes");
    let body = request.body["notification"]["content"]["body"]
        .as_str()
        .unwrap();
    assert!(
        body.starts_with("긴 메시지 긴 메시지") && body.ends_with('…'),
        "{body}"
    );
    assert!(
        request.body["notification"]["content"]
            .get("formatted_body")
            .is_none()
    );
}

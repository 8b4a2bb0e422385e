//! `GET /pushers`, `POST /pushers/set` and `GET /notifications`: what they keep and list, who
//! owns a pusher, and the answers to bad input.

use serde_json::json;
use spec_tests::gateway::Gateway;
use spec_tests::{ServerOptions, StatusCode, TestServer, assert_error, login, register};

use super::*;

#[tokio::test]
async fn a_pusher_is_set_listed_replaced_and_deleted() {
    let server = pushing_server().await;
    let gateway = Gateway::start().await;
    let alice = register(&server, "alice").await;
    assert!(pushers(&server, &alice).await.is_empty());

    let body = pusher(
        &gateway.url(),
        "key-1",
        json!({"format": "event_id_only", "x": 1}),
    );
    let mut with_tag = body.clone();
    with_tag["profile_tag"] = "phone".into();
    assert_eq!(
        set_pusher(&server, &alice, &with_tag).await.0,
        StatusCode::OK
    );
    let listed = pushers(&server, &alice).await;
    assert_eq!(listed.len(), 1);
    let p = &listed[0];
    assert_eq!(p["kind"], "http");
    assert_eq!(p["app_id"], "io.sori.test");
    assert_eq!(p["pushkey"], "key-1");
    assert_eq!(p["app_display_name"], "Sori Test");
    assert_eq!(p["device_display_name"], "Test phone");
    assert_eq!(p["lang"], "ko");
    assert_eq!(p["profile_tag"], "phone");
    assert_eq!(p["data"]["url"], gateway.url());
    assert_eq!(p["data"]["format"], "event_id_only");
    assert_eq!(p["data"]["x"], 1);

    // The same app id and pushkey again replaces it.
    let mut renamed = body.clone();
    renamed["device_display_name"] = "Renamed phone".into();
    assert_eq!(
        set_pusher(&server, &alice, &renamed).await.0,
        StatusCode::OK
    );
    let listed = pushers(&server, &alice).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["device_display_name"], "Renamed phone");

    // Another pushkey is another pusher.
    add_pusher(&server, &alice, &gateway.url(), "key-2").await;
    assert_eq!(pushers(&server, &alice).await.len(), 2);

    // kind: null deletes; deleting again is no error.
    let delete = json!({"kind": null, "app_id": "io.sori.test", "pushkey": "key-1"});
    assert_eq!(set_pusher(&server, &alice, &delete).await.0, StatusCode::OK);
    assert_eq!(set_pusher(&server, &alice, &delete).await.0, StatusCode::OK);
    let listed = pushers(&server, &alice).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["pushkey"], "key-2");
}

#[tokio::test]
async fn pushers_belong_to_their_user_and_device() {
    let server = pushing_server().await;
    let gateway = Gateway::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    add_pusher(&server, &alice, &gateway.url(), "alice-key").await;
    assert!(
        pushers(&server, &bob).await.is_empty(),
        "bob sees none of alice's"
    );

    // Bob deleting alice's app id and pushkey deletes nothing of hers.
    let delete = json!({"kind": null, "app_id": "io.sori.test", "pushkey": "alice-key"});
    assert_eq!(set_pusher(&server, &bob, &delete).await.0, StatusCode::OK);
    assert_eq!(pushers(&server, &alice).await.len(), 1);

    // With `append`, a second user may register the same pushkey; without it, the pushkey
    // moves to the new user (the phone changed hands).
    let mut appended = pusher(&gateway.url(), "alice-key", json!({}));
    appended["append"] = true.into();
    assert_eq!(set_pusher(&server, &bob, &appended).await.0, StatusCode::OK);
    assert_eq!(pushers(&server, &alice).await.len(), 1);
    assert_eq!(pushers(&server, &bob).await.len(), 1);
    add_pusher(&server, &bob, &gateway.url(), "alice-key").await;
    assert!(pushers(&server, &alice).await.is_empty());
    assert_eq!(pushers(&server, &bob).await.len(), 1);

    // Logging a device out removes the pushers it set, and only those.
    let phone = login(&server, "alice", &alice.password).await;
    add_pusher(&server, &alice, &gateway.url(), "laptop-key").await;
    add_pusher(&server, &phone, &gateway.url(), "phone-key").await;
    assert_eq!(pushers(&server, &alice).await.len(), 2);
    let (status, body) = server
        .post("/_matrix/client/v3/logout", phone.token(), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = pushers(&server, &alice).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["pushkey"], "laptop-key");
}

#[tokio::test]
async fn pushers_persist_across_a_restart() {
    let mut server = pushing_server().await;
    let gateway = Gateway::start().await;
    let alice = register(&server, "alice").await;
    add_pusher(&server, &alice, &gateway.url(), "key").await;
    server.restart().await;
    let listed = pushers(&server, &alice).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["pushkey"], "key");
}

#[tokio::test]
async fn bad_pushers_are_refused_with_a_clear_errcode() {
    let server = TestServer::start_with(ServerOptions {
        extra_toml: "[outbound]\nip_range_whitelist = [\"127.0.0.1/32\"]\n\
                     [push]\nmax_pushers_per_user = 2\n"
            .into(),
        ..Default::default()
    })
    .await;
    let gateway = Gateway::start().await;
    let alice = register(&server, "alice").await;
    let url = gateway.url();

    // No token.
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/pushers/set",
                None,
                &pusher(&url, "k", json!({})),
            )
            .await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &server.get("/_matrix/client/v3/pushers", None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );

    // No url at all: the body does not have the shape of an http pusher.
    let mut no_url = pusher(&url, "k", json!({}));
    no_url["data"] = json!({"format": "event_id_only"});
    let result = set_pusher(&server, &alice, &no_url).await;
    assert_eq!(result.0, StatusCode::BAD_REQUEST, "{}", result.1);
    assert!(result.1["errcode"].as_str().unwrap().starts_with("M_"));

    for bad_url in [
        "ftp://127.0.0.1/_matrix/push/v1/notify",
        "file:///_matrix/push/v1/notify",
        "http://127.0.0.1:1/somewhere/else",
        "not a url",
    ] {
        assert_error(
            &set_pusher(&server, &alice, &pusher(bad_url, "k", json!({}))).await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        );
    }

    // Unknown kinds.
    for kind in ["email", "carrier-pigeon"] {
        let mut body = pusher(&url, "k", json!({}));
        body["kind"] = kind.into();
        assert_error(
            &set_pusher(&server, &alice, &body).await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        );
    }

    // Oversized fields.
    assert_error(
        &set_pusher(
            &server,
            &alice,
            &pusher(&url, "k", json!({"blob": "x".repeat(5000)})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &set_pusher(&server, &alice, &pusher(&url, &"k".repeat(513), json!({}))).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let mut long_app = pusher(&url, "k", json!({}));
    long_app["app_id"] = "a".repeat(65).into();
    assert_error(
        &set_pusher(&server, &alice, &long_app).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    // A required field missing.
    let mut no_lang = pusher(&url, "k", json!({}));
    no_lang.as_object_mut().unwrap().remove("lang");
    assert_error(
        &set_pusher(&server, &alice, &no_lang).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_error(
        &server
            .request_raw(
                reqwest::Method::POST,
                "/_matrix/client/v3/pushers/set",
                alice.token(),
                "{not json",
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_NOT_JSON",
    );

    // At most two pushers here; replacing one is still fine.
    add_pusher(&server, &alice, &url, "one").await;
    add_pusher(&server, &alice, &url, "two").await;
    assert_error(
        &set_pusher(&server, &alice, &pusher(&url, "three", json!({}))).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    add_pusher(&server, &alice, &url, "two").await;
    assert_eq!(
        pushers(&server, &alice).await.len(),
        2,
        "nothing stored was lost"
    );
}

#[tokio::test]
async fn gateways_the_outbound_guard_refuses_are_refused_at_set_time() {
    // No whitelist: loopback is not a place this server sends to, by address or by name.
    let server = TestServer::start().await;
    let gateway = Gateway::start().await;
    let alice = register(&server, "alice").await;
    let port = gateway
        .url()
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    for url in [
        gateway.url(),
        format!("http://localhost:{port}/_matrix/push/v1/notify"),
        format!("http://[::1]:{port}/_matrix/push/v1/notify"),
        format!("http://[::ffff:127.0.0.1]:{port}/_matrix/push/v1/notify"),
    ] {
        let result = set_pusher(&server, &alice, &pusher(&url, "k", json!({}))).await;
        assert_error(&result, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    assert!(pushers(&server, &alice).await.is_empty());
    assert!(gateway.requests().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn notifications_list_what_notified_newest_first() {
    let server = pushing_server().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = room(&server, &alice, &[&bob], "Team").await;
    let first = send(&server, &bob, &room, "1", "hello").await;
    let second = send(&server, &bob, &room, "2", "alice: are you there?").await;
    let mention = send_event(
        &server,
        &bob,
        &room,
        "m.room.message",
        "3",
        &json!({"msgtype": "m.text", "body": "ping alice",
                "m.mentions": {"user_ids": [alice.user_id]}}),
    )
    .await;
    // Alice's own message notifies nobody of hers.
    send(&server, &alice, &room, "4", "mine").await;
    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{second}"),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = server
        .get("/_matrix/client/v3/notifications", alice.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = body["notifications"].as_array().unwrap();
    let ids: Vec<&str> = list
        .iter()
        .map(|n| n["event"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![mention.as_str(), second.as_str(), first.as_str()]);
    let top = &list[0];
    assert_eq!(top["room_id"], room);
    // Read up to the receipt.
    let read: Vec<bool> = list.iter().map(|n| n["read"].as_bool().unwrap()).collect();
    assert_eq!(read, vec![false, true, true]);
    assert!(top["ts"].as_u64().unwrap() > 0);
    assert!(
        top["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["set_tweak"] == "highlight"),
        "{top}"
    );
    assert!(body.get("next_token").is_none() || body["next_token"].is_null());

    // Only highlights.
    let (_, highlights) = server
        .get(
            "/_matrix/client/v3/notifications?only=highlight",
            alice.token(),
        )
        .await;
    let ids: Vec<&str> = highlights["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["event"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![mention.as_str()]);

    // Pages.
    let (_, page) = server
        .get("/_matrix/client/v3/notifications?limit=2", alice.token())
        .await;
    assert_eq!(page["notifications"].as_array().unwrap().len(), 2);
    let next = page["next_token"].as_str().unwrap();
    let (_, rest) = server
        .get(
            &format!("/_matrix/client/v3/notifications?limit=2&from={next}"),
            alice.token(),
        )
        .await;
    let rest = rest["notifications"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["event"]["event_id"], first);

    // Bad input.
    assert_error(
        &server
            .get(
                "/_matrix/client/v3/notifications?from=yesterday",
                alice.token(),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server
            .get(
                "/_matrix/client/v3/notifications?only=everything",
                alice.token(),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server.get("/_matrix/client/v3/notifications", None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    let bad_limit = server
        .get("/_matrix/client/v3/notifications?limit=-1", alice.token())
        .await;
    assert_eq!(bad_limit.0, StatusCode::BAD_REQUEST, "{}", bad_limit.1);
}

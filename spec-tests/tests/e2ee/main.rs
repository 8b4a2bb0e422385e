//! End-to-end encryption plumbing over HTTP: keys, claims, device list changes, to-device
//! messages, cross-signing, key backup and the default-encryption switch.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use spec_tests::keys::{Key, device_keys, one_time_key};
use spec_tests::{
    ServerOptions, StatusCode, TestServer, User, assert_error, create_room, join, register, sync,
};

async fn upload(server: &TestServer, user: &User, body: &Value) -> (StatusCode, Value) {
    server
        .post("/_matrix/client/v3/keys/upload", user.token(), body)
        .await
}

fn users(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn keys_are_uploaded_queried_and_each_one_time_key_claimed_once() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let key = Key::new();

    // Refusals first: nothing of them may be stored.
    let mut forged = device_keys(&alice, &key);
    Key::new().sign(
        &alice.user_id,
        &format!("ed25519:{}", alice.device_id),
        &mut forged,
    );
    assert_error(
        &upload(&server, &alice, &json!({"device_keys": forged})).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &upload(
            &server,
            &alice,
            &json!({"device_keys": device_keys(&bob, &key)}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let mut not_an_object = device_keys(&alice, &key);
    not_an_object["keys"] = json!("nope");
    assert_error(
        &upload(&server, &alice, &json!({"device_keys": not_an_object})).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_error(
        &upload(&server, &alice, &json!({"device_keys": device_keys(&alice, &key), "one_time_keys": {"signed_curve25519:A": "bare string"}})).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    let (_, query) = server
        .post(
            "/_matrix/client/v3/keys/query",
            bob.token(),
            &json!({"device_keys": {&alice.user_id: []}}),
        )
        .await;
    assert_eq!(query["device_keys"][&alice.user_id], json!({}), "{query}");

    let otks: serde_json::Map<String, Value> = (0..3)
        .map(|i| {
            (
                format!("signed_curve25519:K{i}"),
                one_time_key(&alice, &key, &format!("otk{i}"), false),
            )
        })
        .collect();
    let (status, uploaded) = upload(
        &server,
        &alice,
        &json!({
            "device_keys": device_keys(&alice, &key),
            "one_time_keys": otks,
            "fallback_keys": {"signed_curve25519:FB": one_time_key(&alice, &key, "fallback", true)},
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{uploaded}");
    assert_eq!(uploaded["one_time_key_counts"]["signed_curve25519"], 3);
    // Other identity keys for the same device are refused; the stored ones stay.
    assert_error(
        &upload(
            &server,
            &alice,
            &json!({"device_keys": device_keys(&alice, &Key::new())}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    let (status, query) = server
        .post(
            "/_matrix/client/v3/keys/query",
            bob.token(),
            &json!({"device_keys": {&alice.user_id: [], "@nobody:localhost": []}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{query}");
    let got = &query["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(
        got["keys"][format!("ed25519:{}", alice.device_id)],
        key.public
    );
    assert!(
        got["unsigned"].get("device_display_name").is_some(),
        "{got}"
    );

    // Five concurrent claims for three keys: each one-time key once, then the fallback key.
    let claim = json!({"one_time_keys": {&alice.user_id: {&alice.device_id: "signed_curve25519"}}});
    let claims = futures_util::future::join_all(
        (0..5).map(|_| server.post("/_matrix/client/v3/keys/claim", bob.token(), &claim)),
    )
    .await;
    let mut ids = Vec::new();
    for (status, body) in claims {
        assert_eq!(status, StatusCode::OK, "{body}");
        let keys = body["one_time_keys"][&alice.user_id][&alice.device_id]
            .as_object()
            .unwrap()
            .clone();
        ids.extend(keys.keys().cloned());
    }
    ids.sort();
    assert_eq!(
        ids,
        [
            "signed_curve25519:FB",
            "signed_curve25519:FB",
            "signed_curve25519:K0",
            "signed_curve25519:K1",
            "signed_curve25519:K2"
        ]
    );
    // Unknown users and devices: an empty answer, not an error.
    let (status, body) = server
        .post("/_matrix/client/v3/keys/claim", bob.token(), &json!({"one_time_keys": {"@nobody:localhost": {"X": "signed_curve25519"}, &alice.user_id: {"NOPE": "signed_curve25519"}}}))
        .await;
    assert_eq!(
        (status, &body["one_time_keys"]),
        (StatusCode::OK, &json!({})),
        "{body}"
    );

    let alices_sync = sync(&server, &alice, "").await;
    assert_eq!(
        alices_sync["device_one_time_keys_count"]["signed_curve25519"],
        0
    );
    assert_eq!(alices_sync["device_unused_fallback_key_types"], json!([]));
}

#[tokio::test]
async fn device_list_changes_reach_those_who_share_a_room() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    join(&server, &bob, &room).await;
    let since = sync(&server, &bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bob waits; alice publishes keys: his long-poll wakes with her in `changed`.
    let long_poll = format!("since={since}&timeout=10000");
    let waiting = sync(&server, &bob, &long_poll);
    let uploading = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let (status, body) = upload(
            &server,
            &alice,
            &json!({"device_keys": device_keys(&alice, &Key::new())}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    };
    let (woken, ()) = tokio::join!(waiting, uploading);
    assert_eq!(
        users(&woken["device_lists"]["changed"]),
        BTreeSet::from([alice.user_id.clone()]),
        "{woken}"
    );
    let after_upload = woken["next_batch"].as_str().unwrap().to_owned();

    // Carol, who shares no room, publishes keys: nobody is told. Then she joins (changed)
    // and leaves (left).
    upload(
        &server,
        &carol,
        &json!({"device_keys": device_keys(&carol, &Key::new())}),
    )
    .await;
    let quiet = sync(&server, &bob, &format!("since={after_upload}")).await;
    assert!(
        users(&quiet["device_lists"]["changed"]).is_empty(),
        "{quiet}"
    );
    join(&server, &carol, &room).await;
    let joined = sync(&server, &bob, &format!("since={after_upload}")).await;
    assert_eq!(
        users(&joined["device_lists"]["changed"]),
        BTreeSet::from([carol.user_id.clone()])
    );
    let after_join = joined["next_batch"].as_str().unwrap().to_owned();
    server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            carol.token(),
            &json!({}),
        )
        .await;
    let left = sync(&server, &bob, &format!("since={after_join}")).await;
    assert_eq!(
        users(&left["device_lists"]["left"]),
        BTreeSet::from([carol.user_id.clone()]),
        "{left}"
    );
    let now = left["next_batch"].as_str().unwrap();

    let (status, changes) = server
        .get(
            &format!("/_matrix/client/v3/keys/changes?from={since}&to={now}"),
            bob.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changes}");
    assert!(
        users(&changes["changed"]).contains(&alice.user_id),
        "{changes}"
    );
    assert!(
        users(&changes["left"]).contains(&carol.user_id),
        "{changes}"
    );
    let (status, _) = server
        .get(
            "/_matrix/client/v3/keys/changes?from=garbage&to=s1",
            bob.token(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Deleting a device is a change too.
    let (status, body) = server
        .post("/_matrix/client/v3/logout", alice.token(), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let logged_out = sync(&server, &bob, &format!("since={now}")).await;
    assert!(
        users(&logged_out["device_lists"]["changed"]).contains(&alice.user_id),
        "{logged_out}"
    );
}

#[tokio::test]
async fn to_device_messages_arrive_once_in_order_and_wait_for_acknowledgement() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let since = sync(&server, &bob, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let send = |txn: &'static str, body: Value| {
        let (server, alice) = (&server, &alice);
        async move {
            server
                .put(
                    &format!("/_matrix/client/v3/sendToDevice/m.room_key_request/{txn}"),
                    alice.token(),
                    &body,
                )
                .await
        }
    };
    let long_poll = format!("since={since}&timeout=10000");
    let waiting = sync(&server, &bob, &long_poll);
    let sending = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let (status, body) = send(
            "t1",
            json!({"messages": {&bob.user_id: {&bob.device_id: {"n": 1}}}}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    };
    let (woken, ()) = tokio::join!(waiting, sending);
    assert_eq!(
        woken["to_device"]["events"],
        json!([{"type": "m.room_key_request", "sender": alice.user_id, "content": {"n": 1}}])
    );
    // The same transaction again sends nothing; a new one to every device arrives after it.
    send(
        "t1",
        json!({"messages": {&bob.user_id: {&bob.device_id: {"n": 1}}}}),
    )
    .await;
    send(
        "t2",
        json!({"messages": {&bob.user_id: {"*": {"n": 2}}, "@nobody:localhost": {"*": {"n": 0}}}}),
    )
    .await;
    let next = woken["next_batch"].as_str().unwrap();
    let second = sync(&server, &bob, &format!("since={next}")).await;
    let numbers: Vec<&Value> = second["to_device"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["content"]["n"])
        .collect();
    assert_eq!(numbers, [&json!(2)], "{second}");
    // A client that lost that response syncs from the same token and gets it again; once it
    // moves on, the message is gone.
    let again = sync(&server, &bob, &format!("since={next}")).await;
    assert_eq!(again["to_device"], second["to_device"]);
    let after = sync(
        &server,
        &bob,
        &format!("since={}", again["next_batch"].as_str().unwrap()),
    )
    .await;
    assert_eq!(after["to_device"]["events"], json!([]));

    let (status, body) = send(
        "t3",
        json!({"messages": {&bob.user_id: {&bob.device_id: "not an object"}}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = server
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/t4",
            None,
            &json!({"messages": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A cross-signing key object signed by `signer` (the master key for sub-keys).
fn cross_signing(user: &User, usage: &str, key: &Key, signer: Option<&Key>) -> Value {
    let mut object = json!({"user_id": user.user_id, "usage": [usage], "keys": {format!("ed25519:{}", key.public): key.public}});
    if let Some(signer) = signer {
        signer.sign(
            &user.user_id,
            &format!("ed25519:{}", signer.public),
            &mut object,
        );
    }
    object
}

#[tokio::test]
async fn cross_signing_keys_need_the_password_to_replace_and_signatures_are_checked() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let device = Key::new();
    upload(
        &server,
        &alice,
        &json!({"device_keys": device_keys(&alice, &device)}),
    )
    .await;
    let (master, self_signing, user_signing) = (Key::new(), Key::new(), Key::new());
    let keys = json!({
        "master_key": cross_signing(&alice, "master", &master, None),
        "self_signing_key": cross_signing(&alice, "self_signing", &self_signing, Some(&master)),
        "user_signing_key": cross_signing(&alice, "user_signing", &user_signing, Some(&master)),
    });
    let upload_signing = |body: Value| {
        let (server, alice) = (&server, &alice);
        async move {
            server
                .post(
                    "/_matrix/client/v3/keys/device_signing/upload",
                    alice.token(),
                    &body,
                )
                .await
        }
    };
    // A sub-key the master did not sign is refused.
    let mut unsigned = keys.clone();
    unsigned["self_signing_key"] = cross_signing(&alice, "self_signing", &self_signing, None);
    assert_error(
        &upload_signing(unsigned).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    // The first upload needs no password; the same keys again neither; new ones do.
    let (status, body) = upload_signing(keys.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(upload_signing(keys.clone()).await.0, StatusCode::OK);
    let new_master = Key::new();
    let replacement = json!({"master_key": cross_signing(&alice, "master", &new_master, None)});
    let (status, challenge) = upload_signing(replacement.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    assert!(challenge["flows"].is_array(), "{challenge}");

    // Alice signs her device with her self-signing key; a forged signature is reported.
    let mut signed_device = device_keys(&alice, &device);
    self_signing.sign(
        &alice.user_id,
        &format!("ed25519:{}", self_signing.public),
        &mut signed_device,
    );
    let mut forged_device = device_keys(&alice, &device);
    Key::new().sign(
        &alice.user_id,
        &format!("ed25519:{}", self_signing.public),
        &mut forged_device,
    );
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            alice.token(),
            &json!({&alice.user_id: {&alice.device_id: forged_device}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["failures"][&alice.user_id][&alice.device_id]["errcode"], "M_INVALID_SIGNATURE",
        "{body}"
    );
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            alice.token(),
            &json!({&alice.user_id: {&alice.device_id: signed_device}}),
        )
        .await;
    assert_eq!(
        (status, &body["failures"]),
        (StatusCode::OK, &json!({})),
        "{body}"
    );

    let (_, query) = server
        .post(
            "/_matrix/client/v3/keys/query",
            bob.token(),
            &json!({"device_keys": {&alice.user_id: []}}),
        )
        .await;
    let signatures =
        &query["device_keys"][&alice.user_id][&alice.device_id]["signatures"][&alice.user_id];
    assert!(
        signatures
            .get(format!("ed25519:{}", self_signing.public))
            .is_some(),
        "{query}"
    );
    assert_eq!(
        query["master_keys"][&alice.user_id]["keys"],
        keys["master_key"]["keys"]
    );
    assert!(query["self_signing_keys"][&alice.user_id].is_object());
    // Bob does not see alice's user-signing key; she does.
    assert!(
        query["user_signing_keys"].get(&alice.user_id).is_none(),
        "{query}"
    );
    let (_, own) = server
        .post(
            "/_matrix/client/v3/keys/query",
            alice.token(),
            &json!({"device_keys": {&alice.user_id: []}}),
        )
        .await;
    assert!(
        own["user_signing_keys"][&alice.user_id].is_object(),
        "{own}"
    );
}

#[tokio::test]
async fn a_signature_on_someone_elses_master_key_is_news_to_the_signer_alone() {
    // Verifying Bob (SAS, QR) ends with Alice's user-signing key signing his master key: her
    // devices must re-query Bob to see it, and nobody else has anything new to fetch.
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    join(&server, &bob, &room).await;
    join(&server, &carol, &room).await;

    let (alice_master, user_signing) = (Key::new(), Key::new());
    let bob_master = Key::new();
    let signing_upload = |user: &User, body: Value| {
        let (server, token) = (&server, user.token().map(str::to_owned));
        async move {
            server
                .post(
                    "/_matrix/client/v3/keys/device_signing/upload",
                    token.as_deref(),
                    &body,
                )
                .await
        }
    };
    let (status, body) = signing_upload(
        &alice,
        json!({
            "master_key": cross_signing(&alice, "master", &alice_master, None),
            "user_signing_key": cross_signing(&alice, "user_signing", &user_signing, Some(&alice_master)),
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bob_master_key = cross_signing(&bob, "master", &bob_master, None);
    let (status, body) = signing_upload(&bob, json!({"master_key": bob_master_key.clone()})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let since = |user: &User| {
        let (server, user) = (&server, user.clone());
        async move {
            sync(server, &user, "").await["next_batch"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (alice_since, carol_since) = (since(&alice).await, since(&carol).await);

    let mut signed = bob_master_key;
    user_signing.sign(
        &alice.user_id,
        &format!("ed25519:{}", user_signing.public),
        &mut signed,
    );
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            alice.token(),
            &json!({&bob.user_id: {bob_master.public.as_str(): signed}}),
        )
        .await;
    assert_eq!(
        (status, &body["failures"]),
        (StatusCode::OK, &json!({})),
        "{body}"
    );

    let alice_news = sync(&server, &alice, &format!("since={alice_since}")).await;
    assert_eq!(
        users(&alice_news["device_lists"]["changed"]),
        BTreeSet::from([bob.user_id.clone()]),
        "{alice_news}"
    );
    let carol_news = sync(&server, &carol, &format!("since={carol_since}")).await;
    assert!(
        users(&carol_news["device_lists"]["changed"]).is_empty(),
        "{carol_news}"
    );
    let (_, query) = server
        .post(
            "/_matrix/client/v3/keys/query",
            alice.token(),
            &json!({"device_keys": {&bob.user_id: []}}),
        )
        .await;
    assert!(
        query["master_keys"][&bob.user_id]["signatures"][&alice.user_id]
            .get(format!("ed25519:{}", user_signing.public))
            .is_some(),
        "{query}"
    );
}

#[tokio::test]
async fn key_backup_keeps_versions_keys_counts_and_etags() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let token = alice.token();
    let algorithm = "m.megolm_backup.v1.curve25519-aes-sha2";
    let (status, body) = server
        .get("/_matrix/client/v3/room_keys/version", token)
        .await;
    assert_error(&(status, body), StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let (status, created) = server
        .post(
            "/_matrix/client/v3/room_keys/version",
            token,
            &json!({"algorithm": algorithm, "auth_data": {"public_key": "abc"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let version = created["version"].as_str().unwrap().to_owned();

    let session = |index: u64| json!({"first_message_index": index, "forwarded_count": 0, "is_verified": false, "session_data": {"ciphertext": format!("c{index}")}});
    let (status, put) = server
        .put(
            &format!("/_matrix/client/v3/room_keys/keys?version={version}"),
            token,
            &json!({"rooms": {"!r:localhost": {"sessions": {"s1": session(3), "s2": session(0)}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["count"], 2);
    let (_, info) = server
        .get("/_matrix/client/v3/room_keys/version", token)
        .await;
    assert_eq!(
        (&info["version"], &info["count"], &info["etag"]),
        (&json!(version), &json!(2), &put["etag"]),
        "{info}"
    );
    assert_eq!(info["auth_data"], json!({"public_key": "abc"}));

    // A worse key for s1 is not taken (the etag stays); a better one is.
    let (_, worse) = server
        .put(
            &format!("/_matrix/client/v3/room_keys/keys/!r:localhost/s1?version={version}"),
            token,
            &session(9),
        )
        .await;
    assert_eq!(worse["etag"], put["etag"]);
    let (_, better) = server
        .put(
            &format!("/_matrix/client/v3/room_keys/keys/!r:localhost/s1?version={version}"),
            token,
            &session(1),
        )
        .await;
    assert_ne!(better["etag"], put["etag"]);
    let (status, key) = server
        .get(
            &format!("/_matrix/client/v3/room_keys/keys/!r:localhost/s1?version={version}"),
            token,
        )
        .await;
    assert_eq!((status, key), (StatusCode::OK, session(1)));
    let (_, all) = server
        .get(
            &format!("/_matrix/client/v3/room_keys/keys?version={version}"),
            token,
        )
        .await;
    assert_eq!(
        all["rooms"]["!r:localhost"]["sessions"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    let (status, body) = server
        .get(
            &format!("/_matrix/client/v3/room_keys/keys/!r:localhost/nope?version={version}"),
            token,
        )
        .await;
    assert_error(&(status, body), StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // A newer version makes writes to the old one stale; the old one keeps its keys.
    let (_, newer) = server
        .post(
            "/_matrix/client/v3/room_keys/version",
            token,
            &json!({"algorithm": algorithm, "auth_data": {}}),
        )
        .await;
    let (status, stale) = server
        .put(
            &format!("/_matrix/client/v3/room_keys/keys?version={version}"),
            token,
            &json!({"rooms": {}}),
        )
        .await;
    assert_error(
        &(status, stale.clone()),
        StatusCode::FORBIDDEN,
        "M_WRONG_ROOM_KEYS_VERSION",
    );
    assert_eq!(stale["current_version"], newer["version"], "{stale}");
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/room_keys/version/{version}"),
            token,
            &json!({"algorithm": "other", "auth_data": {}}),
        )
        .await;
    assert_error(&(status, body), StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/room_keys/keys?version={version}"),
            token,
            &json!({"rooms": {"!r:localhost": {"sessions": {"s": {"first_message_index": "x"}}}}}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "stale before malformed: {body}"
    );

    let (status, _) = server
        .delete(
            &format!(
                "/_matrix/client/v3/room_keys/version/{}",
                newer["version"].as_str().unwrap()
            ),
            token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, deleted) = server
        .delete(
            &format!("/_matrix/client/v3/room_keys/keys/!r:localhost?version={version}"),
            token,
            None,
        )
        .await;
    assert_eq!(
        (status, &deleted["count"]),
        (StatusCode::OK, &json!(0)),
        "{deleted}"
    );
    let (status, body) = server
        .get("/_matrix/client/v3/room_keys/version/99", token)
        .await;
    assert_error(&(status, body), StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let (status, _) = server
        .get("/_matrix/client/v3/room_keys/version", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn room_is_encrypted(server: &TestServer, user: &User, room: &str) -> bool {
    let (status, _) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.encryption/"),
            user.token(),
        )
        .await;
    status == StatusCode::OK
}

#[tokio::test]
async fn private_rooms_are_encrypted_by_default_and_the_switch_turns_that_off() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let private = create_room(&server, &alice, json!({"preset": "private_chat"})).await;
    let public = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    assert!(room_is_encrypted(&server, &alice, &private).await);
    assert!(!room_is_encrypted(&server, &alice, &public).await);
    let (_, well_known) = server.get("/.well-known/matrix/client", None).await;
    assert!(well_known.get("io.element.e2ee").is_none(), "{well_known}");

    let archived = TestServer::start_with(ServerOptions {
        extra_toml: "[e2ee]\ndefault_encryption = false\n".into(),
        ..ServerOptions::default()
    })
    .await;
    let bob = register(&archived, "bob").await;
    let dm = create_room(
        &archived,
        &bob,
        json!({"preset": "trusted_private_chat", "is_direct": true}),
    )
    .await;
    assert!(!room_is_encrypted(&archived, &bob, &dm).await);
    let (_, well_known) = archived.get("/.well-known/matrix/client", None).await;
    assert_eq!(well_known["io.element.e2ee"], json!({"default": false}));
}

use serde_json::json;
use spec_tests::{StatusCode, TestServer, assert_error, login, register};

#[tokio::test]
async fn devices_are_listed_renamed_and_deleted_with_the_password() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let phone = login(&server, "alice", &alice.password).await;
    let path = |d: &str| format!("/_matrix/client/v3/devices/{d}");

    let (status, body) = server
        .get("/_matrix/client/v3/devices", alice.token())
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut ids: Vec<&str> = body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut expected = vec![alice.device_id.as_str(), phone.device_id.as_str()];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(body["devices"][0]["last_seen_ts"].as_u64().unwrap() > 0);
    assert_eq!(body["devices"][0]["last_seen_ip"], "127.0.0.1");

    let (status, _) = server
        .put(
            &path(&phone.device_id),
            alice.token(),
            &json!({"display_name": "폰"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, device) = server.get(&path(&phone.device_id), alice.token()).await;
    assert_eq!(device["display_name"], "폰");
    assert_error(
        &server.get(&path("NOPE"), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .put(&path("NOPE"), alice.token(), &json!({"display_name": "x"}))
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    // Deleting needs UIA; the device survives until it completes.
    let (status, body) = server
        .delete(&path(&phone.device_id), alice.token(), Some(&json!({})))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        server
            .get("/_matrix/client/v3/account/whoami", phone.token())
            .await
            .0,
        StatusCode::OK
    );
    let auth = json!({"auth": {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": alice.password,
        "session": body["session"],
    }});
    let (status, body) = server
        .delete(&path(&phone.device_id), alice.token(), Some(&auth))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(
        &server
            .get("/_matrix/client/v3/account/whoami", phone.token())
            .await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &server.get(&path(&phone.device_id), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn delete_devices_in_bulk_and_never_another_users() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let a2 = login(&server, "alice", &alice.password).await;
    let a3 = login(&server, "alice", &alice.password).await;
    let bob = register(&server, "bob").await;

    // Bob cannot see or touch Alice's devices.
    assert_error(
        &server
            .get(
                &format!("/_matrix/client/v3/devices/{}", a2.device_id),
                bob.token(),
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let path = "/_matrix/client/v3/delete_devices";
    let (_, challenge) = server
        .post(path, bob.token(), &json!({"devices": [a2.device_id]}))
        .await;
    let (status, _) = server
        .post(
            path,
            bob.token(),
            &json!({"devices": [a2.device_id], "auth": {
                "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"},
                "password": bob.password, "session": challenge["session"],
            }}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "unknown ids are skipped, not an error"
    );
    assert_eq!(
        server
            .get("/_matrix/client/v3/account/whoami", a2.token())
            .await
            .0,
        StatusCode::OK
    );

    let (_, challenge) = server
        .post(
            path,
            alice.token(),
            &json!({"devices": [a2.device_id, a3.device_id]}),
        )
        .await;
    let (status, body) = server
        .post(
            path,
            alice.token(),
            &json!({"devices": [a2.device_id, a3.device_id], "auth": {
                "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                "password": alice.password, "session": challenge["session"],
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for gone in [&a2, &a3] {
        assert_error(
            &server
                .get("/_matrix/client/v3/account/whoami", gone.token())
                .await,
            StatusCode::UNAUTHORIZED,
            "M_UNKNOWN_TOKEN",
        );
    }
    let (_, devices) = server
        .get("/_matrix/client/v3/devices", alice.token())
        .await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1);
}

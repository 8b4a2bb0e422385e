use serde_json::json;
use spec_tests::{StatusCode, TestServer, assert_error, login, register};

#[tokio::test]
async fn everything_acknowledged_survives_a_kill() {
    let mut server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let phone = login(&server, "alice", &alice.password).await;
    let (status, _) = server
        .post("/_matrix/client/v3/logout", phone.token(), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let name = format!("/_matrix/client/v3/profile/{}/displayname", alice.user_id);
    server
        .put(&name, alice.token(), &json!({"displayname": "Alice"}))
        .await;
    let data = format!(
        "/_matrix/client/v3/user/{}/account_data/io.sori.x",
        alice.user_id
    );
    server.put(&data, alice.token(), &json!({"n": 1})).await;
    let (_, filter) = server
        .post(
            &format!("/_matrix/client/v3/user/{}/filter", alice.user_id),
            alice.token(),
            &json!({"room": {}}),
        )
        .await;

    server.restart().await;

    let (status, me) = server
        .get("/_matrix/client/v3/account/whoami", alice.token())
        .await;
    assert_eq!(status, StatusCode::OK, "the token survived: {me}");
    assert_eq!(me["device_id"], alice.device_id.as_str());
    assert_error(
        &server
            .get("/_matrix/client/v3/account/whoami", phone.token())
            .await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    login(&server, "alice", &alice.password).await;
    assert_eq!(
        server.get(&name, None).await.1,
        json!({"displayname": "Alice"})
    );
    assert_eq!(server.get(&data, alice.token()).await.1, json!({"n": 1}));
    let get_filter = format!(
        "/_matrix/client/v3/user/{}/filter/{}",
        alice.user_id,
        filter["filter_id"].as_str().unwrap()
    );
    assert_eq!(
        server.get(&get_filter, alice.token()).await.0,
        StatusCode::OK
    );

    // A new filter after the restart gets a new id (the counter did not go back).
    let (_, second) = server
        .post(
            &format!("/_matrix/client/v3/user/{}/filter", alice.user_id),
            alice.token(),
            &json!({"room": {}}),
        )
        .await;
    let first_id: u64 = filter["filter_id"].as_str().unwrap().parse().unwrap();
    let second_id: u64 = second["filter_id"].as_str().unwrap().parse().unwrap();
    assert!(second_id > first_id);
}

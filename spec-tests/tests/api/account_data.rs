use serde_json::json;
use spec_tests::{StatusCode, TestServer, assert_error, register};

#[tokio::test]
async fn global_and_room_account_data_round_trip() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let global = format!(
        "/_matrix/client/v3/user/{}/account_data/m.direct",
        alice.user_id
    );
    let content = json!({"@bob:localhost": ["!dm:localhost"]});
    assert_eq!(
        server.put(&global, alice.token(), &content).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.get(&global, alice.token()).await,
        (StatusCode::OK, content)
    );

    let room = format!(
        "/_matrix/client/v3/user/{}/rooms/!room:localhost/account_data/io.sori.note",
        alice.user_id
    );
    assert_error(
        &server.get(&room, alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_eq!(
        server
            .put(&room, alice.token(), &json!({"text": "메모"}))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        server.get(&room, alice.token()).await.1,
        json!({"text": "메모"})
    );
    // The same type globally is a different entry.
    let global_note = format!(
        "/_matrix/client/v3/user/{}/account_data/io.sori.note",
        alice.user_id
    );
    assert_error(
        &server.get(&global_note, alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn account_data_refusals() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let path = format!(
        "/_matrix/client/v3/user/{}/account_data/io.sori.x",
        alice.user_id
    );
    assert_eq!(
        server.put(&path, alice.token(), &json!({"v": 1})).await.0,
        StatusCode::OK
    );

    assert_error(
        &server.get(&path, bob.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server.put(&path, bob.token(), &json!({"v": 2})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server.put(&path, alice.token(), &json!([1])).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    let managed = format!(
        "/_matrix/client/v3/user/{}/account_data/m.push_rules",
        alice.user_id
    );
    assert_error(
        &server.put(&managed, alice.token(), &json!({})).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "M_BAD_JSON",
    );
    let fully_read = format!(
        "/_matrix/client/v3/user/{}/rooms/!r:localhost/account_data/m.fully_read",
        alice.user_id
    );
    assert_error(
        &server
            .put(&fully_read, alice.token(), &json!({"event_id": "$x"}))
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "M_BAD_JSON",
    );
    let bad_room = format!(
        "/_matrix/client/v3/user/{}/rooms/not-a-room/account_data/x.y",
        alice.user_id
    );
    assert_error(
        &server.get(&bad_room, alice.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_eq!(
        server.get(&path, alice.token()).await.1,
        json!({"v": 1}),
        "nothing changed"
    );
}

#[tokio::test]
async fn filters_are_stored_per_user() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let filter = json!({"room": {"timeline": {"limit": 10, "types": ["m.room.message"]}}, "presence": {"not_types": ["*"]}});
    let create = format!("/_matrix/client/v3/user/{}/filter", alice.user_id);
    let (status, body) = server.post(&create, alice.token(), &filter).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["filter_id"].as_str().unwrap();
    let get = format!("{create}/{id}");
    let (status, stored) = server.get(&get, alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["room"]["timeline"]["limit"], 10);
    assert_eq!(
        stored["room"]["timeline"]["types"],
        json!(["m.room.message"])
    );

    assert_error(
        &server.get(&get, bob.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server.post(&create, bob.token(), &filter).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let bobs = format!("/_matrix/client/v3/user/{}/filter/{id}", bob.user_id);
    assert_error(
        &server.get(&bobs, bob.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.get(&format!("{create}/999999"), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .post(
                &create,
                alice.token(),
                &json!({"room": {"timeline": {"limit": "ten"}}}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
}

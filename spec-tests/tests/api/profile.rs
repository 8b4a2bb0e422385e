use serde_json::json;
use spec_tests::{StatusCode, TestServer, assert_error, register};

#[tokio::test]
async fn own_profile_fields_can_be_set_and_anyone_reads_them() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let field = |f: &str| format!("/_matrix/client/v3/profile/{}/{f}", alice.user_id);

    let (status, _) = server
        .put(
            &field("displayname"),
            alice.token(),
            &json!({"displayname": "앨리스 Kim"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .put(
            &field("avatar_url"),
            alice.token(),
            &json!({"avatar_url": "mxc://localhost/abcdef"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server
        .put(
            &field("io.sori.department"),
            alice.token(),
            &json!({"io.sori.department": "R&D"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert_eq!(
        server.get(&field("displayname"), None).await,
        (StatusCode::OK, json!({"displayname": "앨리스 Kim"}))
    );
    assert_eq!(
        server.get(&field("avatar_url"), bob.token()).await.1,
        json!({"avatar_url": "mxc://localhost/abcdef"})
    );
    let (status, profile) = server
        .get(
            &format!("/_matrix/client/v3/profile/{}", alice.user_id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        profile,
        json!({"displayname": "앨리스 Kim", "avatar_url": "mxc://localhost/abcdef", "io.sori.department": "R&D"})
    );

    let (status, _) = server
        .delete(&field("io.sori.department"), alice.token(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &server.get(&field("io.sori.department"), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn other_users_unknown_users_and_bad_values_are_refused() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let field = |f: &str| format!("/_matrix/client/v3/profile/{}/{f}", alice.user_id);

    assert_error(
        &server
            .put(
                &field("displayname"),
                bob.token(),
                &json!({"displayname": "hacked"}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .put(&field("displayname"), None, &json!({"displayname": "anon"}))
            .await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &server
            .get("/_matrix/client/v3/profile/@nobody:localhost", None)
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .get(
                "/_matrix/client/v3/profile/@nobody:localhost/displayname",
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .get("/_matrix/client/v3/profile/not-a-user-id", None)
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let long_id = format!("/_matrix/client/v3/profile/@{}:localhost", "a".repeat(300));
    assert_error(
        &server.get(&long_id, None).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    let huge = "가".repeat(300);
    assert_error(
        &server
            .put(
                &field("displayname"),
                alice.token(),
                &json!({"displayname": huge}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server
            .put(
                &field("displayname"),
                alice.token(),
                &json!({"displayname": 42}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_error(
        &server
            .put(
                &field("avatar_url"),
                alice.token(),
                &json!({"avatar_url": "https://evil.example/x.png"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let key = "k".repeat(300);
    assert_error(
        &server
            .put(&field(&key), alice.token(), &json!({key.clone(): 1}))
            .await,
        StatusCode::BAD_REQUEST,
        "M_KEY_TOO_LARGE",
    );

    // Every refusal left the profile as it was.
    let (_, profile) = server
        .get(
            &format!("/_matrix/client/v3/profile/{}", alice.user_id),
            None,
        )
        .await;
    assert_eq!(profile, json!({"displayname": "alice"}));
}

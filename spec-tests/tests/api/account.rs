use serde_json::{Value, json};
use spec_tests::{StatusCode, TestServer, User, assert_error, login, register};

fn password_auth(user: &User, password: &str, session: &str) -> Value {
    json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": password,
        "session": session,
    })
}

#[tokio::test]
async fn changing_the_password_needs_the_old_one_and_logs_out_other_devices() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let other = login(&server, "alice", &alice.password).await;
    let path = "/_matrix/client/v3/account/password";

    let (status, body) = server
        .post(path, alice.token(), &json!({"new_password": "new-pw-2026"}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["flows"], json!([{"stages": ["m.login.password"]}]));
    // `params` is always there (matrix-nio fails without it).
    assert_eq!(body["params"], json!({}));
    let session = body["session"].as_str().unwrap().to_owned();

    let (status, body) = server
        .post(path, alice.token(), &json!({"new_password": "new-pw-2026", "auth": password_auth(&alice, "wrong", &session)}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    // Nothing changed yet.
    login(&server, "alice", &alice.password).await;

    let (status, body) = server
        .post(path, alice.token(), &json!({"new_password": "new-pw-2026", "auth": password_auth(&alice, &alice.password, &session)}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    login(&server, "alice", "new-pw-2026").await;
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/login",
                None,
                &json!({"type": "m.login.password", "user": "alice", "password": alice.password}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    // This device stays, the other one is gone.
    assert_eq!(
        server
            .get("/_matrix/client/v3/account/whoami", alice.token())
            .await
            .0,
        StatusCode::OK
    );
    assert_error(
        &server
            .get("/_matrix/client/v3/account/whoami", other.token())
            .await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
}

#[tokio::test]
async fn logout_devices_false_keeps_other_sessions() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let other = login(&server, "alice", &alice.password).await;
    let path = "/_matrix/client/v3/account/password";
    let (_, body) = server
        .post(
            path,
            alice.token(),
            &json!({"new_password": "another-pw-1"}),
        )
        .await;
    let session = body["session"].as_str().unwrap().to_owned();
    let (status, body) = server
        .post(
            path,
            alice.token(),
            &json!({
                "new_password": "another-pw-1", "logout_devices": false,
                "auth": password_auth(&alice, &alice.password, &session),
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        server
            .get("/_matrix/client/v3/account/whoami", other.token())
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn uia_cannot_be_passed_as_someone_else() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let path = "/_matrix/client/v3/account/password";
    let (_, body) = server
        .post(path, alice.token(), &json!({"new_password": "x-pw-1234"}))
        .await;
    let session = body["session"].as_str().unwrap().to_owned();
    // Bob's correct password does not authorise a change of Alice's.
    let (status, body) = server
        .post(path, alice.token(), &json!({"new_password": "x-pw-1234", "auth": password_auth(&bob, &bob.password, &session)}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    // And Bob cannot finish Alice's session with his own token.
    let (status, _) = server
        .post(path, bob.token(), &json!({"new_password": "x-pw-1234", "auth": password_auth(&bob, &bob.password, &session)}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    login(&server, "alice", &alice.password).await;
    login(&server, "bob", &bob.password).await;
}

#[tokio::test]
async fn deactivation_locks_the_account_and_keeps_its_name_taken() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let path = "/_matrix/client/v3/account/deactivate";
    let (status, body) = server.post(path, alice.token(), &json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let session = body["session"].as_str().unwrap().to_owned();
    let (status, body) = server
        .post(
            path,
            alice.token(),
            &json!({"auth": password_auth(&alice, &alice.password, &session)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id_server_unbind_result"], "no-support");

    assert_error(
        &server
            .get("/_matrix/client/v3/account/whoami", alice.token())
            .await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/login",
                None,
                &json!({"type": "m.login.password", "user": "alice", "password": alice.password}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_USER_DEACTIVATED",
    );
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/register",
                None,
                &json!({"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy"}}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );
}

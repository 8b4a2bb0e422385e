use serde_json::json;
use spec_tests::{ServerOptions, StatusCode, TestServer, assert_error, register};

const REGISTER: &str = "/_matrix/client/v3/register";

#[tokio::test]
async fn registration_goes_through_user_interactive_auth() {
    let server = TestServer::start().await;
    // First call: the flows and a session.
    let (status, body) = server
        .post(
            REGISTER,
            None,
            &json!({"username": "alice", "password": "pw-alice-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["flows"], json!([{"stages": ["m.login.dummy"]}]));
    let session = body["session"].as_str().unwrap();

    let (status, body) = server
        .post(
            REGISTER,
            None,
            &json!({
                "username": "alice",
                "password": "pw-alice-1",
                "initial_device_display_name": "Alice's laptop",
                "auth": {"type": "m.login.dummy", "session": session},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:localhost");
    let token = body["access_token"].as_str().unwrap();
    assert!(token.len() >= 32);
    let device_id = body["device_id"].as_str().unwrap();

    let (_, devices) = server.get("/_matrix/client/v3/devices", Some(token)).await;
    assert_eq!(devices["devices"][0]["device_id"], device_id);
    assert_eq!(devices["devices"][0]["display_name"], "Alice's laptop");

    // The new user's display name starts as the localpart.
    let (_, profile) = server
        .get("/_matrix/client/v3/profile/@alice:localhost", None)
        .await;
    assert_eq!(profile["displayname"], "alice");
}

#[tokio::test]
async fn names_are_validated_and_unique() {
    let server = TestServer::start().await;
    register(&server, "alice").await;
    let attempt = |name: String| {
        let server = &server;
        async move {
            server
                .post(
                    REGISTER,
                    None,
                    &json!({"username": name, "password": "pw", "auth": {"type": "m.login.dummy"}}),
                )
                .await
        }
    };
    assert_error(
        &attempt("alice".into()).await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );
    for bad in ["Alice", "al ice", "a:b", "", "한국어", "_reserved"] {
        assert_error(
            &attempt(bad.into()).await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_USERNAME",
        );
    }
    assert_error(
        &attempt("a".repeat(300)).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_USERNAME",
    );

    let available = async |name: &str| {
        server
            .get(
                &format!("/_matrix/client/v3/register/available?username={name}"),
                None,
            )
            .await
    };
    let (status, body) = available("bob").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"available": true})));
    assert_error(
        &available("alice").await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );
    assert_error(
        &available("B%20B").await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_USERNAME",
    );
}

#[tokio::test]
async fn without_a_username_the_server_picks_one() {
    let server = TestServer::start().await;
    let (status, body) = server
        .post(
            REGISTER,
            None,
            &json!({"password": "pw-anon-1", "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user_id = body["user_id"].as_str().unwrap();
    assert!(user_id.starts_with('@') && user_id.ends_with(":localhost"));
}

#[tokio::test]
async fn inhibit_login_creates_no_device() {
    let server = TestServer::start().await;
    let (status, body) = server
        .post(
            REGISTER,
            None,
            &json!({
                "username": "quiet", "password": "pw-quiet-1", "inhibit_login": true,
                "auth": {"type": "m.login.dummy"},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@quiet:localhost");
    assert!(
        body["access_token"].is_null() && body["device_id"].is_null(),
        "{body}"
    );
    // The account exists and can log in.
    spec_tests::login(&server, "quiet", "pw-quiet-1").await;
}

#[tokio::test]
async fn guests_and_closed_registration_are_refused() {
    let server = TestServer::start().await;
    assert_error(
        &server
            .post(&format!("{REGISTER}?kind=guest"), None, &json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    let closed = TestServer::start_with(ServerOptions {
        registration_enabled: false,
        ..Default::default()
    })
    .await;
    assert_error(
        &closed
            .post(
                REGISTER,
                None,
                &json!({"username": "x", "password": "pw", "auth": {"type": "m.login.dummy"}}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &closed
            .get(
                "/_matrix/client/v1/register/m.login.registration_token/validity?token=x",
                None,
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn a_registration_token_is_required_when_configured() {
    let server = TestServer::start_with(ServerOptions {
        registration_token: Some("company-2026".into()),
        ..Default::default()
    })
    .await;
    let validity = async |t: &str| {
        server
            .get(
                &format!(
                    "/_matrix/client/v1/register/m.login.registration_token/validity?token={t}"
                ),
                None,
            )
            .await
    };
    assert_eq!(
        validity("company-2026").await,
        (StatusCode::OK, json!({"valid": true}))
    );
    assert_eq!(
        validity("guess").await,
        (StatusCode::OK, json!({"valid": false}))
    );

    let (status, body) = server
        .post(
            REGISTER,
            None,
            &json!({"username": "carol", "password": "pw-carol-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["flows"],
        json!([{"stages": ["m.login.registration_token"]}])
    );
    let session = body["session"].as_str().unwrap().to_owned();

    // Dummy auth is not offered, and a wrong token fails the stage.
    let (status, body) = server
        .post(REGISTER, None, &json!({"username": "carol", "password": "pw-carol-1", "auth": {"type": "m.login.dummy", "session": session}}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    let (status, body) = server
        .post(
            REGISTER,
            None,
            &json!({"username": "carol", "password": "pw-carol-1",
            "auth": {"type": "m.login.registration_token", "token": "guess", "session": session}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    assert_eq!(body["session"], session.as_str());

    let (status, body) = server
        .post(REGISTER, None, &json!({"username": "carol", "password": "pw-carol-1",
            "auth": {"type": "m.login.registration_token", "token": "company-2026", "session": session}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@carol:localhost");
}

#[tokio::test]
async fn the_admin_cli_creates_accounts_offline() {
    let mut server = TestServer::start_with(ServerOptions {
        registration_enabled: false,
        ..Default::default()
    })
    .await;
    let output = server
        .run_offline(&[
            "user",
            "create",
            "boss",
            "--admin",
            "--password",
            "boss-pw-123",
        ])
        .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("@boss:localhost"));
    let boss = spec_tests::login(&server, "boss", "boss-pw-123").await;
    assert_eq!(boss.user_id, "@boss:localhost");

    // Without --password one is generated and printed once.
    let output = server.run_offline(&["user", "create", "helper"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("printed password");
    spec_tests::login(&server, "helper", password).await;

    // A taken name fails with a message, and a bad one too.
    let output = server.run_offline(&["user", "create", "boss"]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("taken"));
}

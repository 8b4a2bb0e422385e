use serde_json::json;
use spec_tests::{StatusCode, TestServer, assert_error, login, password_of, register};

const LOGIN: &str = "/_matrix/client/v3/login";
const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

#[tokio::test]
async fn login_flows_offer_passwords_and_login_tokens() {
    let server = TestServer::start().await;
    let (status, body) = server.get(LOGIN, None).await;
    assert_eq!(status, StatusCode::OK);
    let flows = body["flows"].as_array().unwrap();
    let types: Vec<&str> = flows.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["m.login.password", "m.login.token"], "{body}");
    assert_eq!(flows[1]["get_login_token"], true);
}

#[tokio::test]
async fn a_login_token_lets_another_device_in_once() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let (_, capabilities) = server
        .get("/_matrix/client/v3/capabilities", alice.token())
        .await;
    assert_eq!(
        capabilities["capabilities"]["m.get_login_token"]["enabled"],
        true
    );
    let get_token = "/_matrix/client/v1/login/get_token";
    // The user proves it is them again first.
    let (status, challenge) = server.post(get_token, alice.token(), &json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    let session = challenge["session"].as_str().unwrap();
    assert_error(
        &server
            .post(
                get_token,
                alice.token(),
                &json!({"auth": {"type": "m.login.password", "session": session,
                                 "identifier": {"type": "m.id.user", "user": "alice"},
                                 "password": "wrong-password"}}),
            )
            .await,
        StatusCode::UNAUTHORIZED,
        "M_FORBIDDEN",
    );
    let (status, issued) = server
        .post(
            get_token,
            alice.token(),
            &json!({"auth": {"type": "m.login.password", "session": session,
                             "identifier": {"type": "m.id.user", "user": "alice"},
                             "password": alice.password}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!(issued["expires_in_ms"], 120_000);
    let token = issued["login_token"].as_str().unwrap();

    let login = json!({"type": "m.login.token", "token": token});
    let (status, body) = server.post(LOGIN, None, &login).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:localhost");
    assert_ne!(body["device_id"], alice.device_id);
    // Single use.
    assert_error(
        &server.post(LOGIN, None, &login).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .post(
                LOGIN,
                None,
                &json!({"type": "m.login.token", "token": "made-up"}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server.post(get_token, None, &json!({})).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
}

#[tokio::test]
async fn login_by_localpart_full_id_or_legacy_user_field() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    for identifier in [
        json!({"identifier": {"type": "m.id.user", "user": "alice"}}),
        json!({"identifier": {"type": "m.id.user", "user": "@alice:localhost"}}),
        json!({"user": "alice"}),
    ] {
        let mut body = identifier.clone();
        body["type"] = json!("m.login.password");
        body["password"] = json!(alice.password);
        let (status, response) = server.post(LOGIN, None, &body).await;
        assert_eq!(status, StatusCode::OK, "{identifier}: {response}");
        assert_eq!(response["user_id"], alice.user_id);
        assert_eq!(
            response["well_known"]["m.homeserver"]["base_url"],
            format!("http://localhost:{}", server.port())
        );
        let token = response["access_token"].as_str().unwrap();
        let (_, me) = server.get(WHOAMI, Some(token)).await;
        assert_eq!(me["user_id"], alice.user_id);
        assert_eq!(me["device_id"], response["device_id"]);
        assert_ne!(me["is_guest"], true);
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let server = TestServer::start().await;
    register(&server, "alice").await;
    let attempt = async |user: &str, password: &str| {
        server
            .post(
                LOGIN,
                None,
                &json!({
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": user},
                    "password": password,
                }),
            )
            .await
    };
    let wrong = attempt("alice", "not-it").await;
    let unknown = attempt("nobody", "not-it").await;
    let remote = attempt("@alice:elsewhere.example", &password_of("alice")).await;
    assert_error(&wrong, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, remote);
    assert_error(
        &server
            .post(
                LOGIN,
                None,
                &json!({"type": "m.login.carrier_pigeon", "token": "x"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN",
    );
}

#[tokio::test]
async fn logging_in_with_a_known_device_id_reuses_it_and_retires_its_old_token() {
    let server = TestServer::start().await;
    let first = register(&server, "alice").await;
    let (status, body) = server
        .post(
            LOGIN,
            None,
            &json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": first.password,
                "device_id": first.device_id,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device_id"], first.device_id.as_str());
    assert_ne!(body["access_token"], first.access_token.as_str());
    assert_error(
        &server.get(WHOAMI, first.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let (_, devices) = server
        .get("/_matrix/client/v3/devices", body["access_token"].as_str())
        .await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn logout_revokes_the_token_and_logout_all_every_token() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let (status, body) = server
        .post("/_matrix/client/v3/logout", alice.token(), &json!({}))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let after = server.get(WHOAMI, alice.token()).await;
    assert_error(&after, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_eq!(after.1["soft_logout"], false);

    let a = login(&server, "alice", &alice.password).await;
    let b = login(&server, "alice", &alice.password).await;
    assert_ne!(a.device_id, b.device_id);
    let (status, _) = server
        .post("/_matrix/client/v3/logout/all", a.token(), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    for user in [&a, &b] {
        assert_error(
            &server.get(WHOAMI, user.token()).await,
            StatusCode::UNAUTHORIZED,
            "M_UNKNOWN_TOKEN",
        );
    }
    let fresh = login(&server, "alice", &alice.password).await;
    let (_, devices) = server
        .get("/_matrix/client/v3/devices", fresh.token())
        .await;
    assert_eq!(
        devices["devices"].as_array().unwrap().len(),
        1,
        "logout/all deleted the devices"
    );
}

#[tokio::test]
async fn refresh_tokens_rotate() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let (status, body) = server
        .post(
            LOGIN,
            None,
            &json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": alice.password,
                "refresh_token": true,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(body["expires_in_ms"].as_u64().unwrap() > 0);
    let old_access = body["access_token"].as_str().unwrap().to_owned();

    let (status, renewed) = server
        .post(
            "/_matrix/client/v3/refresh",
            None,
            &json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    let new_access = renewed["access_token"].as_str().unwrap();
    assert_ne!(new_access, old_access);
    assert!(renewed["refresh_token"].is_string());
    let (status, me) = server.get(WHOAMI, Some(new_access)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["device_id"], body["device_id"]);
    // The old pair is spent.
    assert_error(
        &server.get(WHOAMI, Some(&old_access)).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/refresh",
                None,
                &json!({"refresh_token": refresh}),
            )
            .await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
}

#[tokio::test]
async fn an_expired_refreshable_token_is_a_soft_logout() {
    let server = TestServer::start_with(spec_tests::ServerOptions {
        extra_toml: "[login]\nrefreshable_token_lifetime_ms = 1\n".into(),
        ..Default::default()
    })
    .await;
    let alice = register(&server, "alice").await;
    let (_, body) = server
        .post(
            LOGIN,
            None,
            &json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": alice.password,
                "refresh_token": true,
            }),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let expired = server.get(WHOAMI, body["access_token"].as_str()).await;
    assert_error(&expired, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_eq!(expired.1["soft_logout"], true);
}

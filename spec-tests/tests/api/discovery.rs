use serde_json::Value;
use spec_tests::{StatusCode, TestServer, assert_error, register};

#[tokio::test]
async fn versions_lists_every_stable_version_and_real_unstable_features() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    let versions: Vec<&str> = body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for minor in 1..=16 {
        assert!(
            versions.contains(&format!("v1.{minor}").as_str()),
            "v1.{minor} missing: {versions:?}"
        );
    }
    let features = body["unstable_features"].as_object().unwrap();
    assert!(features.values().all(Value::is_boolean));
    assert_eq!(features["org.matrix.msc2918.refresh_token"], true);
}

#[tokio::test]
async fn well_known_points_clients_and_servers_here() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/.well-known/matrix/client", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["m.homeserver"]["base_url"],
        format!("http://localhost:{}", server.port())
    );
    let (status, body) = server.get("/.well-known/matrix/server", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["m.server"], format!("localhost:{}", server.port()));
}

#[tokio::test]
async fn capabilities_need_a_token_and_advertise_what_works() {
    let server = TestServer::start().await;
    assert_error(
        &server.get("/_matrix/client/v3/capabilities", None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    let alice = register(&server, "alice").await;
    let (status, body) = server
        .get("/_matrix/client/v3/capabilities", alice.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let caps = &body["capabilities"];
    assert_ne!(caps["m.change_password"]["enabled"], false);
    assert_eq!(caps["m.3pid_changes"]["enabled"], false);
    assert_eq!(caps["m.profile_fields"]["enabled"], true);
    assert_eq!(caps["m.room_versions"]["default"], "12");
    let available = caps["m.room_versions"]["available"].as_object().unwrap();
    assert_eq!(available.keys().collect::<Vec<_>>(), vec!["10", "11", "12"]);
    assert!(available.values().all(|s| s == "stable"));
}

#[tokio::test]
async fn cors_headers_on_every_answer_and_preflight_is_answered() {
    let server = TestServer::start().await;
    for path in [
        "/_matrix/client/versions",
        "/_matrix/client/v3/nothing-here",
    ] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(headers["access-control-allow-origin"], "*", "{path}");
        assert!(
            headers["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("PUT")
        );
        assert!(
            headers["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .contains("Authorization")
        );
    }
    let preflight = server
        .http
        .request(
            reqwest::Method::OPTIONS,
            server.url("/_matrix/client/v3/login"),
        )
        .header("origin", "https://app.element.io")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn what_clients_ask_at_start_up_answers() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let (status, body) = server
        .get("/_matrix/client/v3/voip/turnServer", alice.token())
        .await;
    assert_eq!((status, body), (StatusCode::OK, serde_json::json!({})));
    let (status, body) = server
        .get("/_matrix/client/v3/thirdparty/protocols", alice.token())
        .await;
    assert_eq!((status, body), (StatusCode::OK, serde_json::json!({})));
    let (status, body) = server
        .get("/_matrix/client/v3/account/3pid", alice.token())
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, serde_json::json!({"threepids": []}))
    );

    let presence = format!("/_matrix/client/v3/presence/{}/status", alice.user_id);
    let (status, body) = server.get(&presence, alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["presence"], "offline");
    let (status, _) = server
        .put(
            &presence,
            alice.token(),
            &serde_json::json!({"presence": "online", "status_msg": "회의 중"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = server.get(&presence, alice.token()).await;
    assert_eq!(body["presence"], "online");
    assert_eq!(body["status_msg"], "회의 중");
    assert_eq!(body["currently_active"], true);

    let bob = register(&server, "bob").await;
    assert_error(
        &server
            .put(
                &presence,
                bob.token(),
                &serde_json::json!({"presence": "offline"}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .get(
                "/_matrix/client/v3/presence/@nobody:localhost/status",
                bob.token(),
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

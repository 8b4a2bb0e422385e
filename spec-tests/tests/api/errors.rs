use reqwest::Method;
use serde_json::json;
use spec_tests::{ServerOptions, StatusCode, TestServer, assert_error, register};

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_unrecognized() {
    let server = TestServer::start().await;
    assert_error(
        &server
            .get("/_matrix/client/v3/no/such/endpoint", None)
            .await,
        StatusCode::NOT_FOUND,
        "M_UNRECOGNIZED",
    );
    assert_error(
        &server.get("/", None).await,
        StatusCode::NOT_FOUND,
        "M_UNRECOGNIZED",
    );
    assert_error(
        &server
            .request(Method::DELETE, "/_matrix/client/v3/login", None, None)
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "M_UNRECOGNIZED",
    );
    assert_error(
        &server
            .request(
                Method::PUT,
                "/_matrix/client/versions",
                None,
                Some(&json!({})),
            )
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "M_UNRECOGNIZED",
    );
}

#[tokio::test]
async fn malformed_and_misshapen_json_are_told_apart() {
    let server = TestServer::start().await;
    let login = "/_matrix/client/v3/login";
    assert_error(
        &server
            .request_raw(Method::POST, login, None, "{not json")
            .await,
        StatusCode::BAD_REQUEST,
        "M_NOT_JSON",
    );
    assert_error(
        &server.request_raw(Method::POST, login, None, "").await,
        StatusCode::BAD_REQUEST,
        "M_NOT_JSON",
    );
    assert_error(
        &server
            .post(
                login,
                None,
                &json!({"type": "m.login.password", "password": 12}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_error(
        &server.post(login, None, &json!([1, 2])).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
}

#[tokio::test]
async fn oversized_bodies_get_413_and_are_not_stored() {
    let server = TestServer::start_with(ServerOptions {
        extra_toml: "[limits]\nmax_request_bytes = 4096\n".into(),
        ..Default::default()
    })
    .await;
    let alice = register(&server, "alice").await;
    let path = format!(
        "/_matrix/client/v3/user/{}/account_data/io.sori.big",
        alice.user_id
    );
    let big = json!({"blob": "x".repeat(10_000)});
    assert_error(
        &server.put(&path, alice.token(), &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    assert_error(
        &server.get(&path, alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    // Without a Content-Length (chunked), the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b' '; 3000]), Ok(vec![b' '; 3000])];
    let response = server
        .http
        .put(server.url(&path))
        .bearer_auth(&alice.access_token)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn tokens_missing_malformed_or_unknown() {
    let server = TestServer::start().await;
    let whoami = "/_matrix/client/v3/account/whoami";
    assert_error(
        &server.get(whoami, None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    let result = server.get(whoami, Some("sori_at_made_up")).await;
    assert_error(&result, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_eq!(result.1["soft_logout"], false);
    let response = server
        .http
        .get(server.url(whoami))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The deprecated query parameter still works for old clients.
    let alice = register(&server, "alice").await;
    let (status, body) = server
        .get(
            &format!("{whoami}?access_token={}", alice.access_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], alice.user_id);
}

#[tokio::test]
async fn login_and_registration_are_rate_limited_per_address() {
    let server = TestServer::start_with(ServerOptions {
        extra_toml: "[rate_limits]\nlogin = { per_second = 0.01, burst = 3 }\n\
                     registration = { per_second = 0.01, burst = 2 }\n"
            .into(),
        ..Default::default()
    })
    .await;
    let wrong = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "nobody"},
        "password": "nope",
    });
    for _ in 0..3 {
        assert_error(
            &server.post("/_matrix/client/v3/login", None, &wrong).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
    }
    let limited = server.post("/_matrix/client/v3/login", None, &wrong).await;
    assert_error(&limited, StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED");
    assert!(limited.1["retry_after_ms"].as_u64().unwrap() > 0);

    for _ in 0..2 {
        server
            .get("/_matrix/client/v3/register/available?username=x", None)
            .await;
    }
    assert_error(
        &server
            .get("/_matrix/client/v3/register/available?username=y", None)
            .await,
        StatusCode::TOO_MANY_REQUESTS,
        "M_LIMIT_EXCEEDED",
    );
}

//! The foundation's endpoints against bad input: no body, invalid JSON, wrong field types,
//! overlong values, other users' resources, revoked tokens. Each gets its Matrix errcode, and
//! nothing that was stored changes.

use reqwest::Method;
use serde_json::{Value, json};
use spec_tests::{StatusCode, TestServer, User, assert_error, login, register};

struct Case {
    method: Method,
    path: String,
    /// Status and errcode for a request without a body (`None`: a body is optional here).
    no_body: Option<(StatusCode, &'static str)>,
    /// A body with the right keys but wrong value types.
    wrong_types: Value,
}

fn cases(me: &User) -> Vec<Case> {
    let u = &me.user_id;
    let c = |method: Method,
             path: String,
             no_body: Option<(StatusCode, &'static str)>,
             wrong_types: Value| Case {
        method,
        path,
        no_body,
        wrong_types,
    };
    let not_json = Some((StatusCode::BAD_REQUEST, "M_NOT_JSON"));
    vec![
        c(
            Method::POST,
            "/_matrix/client/v3/login".into(),
            not_json,
            json!({"type": "m.login.password", "identifier": "alice", "password": 1}),
        ),
        c(
            Method::POST,
            "/_matrix/client/v3/register".into(),
            None,
            json!({"username": 5, "password": ["x"]}),
        ),
        c(
            Method::POST,
            "/_matrix/client/v3/refresh".into(),
            not_json,
            json!({"refresh_token": 1}),
        ),
        c(
            Method::POST,
            "/_matrix/client/v3/account/password".into(),
            not_json,
            json!({"new_password": 1}),
        ),
        c(
            Method::POST,
            "/_matrix/client/v3/account/deactivate".into(),
            None,
            json!({"erase": "yes"}),
        ),
        c(
            Method::PUT,
            format!("/_matrix/client/v3/devices/{}", me.device_id),
            None,
            json!({"display_name": 5}),
        ),
        c(
            Method::POST,
            "/_matrix/client/v3/delete_devices".into(),
            not_json,
            json!({"devices": "all"}),
        ),
        c(
            Method::PUT,
            format!("/_matrix/client/v3/profile/{u}/displayname"),
            not_json,
            json!({"displayname": 5}),
        ),
        c(
            Method::PUT,
            format!("/_matrix/client/v3/profile/{u}/avatar_url"),
            not_json,
            json!({"avatar_url": false}),
        ),
        c(
            Method::POST,
            format!("/_matrix/client/v3/user/{u}/filter"),
            None,
            json!({"room": 5}),
        ),
        c(
            Method::PUT,
            format!("/_matrix/client/v3/user/{u}/account_data/io.sori.x"),
            not_json,
            json!("a string"),
        ),
        c(
            Method::PUT,
            format!("/_matrix/client/v3/user/{u}/rooms/!r:localhost/account_data/io.sori.x"),
            not_json,
            json!([1]),
        ),
        c(
            Method::PUT,
            "/_matrix/client/v3/pushrules/global/room/!r:localhost".into(),
            not_json,
            json!({"actions": 5}),
        ),
        c(
            Method::PUT,
            "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled".into(),
            not_json,
            json!({"enabled": "yes"}),
        ),
        c(
            Method::PUT,
            "/_matrix/client/v3/pushrules/global/override/.m.rule.master/actions".into(),
            not_json,
            json!({"actions": {}}),
        ),
        c(
            Method::PUT,
            format!("/_matrix/client/v3/presence/{u}/status"),
            not_json,
            json!({"presence": 5}),
        ),
    ]
}

/// What the server holds for a user, to prove refusals changed nothing.
async fn snapshot(server: &TestServer, me: &User) -> Value {
    let u = &me.user_id;
    json!({
        "profile": server.get(&format!("/_matrix/client/v3/profile/{u}"), None).await.1,
        "devices": server.get("/_matrix/client/v3/devices", me.token()).await.1,
        "data": server.get(&format!("/_matrix/client/v3/user/{u}/account_data/io.sori.x"), me.token()).await.1,
        "rules": server.get("/_matrix/client/v3/pushrules/", me.token()).await.1,
        "presence": server.get(&format!("/_matrix/client/v3/presence/{u}/status"), me.token()).await.1["presence"],
    })
}

#[tokio::test]
async fn every_endpoint_refuses_malformed_bodies_and_keeps_what_was_stored() {
    let server = TestServer::start().await;
    let me = register(&server, "alice").await;
    server
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/account_data/io.sori.x",
                me.user_id
            ),
            me.token(),
            &json!({"kept": true}),
        )
        .await;
    let before = snapshot(&server, &me).await;

    for case in cases(&me) {
        let what = format!("{} {}", case.method, case.path);
        let result = server
            .request_raw(
                case.method.clone(),
                &case.path,
                me.token(),
                "{\"unterminated\": ",
            )
            .await;
        assert_error(&result, StatusCode::BAD_REQUEST, "M_NOT_JSON");
        let result = server
            .request(
                case.method.clone(),
                &case.path,
                me.token(),
                Some(&case.wrong_types),
            )
            .await;
        assert_eq!(
            result.0,
            StatusCode::BAD_REQUEST,
            "{what} with wrong types: {}",
            result.1
        );
        assert_eq!(result.1["errcode"], "M_BAD_JSON", "{what} with wrong types");
        if let Some((status, errcode)) = case.no_body {
            let result = server
                .request_raw(case.method.clone(), &case.path, me.token(), "")
                .await;
            assert_eq!(result.0, status, "{what} without a body: {}", result.1);
            assert_eq!(result.1["errcode"], errcode, "{what} without a body");
        }
    }

    assert_eq!(
        snapshot(&server, &me).await,
        before,
        "refused requests changed nothing"
    );
    login(&server, "alice", &me.password).await;
}

#[tokio::test]
async fn revoked_tokens_open_nothing() {
    let server = TestServer::start().await;
    let me = register(&server, "alice").await;
    let other = login(&server, "alice", &me.password).await;
    server
        .post("/_matrix/client/v3/logout", me.token(), &json!({}))
        .await;
    for case in cases(&me) {
        if case.path.ends_with("/login")
            || case.path.ends_with("/register")
            || case.path.ends_with("/refresh")
        {
            continue;
        }
        let result = server
            .request(
                case.method.clone(),
                &case.path,
                me.token(),
                Some(&json!({})),
            )
            .await;
        assert_error(&result, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
        assert_eq!(result.1["soft_logout"], false);
    }
    // The other session of the same user is untouched.
    assert_eq!(
        server
            .get("/_matrix/client/v3/account/whoami", other.token())
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn overlong_values_are_refused() {
    let server = TestServer::start().await;
    let me = register(&server, "alice").await;
    let long_user = format!("@{}:localhost", "a".repeat(300));
    for path in [
        format!("/_matrix/client/v3/profile/{long_user}"),
        format!("/_matrix/client/v3/profile/{long_user}/displayname"),
        format!("/_matrix/client/v3/presence/{long_user}/status"),
        format!("/_matrix/client/v3/user/{long_user}/account_data/x.y"),
        format!("/_matrix/client/v3/user/{long_user}/filter/1"),
    ] {
        assert_error(
            &server.get(&path, me.token()).await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        );
    }
    // A long name at login is just a wrong login; a long password at registration is refused.
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/login",
                None,
                &json!({"type": "m.login.password", "user": "x".repeat(5000), "password": "p"}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server.post("/_matrix/client/v3/register", None, &json!({"username": "bob", "password": "p".repeat(5000), "auth": {"type": "m.login.dummy"}})).await,
        StatusCode::BAD_REQUEST,
        "M_WEAK_PASSWORD",
    );
    let device = format!("/_matrix/client/v3/devices/{}", "D".repeat(4000));
    assert_error(
        &server.get(&device, me.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    // A device name is kept to 256 bytes rather than refused.
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/devices/{}", me.device_id),
            me.token(),
            &json!({"display_name": "n".repeat(2000)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, device) = server
        .get(
            &format!("/_matrix/client/v3/devices/{}", me.device_id),
            me.token(),
        )
        .await;
    assert_eq!(device["display_name"].as_str().unwrap().len(), 256);
    // Unknown users: their filters are someone else's resource, their profiles are not found.
    assert_error(
        &server
            .get(
                "/_matrix/client/v3/user/@nobody:localhost/filter/1",
                me.token(),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .get(
                "/_matrix/client/v3/profile/@nobody:localhost/avatar_url",
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

//! The admin API over HTTP: who may read and change a user's server role (Sori's own
//! endpoint and Synapse's `admin` flag, which agree), that the last admin stays one, and the
//! audit log and room exports (in `audit`).

mod audit;
mod room;
mod synapse;

use reqwest::Method;
use serde_json::{Value, json};
use spec_tests::{ServerOptions, StatusCode, TestServer, User, assert_error, register};

async fn role(server: &TestServer, as_user: &User, user_id: &str) -> (StatusCode, Value) {
    server
        .get(
            &format!("/_sori/admin/v1/users/{user_id}/role"),
            as_user.token(),
        )
        .await
}

async fn set_role(
    server: &TestServer,
    as_user: &User,
    user_id: &str,
    body: &Value,
) -> (StatusCode, Value) {
    server
        .put(
            &format!("/_sori/admin/v1/users/{user_id}/role"),
            as_user.token(),
            body,
        )
        .await
}

/// A server with an admin made the way an operator makes the first one (`sori user create
/// --admin`, with the server stopped), signed in.
pub(crate) async fn server_with_admin() -> (TestServer, User) {
    server_with_admin_and(ServerOptions::default()).await
}

/// [`server_with_admin`] on a server started with `options`.
pub(crate) async fn server_with_admin_and(options: ServerOptions) -> (TestServer, User) {
    let mut server = TestServer::start_with(options).await;
    let boss = spec_tests::admin_room::create_admin(&mut server, "boss", "boss-password-1").await;
    (server, boss)
}

#[tokio::test]
async fn admins_change_roles_auditors_read_them_users_get_nothing() {
    let (server, boss) = server_with_admin().await;
    let audrey = register(&server, "audrey").await;
    let carol = register(&server, "carol").await;

    // Users: 403 on all of it, reading included.
    for result in [
        role(&server, &carol, &boss.user_id).await,
        set_role(&server, &carol, &carol.user_id, &json!({"role": "admin"})).await,
    ] {
        assert_error(&result, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    let (_, body) = role(&server, &boss, &carol.user_id).await;
    assert_eq!(body["role"], "user", "carol did not promote herself");

    // The admin makes audrey an auditor.
    let (status, body) =
        set_role(&server, &boss, &audrey.user_id, &json!({"role": "auditor"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "auditor");
    // Auditors read, and change nothing.
    let (status, body) = role(&server, &audrey, &boss.user_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "admin");
    assert_error(
        &set_role(&server, &audrey, &carol.user_id, &json!({"role": "admin"})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .put(
                &format!("/_synapse/admin/v1/users/{}/admin", carol.user_id),
                audrey.token(),
                &json!({"admin": true}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let (_, body) = role(&server, &boss, &carol.user_id).await;
    assert_eq!(body["role"], "user");

    // No token at all.
    assert_error(
        &server
            .get(
                &format!("/_sori/admin/v1/users/{}/role", boss.user_id),
                None,
            )
            .await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
}

#[tokio::test]
async fn synapse_admin_flag_and_role_agree_both_ways() {
    let (server, boss) = server_with_admin().await;
    let carol = register(&server, "carol").await;
    let admin_flag = format!("/_synapse/admin/v1/users/{}/admin", carol.user_id);

    let (status, body) = server.get(&admin_flag, boss.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"admin": false}));

    let (status, body) = server
        .put(&admin_flag, boss.token(), &json!({"admin": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = role(&server, &boss, &carol.user_id).await;
    assert_eq!(body["role"], "admin");

    // The role seen through the flag.
    set_role(&server, &boss, &carol.user_id, &json!({"role": "auditor"})).await;
    let (_, body) = server.get(&admin_flag, boss.token()).await;
    assert_eq!(body, json!({"admin": false}));
    set_role(&server, &boss, &carol.user_id, &json!({"role": "admin"})).await;
    let (_, body) = server.get(&admin_flag, boss.token()).await;
    assert_eq!(body, json!({"admin": true}));

    // Clearing the flag makes a user.
    let (status, _) = server
        .put(&admin_flag, boss.token(), &json!({"admin": false}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = role(&server, &boss, &carol.user_id).await;
    assert_eq!(body["role"], "user");
}

#[tokio::test]
async fn the_last_admin_stays_one_and_bad_requests_change_nothing() {
    let (server, boss) = server_with_admin().await;
    let carol = register(&server, "carol").await;

    for body in [json!({"role": "user"}), json!({"role": "auditor"})] {
        assert_error(
            &set_role(&server, &boss, &boss.user_id, &body).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
    }
    assert_error(
        &server
            .put(
                &format!("/_synapse/admin/v1/users/{}/admin", boss.user_id),
                boss.token(),
                &json!({"admin": false}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    // With a second admin, the first may step down.
    set_role(&server, &boss, &carol.user_id, &json!({"role": "admin"})).await;
    let (status, body) = set_role(&server, &boss, &boss.user_id, &json!({"role": "user"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = role(&server, &carol, &boss.user_id).await;
    assert_eq!(body["role"], "user");

    // Bad input, as carol (now the only admin).
    for body in [
        json!({"role": "superuser"}),
        json!({"role": 1}),
        json!({}),
        json!({"role": "user", "extra": true}),
    ] {
        let result = set_role(&server, &carol, &boss.user_id, &body).await;
        assert_error(&result, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }
    assert_error(
        &server
            .request_raw(
                Method::PUT,
                &format!("/_sori/admin/v1/users/{}/role", boss.user_id),
                carol.token(),
                "{not json",
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_error(
        &role(&server, &carol, "not-a-user-id").await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &role(&server, &carol, "@nobody:localhost").await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &role(&server, &carol, "@someone:elsewhere.example").await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let (_, body) = role(&server, &carol, &boss.user_id).await;
    assert_eq!(body["role"], "user", "nothing changed");
    let (_, body) = role(&server, &carol, &carol.user_id).await;
    assert_eq!(body["role"], "admin");
}

//! Company sign-in over HTTP: single sign-on through a real OpenID Connect provider, JWT login (HS256 and RS256 tokens, every way a token can be
//! wrong), and LDAP password login against a real OpenLDAP `slapd` (people
//! found by any login attribute, created on first login, roles from groups, disabled and
//! removed entries, injection attempts, a directory that is down or hangs).

mod jwt;
mod ldap;
mod oidc;

use serde_json::{Value, json};
use spec_tests::{StatusCode, TestServer};

/// `POST /login` with a password and a user identifier; returns status and body.
async fn password_login(server: &TestServer, user: &str, password: &str) -> (StatusCode, Value) {
    server
        .post(
            "/_matrix/client/v3/login",
            None,
            &json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user},
                "password": password,
            }),
        )
        .await
}

/// The server role of a user, as an admin or auditor reads it.
async fn role_of(server: &TestServer, token: &str, user_id: &str) -> (StatusCode, Value) {
    server
        .get(
            &format!("/_sori/admin/v1/users/{user_id}/role"),
            Some(token),
        )
        .await
}

//! `org.matrix.login.jwt`: tokens signed with a shared secret (HS256) or a key pair (RS256,
//! made by `openssl`), accounts created on first login (or not), roles from a claim, and
//! every kind of bad token refused with nothing created.

use std::process::Command;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use spec_tests::{ServerOptions, StatusCode, TestServer, assert_error, register};

use super::*;

const SECRET: &str = "a-long-shared-secret-only-the-tests-know";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn jwt_login(server: &TestServer, token: &str) -> (StatusCode, Value) {
    server
        .post(
            "/_matrix/client/v3/login",
            None,
            &json!({"type": "org.matrix.login.jwt", "token": token}),
        )
        .await
}

async fn jwt_server(extra: &str) -> TestServer {
    TestServer::start_with(ServerOptions {
        extra_toml: format!(
            "[jwt]\nenabled = true\nsecret = \"{SECRET}\"\nissuer = \"https://sso.sori.test\"\n\
             audiences = [\"sori\"]\ndisplayname_claim = \"name\"\nrole_claim = \"roles\"\n\
             admin_roles = [\"matrix-admin\"]\nauditor_roles = [\"auditor\"]\n{extra}"
        ),
        ..Default::default()
    })
    .await
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "name": "한나", "exp": now() + 300, "iss": "https://sso.sori.test",
           "aud": "sori", "roles": ["staff"]})
}

#[tokio::test]
async fn a_valid_token_signs_in_and_creates_the_account() {
    let server = jwt_server("").await;
    let (status, flows) = server.get("/_matrix/client/v3/login", None).await;
    assert_eq!(status, StatusCode::OK);
    let types: Vec<&str> = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec!["m.login.password", "m.login.token", "org.matrix.login.jwt"]
    );

    let (status, body) = jwt_login(&server, &hs256(&claims("Hana"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@hana:localhost");
    let (_, profile) = server
        .get("/_matrix/client/v3/profile/@hana:localhost", None)
        .await;
    assert_eq!(profile["displayname"], "한나");
    let (status, again) = jwt_login(&server, &hs256(&claims("hana"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["user_id"], "@hana:localhost");
    assert_ne!(again["device_id"], body["device_id"]);

    // Roles follow the token at each login.
    let mut admin = claims("boss");
    admin["roles"] = json!(["staff", "matrix-admin"]);
    let (status, boss) = jwt_login(&server, &hs256(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{boss}");
    let token = boss["access_token"].as_str().unwrap();
    let (_, role) = role_of(&server, token, "@boss:localhost").await;
    assert_eq!(role["role"], "admin");
    let (_, role) = role_of(&server, token, "@hana:localhost").await;
    assert_eq!(role["role"], "user");
    let mut auditor = claims("hana");
    auditor["roles"] = json!("auditor");
    jwt_login(&server, &hs256(&auditor)).await;
    let (_, role) = role_of(&server, token, "@hana:localhost").await;
    assert_eq!(role["role"], "auditor");
}

#[tokio::test]
async fn bad_tokens_are_refused_and_create_nothing() {
    let server = jwt_server("").await;
    let good = claims("mallory");
    let mut cases: Vec<(&str, String)> = Vec::new();
    let with = |field: &str, value: Value| {
        let mut c = good.clone();
        c[field] = value;
        hs256(&c)
    };
    cases.push(("expired", with("exp", json!(now() - 3600))));
    cases.push(("wrong issuer", with("iss", json!("https://evil.example"))));
    cases.push(("wrong audience", with("aud", json!("another-app"))));
    cases.push(("not yet valid", with("nbf", json!(now() + 3600))));
    cases.push(("no subject", with("sub", json!(""))));
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    cases.push(("no exp", hs256(&no_exp)));
    cases.push((
        "wrong key",
        encode(
            &Header::default(),
            &good,
            &EncodingKey::from_secret(b"not-the-secret").unwrap(),
        )
        .unwrap(),
    ));
    // alg none: the claims, unsigned.
    let b64 = |bytes: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    cases.push((
        "alg none",
        format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(good.to_string().as_bytes())
        ),
    ));
    cases.push((
        "another algorithm",
        encode(
            &Header::new(Algorithm::HS512),
            &good,
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap(),
    ));
    cases.push(("garbage", "this.is.not-a-token".into()));
    cases.push(("empty", String::new()));
    for (why, token) in &cases {
        let result = jwt_login(&server, token).await;
        assert_eq!(result.0, StatusCode::FORBIDDEN, "{why}: {}", result.1);
        assert_eq!(result.1["errcode"], "M_FORBIDDEN", "{why}");
    }
    let (status, _) = server
        .get("/_matrix/client/v3/profile/@mallory:localhost", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was created");

    assert_error(
        &server
            .post(
                "/_matrix/client/v3/login",
                None,
                &json!({"type": "org.matrix.login.jwt"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_MISSING_PARAM",
    );
}

#[tokio::test]
async fn without_create_users_only_existing_accounts_sign_in() {
    let server = jwt_server("create_users = false\n").await;
    assert_error(
        &jwt_login(&server, &hs256(&claims("newcomer"))).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    register(&server, "existing").await;
    let (status, body) = jwt_login(&server, &hs256(&claims("existing"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@existing:localhost");
}

#[tokio::test]
async fn key_pairs_sign_tokens_and_jwt_is_off_unless_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private.pem");
    let public = dir.path().join("public.pem");
    let other = dir.path().join("other.pem");
    for (args, what) in [
        (
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ],
            &private,
        ),
        (
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ],
            &other,
        ),
    ] {
        let status = Command::new("openssl")
            .args(args)
            .arg(what)
            .status()
            .expect("openssl");
        assert!(status.success());
    }
    let status = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap();
    assert!(status.success());
    let server = TestServer::start_with(ServerOptions {
        extra_toml: format!(
            "[jwt]\nenabled = true\nalgorithm = \"RS256\"\npublic_key_file = \"{}\"\n",
            public.display()
        ),
        ..Default::default()
    })
    .await;
    let rs256 = |key: &std::path::Path| {
        encode(
            &Header::new(Algorithm::RS256),
            &json!({"sub": "rsa-user", "exp": now() + 300}),
            &EncodingKey::from_rsa_pem(&std::fs::read(key).unwrap()).unwrap(),
        )
        .unwrap()
    };
    let (status, body) = jwt_login(&server, &rs256(&private)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@rsa-user:localhost");
    assert_error(
        &jwt_login(&server, &rs256(&other)).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    // An HS256 token made with the public key as its secret (the classic key confusion).
    let confused = encode(
        &Header::default(),
        &json!({"sub": "rsa-user", "exp": now() + 300}),
        &EncodingKey::from_secret(&std::fs::read(&public).unwrap()).unwrap(),
    )
    .unwrap();
    assert_error(
        &jwt_login(&server, &confused).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    drop(server);

    // Not enabled: not offered, and refused as an unknown login type.
    let server = TestServer::start().await;
    let (_, flows) = server.get("/_matrix/client/v3/login", None).await;
    assert!(
        flows["flows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["type"] != "org.matrix.login.jwt"),
        "{flows}"
    );
    assert_error(
        &jwt_login(&server, &rs256(&private)).await,
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN",
    );
}

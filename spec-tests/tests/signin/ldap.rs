//! LDAP password login against OpenLDAP.

use std::time::{Duration, Instant};

use serde_json::json;
use spec_tests::services::{LDAP_BASE, LDAP_PEOPLE, Slapd};
use spec_tests::{ServerOptions, StatusCode, TestServer, assert_error, register};

use super::*;

async fn server_with(slapd: &Slapd, extra: &str) -> TestServer {
    TestServer::start_with(ServerOptions {
        extra_toml: format!("{}{extra}", slapd.ldap_toml()),
        ..Default::default()
    })
    .await
}

fn person(uid: &str) -> &'static spec_tests::services::LdapPerson {
    LDAP_PEOPLE.iter().find(|p| p.uid == uid).unwrap()
}

#[tokio::test]
async fn people_sign_in_with_any_login_attribute_and_are_created_once() {
    let slapd = Slapd::start();
    let server = server_with(&slapd, "").await;
    let minsu = person("minsu");

    for login in [
        minsu.uid,
        minsu.employee_number,
        minsu.mail,
        "@minsu:localhost",
        "MINSU",
    ] {
        let (status, body) = password_login(&server, login, minsu.password).await;
        assert_eq!(status, StatusCode::OK, "{login}: {body}");
        assert_eq!(body["user_id"], "@minsu:localhost", "{login}");
        assert!(body["access_token"].is_string());
    }
    // An e-mail address as a third-party identifier, as clients send it.
    let (status, body) = server
        .post(
            "/_matrix/client/v3/login",
            None,
            &json!({"type": "m.login.password", "password": minsu.password,
                    "identifier": {"type": "m.id.thirdparty", "medium": "email",
                                   "address": minsu.mail}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@minsu:localhost");

    // Created on first login, with the directory's display name.
    let (status, profile) = server
        .get("/_matrix/client/v3/profile/@minsu:localhost", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["displayname"], "김민수");

    // The password is the directory's: changing it here is refused.
    let token = body["access_token"].as_str().unwrap();
    let result = server
        .post(
            "/_matrix/client/v3/account/password",
            Some(token),
            &json!({"new_password": "something-else-entirely",
                    "auth": {"type": "m.login.password", "password": minsu.password,
                             "identifier": {"type": "m.id.user", "user": "minsu"}}}),
        )
        .await;
    assert_error(&result, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert!(
        result.1["error"].as_str().unwrap().contains("directory"),
        "{}",
        result.1
    );
    let (status, _) = password_login(&server, "minsu", minsu.password).await;
    assert_eq!(status, StatusCode::OK, "the directory password still works");
}

#[tokio::test]
async fn wrong_disabled_removed_and_injected_logins_are_refused() {
    let slapd = Slapd::start();
    let server = server_with(&slapd, "").await;
    let minsu = person("minsu");
    let retired = person("retired");

    let refused = |result: (StatusCode, serde_json::Value)| {
        assert_error(&result, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    };
    refused(password_login(&server, "minsu", "not-the-password").await);
    refused(password_login(&server, "minsu", "").await);
    refused(password_login(&server, "nobody", "whatever-password").await);
    refused(password_login(&server, retired.uid, retired.password).await);
    refused(password_login(&server, retired.employee_number, retired.password).await);
    // Filter metacharacters are values, never filter syntax.
    for login in [
        "*",
        "m*",
        "minsu)(uid=*",
        "*)(|(uid=*",
        "minsu\\",
        "\\2a",
        "minsu\u{0}",
        "(uid=minsu)",
    ] {
        refused(password_login(&server, login, minsu.password).await);
    }
    // Nothing was created for any of them.
    for user in [
        "@nobody:localhost",
        "@retired:localhost",
        "@minsu:localhost",
    ] {
        let (status, _) = server
            .get(&format!("/_matrix/client/v3/profile/{user}"), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{user}");
    }

    // An entry removed from the directory cannot sign in any more.
    let (status, _) = password_login(&server, "minsu", minsu.password).await;
    assert_eq!(status, StatusCode::OK);
    slapd.modify("ldapdelete", &format!("uid=minsu,ou=people,{LDAP_BASE}\n"));
    refused(password_login(&server, "minsu", minsu.password).await);
}

#[tokio::test]
async fn roles_come_from_directory_groups() {
    let slapd = Slapd::start();
    let server = server_with(&slapd, "").await;
    let mut tokens = std::collections::HashMap::new();
    for uid in ["minsu", "jiwoo", "seoyeon"] {
        let (status, body) = password_login(&server, uid, person(uid).password).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens.insert(uid, body["access_token"].as_str().unwrap().to_owned());
    }
    let (status, body) = role_of(&server, &tokens["jiwoo"], "@jiwoo:localhost").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "admin");
    let (status, body) = role_of(&server, &tokens["jiwoo"], "@seoyeon:localhost").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "auditor");
    let (_, body) = role_of(&server, &tokens["seoyeon"], "@minsu:localhost").await;
    assert_eq!(body["role"], "user", "auditors may read roles");
    assert_error(
        &role_of(&server, &tokens["minsu"], "@jiwoo:localhost").await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    // Leaving the admins group takes the role away at the next login.
    slapd.modify(
        "ldapmodify",
        &format!(
            "dn: cn=admins,ou=groups,{LDAP_BASE}\nchangetype: modify\ndelete: member\n\
             member: uid=jiwoo,ou=people,{LDAP_BASE}\n"
        ),
    );
    let (status, _) = password_login(&server, "jiwoo", person("jiwoo").password).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = role_of(&server, &tokens["seoyeon"], "@jiwoo:localhost").await;
    assert_eq!(body["role"], "user");
}

#[tokio::test]
async fn local_accounts_sign_in_beside_the_directory_unless_turned_off() {
    let slapd = Slapd::start();
    let server = server_with(&slapd, "").await;
    let bot = register(&server, "bot").await;
    let (status, body) = password_login(&server, "bot", &bot.password).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = password_login(&server, "minsu", person("minsu").password).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A local account that took a directory person's name is not theirs to enter.
    register(&server, "jiwoo").await;
    assert_error(
        &password_login(&server, "jiwoo", person("jiwoo").password).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    drop(server);

    let server = server_with(&slapd, "fallback_to_local = false\n").await;
    let bot = register(&server, "bot").await;
    assert_error(
        &password_login(&server, "bot", &bot.password).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let (status, _) = password_login(&server, "minsu", person("minsu").password).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_directory_that_is_down_or_hangs_answers_503_quickly() {
    let mut slapd = Slapd::start();
    let server = server_with(&slapd, "").await;
    let bot = register(&server, "bot").await;
    slapd.stop();
    let started = Instant::now();
    assert_error(
        &password_login(&server, "minsu", person("minsu").password).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "M_UNAVAILABLE",
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Local accounts do not need the directory.
    let (status, body) = password_login(&server, "bot", &bot.password).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    drop(server);

    // A directory that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let toml = slapd
        .ldap_toml()
        .replace(&slapd.url(), &format!("ldap://127.0.0.1:{port}"));
    let server = TestServer::start_with(ServerOptions {
        extra_toml: toml,
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    assert_error(
        &password_login(&server, "minsu", person("minsu").password).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "M_UNAVAILABLE",
    );
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "{waited:?} (timeout_ms = 2000)"
    );
    drop(silent);
}

#[tokio::test]
async fn the_directory_is_reached_over_starttls_or_ldaps_with_its_ca() {
    let slapd = Slapd::start();
    let minsu = person("minsu");
    let ca = slapd.ca_file();
    let starttls = server_with(
        &slapd,
        &format!("starttls = true\nca_file = \"{}\"\n", ca.display()),
    )
    .await;
    let (status, body) = password_login(&starttls, "minsu", minsu.password).await;
    assert_eq!(status, StatusCode::OK, "StartTLS: {body}");
    drop(starttls);

    let ldaps = |ca_line: String| {
        let toml = slapd.ldap_toml().replace(&slapd.url(), &slapd.ldaps_url());
        TestServer::start_with(ServerOptions {
            extra_toml: format!("{toml}{ca_line}"),
            ..Default::default()
        })
    };
    let server = ldaps(format!("ca_file = \"{}\"\n", ca.display())).await;
    let (status, body) = password_login(&server, "minsu", minsu.password).await;
    assert_eq!(status, StatusCode::OK, "ldaps: {body}");
    drop(server);

    // Without the directory's CA its certificate is not trusted: no password is sent.
    let server = ldaps(String::new()).await;
    assert_error(
        &password_login(&server, "minsu", minsu.password).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "M_UNAVAILABLE",
    );
}

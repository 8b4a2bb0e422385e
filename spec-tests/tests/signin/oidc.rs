//! Single sign-on through a real OpenID Connect provider (`oidc-provider` on loopback), driven
//! the way a browser does it: Sori's redirect, the provider's login form, the callback, and
//! the login token the client exchanges; plus the ways a sign-on can be tampered with.

use std::collections::HashMap;

use reqwest::Url;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use spec_tests::services::OidcProvider;
use spec_tests::{ServerOptions, StatusCode, TestServer, assert_error, free_port, register};

use super::*;

/// The client Sori is at the provider, and the people who can sign in there.
fn provider_config(server_port: u16) -> Value {
    json!({
        "clients": [{
            "client_id": "sori",
            "client_secret": "oidc-client-secret",
            "redirect_uris": [format!("http://localhost:{server_port}/_sori/client/oidc/callback")],
        }],
        "people": [
            {"sub": "u-minsu", "login": "minsu", "password": "pw-minsu",
             "claims": {"preferred_username": "minsu", "name": "김민수",
                        "email": "minsu@sori.test", "roles": ["matrix-admin"]}},
            {"sub": "u-jiyeon", "login": "jiyeon", "password": "pw-jiyeon",
             "claims": {"preferred_username": "jiyeon", "name": "이지연",
                        "email": "jiyeon@sori.test", "roles": []}},
        ],
    })
}

/// A server whose one provider is `company` at `issuer`. It has no public base URL of its
/// own, so the provider sends people back to `http://localhost:<port>`.
async fn sso_server(issuer: &str, extra: &str) -> TestServer {
    TestServer::start_with(ServerOptions {
        extra_toml: format!(
            "[oidc]\nclient_redirect_allowlist = [\"http://127.0.0.1:9/app\"]\n\
             [[oidc.providers]]\nid = \"company\"\nname = \"Company account\"\n\
             issuer = \"{issuer}\"\nclient_id = \"sori\"\nclient_secret = \"oidc-client-secret\"\n\
             role_claim = \"roles\"\nadmin_roles = [\"matrix-admin\"]\n{extra}"
        ),
        ..Default::default()
    })
    .await
}

/// A browser: follows nothing by itself, keeps cookies by port and path.
struct Browser {
    http: reqwest::Client,
    cookies: Vec<(u16, String, String, String)>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder, url: &Url) -> reqwest::Response {
        let port = url.port_or_known_default().unwrap();
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .filter(|(p, _, _, path)| *p == port && url.path().starts_with(path.as_str()))
            .map(|(_, name, value, _)| format!("{name}={value}"))
            .collect();
        let request = if cookie.is_empty() {
            request
        } else {
            request.header(COOKIE, cookie.join("; "))
        };
        let response = request.send().await.unwrap();
        for set in response.headers().get_all(SET_COOKIE) {
            let set = set.to_str().unwrap();
            let mut parts = set.split(';').map(str::trim);
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            let mut path = "/".to_owned();
            let mut gone = false;
            for attribute in parts {
                let lower = attribute.to_ascii_lowercase();
                if let Some(p) = lower.strip_prefix("path=") {
                    path = attribute[attribute.len() - p.len()..].to_owned();
                }
                gone |= lower == "max-age=0" || lower.contains("1970");
            }
            self.cookies
                .retain(|(p, n, _, pa)| !(*p == port && n == name && *pa == path));
            if !gone {
                self.cookies
                    .push((port, name.to_owned(), value.to_owned(), path));
            }
        }
        response
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let parsed = Url::parse(url).unwrap();
        let request = self.http.get(parsed.clone());
        self.send(request, &parsed).await
    }

    async fn post_form(&mut self, url: &str, form: &str) -> reqwest::Response {
        let parsed = Url::parse(url).unwrap();
        let request = self
            .http
            .post(parsed.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned());
        self.send(request, &parsed).await
    }
}

/// `location` resolved against `base`.
fn join(base: &str, location: &str) -> String {
    Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location in a {} answer", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

fn query_of(url: &str) -> HashMap<String, String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Runs a sign-on as `login` up to the provider's redirect back to Sori; returns the callback
/// URL (with `code` and `state`).
async fn sign_on_at_provider(
    browser: &mut Browser,
    server: &TestServer,
    provider: &OidcProvider,
    redirect_url: &str,
    login: (&str, &str),
) -> String {
    let mut start =
        Url::parse(&server.url("/_matrix/client/v3/login/sso/redirect/company")).unwrap();
    start
        .query_pairs_mut()
        .append_pair("redirectUrl", redirect_url);
    let start = start.to_string();
    let response = browser.get(&start).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let authorize = location(&response);
    assert!(
        authorize.starts_with(&format!("{}/auth?", provider.issuer)),
        "{authorize}"
    );
    let params = query_of(&authorize);
    assert_eq!(params["code_challenge_method"], "S256");
    assert!(params.contains_key("nonce") && params.contains_key("state"));

    let response = browser.get(&authorize).await;
    let interaction = join(&provider.issuer, &location(&response));
    let response = browser.get(&interaction).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (user, password) = login;
    let response = browser
        .post_form(
            &format!("{interaction}/login"),
            &format!("login={user}&password={password}"),
        )
        .await;
    assert_eq!(
        response.status().as_u16(),
        303,
        "the provider took the login"
    );
    let resume = join(&provider.issuer, &location(&response));
    let response = browser.get(&resume).await;
    let callback = location(&response);
    assert!(
        callback.contains("/_sori/client/oidc/callback?"),
        "{callback}"
    );
    callback
}

/// A new browser that signed on as minsu at the provider, and the callback it was sent to.
async fn signed_on_at_provider(server: &TestServer, provider: &OidcProvider) -> (Browser, String) {
    let mut browser = Browser::new();
    let callback = sign_on_at_provider(
        &mut browser,
        server,
        provider,
        "http://127.0.0.1:9/app",
        ("minsu", "pw-minsu"),
    )
    .await;
    (browser, callback)
}

async fn exchange(server: &TestServer, token: &str) -> (StatusCode, Value) {
    server
        .post(
            "/_matrix/client/v3/login",
            None,
            &json!({"type": "m.login.token", "token": token}),
        )
        .await
}

#[tokio::test]
async fn a_person_signs_on_and_the_client_gets_a_login_token() {
    let provider_port = free_port();
    let issuer = format!("http://127.0.0.1:{provider_port}");
    let server = sso_server(&issuer, "").await;
    let provider = OidcProvider::start(&provider_config(server.port()), provider_port);

    let (status, flows) = server.get("/_matrix/client/v3/login", None).await;
    assert_eq!(status, StatusCode::OK);
    let sso = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["type"] == "m.login.sso")
        .unwrap_or_else(|| panic!("{flows}"));
    let providers = sso["identity_providers"].as_array().unwrap();
    assert_eq!(providers.len(), 1, "{sso}");
    assert_eq!(providers[0]["id"], "company");
    assert_eq!(providers[0]["name"], "Company account");

    let (mut browser, callback) = signed_on_at_provider(&server, &provider).await;
    let response = browser.get(&callback).await;
    assert_eq!(
        response.status(),
        StatusCode::FOUND,
        "allow-listed: straight back"
    );
    let back = location(&response);
    assert!(
        back.starts_with("http://127.0.0.1:9/app?loginToken="),
        "{back}"
    );
    let token = query_of(&back)["loginToken"].clone();

    let (status, body) = exchange(&server, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@minsu:localhost");
    assert_error(
        &exchange(&server, &token).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let (_, profile) = server
        .get("/_matrix/client/v3/profile/@minsu:localhost", None)
        .await;
    assert_eq!(profile["displayname"], "김민수");
    let access = body["access_token"].as_str().unwrap();
    let (_, role) = role_of(&server, access, "@minsu:localhost").await;
    assert_eq!(role["role"], "admin", "from the roles claim");

    // A replayed callback (same code and state) gets nothing.
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status(), StatusCode::FORBIDDEN);

    // A client that is not on the allow list gets a page to confirm, not a redirect.
    let mut other = Browser::new();
    let callback = sign_on_at_provider(
        &mut other,
        &server,
        &provider,
        "https://phish.example/steal",
        ("jiyeon", "pw-jiyeon"),
    )
    .await;
    let response = other.get(&callback).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get(LOCATION).is_none());
    let page = response.text().await.unwrap();
    assert!(page.contains("phish.example"), "{page}");
    assert!(
        page.contains("https://phish.example/steal?loginToken="),
        "{page}"
    );
}

#[tokio::test]
async fn tampered_sign_ons_are_refused_and_create_nothing() {
    let provider_port = free_port();
    let issuer = format!("http://127.0.0.1:{provider_port}");
    let server = sso_server(&issuer, "").await;
    let provider = OidcProvider::start(&provider_config(server.port()), provider_port);

    // The callback in another browser (no cookie): refused.
    let (mut browser, callback) = signed_on_at_provider(&server, &provider).await;
    let stranger = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = stranger.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The state is used up: even the right browser cannot finish it now.
    assert_eq!(browser.get(&callback).await.status(), StatusCode::FORBIDDEN);

    // A made-up state, a changed code, a provider error.
    let (mut browser, callback) = signed_on_at_provider(&server, &provider).await;
    let params = query_of(&callback);
    let base = callback.split('?').next().unwrap().to_owned();
    for query in [
        format!("code={}&state=made-up", params["code"]),
        format!("state={}", params["state"]),
    ] {
        let response = browser.get(&format!("{base}?{query}")).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{query}");
    }
    let (mut browser, callback) = signed_on_at_provider(&server, &provider).await;
    let params = query_of(&callback);
    let forged = format!(
        "{base}?code=forged-{}&state={}",
        params["code"], params["state"]
    );
    assert_eq!(browser.get(&forged).await.status(), StatusCode::FORBIDDEN);
    let (mut browser, callback) = signed_on_at_provider(&server, &provider).await;
    let params = query_of(&callback);
    let denied = format!("{base}?error=access_denied&state={}", params["state"]);
    assert_eq!(browser.get(&denied).await.status(), StatusCode::FORBIDDEN);

    let (status, _) = server
        .get("/_matrix/client/v3/profile/@minsu:localhost", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no account was created");

    // Bad requests to start one.
    assert_error(
        &server
            .get("/_matrix/client/v3/login/sso/redirect/company", None)
            .await,
        StatusCode::BAD_REQUEST,
        "M_MISSING_PARAM",
    );
    assert_error(
        &server
            .get("/_matrix/client/v3/login/sso/redirect/nobody?redirectUrl=http%3A%2F%2F127.0.0.1%3A9%2Fapp", None)
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .get(
                "/_matrix/client/v3/login/sso/redirect/company?redirectUrl=not-a-url",
                None,
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn existing_accounts_are_only_entered_when_allowed() {
    let provider_port = free_port();
    let issuer = format!("http://127.0.0.1:{provider_port}");
    let server = sso_server(&issuer, "").await;
    let provider = OidcProvider::start(&provider_config(server.port()), provider_port);
    register(&server, "jiyeon").await;
    let mut browser = Browser::new();
    let callback = sign_on_at_provider(
        &mut browser,
        &server,
        &provider,
        "http://127.0.0.1:9/app",
        ("jiyeon", "pw-jiyeon"),
    )
    .await;
    assert_eq!(browser.get(&callback).await.status(), StatusCode::FORBIDDEN);
    drop(server);
    drop(provider);

    let provider_port = free_port();
    let issuer = format!("http://127.0.0.1:{provider_port}");
    let server = sso_server(&issuer, "allow_existing_users = true\n").await;
    let provider = OidcProvider::start(&provider_config(server.port()), provider_port);
    register(&server, "jiyeon").await;
    let mut browser = Browser::new();
    let callback = sign_on_at_provider(
        &mut browser,
        &server,
        &provider,
        "http://127.0.0.1:9/app",
        ("jiyeon", "pw-jiyeon"),
    )
    .await;
    let response = browser.get(&callback).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let token = query_of(&location(&response))["loginToken"].clone();
    let (status, body) = exchange(&server, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@jiyeon:localhost");
}

//! Federation between real servers on loopback: each Sori serves the server-server API over
//! TLS on its own port (named `127.0.0.1:<port>`, with a certificate from the tests' CA),
//! signs every request it makes, and checks every request it gets.

mod acl;
mod forks;
mod garbage;
mod history;
mod invites;
mod joins;
mod rooms;
mod synapse;

use serde_json::{Value, json};
use std::collections::BTreeSet;

use spec_tests::federation::TestCa;
use spec_tests::keys::{Key, device_keys, one_time_key};
use spec_tests::{ServerOptions, StatusCode, TestServer, User, assert_error, register};

async fn federating(settings: &str) -> TestServer {
    TestServer::start_with(ServerOptions {
        federation: true,
        federation_settings: settings.to_owned(),
        ..Default::default()
    })
    .await
}

/// A client of the federation listener that trusts the tests' CA.
fn tls_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = std::fs::read(&TestCa::shared().ca).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
}

async fn over_tls(
    server: &TestServer,
    path: &str,
    authorization: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = tls_client().get(format!("https://{}{path}", server.server_name));
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    let response = request
        .send()
        .await
        .expect("the federation listener answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn set_name(server: &TestServer, user: &User, name: &str) {
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", user.user_id),
            user.token(),
            &json!({"displayname": name}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// An id (user, room, event) as a path segment.
fn encode(id: &str) -> String {
    id.replace('@', "%40")
        .replace(':', "%3A")
        .replace('$', "%24")
        .replace('!', "%21")
}

#[tokio::test]
async fn two_servers_read_each_others_profiles_over_signed_requests() {
    let (a, b) = tokio::join!(federating(""), federating(""));
    let alice = register(&a, "alice").await;
    let bob = register(&b, "bob").await;
    set_name(&a, &alice, "Alice of A").await;
    set_name(&b, &bob, "Bob of B").await;
    assert_eq!(alice.user_id, format!("@alice:{}", a.server_name));

    // Each asks the other (a signed request, checked with the key fetched over TLS).
    let (status, profile) = b
        .get(
            &format!("/_matrix/client/v3/profile/{}", encode(&alice.user_id)),
            bob.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["displayname"], "Alice of A");
    let (status, field) = a
        .get(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                encode(&bob.user_id)
            ),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{field}");
    assert_eq!(field["displayname"], "Bob of B");
    // Someone the other server does not know.
    let ghost = format!("@ghost:{}", a.server_name);
    let result = b
        .get(
            &format!("/_matrix/client/v3/profile/{}", encode(&ghost)),
            bob.token(),
        )
        .await;
    assert_error(&result, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // The TLS listener: version and keys.
    let (status, version) = over_tls(&a, "/_matrix/federation/v1/version", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version["server"]["name"], "Sori");
    let (status, keys) = over_tls(&a, "/_matrix/key/v2/server", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys["server_name"], a.server_name);
    assert!(keys["signatures"][&a.server_name].is_object());

    // As a notary, A vouches for B's keys (B's signature and A's on the same document).
    let (status, query) = over_tls(
        &a,
        &format!("/_matrix/key/v2/query/{}", b.server_name),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{query}");
    let document = &query["server_keys"][0];
    assert_eq!(document["server_name"], b.server_name);
    assert!(
        document["signatures"][&b.server_name].is_object(),
        "{document}"
    );
    assert!(
        document["signatures"][&a.server_name].is_object(),
        "{document}"
    );
    let (status, batch) = b
        .post(
            "/_matrix/key/v2/query",
            None,
            &json!({"server_keys": {a.server_name.as_str(): {}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["server_keys"][0]["server_name"], a.server_name);
}

#[tokio::test]
async fn unsigned_forged_and_misaddressed_requests_get_401() {
    let (a, b) = tokio::join!(federating(""), federating(""));
    let alice = register(&a, "alice").await;
    let path = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        encode(&alice.user_id)
    );
    let (_, keys) = over_tls(&b, "/_matrix/key/v2/server", None).await;
    let key_id = keys["verify_keys"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let forged = |origin: &str, destination: &str, key: &str| {
        format!(
            "X-Matrix origin=\"{origin}\",destination=\"{destination}\",key=\"{key}\",\
             sig=\"dGhpcyBpcyBub3QgYSBzaWduYXR1cmUgb2YgYW55dGhpbmcgYXQgYWxsLCBub3Qgb25l\""
        )
    };
    for authorization in [
        None,
        Some("Bearer not-a-server".to_owned()),
        Some("X-Matrix origin=".to_owned()),
        // B's real key id, but a signature B never made.
        Some(forged(&b.server_name, &a.server_name, &key_id)),
        // Addressed to another server.
        Some(forged(&b.server_name, "127.0.0.1:1", &key_id)),
        // From a server that cannot be reached for its key.
        Some(forged("127.0.0.1:1", &a.server_name, "ed25519:x")),
        // From A's own name.
        Some(forged(&a.server_name, &a.server_name, &key_id)),
    ] {
        let (status, body) = over_tls(&a, &path, authorization.as_deref()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{authorization:?}: {body}"
        );
        assert_eq!(
            body["errcode"], "M_UNAUTHORIZED",
            "{authorization:?}: {body}"
        );
    }
    // The same request on the client listener (behind a reverse proxy) is checked the same.
    let result = a.get(&path, None).await;
    assert_error(&result, StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");
}

#[tokio::test]
async fn an_allowlist_or_disabled_federation_keeps_other_servers_out() {
    let (open, closed, listed) = tokio::join!(
        federating(""),
        federating("enabled = false"),
        federating("domain_allowlist = [\"partner.example\"]"),
    );
    let olga = register(&open, "olga").await;
    let carl = register(&closed, "carl").await;
    let lisa = register(&listed, "lisa").await;
    for (server, user, other) in [
        (&closed, &carl, &olga.user_id),
        (&listed, &lisa, &olga.user_id),
    ] {
        let result = server
            .get(
                &format!("/_matrix/client/v3/profile/{}", encode(other)),
                user.token(),
            )
            .await;
        assert_error(&result, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    // The open server asks them; they refuse it.
    for other in [&carl.user_id, &lisa.user_id] {
        let result = open
            .get(
                &format!("/_matrix/client/v3/profile/{}", encode(other)),
                olga.token(),
            )
            .await;
        assert_error(&result, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
}

/// A public room `user` makes with `#<alias>` on its server, listed in the directory.
pub(crate) async fn public_room(server: &TestServer, user: &User, alias: &str) -> String {
    let (status, body) = server
        .post(
            "/_matrix/client/v3/createRoom",
            user.token(),
            &json!({"preset": "public_chat", "visibility": "public",
                    "room_alias_name": alias, "name": format!("The {alias}")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["room_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn aliases_and_public_rooms_are_found_on_the_other_server() {
    let (a, b) = tokio::join!(federating(""), federating(""));
    let alice = register(&a, "alice").await;
    let bob = register(&b, "bob").await;
    let room = public_room(&a, &alice, "lobby").await;
    let alias = format!("#lobby:{}", a.server_name);

    let (status, found) = b
        .get(
            &format!(
                "/_matrix/client/v3/directory/room/{}",
                alias.replace('#', "%23").replace(':', "%3A")
            ),
            bob.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["room_id"], room);
    assert_eq!(found["servers"], json!([a.server_name]));
    let missing = format!("#nowhere:{}", a.server_name);
    let result = b
        .get(
            &format!(
                "/_matrix/client/v3/directory/room/{}",
                missing.replace('#', "%23").replace(':', "%3A")
            ),
            bob.token(),
        )
        .await;
    assert_error(&result, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    let (status, listed) = b
        .get(
            &format!("/_matrix/client/v3/publicRooms?server={}", a.server_name),
            bob.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["chunk"][0]["room_id"], room);
    assert_eq!(listed["chunk"][0]["name"], "The lobby");
    let (status, searched) = b
        .post(
            &format!("/_matrix/client/v3/publicRooms?server={}", a.server_name),
            bob.token(),
            &json!({"filter": {"generic_search_term": "lobby"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{searched}");
    assert_eq!(searched["chunk"].as_array().unwrap().len(), 1, "{searched}");
    let (status, none) = b
        .post(
            &format!("/_matrix/client/v3/publicRooms?server={}", a.server_name),
            bob.token(),
            &json!({"filter": {"generic_search_term": "nothing like it"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(none["chunk"], json!([]));
}

/// Uploads a device's identity keys and two one-time keys for `user`.
pub(crate) async fn upload_keys(server: &TestServer, user: &User) -> Key {
    let key = Key::new();
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/upload",
            user.token(),
            &json!({
                "device_keys": device_keys(user, &key),
                "one_time_keys": {
                    "signed_curve25519:AAAA": one_time_key(user, &key, "b3RrMQ", false),
                    "signed_curve25519:AAAB": one_time_key(user, &key, "b3RrMg", false),
                },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    key
}

#[tokio::test]
async fn device_keys_are_queried_and_claimed_across_servers() {
    let (a, b) = tokio::join!(federating(""), federating(""));
    let alice = register(&a, "alice").await;
    let bob = register(&b, "bob").await;
    let key = upload_keys(&a, &alice).await;

    let unreachable = "@nobody:127.0.0.1:1";
    let (status, found) = b
        .post(
            "/_matrix/client/v3/keys/query",
            bob.token(),
            &json!({"device_keys": {alice.user_id.as_str(): [], unreachable: []}, "timeout": 5000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let device = &found["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(
        device["keys"][format!("ed25519:{}", alice.device_id)],
        key.public
    );
    assert!(device["signatures"][&alice.user_id].is_object(), "{device}");
    assert!(found["failures"]["127.0.0.1:1"].is_object(), "{found}");
    assert!(found["failures"].get(&a.server_name).is_none(), "{found}");

    // Each claim takes another of alice's one-time keys.
    let mut claimed = BTreeSet::new();
    for _ in 0..2 {
        let (status, body) = b
            .post(
                "/_matrix/client/v3/keys/claim",
                bob.token(),
                &json!({"one_time_keys": {alice.user_id.as_str(): {alice.device_id.as_str(): "signed_curve25519"}}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let keys = body["one_time_keys"][&alice.user_id][&alice.device_id]
            .as_object()
            .unwrap_or_else(|| panic!("{body}"));
        claimed.extend(keys.keys().cloned());
    }
    assert_eq!(
        claimed,
        BTreeSet::from([
            "signed_curve25519:AAAA".to_owned(),
            "signed_curve25519:AAAB".to_owned()
        ])
    );
}

use std::collections::BTreeMap;

use ruma::CanonicalJsonObject;
use ruma::serde::Base64;
use spec_tests::{StatusCode, TestServer};

#[tokio::test]
async fn the_signing_key_is_published_self_signed_and_kept_across_restarts() {
    let mut server = TestServer::start().await;
    let (status, document) = server.get("/_matrix/key/v2/server", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["server_name"], "localhost");
    let verify_keys = document["verify_keys"].as_object().unwrap();
    assert_eq!(verify_keys.len(), 1);
    let (key_id, key) = verify_keys.iter().next().unwrap();
    assert!(key_id.starts_with("ed25519:"), "{key_id}");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(document["valid_until_ts"].as_u64().unwrap() > now_ms);

    // The document verifies with the key it publishes.
    let public_key = Base64::parse(key["key"].as_str().unwrap()).unwrap();
    let keys = BTreeMap::from([(
        "localhost".to_owned(),
        BTreeMap::from([(key_id.clone(), public_key)]),
    )]);
    let object: CanonicalJsonObject = serde_json::from_value(document.clone()).unwrap();
    ruma::signatures::verify_json(&keys, &object).expect("self-signature verifies");

    server.restart().await;
    let (_, again) = server.get("/_matrix/key/v2/server", None).await;
    assert_eq!(
        again["verify_keys"], document["verify_keys"],
        "the key survived the restart"
    );

    let (status, version) = server.get("/_matrix/federation/v1/version", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version["server"]["name"], "Sori");
}

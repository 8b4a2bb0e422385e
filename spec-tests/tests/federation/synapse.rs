//! Synapse, the reference implementation, as the other server.

use serde_json::json;
use spec_tests::synapse::Synapse;
use spec_tests::{StatusCode, register};

use super::{encode, federating, set_name};

#[tokio::test]
async fn sori_and_synapse_read_each_others_profiles() {
    let (sori, synapse) = tokio::join!(federating(""), Synapse::start());
    let alice = register(&sori, "alice").await;
    set_name(&sori, &alice, "Alice on Sori").await;
    let bob = synapse.register("bob").await;
    let (status, body) = synapse
        .request(
            reqwest::Method::PUT,
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                encode(&bob.user_id)
            ),
            Some(&bob.access_token),
            Some(&json!({"displayname": "Bob on Synapse"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Synapse asks Sori (signing; Sori fetches Synapse's key over TLS to check it).
    let (status, profile) = synapse
        .request(
            reqwest::Method::GET,
            &format!("/_matrix/client/v3/profile/{}", encode(&alice.user_id)),
            Some(&bob.access_token),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{profile}\n{}\n{}",
        synapse.log(),
        sori.log()
    );
    assert_eq!(profile["displayname"], "Alice on Sori");

    // Sori asks Synapse (Synapse fetches Sori's key to check the signature).
    let (status, profile) = sori
        .get(
            &format!("/_matrix/client/v3/profile/{}", encode(&bob.user_id)),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}\n{}", synapse.log());
    assert_eq!(profile["displayname"], "Bob on Synapse");
}

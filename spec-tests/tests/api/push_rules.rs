use serde_json::json;
use spec_tests::{StatusCode, TestServer, assert_error, register};

#[tokio::test]
async fn the_default_ruleset_is_served() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let (status, body) = server
        .get("/_matrix/client/v3/pushrules/", alice.token())
        .await;
    assert_eq!(status, StatusCode::OK);
    let global = &body["global"];
    let ids = |kind: &str| -> Vec<String> {
        global[kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(ids("override").contains(&".m.rule.master".to_owned()));
    assert!(ids("override").contains(&".m.rule.is_user_mention".to_owned()));
    assert!(ids("underride").contains(&".m.rule.message".to_owned()));
    let (status, global_only) = server
        .get("/_matrix/client/v3/pushrules/global/", alice.token())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(global_only, *global);
    assert_error(
        &server.get("/_matrix/client/v3/pushrules/", None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
}

#[tokio::test]
async fn rules_can_be_added_toggled_and_removed() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let rule = "/_matrix/client/v3/pushrules/global/room/!quiet:localhost";
    // Muting a room: a room rule that does not notify.
    let (status, body) = server
        .put(rule, alice.token(), &json!({"actions": []}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.get(rule, alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["rule_id"], "!quiet:localhost");
    assert_eq!(body["enabled"], true);

    assert_eq!(
        server
            .put(
                &format!("{rule}/enabled"),
                alice.token(),
                &json!({"enabled": false})
            )
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        server
            .get(&format!("{rule}/enabled"), alice.token())
            .await
            .1,
        json!({"enabled": false})
    );
    assert_eq!(
        server
            .put(
                &format!("{rule}/actions"),
                alice.token(),
                &json!({"actions": ["notify"]})
            )
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        server
            .get(&format!("{rule}/actions"), alice.token())
            .await
            .1,
        json!({"actions": ["notify"]})
    );

    // Changes show in the whole ruleset and are per user.
    let (_, all) = server
        .get("/_matrix/client/v3/pushrules/", alice.token())
        .await;
    assert_eq!(all["global"]["room"][0]["rule_id"], "!quiet:localhost");
    let bob = register(&server, "bob").await;
    assert_error(
        &server.get(rule, bob.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    assert_eq!(
        server.delete(rule, alice.token(), None).await.0,
        StatusCode::OK
    );
    assert_error(
        &server.get(rule, alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.delete(rule, alice.token(), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn server_default_rules_can_be_disabled_but_not_removed() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let master = "/_matrix/client/v3/pushrules/global/override/.m.rule.master";
    assert_eq!(
        server
            .put(
                &format!("{master}/enabled"),
                alice.token(),
                &json!({"enabled": true})
            )
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        server
            .get(&format!("{master}/enabled"), alice.token())
            .await
            .1,
        json!({"enabled": true})
    );
    assert_error(
        &server.delete(master, alice.token(), None).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server
            .put(
                "/_matrix/client/v3/pushrules/global/override/.my.rule",
                alice.token(),
                &json!({"actions": [], "conditions": []}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server
            .put(
                "/_matrix/client/v3/pushrules/global/content/word",
                alice.token(),
                &json!({"actions": [], "pattern": 5}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_error(
        &server
            .get(
                "/_matrix/client/v3/pushrules/global/override/.m.rule.nope",
                alice.token(),
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

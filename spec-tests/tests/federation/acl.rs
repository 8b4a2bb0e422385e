//! Server ACLs (`m.room.server_acl`): a server the room's ACL denies has its events and its
//! requests about the room refused, until the ACL lets it in again.

use serde_json::json;

use spec_tests::remote::RemoteServer;
use spec_tests::{StatusCode, assert_error, register};

use crate::encode;
use crate::forks::{bobs_event, message_both_have, room_with_bob};
use crate::joins::sent_to;

#[tokio::test]
async fn a_server_the_rooms_acl_denies_is_refused() {
    let (sori, remote) = tokio::join!(crate::federating(""), RemoteServer::start());
    let alice = register(&sori, "alice").await;
    let (room, version, auth_events) = room_with_bob(&sori, &remote, &alice).await;
    let before =
        message_both_have((&sori, &remote), &alice, &room, &version, "before the ACL").await;
    let (before_id, depth, ts) = (before.id, before.depth, before.ts);

    // The stand-in's host (an IP literal) is denied; every other server is allowed.
    let set_acl = async |content: serde_json::Value| {
        let (status, body) = sori
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/state/m.room.server_acl"),
                alice.token(),
                &content,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        sent_to(&remote, "the ACL", |p| {
            p["type"] == "m.room.server_acl" && p["content"] == content
        })
        .await
    };
    let acl = set_acl(json!({"allow": ["*"], "deny": ["127.0.0.1"]})).await;
    let acl_id = RemoteServer::event_id(&acl, &version);

    // Bob's message is refused, and so are the stand-in's requests about the room.
    let (message, message_id) = bobs_event(
        &remote,
        &version,
        &room,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "denied"}),
        (&[acl_id.as_str()], depth + 2, ts + 1),
        &auth_events,
    );
    let (status, result) = remote.send_transaction(&sori, "t1", &[message]).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    let refused = result["pdus"]
        .get(&message_id)
        .map(|r| r["error"].as_str().unwrap_or_default().to_owned());
    assert!(
        refused.as_deref().is_none_or(|e| e.contains("ACL")),
        "{result}"
    );
    let state_ids = format!(
        "/_matrix/federation/v1/state_ids/{}?event_id={}",
        encode(&room),
        encode(&before_id)
    );
    assert_error(
        &remote.get(&sori, &state_ids).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let make_join = format!(
        "/_matrix/federation/v1/make_join/{}/{}?ver=10&ver=11&ver=12",
        encode(&room),
        encode(&remote.user("carol"))
    );
    assert_error(
        &remote.get(&sori, &make_join).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let bodies = crate::rooms::reads(&sori, &alice, &room, "before the ACL").await;
    assert!(!bodies.contains(&"denied".to_owned()), "{bodies:?}");

    // Let in again, its messages are taken.
    let acl = set_acl(json!({"allow": ["*"]})).await;
    let acl_id = RemoteServer::event_id(&acl, &version);
    let (message, message_id) = bobs_event(
        &remote,
        &version,
        &room,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "allowed again"}),
        (&[acl_id.as_str()], depth + 4, ts + 2),
        &auth_events,
    );
    let (status, result) = remote.send_transaction(&sori, "t2", &[message]).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["pdus"][&message_id], json!({}), "{result}");
    crate::rooms::reads(&sori, &alice, &room, "allowed again").await;
    let (status, _) = remote.get(&sori, &state_ids).await;
    assert_eq!(status, StatusCode::OK);
}

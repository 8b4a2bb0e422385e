//! A peer that sends garbage in a transaction: PDUs that are no events, an oversized one, the
//! same event twice, EDUs that make no sense. Each is refused or passed over on its own; the
//! good PDU beside them is taken once, and the room goes on.

use serde_json::json;

use spec_tests::remote::RemoteServer;
use spec_tests::{StatusCode, register, send_text};

use crate::forks::{bobs_event, message_both_have, room_with_bob};
use crate::joins::sent_to;

#[tokio::test]
async fn garbage_in_a_transaction_affects_nothing_else() {
    let (sori, remote) = tokio::join!(crate::federating(""), RemoteServer::start());
    let alice = register(&sori, "alice").await;
    let (room, version, auth_events) = room_with_bob(&sori, &remote, &alice).await;
    let before = message_both_have((&sori, &remote), &alice, &room, &version, "before").await;
    let (before_id, depth, ts) = (before.id, before.depth, before.ts);
    let (good, good_id) = bobs_event(
        &remote,
        &version,
        &room,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "good"}),
        (&[before_id.as_str()], depth + 1, ts + 1),
        &auth_events,
    );
    // Past the 64 KiB a PDU may have (no server would sign it).
    let mut huge = good.clone();
    huge["content"]["body"] = json!("huge");
    huge["content"]["padding"] = json!("x".repeat(70_000));
    let pdus = [
        json!(42),
        json!("not an event"),
        json!({"room_id": 5}),
        json!({"room_id": "!unknown:127.0.0.1:1", "type": "m.room.message"}),
        huge,
        good.clone(),
        good,
    ];
    let edus = [
        json!("nonsense"),
        json!({"edu_type": "m.typing", "content": 7}),
        json!({"edu_type": "m.receipt", "content": {"!nowhere:127.0.0.1:1": {"m.read": 3}}}),
        json!({"edu_type": "m.direct_to_device", "content": {"messages": []}}),
        json!({"edu_type": "m.device_list_update", "content": {"user_id": alice.user_id}}),
        json!({"edu_type": "org.example.unknown", "content": {}}),
    ];
    let (status, result) = remote
        .send_transaction_with_edus(&sori, "t1", &pdus, &edus)
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["pdus"][&good_id], json!({}), "{result}");

    // The good message is in the room once; the huge one is not; the room goes on.
    let bodies = crate::rooms::reads(&sori, &alice, &room, "good").await;
    assert_eq!(
        bodies.iter().filter(|b| *b == "good").count(),
        1,
        "{bodies:?}"
    );
    assert!(!bodies.contains(&"huge".to_owned()), "{bodies:?}");
    let (status, _) = send_text(&sori, &alice, &room, "t1", "after").await;
    assert_eq!(status, StatusCode::OK);
    sent_to(&remote, "the next message", |p| {
        p["content"]["body"] == "after"
    })
    .await;
}

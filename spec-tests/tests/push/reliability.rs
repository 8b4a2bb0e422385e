//! Delivery when gateways misbehave: retries after failures (errors, garbage, redirects) in
//! order, a hanging gateway holding up only its own pusher, rejected pushkeys removing their
//! pusher, and queued notifications surviving kill -9.

use std::collections::HashMap;

use spec_tests::gateway::{Gateway, Reply};
use spec_tests::register;

use super::*;

/// The event ids of the accepted notifications.
fn event_ids(gateway: &Gateway) -> Vec<String> {
    event_notifications(gateway)
        .iter()
        .map(|n| n["event_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn failed_deliveries_are_retried_in_order() {
    let server = pushing_server().await;
    let gateway = Gateway::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = room(&server, &alice, &[&bob], "Retry").await;
    add_pusher(&server, &alice, &gateway.url(), "k").await;
    gateway.script([Reply::Status(500), Reply::Garbage, Reply::Redirect]);

    let mut sent = Vec::new();
    for n in 0..3 {
        sent.push(send(&server, &bob, &room, &n.to_string(), &format!("m{n}")).await);
    }
    wait_events(&gateway, 3).await;
    assert_eq!(event_ids(&gateway), sent, "each once, in order");
    let requests = gateway.requests();
    assert_eq!(
        requests.len(),
        6,
        "three failures, then the three: {requests:#?}"
    );
    assert!(
        requests[..4]
            .iter()
            .all(|r| r.body["notification"]["event_id"] == sent[0]),
        "the first notification is retried until it is taken"
    );
}

#[tokio::test]
async fn a_hanging_gateway_holds_up_only_its_own_pusher() {
    let server = pushing_server().await;
    let stuck = Gateway::start().await;
    let working = Gateway::start().await;
    stuck.answer_all(Reply::Hang);
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = room(&server, &alice, &[&bob], "Hang").await;
    add_pusher(&server, &alice, &stuck.url(), "stuck").await;
    add_pusher(&server, &bob, &working.url(), "working").await;
    add_pusher(&server, &alice, &working.url(), "alice-working").await;

    for n in 0..3 {
        send(&server, &bob, &room, &format!("b{n}"), "from bob").await;
        send(&server, &alice, &room, &format!("a{n}"), "from alice").await;
    }
    // Alice's other pusher and bob's get everything while the stuck one waits.
    let got = wait_events(&working, 6).await;
    let by_key = got
        .iter()
        .fold(HashMap::<String, usize>::new(), |mut m, n| {
            *m.entry(n["devices"][0]["pushkey"].as_str().unwrap().to_owned())
                .or_default() += 1;
            m
        });
    assert_eq!(by_key["alice-working"], 3);
    assert_eq!(by_key["working"], 3);
    assert!(stuck.accepted().is_empty());
    assert_eq!(
        stuck.requests().len(),
        1,
        "one request at a time per pusher"
    );
}

#[tokio::test]
async fn a_rejected_pushkey_removes_its_pusher() {
    let server = pushing_server().await;
    let gateway = Gateway::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = room(&server, &alice, &[&bob], "Rejected").await;
    add_pusher(&server, &alice, &gateway.url(), "stale").await;
    add_pusher(&server, &alice, &gateway.url(), "fresh").await;
    gateway.script([Reply::Reject]);
    // Only the first request is rejected: whichever pusher's it was goes away.
    send(&server, &bob, &room, "1", "one").await;
    wait_events(&gateway, 1).await;
    let rejected_key = gateway.requests()[0].body["notification"]["devices"][0]["pushkey"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = std::time::Instant::now() + WAIT;
    while pushers(&server, &alice).await.len() != 1 {
        assert!(std::time::Instant::now() < deadline, "the pusher stayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = pushers(&server, &alice).await;
    assert_ne!(left[0]["pushkey"], rejected_key);

    send(&server, &bob, &room, "2", "two").await;
    let got = wait_events(&gateway, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(event_notifications(&gateway).len(), 2);
    assert!(
        got.iter()
            .all(|n| n["devices"][0]["pushkey"] != rejected_key)
    );
}

#[tokio::test]
async fn queued_notifications_survive_kill_9_and_arrive_once() {
    let mut server = pushing_server().await;
    let gateway = Gateway::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = room(&server, &alice, &[&bob], "Outage").await;
    add_pusher(&server, &alice, &gateway.url(), "k").await;
    gateway.answer_all(Reply::Status(503));

    let mut sent = Vec::new();
    for n in 0..5 {
        sent.push(
            send(
                &server,
                &bob,
                &room,
                &n.to_string(),
                &format!("during outage {n}"),
            )
            .await,
        );
    }
    // The gateway has seen the first one (and refused it).
    let deadline = std::time::Instant::now() + WAIT;
    while gateway.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.restart().await;
    gateway.answer_all(Reply::Accept);
    wait_events(&gateway, 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(event_ids(&gateway), sent, "all five, once each, in order");
    // The last one carries the whole badge.
    assert_eq!(event_notifications(&gateway)[4]["counts"]["unread"], 5);

    // Delivery goes on normally after the restart.
    let after = send(&server, &bob, &room, "after", "after").await;
    wait_events(&gateway, 6).await;
    assert_eq!(event_ids(&gateway)[5], after);
}

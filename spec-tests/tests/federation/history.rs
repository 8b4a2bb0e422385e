//! Another server reads a room's history by time (`/timestamp_to_event`) and an event's auth
//! chain (`/event_auth`); a server with no user in the room may read neither.

use serde_json::Value;

use spec_tests::remote::RemoteServer;
use spec_tests::{StatusCode, assert_error, register};

use crate::encode;
use crate::forks::{message_both_have, room_with_bob};

#[tokio::test]
async fn the_event_at_a_time_and_an_events_auth_chain() {
    let (sori, remote) = tokio::join!(crate::federating(""), RemoteServer::start());
    let alice = register(&sori, "alice").await;
    let (room, version, _) = room_with_bob(&sori, &remote, &alice).await;
    let noon = message_both_have((&sori, &remote), &alice, &room, &version, "at noon").await;
    let (noon_id, ts) = (noon.id, noon.ts);

    let at = |ts: u64, dir: &str| {
        format!(
            "/_matrix/federation/v1/timestamp_to_event/{}?ts={ts}&dir={dir}",
            encode(&room)
        )
    };
    let (status, found) = remote.get(&sori, &at(ts + 60_000, "b")).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["event_id"], noon_id.as_str());
    assert_eq!(found["origin_server_ts"], ts);
    // The first event at or after the dawn of time is the room's creation.
    let (status, first) = remote.get(&sori, &at(0, "f")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, event) = remote
        .get(
            &sori,
            &format!(
                "/_matrix/federation/v1/event/{}",
                encode(first["event_id"].as_str().unwrap())
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["pdus"][0]["type"], "m.room.create");
    assert_error(
        &remote.get(&sori, &at(ts + 60_000, "f")).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    // The message's auth chain: the create event, the power levels, alice's join.
    let (status, auth) = remote
        .get(
            &sori,
            &format!(
                "/_matrix/federation/v1/event_auth/{}/{}",
                encode(&room),
                encode(&noon_id)
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{auth}");
    let types: Vec<(&str, &str)> = auth["auth_chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["state_key"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    for expected in [
        ("m.room.create", ""),
        ("m.room.power_levels", ""),
        ("m.room.member", alice.user_id.as_str()),
    ] {
        assert!(types.contains(&expected), "{expected:?} in {types:?}");
    }

    // Another server, with nobody in the room, reads neither.
    let stranger = RemoteServer::start().await;
    let refused: (StatusCode, Value) = stranger.get(&sori, &at(ts, "b")).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let refused = stranger
        .get(
            &sori,
            &format!(
                "/_matrix/federation/v1/event_auth/{}/{}",
                encode(&room),
                encode(&noon_id)
            ),
        )
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

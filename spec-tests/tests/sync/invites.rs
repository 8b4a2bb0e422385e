//! What an invitee sees of a room before joining: the stripped state of `invite_state`.

use serde_json::{Value, json};
use spec_tests::{StatusCode, TestServer, create_room, register, sync};

/// The stripped state event of `kind` with `state_key`, if the list has it.
fn find<'a>(events: &'a Value, kind: &str, state_key: &str) -> Option<&'a Value> {
    events
        .as_array()
        .unwrap_or_else(|| panic!("a list of events: {events}"))
        .iter()
        .find(|e| e["type"] == kind && e["state_key"] == state_key)
}

#[tokio::test]
async fn an_invite_says_who_invited_with_the_rooms_stripped_state() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", alice.user_id),
            alice.token(),
            &json!({"displayname": "앨리스"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Invited at creation (a DM) and invited later into a named room.
    let dm = create_room(
        &server,
        &alice,
        json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [bob.user_id]}),
    )
    .await;
    let room = create_room(
        &server,
        &alice,
        json!({"preset": "private_chat", "name": "기획", "topic": "다음 분기",
               "room_alias_name": "plan"}),
    )
    .await;
    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            alice.token(),
            &json!({"user_id": bob.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let invites = sync(&server, &bob, "").await["rooms"]["invite"].clone();
    for room_id in [&dm, &room] {
        let state = &invites[room_id.as_str()]["invite_state"]["events"];
        let own = find(state, "m.room.member", &bob.user_id)
            .unwrap_or_else(|| panic!("bob's invite in {state}"));
        assert_eq!(own["content"]["membership"], "invite");
        assert_eq!(own["sender"], alice.user_id.as_str());
        let inviter = find(state, "m.room.member", &alice.user_id)
            .unwrap_or_else(|| panic!("the inviter's member event in {state}"));
        assert_eq!(inviter["content"]["membership"], "join");
        assert_eq!(inviter["content"]["displayname"], "앨리스");
        assert_eq!(inviter["sender"], alice.user_id.as_str());
        for kind in ["m.room.create", "m.room.join_rules"] {
            assert!(find(state, kind, "").is_some(), "{kind} in {state}");
        }
        assert!(
            find(state, "m.room.member", &carol.user_id).is_none(),
            "no one else's membership"
        );
    }
    let dm_state = &invites[dm.as_str()]["invite_state"]["events"];
    assert_eq!(
        find(dm_state, "m.room.member", &bob.user_id).unwrap()["content"]["is_direct"],
        true
    );
    assert!(find(dm_state, "m.room.encryption", "").is_some());
    let room_state = &invites[room.as_str()]["invite_state"]["events"];
    assert_eq!(
        find(room_state, "m.room.name", "").unwrap()["content"]["name"],
        "기획"
    );
    assert_eq!(
        find(room_state, "m.room.topic", "").unwrap()["content"]["topic"],
        "다음 분기"
    );
    assert_eq!(
        find(room_state, "m.room.canonical_alias", "").unwrap()["content"]["alias"],
        "#plan:localhost"
    );
}

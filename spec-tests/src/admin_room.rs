//! The admin room, for the tests: make an admin, wait for the bot's invitation, and wait for
//! an answer to a command.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{StatusCode, TestServer, User, login};

/// The server's bot, which answers `!admin` commands.
pub const SERVER_BOT: &str = "@sori:localhost";

/// Makes `name` a server admin with the offline `sori user create` (the server restarts) and
/// signs them in.
pub async fn create_admin(server: &mut TestServer, name: &str, password: &str) -> User {
    let output = server
        .run_offline(&["user", "create", name, "--admin", "--password", password])
        .await;
    assert!(output.status.success(), "{output:?}");
    login(server, name, password).await
}

/// Waits until `user` is invited to the admin room; returns its id.
pub async fn invited_to_admin_room(server: &TestServer, user: &User) -> String {
    let (status, alias) = server
        .get(
            "/_matrix/client/v3/directory/room/%23admins%3Alocalhost",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{alias}");
    let room = alias["room_id"].as_str().unwrap().to_owned();
    for _ in 0..200 {
        let synced = crate::sync(server, user, "timeout=0").await;
        if synced["rooms"]["invite"].get(&room).is_some() {
            return room;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} was not invited to the admin room", user.user_id);
}

/// Waits (at most `limit`) for `sender`'s `m.notice` in reply to `event_id`, as `user` reads
/// the room.
pub async fn answer_from(
    server: &TestServer,
    user: &User,
    room: &str,
    event_id: &str,
    sender: &str,
    limit: Duration,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, page) = server
            .get(
                &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=200"),
                user.token(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        if let Some(notice) = page["chunk"].as_array().unwrap().iter().find(|e| {
            e["sender"] == sender
                && e["content"]["msgtype"] == "m.notice"
                && e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == event_id
        }) {
            return notice.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{sender} did not answer {event_id}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

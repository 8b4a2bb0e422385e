//! The admin room: the server bot makes `#admins`, invites the admins (and each new one),
//! answers `!admin` commands from admins with an `m.notice`, refuses everyone else, gives a
//! wrong command its usage, audits every command, and never answers one twice across a
//! crash.

use std::time::Duration;

use serde_json::{Value, json};
use spec_tests::admin_room::{SERVER_BOT, answer_from, invited_to_admin_room};
use spec_tests::{StatusCode, TestServer, User, join, login, register};

use super::server_with_admin;

/// Sends a command and returns the bot's answer to it (its plain-text body).
async fn command(server: &TestServer, user: &User, room: &str, text: &str) -> String {
    let txn = format!("c{}", rand_suffix());
    let (status, sent) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
            user.token(),
            &json!({"msgtype": "m.text", "body": text}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let event_id = sent["event_id"].as_str().unwrap();
    let answer = answer_from(
        server,
        user,
        room,
        event_id,
        SERVER_BOT,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(answer["content"]["format"], "org.matrix.custom.html");
    answer["content"]["body"].as_str().unwrap().to_owned()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn notices(server: &TestServer, user: &User, room: &str) -> Vec<Value> {
    let (status, page) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=200"),
            user.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["sender"] == SERVER_BOT && e["content"]["msgtype"] == "m.notice")
        .cloned()
        .collect()
}

#[tokio::test]
async fn admins_steer_the_server_from_the_admin_room() {
    let (mut server, boss) = server_with_admin().await;
    let room = invited_to_admin_room(&server, &boss).await;
    join(&server, &boss, &room).await;

    let help = command(&server, &boss, &room, "!admin help").await;
    for part in ["users", "rooms", "media", "server"] {
        assert!(help.contains(part), "{help}");
    }
    let usage = command(&server, &boss, &room, "!admin users set-role --help").await;
    assert!(
        usage.contains("admin, auditor or user") || usage.contains("<ROLE>"),
        "{usage}"
    );

    let list = command(&server, &boss, &room, "!admin users list").await;
    assert!(list.contains("@boss:localhost (admin)"), "{list}");

    let created = command(
        &server,
        &boss,
        &room,
        "!admin users create dana --password dana-pw-1",
    )
    .await;
    assert!(created.contains("Created @dana:localhost"), "{created}");
    let dana = login(&server, "dana", "dana-pw-1").await;
    let promoted = command(&server, &boss, &room, "!admin users set-role dana admin").await;
    assert!(
        promoted.contains("@dana:localhost is now admin"),
        "{promoted}"
    );
    // A new admin is invited without anyone asking.
    assert_eq!(invited_to_admin_room(&server, &dana).await, room);
    let info = command(&server, &boss, &room, "!admin users info dana").await;
    assert!(info.contains("role: admin"), "{info}");

    let rooms = command(&server, &boss, &room, "!admin rooms list").await;
    assert!(rooms.contains("Sori admins"), "{rooms}");
    let version = command(&server, &boss, &room, "!admin server version").await;
    assert!(version.contains("localhost runs Sori"), "{version}");
    let stats = command(&server, &boss, &room, "!admin server stats").await;
    assert!(
        stats.contains("active users: 3") && stats.contains("rooms: 1"),
        "{stats}"
    );

    let reset = command(&server, &boss, &room, "!admin users reset-password dana").await;
    let password = reset
        .split("New password for @dana:localhost: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{reset}"))
        .to_owned();
    assert_error_status(&server, dana.token()).await;
    login(&server, "dana", &password).await;

    // Wrong commands get their usage; nothing runs.
    for wrong in [
        "!admin frobnicate",
        "!admin users info",
        "!admin users info dana extra",
        "!admin users set-role dana king",
        "!admin users create \"unclosed",
    ] {
        let answer = command(&server, &boss, &room, wrong).await;
        assert!(
            answer.contains("Usage") || answer.contains("error") || answer.contains("quote"),
            "{wrong}: {answer}"
        );
    }
    let failed = command(
        &server,
        &boss,
        &room,
        "!admin rooms delete #admins:localhost",
    )
    .await;
    assert!(
        failed.contains("The admin room cannot be deleted"),
        "{failed}"
    );
    let failed = command(
        &server,
        &boss,
        &room,
        "!admin media quarantine mxc://localhost/nope",
    )
    .await;
    assert!(failed.contains("Failed"), "{failed}");
    let failed = command(&server, &boss, &room, "!admin users info @ghost:localhost").await;
    assert!(failed.contains("No such user"), "{failed}");
    let long = format!("!admin users info {}", "x".repeat(10_000));
    let refused = command(&server, &boss, &room, &long).await;
    assert!(
        refused.contains("Refused: commands are at most"),
        "{refused}"
    );

    // A member who is not an admin gets a refusal, not a result.
    let carol = register(&server, "carol").await;
    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            boss.token(),
            &json!({"user_id": carol.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    join(&server, &carol, &room).await;
    let refused = command(&server, &carol, &room, "!admin users set-role carol admin").await;
    assert!(refused.contains("Refused: only server admins"), "{refused}");
    // An auditor reads through the API but runs no commands either.
    let (status, _) = server
        .put(
            "/_sori/admin/v1/users/@carol:localhost/role",
            boss.token(),
            &json!({"role": "auditor"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let refused = command(&server, &carol, &room, "!admin users list").await;
    assert!(refused.contains("Refused: only server admins"), "{refused}");
    let (_, role) = server
        .get("/_sori/admin/v1/users/@carol:localhost/role", boss.token())
        .await;
    assert_eq!(role["role"], "auditor");
    let gone = command(&server, &boss, &room, "!admin users deactivate carol").await;
    assert!(gone.contains("Deactivated @carol:localhost"), "{gone}");

    // Every command is audited, refused ones too.
    let (_, audit) = server
        .get(
            "/_sori/admin/v1/audit?action=admin_command&limit=100",
            boss.token(),
        )
        .await;
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 22, "{audit}");
    assert!(
        entries
            .iter()
            .any(|e| e["actor"] == carol.user_id && e["details"]["outcome"] == "refused")
    );
    assert!(entries.iter().any(|e| e["details"]["outcome"] == "usage"));
    assert!(entries.iter().any(|e| e["details"]["outcome"] == "help"));
    let (_, role_changes) = server
        .get("/_sori/admin/v1/audit?action=role_change", boss.token())
        .await;
    assert_eq!(role_changes["entries"][0]["actor"], boss.user_id);

    // After a crash, nothing is answered twice, and new commands are answered.
    let before = notices(&server, &boss, &room).await.len();
    server.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(notices(&server, &boss, &room).await.len(), before);
    let version = command(&server, &boss, &room, "!admin server version").await;
    assert!(version.contains("Sori"), "{version}");
    assert_eq!(notices(&server, &boss, &room).await.len(), before + 1);
}

/// The access token of a user whose password was reset no longer works.
async fn assert_error_status(server: &TestServer, token: Option<&str>) {
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

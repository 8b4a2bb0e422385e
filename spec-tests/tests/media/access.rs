//! Who may download a file: its uploader, those who can see an event that refers to it,
//! everyone for avatars; the rest get the same 404 as for a file that does not exist.

use reqwest::StatusCode;
use serde_json::json;
use spec_tests::{TestServer, User, assert_error, create_room, join, register};

use super::{download, error_of, upload_ok};

async fn may_fetch(server: &TestServer, user: &User, media_id: &str) -> bool {
    let response = download(server, Some(user), media_id, None).await;
    match response.status() {
        StatusCode::OK => true,
        _ => {
            assert_error(
                &error_of(response).await,
                StatusCode::NOT_FOUND,
                "M_NOT_FOUND",
            );
            false
        }
    }
}

async fn send(
    server: &TestServer,
    user: &User,
    room: &str,
    txn: &str,
    content: serde_json::Value,
) -> String {
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
            user.token(),
            &content,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn files_follow_the_rooms_they_were_posted_in() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let dave = register(&server, "dave").await;
    // History is visible only from joining on: newcomers do not get older files.
    let room = create_room(
        &server,
        &alice,
        json!({"preset": "public_chat", "initial_state": [
            {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}
        ]}),
    )
    .await;
    join(&server, &bob, &room).await;

    let photo = upload_ok(&server, &alice, b"jpeg bytes", "image/jpeg").await;
    assert!(may_fetch(&server, &alice, &photo).await, "the uploader may");
    assert!(!may_fetch(&server, &bob, &photo).await, "not posted yet");
    let event = send(
        &server,
        &alice,
        &room,
        "p1",
        json!({"msgtype": "m.image", "body": "photo.jpg", "url": format!("mxc://localhost/{photo}"),
               "info": {"mimetype": "image/jpeg"}}),
    )
    .await;
    assert!(
        may_fetch(&server, &bob, &photo).await,
        "a member who saw it may"
    );
    assert!(
        !may_fetch(&server, &carol, &photo).await,
        "an outsider may not"
    );
    join(&server, &dave, &room).await;
    assert!(
        !may_fetch(&server, &dave, &photo).await,
        "a newcomer who cannot see the event may not"
    );
    // Unknown files answer the same as forbidden ones.
    assert!(!may_fetch(&server, &carol, "doesnotexist").await);

    // A redacted event no longer hands the file out.
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/redact/{event}/r1"),
            alice.token(),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!may_fetch(&server, &bob, &photo).await);
    assert!(may_fetch(&server, &alice, &photo).await);
}

#[tokio::test]
async fn avatars_are_for_everyone_and_encrypted_attachments_for_the_room() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;

    // A profile avatar: any local user may fetch it, even without a shared room.
    let face = upload_ok(&server, &alice, b"face", "image/png").await;
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/profile/{}/avatar_url", alice.user_id),
            alice.token(),
            &json!({"avatar_url": format!("mxc://localhost/{face}")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(may_fetch(&server, &carol, &face).await);
    // Someone else's file cannot be made public by naming it as one's own avatar.
    let secret = upload_ok(&server, &alice, b"secret", "image/png").await;
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/profile/{}/avatar_url", bob.user_id),
            bob.token(),
            &json!({"avatar_url": format!("mxc://localhost/{secret}")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!may_fetch(&server, &carol, &secret).await);

    // A room avatar.
    let logo = upload_ok(&server, &alice, b"logo", "image/png").await;
    let room = create_room(&server, &alice, json!({"preset": "private_chat"})).await;
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.avatar/"),
            alice.token(),
            &json!({"url": format!("mxc://localhost/{logo}")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(may_fetch(&server, &carol, &logo).await);

    // An encrypted attachment: the event that names it is ciphertext, so the file goes to
    // those who can see an encrypted event its uploader sent after uploading.
    let (status, _) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            alice.token(),
            &json!({"user_id": bob.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    join(&server, &bob, &room).await;
    let attachment = upload_ok(
        &server,
        &alice,
        b"ciphertext bytes",
        "application/octet-stream",
    )
    .await;
    assert!(
        !may_fetch(&server, &bob, &attachment).await,
        "nothing sent yet"
    );
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.encrypted/e1"),
            alice.token(),
            &json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEn...",
                    "sender_key": "abc", "session_id": "def", "device_id": "DEV"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(may_fetch(&server, &bob, &attachment).await);
    assert!(!may_fetch(&server, &carol, &attachment).await);
}

#[tokio::test]
async fn a_file_shared_through_a_to_device_message_goes_to_its_recipient() {
    // A room key bundle (history shared on invite) is uploaded, then announced to the invitee
    // in an encrypted to-device message: no room event ever refers to it.
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let bundle = upload_ok(
        &server,
        &alice,
        b"encrypted bundle",
        "application/octet-stream",
    )
    .await;
    assert!(!may_fetch(&server, &bob, &bundle).await, "nothing sent yet");

    let (status, body) = server
        .put(
            "/_matrix/client/v3/sendToDevice/m.room.encrypted/bundle-1",
            alice.token(),
            &json!({"messages": {bob.user_id.as_str(): {"*": {"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": {}}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(may_fetch(&server, &bob, &bundle).await);
    assert!(
        !may_fetch(&server, &carol, &bundle).await,
        "not the recipient"
    );

    // Only messages after the upload count: an older file stays closed to Bob.
    let later = upload_ok(
        &server,
        &alice,
        b"uploaded after",
        "application/octet-stream",
    )
    .await;
    assert!(!may_fetch(&server, &bob, &later).await);
}

#[tokio::test]
async fn with_any_user_access_every_local_user_may_download() {
    let server = TestServer::start_with(spec_tests::ServerOptions {
        extra_toml: "[media]\naccess = \"any_user\"\n".into(),
        ..Default::default()
    })
    .await;
    let alice = register(&server, "alice").await;
    let carol = register(&server, "carol").await;
    let file = upload_ok(&server, &alice, b"memo", "text/plain").await;
    assert!(may_fetch(&server, &carol, &file).await);
}

//! Virus scanning with a real `clamd`: infected uploads are refused and nothing of them is kept;
//! an unreachable scanner refuses uploads (fail-closed) or lets them through (fail-open).

use reqwest::StatusCode;
use spec_tests::services::{Clamd, EICAR};
use spec_tests::{ServerOptions, TestServer, assert_error, free_port, register};

use super::{download, stored_files, temp_files, upload, upload_ok};

fn scanned_by(address: &str, fail_closed: bool) -> ServerOptions {
    ServerOptions {
        extra_toml: format!(
            "[media.clamav]\naddress = \"{address}\"\nfail_closed = {fail_closed}\n"
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn infected_files_are_refused_and_clean_ones_stored() {
    let clamd = Clamd::start();
    let server = TestServer::start_with(scanned_by(&clamd.address(), true)).await;
    let alice = register(&server, "alice").await;

    let (status, body) = upload(
        &server,
        &alice,
        EICAR.to_vec(),
        "text/plain",
        Some("eicar.com"),
    )
    .await;
    assert_error(
        &(status, body),
        StatusCode::FORBIDDEN,
        "MCS_MEDIA_NOT_CLEAN",
    );
    assert_eq!(
        stored_files(&server),
        0,
        "nothing of an infected file is kept"
    );
    assert_eq!(temp_files(&server), 0);

    // The same through an async upload: the id stays empty.
    let (_, created) = server
        .post(
            "/_matrix/media/v1/create",
            alice.token(),
            &serde_json::json!({}),
        )
        .await;
    let media_id = created["content_uri"]
        .as_str()
        .unwrap()
        .trim_start_matches("mxc://localhost/")
        .to_owned();
    let response = server
        .http
        .put(server.url(&format!("/_matrix/media/v3/upload/localhost/{media_id}")))
        .bearer_auth(&alice.access_token)
        .body(EICAR)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = download(
        &server,
        Some(&alice),
        &format!("{media_id}?timeout_ms=0"),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);

    // Clean files, small and spanning several chunks to clamd, go through.
    let clean = upload_ok(&server, &alice, b"quarterly figures", "text/plain").await;
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let big_id = upload_ok(&server, &alice, &big, "application/octet-stream").await;
    let response = download(&server, Some(&alice), &clean, None).await;
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        b"quarterly figures"
    );
    let response = download(&server, Some(&alice), &big_id, None).await;
    assert_eq!(response.bytes().await.unwrap().len(), big.len());
}

#[tokio::test]
async fn an_unreachable_scanner_closes_or_opens_uploads_as_configured() {
    // Nothing listens on this loopback port.
    let nowhere = format!("tcp://127.0.0.1:{}", free_port());
    let closed = TestServer::start_with(scanned_by(&nowhere, true)).await;
    let alice = register(&closed, "alice").await;
    let (status, body) = upload(&closed, &alice, b"memo".to_vec(), "text/plain", None).await;
    assert_error(
        &(status, body),
        StatusCode::SERVICE_UNAVAILABLE,
        "M_UNAVAILABLE",
    );
    assert_eq!(stored_files(&closed), 0);

    let open = TestServer::start_with(scanned_by(&nowhere, false)).await;
    let bob = register(&open, "bob").await;
    upload_ok(&open, &bob, b"memo", "text/plain").await;
}

//! Limits and bad input: sizes, daily allowance, names, ids, bodies cut short.

use std::time::{Duration, Instant};

use reqwest::{StatusCode, header};
use serde_json::Value;
use spec_tests::{ServerOptions, TestServer, User, assert_error, register};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{download, error_of, stored_files, temp_files, upload, upload_ok};

fn limited(toml: &str) -> ServerOptions {
    ServerOptions {
        extra_toml: format!("[media]\n{toml}\n"),
        ..Default::default()
    }
}

/// Waits (briefly) until no upload is in progress any more.
async fn no_uploads_in_progress(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while temp_files(server) > 0 {
        assert!(Instant::now() < deadline, "a temporary file stayed behind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sizes_are_limited_where_the_limit_is_crossed() {
    let server = TestServer::start_with(limited("max_upload_size = 1000")).await;
    let alice = register(&server, "alice").await;
    upload_ok(&server, &alice, &[7u8; 1000], "application/octet-stream").await;
    let (status, body) = upload(
        &server,
        &alice,
        vec![7u8; 1001],
        "application/octet-stream",
        None,
    )
    .await;
    assert_error(
        &(status, body),
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    // Without a Content-Length (chunked), the limit stops the stream itself.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![1u8; 100])).collect();
    let response = server
        .http
        .post(server.url("/_matrix/media/v3/upload"))
        .bearer_auth(&alice.access_token)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_error(
        &error_of(response).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    // An empty file is a file.
    let empty = upload_ok(&server, &alice, b"", "text/plain").await;
    let response = download(&server, Some(&alice), &empty, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap().is_empty());
    no_uploads_in_progress(&server).await;
    assert_eq!(
        stored_files(&server),
        2,
        "only the accepted files are stored"
    );
}

#[tokio::test]
async fn the_daily_allowance_is_counted_per_user() {
    let server = TestServer::start_with(limited("daily_upload_bytes = 1500")).await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    upload_ok(&server, &alice, &[1u8; 1000], "application/octet-stream").await;
    let response = server
        .http
        .post(server.url("/_matrix/media/v3/upload"))
        .bearer_auth(&alice.access_token)
        .body(vec![2u8; 600])
        .send()
        .await
        .unwrap();
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let (status, body) = error_of(response).await;
    assert_error(
        &(status, body.clone()),
        StatusCode::TOO_MANY_REQUESTS,
        "M_LIMIT_EXCEEDED",
    );
    assert!(body["retry_after_ms"].as_u64().unwrap() <= 24 * 3600 * 1000);
    assert!(retry_after.is_some());
    upload_ok(&server, &alice, &[3u8; 500], "application/octet-stream").await;
    upload_ok(&server, &bob, &[4u8; 1500], "application/octet-stream").await;
}

#[tokio::test]
async fn names_types_ids_and_servers_that_make_no_sense_are_refused() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let long = "x".repeat(10 * 1024);
    for name in ["../../etc/passwd", "a\0b", long.as_str(), "dir/file"] {
        let (status, body) = upload(&server, &alice, b"x".to_vec(), "text/plain", Some(name)).await;
        assert_error(&(status, body), StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    let response = server
        .http
        .post(server.url("/_matrix/media/v3/upload"))
        .bearer_auth(&alice.access_token)
        .header(header::CONTENT_TYPE, "a".repeat(300))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(
        &error_of(response).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_eq!(stored_files(&server), 0);

    let media_id = upload_ok(&server, &alice, b"ok", "text/plain").await;
    for path in [
        "..%2F..%2Fetc%2Fpasswd".to_owned(),
        "%2E%2E".to_owned(),
        "a%00b".to_owned(),
        format!("{media_id}%2Fextra"),
        format!("{media_id}/..%2F..%2Fx"),
    ] {
        let response = download(&server, Some(&alice), &path, None).await;
        let status = response.status();
        assert!(
            status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST,
            "{path}: {status}"
        );
        let body: Value = response.json().await.unwrap();
        assert!(body["errcode"].is_string(), "{path}: {body}");
    }
    let response = server
        .http
        .get(server.url(&format!(
            "/_matrix/client/v1/media/download/elsewhere.example/{media_id}"
        )))
        .bearer_auth(&alice.access_token)
        .send()
        .await
        .unwrap();
    assert_error(
        &error_of(response).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let response = server
        .http
        .put(server.url(&format!(
            "/_matrix/media/v3/upload/elsewhere.example/{media_id}"
        )))
        .bearer_auth(&alice.access_token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(
        &error_of(response).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

/// Sends a raw HTTP/1.1 upload over a fresh connection and returns what came back, if anything.
async fn raw_upload(
    server: &TestServer,
    user: &User,
    content_length: usize,
    body: &[u8],
    close: bool,
) -> String {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    let head = format!(
        "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {content_length}\r\nConnection: close\r\n\r\n",
        user.access_token
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body).await.unwrap();
    if close {
        // The client goes away mid-upload.
        drop(socket);
        return String::new();
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn bodies_cut_short_or_lying_leave_nothing_behind() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    // The client promises a megabyte, sends a little and disconnects.
    raw_upload(&server, &alice, 1_000_000, &[9u8; 50_000], true).await;
    no_uploads_in_progress(&server).await;
    assert_eq!(stored_files(&server), 0);

    // A Content-Length smaller than the body: exactly the promised bytes are the file.
    let answer = raw_upload(&server, &alice, 5, b"helloEXTRA-BYTES", false).await;
    let json_start = answer.find('{').expect("a JSON answer");
    let json_end = answer[json_start..].find('}').unwrap() + json_start + 1;
    let body: Value = serde_json::from_str(&answer[json_start..json_end]).unwrap();
    let uri = body["content_uri"].as_str().expect("an upload answer");
    let media_id = uri.strip_prefix("mxc://localhost/").unwrap();
    let response = download(&server, Some(&alice), media_id, None).await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"hello");
    assert_eq!(stored_files(&server), 1);

    // The server is unharmed.
    upload_ok(&server, &alice, b"still fine", "text/plain").await;
}

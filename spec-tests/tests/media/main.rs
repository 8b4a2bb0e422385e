//! Media over HTTP: streamed uploads and downloads, async uploads, who may download, limits,
//! and what bad input gets.

mod access;
mod limits;
mod previews;
mod s3;
mod scanning;
mod thumbnails;

use reqwest::header;
use serde_json::{Value, json};
use spec_tests::{StatusCode, TestServer, User, assert_error, register};

/// Uploads `bytes` and returns the status and JSON answer.
pub async fn upload(
    server: &TestServer,
    user: &User,
    bytes: Vec<u8>,
    content_type: &str,
    filename: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = server
        .http
        .post(server.url("/_matrix/media/v3/upload"))
        .bearer_auth(&user.access_token)
        .header(header::CONTENT_TYPE, content_type)
        .body(bytes);
    if let Some(name) = filename {
        request = request.query(&[("filename", name)]);
    }
    let response = request.send().await.expect("upload sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Uploads and returns the media id (the part after `mxc://localhost/`).
pub async fn upload_ok(
    server: &TestServer,
    user: &User,
    bytes: &[u8],
    content_type: &str,
) -> String {
    let (status, body) = upload(server, user, bytes.to_vec(), content_type, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uri = body["content_uri"].as_str().unwrap();
    uri.strip_prefix("mxc://localhost/")
        .unwrap_or_else(|| panic!("an mxc URI of this server: {uri}"))
        .to_owned()
}

/// `GET` of an authenticated download path (`media_id` or `media_id/name`) as `user`.
pub async fn download(
    server: &TestServer,
    user: Option<&User>,
    path: &str,
    range: Option<&str>,
) -> reqwest::Response {
    let mut request = server.http.get(server.url(&format!(
        "/_matrix/client/v1/media/download/localhost/{path}"
    )));
    if let Some(user) = user {
        request = request.bearer_auth(&user.access_token);
    }
    if let Some(range) = range {
        request = request.header(header::RANGE, range);
    }
    request.send().await.expect("download sent")
}

/// The status and JSON error of a response that should be a Matrix error.
pub async fn error_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The files under the server's content directory.
pub fn stored_files(server: &TestServer) -> usize {
    fn count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            count(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    count(&server.data_dir().join("media").join("content"))
}

/// Uploads in progress (temporary files).
pub fn temp_files(server: &TestServer) -> usize {
    std::fs::read_dir(server.data_dir().join("media").join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_file_goes_up_and_comes_back_with_safe_headers_and_ranges() {
    let mut server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    // Bigger than [limits] max_request_bytes (4 MiB): uploads are exempt from it.
    let bytes: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (status, body) = upload(
        &server,
        &alice,
        bytes.clone(),
        "application/pdf",
        Some("분기 보고서.pdf"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uri = body["content_uri"].as_str().unwrap();
    let media_id = uri.strip_prefix("mxc://localhost/").unwrap().to_owned();

    let response = download(&server, Some(&alice), &media_id, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers[header::CONTENT_TYPE], "application/pdf");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        "attachment; filename*=utf-8''%EB%B6%84%EA%B8%B0%20%EB%B3%B4%EA%B3%A0%EC%84%9C.pdf"
    );
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("sandbox; default-src 'none'")
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::ACCEPT_RANGES], "bytes");
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // A file name in the path replaces the stored one; images are shown inline.
    let png_id = upload_ok(&server, &alice, b"\x89PNG not really", "image/png").await;
    let response = download(
        &server,
        Some(&alice),
        &format!("{png_id}/picture.png"),
        None,
    )
    .await;
    assert_eq!(
        response.headers()[header::CONTENT_DISPOSITION],
        "inline; filename*=utf-8''picture.png"
    );
    // HTML never renders inline.
    let html_id = upload_ok(&server, &alice, b"<script>alert(1)</script>", "text/html").await;
    let response = download(&server, Some(&alice), &html_id, None).await;
    assert_eq!(
        response.headers()[header::CONTENT_DISPOSITION],
        "attachment"
    );

    // Ranges.
    let response = download(&server, Some(&alice), &media_id, Some("bytes=10-19")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.headers()[header::CONTENT_RANGE],
        format!("bytes 10-19/{}", bytes.len())
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), &bytes[10..20]);
    let response = download(&server, Some(&alice), &media_id, Some("bytes=-5")).await;
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        &bytes[bytes.len() - 5..]
    );
    let response = download(&server, Some(&alice), &media_id, Some("bytes=99999999-")).await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        response.headers()[header::CONTENT_RANGE],
        format!("bytes */{}", bytes.len())
    );

    // The same bytes are stored once, whatever their name or type.
    let before = stored_files(&server);
    let again = upload_ok(&server, &alice, &bytes, "application/octet-stream").await;
    assert_ne!(again, media_id, "each upload gets its own id");
    assert_eq!(stored_files(&server), before);
    assert_eq!(temp_files(&server), 0);

    // The configuration, and everything still there after a kill.
    let (status, config) = server
        .get("/_matrix/client/v1/media/config", alice.token())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["m.upload.size"], 314572800);
    server.restart().await;
    let response = download(&server, Some(&alice), &media_id, Some("bytes=0-3")).await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), &bytes[..4]);
}

#[tokio::test]
async fn the_unauthenticated_endpoints_are_closed_unless_allowed() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let media_id = upload_ok(&server, &alice, b"hello", "text/plain").await;
    for path in [
        format!("/_matrix/media/v3/download/localhost/{media_id}"),
        format!("/_matrix/media/r0/download/localhost/{media_id}/a.txt"),
    ] {
        assert_error(
            &server.get(&path, None).await,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        );
    }
    assert_error(
        &error_of(download(&server, None, &media_id, None).await).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );

    let open = TestServer::start_with(spec_tests::ServerOptions {
        extra_toml: "[media]\nlegacy_unauthenticated = true\n".into(),
        ..Default::default()
    })
    .await;
    let bob = register(&open, "bob").await;
    let media_id = upload_ok(&open, &bob, b"hello", "text/plain").await;
    let response = open
        .http
        .get(open.url(&format!("/_matrix/media/v3/download/localhost/{media_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"hello");
}

#[tokio::test]
async fn an_async_upload_fills_its_id_once() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let (status, created) = server
        .post("/_matrix/media/v1/create", alice.token(), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let uri = created["content_uri"].as_str().unwrap();
    let media_id = uri.strip_prefix("mxc://localhost/").unwrap().to_owned();
    assert!(created["unused_expires_at"].as_u64().unwrap() > 0);

    // Not there yet: a download waits as long as asked, then says so.
    let response = download(
        &server,
        Some(&alice),
        &format!("{media_id}?timeout_ms=200"),
        None,
    )
    .await;
    assert_error(
        &error_of(response).await,
        StatusCode::GATEWAY_TIMEOUT,
        "M_NOT_YET_UPLOADED",
    );

    let put = |user: &User, id: &str, body: &'static [u8]| {
        server
            .http
            .put(server.url(&format!("/_matrix/media/v3/upload/localhost/{id}")))
            .bearer_auth(&user.access_token)
            .header(header::CONTENT_TYPE, "text/plain")
            .query(&[("filename", "note.txt")])
            .body(body)
            .send()
    };
    // Only its creator may fill it; unknown ids are not found.
    assert_error(
        &error_of(put(&bob, &media_id, b"mine").await.unwrap()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &error_of(put(&alice, "nope", b"x").await.unwrap()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    // A download waiting while the upload arrives gets the file.
    let waiting = download(&server, Some(&alice), &media_id, None);
    let (response, uploaded) = tokio::join!(waiting, async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        put(&alice, &media_id, b"first").await.unwrap()
    });
    assert_eq!(uploaded.status(), StatusCode::OK);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_DISPOSITION],
        "inline; filename*=utf-8''note.txt"
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"first");

    // Once filled, never again.
    assert_error(
        &error_of(put(&alice, &media_id, b"second").await.unwrap()).await,
        StatusCode::CONFLICT,
        "M_CANNOT_OVERWRITE_MEDIA",
    );
    let response = download(&server, Some(&alice), &media_id, None).await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"first");

    // A user may hold only so many empty ids.
    let mut refused = None;
    for _ in 0..20 {
        let (status, body) = server
            .post("/_matrix/media/v1/create", bob.token(), &json!({}))
            .await;
        if status != StatusCode::OK {
            refused = Some((status, body));
            break;
        }
    }
    assert_error(
        &refused.expect("the pending limit applies"),
        StatusCode::TOO_MANY_REQUESTS,
        "M_LIMIT_EXCEEDED",
    );
}

#[tokio::test]
async fn the_load_generator_moves_files_and_thumbnails() {
    let server = TestServer::start().await;
    let output = tokio::process::Command::new(spec_tests::workspace_binary("sori-load"))
        .args([
            "media",
            "--url",
            &server.base_url,
            "--size-mib",
            "3",
            "--concurrency",
            "3",
            "--concurrent-mib",
            "1",
            "--thumbnails",
            "2",
            "--json",
        ])
        .output()
        .await
        .expect("run sori-load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(summary["upload_mb_s"].as_f64().unwrap() > 0.0, "{summary}");
    assert!(
        summary["thumbnail_stored_p50_ms"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
}

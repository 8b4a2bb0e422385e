//! The S3 backend against a real S3-compatible server: multipart uploads, streamed and ranged
//! downloads, contents stored once, thumbnails, and everything still there after a kill.

use reqwest::{StatusCode, header};
use spec_tests::services::S3Server;
use spec_tests::{ServerOptions, TestServer, register};

use super::{download, stored_files, upload_ok};

#[tokio::test]
async fn files_live_in_the_bucket() {
    let s3 = S3Server::start();
    let mut server = TestServer::start_with(ServerOptions {
        extra_toml: s3.media_toml(),
        ..Default::default()
    })
    .await;
    let alice = register(&server, "alice").await;

    // 12 MB: three parts of a multipart upload.
    let big: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect();
    let big_id = upload_ok(&server, &alice, &big, "application/octet-stream").await;
    let small_id = upload_ok(&server, &alice, b"small note", "text/plain").await;
    assert_eq!(s3.objects(), 2);
    assert_eq!(stored_files(&server), 0, "nothing is kept on local disk");

    let response = download(&server, Some(&alice), &big_id, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().as_ref(), big.as_slice());
    let response = download(
        &server,
        Some(&alice),
        &big_id,
        Some("bytes=6000000-6000009"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        &big[6_000_000..6_000_010]
    );

    // The same bytes again: a new id, no new object.
    upload_ok(&server, &alice, &big, "application/octet-stream").await;
    assert_eq!(s3.objects(), 2);

    // Thumbnails are stored in the bucket too.
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(300, 200, image::Rgb([1, 2, 3])))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let picture = upload_ok(&server, &alice, &png, "image/png").await;
    let response = server
        .http
        .get(server.url(&format!(
            "/_matrix/client/v1/media/thumbnail/localhost/{picture}?width=30&height=30"
        )))
        .bearer_auth(&alice.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(s3.objects(), 4);

    server.restart().await;
    let response = download(&server, Some(&alice), &small_id, None).await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"small note");
}

//! Thumbnails: the asked size, stored after the first request, and refusals for what is not a
//! picture, too big a picture, or sizes that make no sense.

use std::io::Cursor;

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::{
    AnimationDecoder, DynamicImage, Frame, ImageFormat, ImageReader, Rgb, RgbImage, Rgba, RgbaImage,
};
use reqwest::{StatusCode, header};
use spec_tests::{TestServer, User, assert_error, register};

use super::{error_of, stored_files, upload_ok};

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .unwrap();
    bytes
}

/// A PNG whose header claims `width`×`height` but holds almost nothing: decoding it would
/// need gigabytes.
fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    // A zlib stream of a few zero bytes, far short of the picture.
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

async fn thumbnail(
    server: &TestServer,
    user: &User,
    media_id: &str,
    query: &str,
) -> reqwest::Response {
    server
        .http
        .get(server.url(&format!(
            "/_matrix/client/v1/media/thumbnail/localhost/{media_id}?{query}"
        )))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap()
}

fn dimensions(bytes: &[u8]) -> (u32, u32) {
    ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .unwrap()
        .into_dimensions()
        .unwrap()
}

#[tokio::test]
async fn thumbnails_come_at_the_asked_size_and_are_kept() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let photo = upload_ok(&server, &alice, &png(1600, 1200), "image/png").await;
    let files_before = stored_files(&server);

    let response = thumbnail(&server, &alice, &photo, "width=320&height=320&method=scale").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(response.headers()[header::CONTENT_DISPOSITION], "inline");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(dimensions(&bytes), (320, 240));
    assert_eq!(
        stored_files(&server),
        files_before + 1,
        "the thumbnail was stored"
    );

    // The second time it comes from storage: the same bytes, nothing new stored.
    let again = thumbnail(&server, &alice, &photo, "width=320&height=320&method=scale").await;
    assert_eq!(again.bytes().await.unwrap(), bytes);
    assert_eq!(stored_files(&server), files_before + 1);

    let cropped = thumbnail(&server, &alice, &photo, "width=96&height=96&method=crop").await;
    assert_eq!(dimensions(&cropped.bytes().await.unwrap()), (96, 96));
    // Never larger than the original; asks past the maximum side get the maximum.
    let small = upload_ok(&server, &alice, &png(50, 40), "image/png").await;
    let response = thumbnail(&server, &alice, &small, "width=800&height=600").await;
    assert_eq!(dimensions(&response.bytes().await.unwrap()), (50, 40));
    let response = thumbnail(&server, &alice, &photo, "width=100000&height=100000").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(dimensions(&response.bytes().await.unwrap()), (1600, 1200));

    // Animated GIFs stay animated when asked.
    let mut gif = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut gif);
        encoder.set_repeat(Repeat::Infinite).unwrap();
        let frames = (0..4)
            .map(|i| Frame::new(RgbaImage::from_pixel(200, 100, Rgba([i * 60, 20, 20, 255]))));
        encoder.encode_frames(frames).unwrap();
    }
    let moving = upload_ok(&server, &alice, &gif, "image/gif").await;
    let response = thumbnail(&server, &alice, &moving, "width=50&height=50&animated=true").await;
    assert_eq!(response.headers()[header::CONTENT_TYPE], "image/gif");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(dimensions(&bytes), (50, 25));
    let frames = GifDecoder::new(Cursor::new(bytes.as_ref()))
        .unwrap()
        .into_frames()
        .count();
    assert_eq!(frames, 4);
    let response = thumbnail(&server, &alice, &moving, "width=50&height=50").await;
    assert_ne!(response.headers()[header::CONTENT_TYPE], "image/gif");
}

#[tokio::test]
async fn what_has_no_thumbnail_is_refused_and_the_server_carries_on() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let photo = upload_ok(&server, &alice, &png(64, 64), "image/png").await;
    for query in [
        "width=0&height=10",
        "width=-5&height=10",
        "width=99999999999999999999999&height=10",
        "width=ten&height=10",
        "width=10&height=10&method=stretch",
        "width=10&height=10&animated=maybe",
    ] {
        let response = thumbnail(&server, &alice, &photo, query).await;
        assert_error(
            &error_of(response).await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        );
    }
    let response = thumbnail(&server, &alice, &photo, "height=10").await;
    assert_error(
        &error_of(response).await,
        StatusCode::BAD_REQUEST,
        "M_MISSING_PARAM",
    );

    // Not pictures, whatever they claim.
    let fake = upload_ok(&server, &alice, b"%PDF-1.7 a document", "image/png").await;
    let response = thumbnail(&server, &alice, &fake, "width=32&height=32").await;
    assert_error(
        &error_of(response).await,
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN",
    );
    let text = upload_ok(&server, &alice, b"hello", "text/plain").await;
    let response = thumbnail(&server, &alice, &text, "width=32&height=32").await;
    assert_error(
        &error_of(response).await,
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN",
    );

    // A decompression bomb: a few bytes claiming 20000x20000 pixels.
    let bomb = png_bomb(20000, 20000);
    assert!(bomb.len() < 200);
    let bomb_id = upload_ok(&server, &alice, &bomb, "image/png").await;
    let response = thumbnail(&server, &alice, &bomb_id, "width=32&height=32").await;
    assert_error(
        &error_of(response).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );

    // Thumbnails follow the file's access rules, and the legacy endpoint is closed.
    let response = thumbnail(&server, &bob, &photo, "width=32&height=32").await;
    assert_error(
        &error_of(response).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .get(
                &format!("/_matrix/media/v3/thumbnail/localhost/{photo}?width=32&height=32"),
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let response = thumbnail(&server, &alice, &photo, "width=32&height=32").await;
    assert_eq!(response.status(), StatusCode::OK);
}

//! Link previews against web pages served on loopback by the test itself: OpenGraph data and
//! pictures, caching, and the outbound guard refusing every loopback spelling, other schemes
//! and redirects into refused addresses. Only loopback addresses are ever connected to.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use spec_tests::{ServerOptions, TestServer, User, assert_error, register};
use tokio::io::AsyncWriteExt;

use super::download;

/// A page: status, content type (or a redirect target), body.
#[derive(Clone)]
struct Page {
    status: u16,
    content_type: &'static str,
    location: Option<String>,
    body: Vec<u8>,
    delay: Duration,
}

fn page(content_type: &'static str, body: impl Into<Vec<u8>>) -> Page {
    Page {
        status: 200,
        content_type,
        location: None,
        body: body.into(),
        delay: Duration::ZERO,
    }
}

fn redirect(to: String) -> Page {
    Page {
        status: 302,
        content_type: "text/html",
        location: Some(to),
        body: Vec::new(),
        delay: Duration::ZERO,
    }
}

/// A tiny web server on a loopback address that counts the requests it gets.
struct Site {
    address: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Site {
    async fn start(ip: IpAddr, pages: HashMap<String, Page>) -> Site {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let pages = Arc::new(pages);
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let pages = pages.clone();
                tokio::spawn(async move {
                    let Some(head) = spec_tests::read_request_head(&mut socket).await else {
                        return;
                    };
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let found = pages.get(&path).cloned().unwrap_or(Page {
                        status: 404,
                        ..page("text/plain", "not found")
                    });
                    tokio::time::sleep(found.delay).await;
                    let mut response = format!(
                        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                        found.status,
                        found.content_type,
                        found.body.len()
                    );
                    if let Some(location) = &found.location {
                        response.push_str(&format!("Location: {location}\r\n"));
                    }
                    response.push_str("\r\n");
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.write_all(&found.body).await;
                });
            }
        });
        Site { address, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
        width,
        height,
        image::Rgb([9, 9, 9]),
    ))
    .write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    bytes
}

async fn preview(server: &TestServer, user: &User, url: &str) -> (StatusCode, Value) {
    let response = server
        .http
        .get(server.url("/_matrix/client/v1/media/preview_url"))
        .query(&[("url", url)])
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A server with previews on that may reach `allowed` (and nothing else on loopback).
async fn previewing(allowed: &str) -> TestServer {
    TestServer::start_with(ServerOptions {
        extra_toml: format!(
            "[url_preview]\nenabled = true\n[outbound]\nip_range_whitelist = [\"{allowed}/32\"]\n"
        ),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn pages_preview_with_their_opengraph_data_and_picture() {
    let loopback2: IpAddr = "127.0.0.2".parse().unwrap();
    let article = r#"<html><head><title>ignored</title>
        <meta property="og:title" content="분기 실적 &amp; 전망">
        <meta property="og:description" content="3분기 매출이 늘었습니다">
        <meta property="og:site_name" content="사내 뉴스">
        <meta property="og:image" content="/cover.png"></head><body>…</body></html>"#;
    let mut euc_kr = b"<html><head><title>".to_vec();
    euc_kr.extend_from_slice(&[0xc8, 0xb8, 0xc0, 0xc7, 0xb7, 0xcf]);
    euc_kr.extend_from_slice(b"</title></head></html>");
    let mut big =
        "<html><head><meta property=\"og:title\" content=\"Big page\"></head><body>".to_owned();
    big.push_str(&"x".repeat(2 * 1024 * 1024));
    let mut pages: HashMap<String, Page> = HashMap::new();
    pages.insert("/article".into(), page("text/html; charset=utf-8", article));
    pages.insert("/cover.png".into(), page("image/png", png(120, 80)));
    pages.insert("/photo.png".into(), page("image/png", png(30, 20)));
    pages.insert("/euc-kr".into(), page("text/html; charset=euc-kr", euc_kr));
    pages.insert(
        "/plain".into(),
        page(
            "text/html",
            "<title>Only a title</title><meta name=\"description\" content=\"and a description\">",
        ),
    );
    pages.insert("/big".into(), page("text/html", big));
    pages.insert("/moved".into(), redirect("/article".into()));
    pages.insert(
        "/slow".into(),
        Page {
            delay: Duration::from_secs(5),
            ..page("text/html", "<title>late</title>")
        },
    );
    let site = Site::start(loopback2, pages).await;
    let server = previewing("127.0.0.2").await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;

    let (status, og) = preview(&server, &alice, &site.url("/article")).await;
    assert_eq!(status, StatusCode::OK, "{og}");
    assert_eq!(og["og:title"], "분기 실적 & 전망");
    assert_eq!(og["og:description"], "3분기 매출이 늘었습니다");
    assert_eq!(og["og:site_name"], "사내 뉴스");
    assert_eq!(og["og:image:width"], 120);
    assert_eq!(og["og:image:height"], 80);
    assert_eq!(og["og:image:type"], "image/png");
    assert!(og["matrix:image:size"].as_u64().unwrap() > 0);
    let image = og["og:image"].as_str().unwrap();
    let media_id = image.strip_prefix("mxc://localhost/").unwrap();
    // The picture of a public page is for every local user.
    let response = download(&server, Some(&bob), media_id, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        png(120, 80).as_slice()
    );

    // Asked again within the hour: answered from the cache, nothing fetched.
    let hits = site.hits();
    let (_, again) = preview(&server, &bob, &site.url("/article")).await;
    assert_eq!(again, og);
    assert_eq!(site.hits(), hits);

    let (_, og) = preview(&server, &alice, &site.url("/euc-kr")).await;
    assert_eq!(og["og:title"], "회의록");
    let (_, og) = preview(&server, &alice, &site.url("/plain")).await;
    assert_eq!(og["og:title"], "Only a title");
    assert_eq!(og["og:description"], "and a description");
    let (_, og) = preview(&server, &alice, &site.url("/photo.png")).await;
    assert_eq!(og["og:image:width"], 30);
    let (status, og) = preview(&server, &alice, &site.url("/big")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(og["og:title"], "Big page", "the first 512 KiB are read");
    let (_, og) = preview(&server, &alice, &site.url("/moved")).await;
    assert_eq!(
        og["og:title"], "분기 실적 & 전망",
        "redirects within reach are followed"
    );

    // Failures: a missing page, a page too slow; remembered as well.
    let (status, body) = preview(&server, &alice, &site.url("/missing")).await;
    assert_error(&(status, body), StatusCode::BAD_GATEWAY, "M_UNKNOWN");
    let hits = site.hits();
    let (status, _) = preview(&server, &alice, &site.url("/missing")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(site.hits(), hits, "the failure was remembered");
    let (status, body) = preview(&server, &alice, &site.url("/slow")).await;
    assert_error(&(status, body), StatusCode::BAD_GATEWAY, "M_UNKNOWN");
}

#[tokio::test]
async fn loopback_in_every_spelling_other_schemes_and_sneaky_redirects_are_refused() {
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let target = Site::start(
        loopback,
        HashMap::from([(
            "/secret".to_owned(),
            page("text/html", "<title>internal</title>"),
        )]),
    )
    .await;
    let port = target.address.port();
    let mut pages = HashMap::new();
    pages.insert("/to-loopback".to_owned(), redirect(target.url("/secret")));
    pages.insert(
        "/to-metadata".to_owned(),
        redirect("http://169.254.169.254/latest/meta-data/".to_owned()),
    );
    for n in 0..5 {
        pages.insert(format!("/hop{n}"), redirect(format!("/hop{}", n + 1)));
    }
    pages.insert("/hop5".to_owned(), page("text/html", "<title>far</title>"));
    let outside = Site::start("127.0.0.2".parse().unwrap(), pages).await;
    // Only 127.0.0.2 stands for "the internet" here.
    let server = previewing("127.0.0.2").await;
    let alice = register(&server, "alice").await;

    for url in [
        format!("http://127.0.0.1:{port}/secret"),
        format!("http://127.1:{port}/secret"),
        format!("http://0177.0.0.1:{port}/secret"),
        format!("http://0x7f000001:{port}/secret"),
        format!("http://2130706433:{port}/secret"),
        format!("http://[::1]:{port}/secret"),
        format!("http://[::ffff:127.0.0.1]:{port}/secret"),
        format!("http://[::ffff:7f00:1]:{port}/secret"),
        format!("http://user:pass@127.0.0.1:{port}/secret"),
        format!("http://127.0.0.2@127.0.0.1:{port}/secret"),
        format!("http://localhost:{port}/secret"),
        outside.url("/to-loopback"),
        outside.url("/to-metadata"),
    ] {
        let (status, body) = preview(&server, &alice, &url).await;
        assert_error(&(status, body), StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    assert_eq!(target.hits(), 0, "nothing reached the loopback service");

    for url in [
        "file:///etc/passwd",
        "ftp://127.0.0.2/x",
        "gopher://127.0.0.2:70/",
        "javascript:alert(1)",
        "data:text/html,<title>x</title>",
        "/relative/path",
        "not a url",
    ] {
        let (status, body) = preview(&server, &alice, url).await;
        assert_error(&(status, body), StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    // At most three redirects.
    let (status, body) = preview(&server, &alice, &outside.url("/hop0")).await;
    assert_error(&(status, body), StatusCode::BAD_GATEWAY, "M_UNKNOWN");
    let (status, og) = preview(&server, &alice, &outside.url("/hop2")).await;
    assert_eq!(status, StatusCode::OK, "{og}");
    assert_eq!(og["og:title"], "far");
}

#[tokio::test]
async fn previews_are_off_unless_turned_on() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let (status, body) = preview(&server, &alice, "http://127.0.0.2/").await;
    assert_error(&(status, body), StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
    let response = server
        .http
        .get(server.url("/_matrix/client/v1/media/preview_url?url=http://127.0.0.2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

//! Media: uploads (`/_matrix/media/v3/upload`, async with `/_matrix/media/v1/create`),
//! authenticated downloads (`/_matrix/client/v1/media/download`), the media configuration, and
//! the deprecated unauthenticated downloads (off unless `[media] legacy_unauthenticated`).
//! Uploads and downloads stream: these handlers read and write bodies themselves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{RawPathParams, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use ruma::UserId;
use ruma::api::client::authenticated_media::{get_media_config, get_media_preview};
use ruma::api::client::media::{
    create_mxc_uri, get_media_config as legacy_config, get_media_preview as legacy_preview,
};
use ruma::api::error::ErrorKind;
use serde_json::json;

use crate::api::ruma::{Authenticated, Ruma};
use crate::error::{Error, Result};
use crate::media::store::ByteRange;
use crate::media::thumbnail::{Method, Wanted};
use crate::media::{Content, Described, Target, access};
use crate::services::Services;

/// Longest a download waits for an upload still in progress (the spec's default).
const MAX_WAIT: Duration = Duration::from_secs(20);

/// Types a browser may show inline; anything else is served as an attachment, so a file
/// cannot run as a page of this server (HTML, SVG, JavaScript, XML…).
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// The query parameters of a request, decoded.
fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// A file name as a client may give it: no path, no control characters, not too long.
fn check_filename(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
        || name == "."
        || name == ".."
    {
        return Err(Error::invalid_param(
            "A file name has 1 to 255 bytes, without path separators or control characters",
        ));
    }
    Ok(())
}

/// What the upload request says about the file.
fn described(headers: &HeaderMap, query: Option<&str>) -> Result<Described> {
    let content_type = match headers.get(header::CONTENT_TYPE) {
        None => "application/octet-stream".to_owned(),
        Some(value) => value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 255 && !t.chars().any(char::is_control))
            .ok_or_else(|| Error::invalid_param("Invalid Content-Type"))?
            .to_owned(),
    };
    let params = query_params(query);
    let filename = param(&params, "filename").map(str::to_owned);
    if let Some(name) = &filename {
        check_filename(name)?;
    }
    let declared_size = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    Ok(Described {
        content_type,
        filename,
        declared_size,
    })
}

/// `POST /_matrix/media/v3/upload`
pub async fn upload(
    State(services): State<Arc<Services>>,
    Authenticated(session): Authenticated,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let described = described(&headers, query.as_deref())?;
    let media_id = services
        .media
        .upload(&session.user_id, Target::New, described, body)
        .await?;
    tracing::info!(%media_id, "media uploaded");
    Ok(Json(json!({"content_uri": services.media.mxc(&media_id)})).into_response())
}

/// The `(server name, media id[, file name])` of a media path.
fn media_path(params: &RawPathParams) -> (String, String, Option<String>) {
    let mut server = String::new();
    let mut media_id = String::new();
    let mut file_name = None;
    for (key, value) in params.iter() {
        match key {
            "server_name" => server = value.to_owned(),
            "media_id" => media_id = value.to_owned(),
            "file_name" => file_name = Some(value.to_owned()),
            _ => {}
        }
    }
    (server, media_id, file_name)
}

/// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`: the upload to an id from `/create`.
pub async fn upload_to(
    State(services): State<Arc<Services>>,
    Authenticated(session): Authenticated,
    params: PathParams,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let (server, media_id, _) = params.as_ref().map(media_path).unwrap_or_default();
    if !services.media.is_local(&server) {
        return Err(Error::not_found("Unknown or expired media id"));
    }
    let described = described(&headers, query.as_deref())?;
    services
        .media
        .upload(
            &session.user_id,
            Target::Pending(&media_id),
            described,
            body,
        )
        .await?;
    tracing::info!(%media_id, "media uploaded");
    Ok(Json(json!({})).into_response())
}

/// `POST /_matrix/media/v1/create`
pub async fn create(
    services: Arc<Services>,
    req: Ruma<create_mxc_uri::v1::Request>,
) -> Result<create_mxc_uri::v1::Response> {
    let (media_id, expires_ms) = services.media.create(req.user_id()?)?;
    let uri = services.media.mxc(&media_id).into();
    let mut response = create_mxc_uri::v1::Response::new(uri);
    response.unused_expires_at = ruma::UInt::new(expires_ms).map(ruma::MilliSecondsSinceUnixEpoch);
    Ok(response)
}

fn upload_size(services: &Services) -> ruma::UInt {
    ruma::UInt::new(services.config.media.max_upload_size).unwrap_or(ruma::UInt::MAX)
}

/// `GET /_matrix/client/v1/media/config`
pub async fn config(
    services: Arc<Services>,
    _req: Ruma<get_media_config::v1::Request>,
) -> Result<get_media_config::v1::Response> {
    Ok(get_media_config::v1::Response::new(upload_size(&services)))
}

/// `GET /_matrix/media/v3/config` (deprecated, still authenticated)
#[allow(deprecated)]
pub async fn legacy_config(
    services: Arc<Services>,
    _req: Ruma<legacy_config::v3::Request>,
) -> Result<legacy_config::v3::Response> {
    Ok(legacy_config::v3::Response::new(upload_size(&services)))
}

/// `GET /_matrix/client/v1/media/preview_url`
pub async fn preview_url(
    services: Arc<Services>,
    req: Ruma<get_media_preview::v1::Request>,
) -> Result<get_media_preview::v1::Response> {
    let preview = services
        .previews
        .preview(&services, req.user_id()?, &req.body.url)
        .await?;
    get_media_preview::v1::Response::from_serialize(&preview)
        .map_err(|e| Error::internal(format!("preview: {e}")))
}

/// `GET /_matrix/media/v3/preview_url` (deprecated, still authenticated)
#[allow(deprecated)]
pub async fn legacy_preview_url(
    services: Arc<Services>,
    req: Ruma<legacy_preview::v3::Request>,
) -> Result<legacy_preview::v3::Response> {
    let preview = services
        .previews
        .preview(&services, req.user_id()?, &req.body.url)
        .await?;
    legacy_preview::v3::Response::from_serialize(&preview)
        .map_err(|e| Error::internal(format!("preview: {e}")))
}

/// The path parameters of a media path, or why axum could not read them.
type PathParams = Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>;

/// The deprecated unauthenticated endpoints answer only when the operator allows them.
fn legacy_allowed(services: &Services) -> Result<()> {
    if services.config.media.legacy_unauthenticated {
        Ok(())
    } else {
        Err(Error::not_found(
            "Use the authenticated media endpoints (/_matrix/client/v1/media)",
        ))
    }
}

/// A download for `user` (anyone, for `None`).
async fn download_for(
    services: &Services,
    user: Option<&UserId>,
    params: PathParams,
    query: Option<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let (server, media_id, file_name) = params.as_ref().map(media_path).unwrap_or_default();
    let content = uploaded(services, user, &server, &media_id, query.as_deref()).await?;
    if services.config.audit.media_downloads {
        let mut origin = crate::admin::audit::current_request();
        origin.actor = user.map(ToOwned::to_owned);
        services.audit.record(origin.record(
            "media_download",
            format!("mxc://{server}/{media_id}"),
            serde_json::json!({}),
        ))?;
    }
    serve(services, &content, file_name, &headers).await
}

/// A thumbnail for `user` (anyone, for `None`).
async fn thumbnail_for(
    services: &Services,
    user: Option<&UserId>,
    params: PathParams,
    query: Option<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let (server, media_id, _) = params.as_ref().map(media_path).unwrap_or_default();
    let wanted = wanted(services, query.as_deref())?;
    let content = uploaded(services, user, &server, &media_id, query.as_deref()).await?;
    let thumbnail = services.media.thumbnail(&content, wanted).await?;
    serve(services, &thumbnail, None, &headers).await
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`
pub async fn download(
    State(services): State<Arc<Services>>,
    Authenticated(session): Authenticated,
    params: PathParams,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    download_for(&services, Some(&session.user_id), params, query, headers).await
}

/// `GET /_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}]`: deprecated and
/// unauthenticated.
pub async fn legacy_download(
    State(services): State<Arc<Services>>,
    params: PathParams,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    legacy_allowed(&services)?;
    download_for(&services, None, params, query, headers).await
}

/// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`
pub async fn thumbnail(
    State(services): State<Arc<Services>>,
    Authenticated(session): Authenticated,
    params: PathParams,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    thumbnail_for(&services, Some(&session.user_id), params, query, headers).await
}

/// `GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}`: deprecated and unauthenticated.
pub async fn legacy_thumbnail(
    State(services): State<Arc<Services>>,
    params: PathParams,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    legacy_allowed(&services)?;
    thumbnail_for(&services, None, params, query, headers).await
}

/// The thumbnail a request asks for: `width` and `height` (positive; larger than the
/// configured maximum means the maximum), `method` and `animated`.
fn wanted(services: &Services, query: Option<&str>) -> Result<Wanted> {
    let params = query_params(query);
    let max = u64::from(services.config.media.thumbnail_max_dimension);
    let side = |name: &str| -> Result<u32> {
        let text = param(&params, name)
            .ok_or_else(|| Error::missing_param(format!("{name} is required")))?;
        match text.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n.min(max) as u32),
            _ => Err(Error::invalid_param(format!(
                "{name} must be a positive whole number"
            ))),
        }
    };
    let method = match param(&params, "method") {
        None | Some("scale") => Method::Scale,
        Some("crop") => Method::Crop,
        Some(_) => return Err(Error::invalid_param("method is scale or crop")),
    };
    let animated = match param(&params, "animated") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Error::invalid_param("animated is true or false")),
    };
    Ok(Wanted {
        width: side("width")?,
        height: side("height")?,
        method,
        animated,
    })
}

/// The content of a file `user` may download (anyone, for `None`), waiting up to
/// `timeout_ms` for an upload still in progress; 404 for files that do not exist or that the
/// user may not see, alike.
pub(super) async fn uploaded(
    services: &Services,
    user: Option<&UserId>,
    server: &str,
    media_id: &str,
    query: Option<&str>,
) -> Result<Content> {
    let not_found = || Error::not_found("No such file");
    if !services.media.is_local(server) {
        return Err(not_found());
    }
    let params = query_params(query);
    let wait = match param(&params, "timeout_ms") {
        None => MAX_WAIT,
        Some(ms) => Duration::from_millis(
            ms.parse()
                .map_err(|_| Error::invalid_param("timeout_ms must be a number"))?,
        )
        .min(MAX_WAIT),
    };
    let record = services
        .media
        .get(media_id)?
        .filter(|r| r.quarantined_by.is_none())
        .ok_or_else(not_found)?;
    if let Some(user) = user
        && !access::may_download(services, user, media_id, &record)?
    {
        return Err(not_found());
    }
    let deadline = Instant::now() + wait;
    let mut record = record;
    loop {
        if let Some(content) = record.content {
            return Ok(content);
        }
        if Instant::now() >= deadline {
            return Err(Error::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorKind::NotYetUploaded,
                "The file has not been uploaded yet",
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        record = services.media.get(media_id)?.ok_or_else(not_found)?;
    }
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Ranged {
    Whole,
    Part(ByteRange),
    Unsatisfiable,
}

/// Reads a single `bytes=` range; anything else (several ranges, other units, nonsense) is
/// answered with the whole file, as HTTP allows.
fn ranged(header: Option<&HeaderValue>, size: u64) -> Ranged {
    let Some(spec) = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ranged::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => Some((start, end.min(size.saturating_sub(1)))),
        (Ok(start), Err(_)) if last.is_empty() => Some((start, size.saturating_sub(1))),
        (Err(_), Ok(suffix)) if first.is_empty() => {
            if suffix == 0 {
                return Ranged::Unsatisfiable;
            }
            Some((size.saturating_sub(suffix), size.saturating_sub(1)))
        }
        _ => None,
    };
    match range {
        None => Ranged::Whole,
        Some((start, _)) if start >= size => Ranged::Unsatisfiable,
        Some((start, end)) => Ranged::Part(ByteRange { start, end }),
    }
}

/// `Content-Disposition`: inline for types a browser shows safely, else attachment; the name
/// percent-encoded (RFC 6266/5987), so no quote or separator can break out of it.
fn disposition(content_type: &str, filename: Option<&str>) -> String {
    let essence = crate::media::essence(content_type);
    let kind = if INLINE_TYPES.contains(&essence.as_str()) {
        "inline"
    } else {
        "attachment"
    };
    match filename {
        None => kind.to_owned(),
        Some(name) => {
            let encoded: String = name
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("{kind}; filename*=utf-8''{encoded}")
        }
    }
}

/// Streams a file with the headers that keep browsers from running it.
pub(super) async fn serve(
    services: &Services,
    content: &Content,
    file_name: Option<String>,
    headers: &HeaderMap,
) -> Result<Response> {
    if let Some(name) = &file_name {
        check_filename(name)?;
    }
    let size = content.size;
    let (status, range) = match ranged(headers.get(header::RANGE), size) {
        Ranged::Whole => (StatusCode::OK, None),
        Ranged::Part(range) => (StatusCode::PARTIAL_CONTENT, Some(range)),
        Ranged::Unsatisfiable => {
            let mut response = Error::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorKind::Unknown,
                "The requested range is outside the file",
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    let stream = services.media.read(content, range).await?;
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let out = response.headers_mut();
    let value = |text: &str| HeaderValue::from_str(text).ok();
    if let Some(v) = value(&content.content_type) {
        out.insert(header::CONTENT_TYPE, v);
    }
    let length = range.map_or(size, |r| r.count());
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(range) = range
        && let Some(v) = value(&format!("bytes {}-{}/{size}", range.start, range.end))
    {
        out.insert(header::CONTENT_RANGE, v);
    }
    let name = file_name.as_deref().or(content.filename.as_deref());
    if let Some(v) = value(&disposition(&content.content_type, name)) {
        out.insert(header::CONTENT_DISPOSITION, v);
    }
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
             style-src 'unsafe-inline'; media-src 'self'; object-src 'self';",
        ),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_http_says() {
        let r = |h: &str| ranged(Some(&HeaderValue::from_str(h).unwrap()), 100);
        let part = |start, end| Ranged::Part(ByteRange { start, end });
        assert_eq!(ranged(None, 100), Ranged::Whole);
        assert_eq!(r("bytes=0-9"), part(0, 9));
        assert_eq!(r("bytes=90-"), part(90, 99));
        assert_eq!(r("bytes=-10"), part(90, 99));
        assert_eq!(r("bytes=-1000"), part(0, 99));
        assert_eq!(r("bytes=50-1000"), part(50, 99));
        assert_eq!(r("bytes=100-"), Ranged::Unsatisfiable);
        assert_eq!(r("bytes=-0"), Ranged::Unsatisfiable);
        assert_eq!(r("bytes=0-1,5-6"), Ranged::Whole);
        assert_eq!(r("bytes=9-1"), Ranged::Whole);
        assert_eq!(r("items=0-1"), Ranged::Whole);
        assert_eq!(r("bytes=x-y"), Ranged::Whole);
        assert_eq!(
            ranged(Some(&HeaderValue::from_static("bytes=0-")), 0),
            Ranged::Unsatisfiable
        );
    }

    #[test]
    fn risky_types_are_attachments_and_names_cannot_break_out() {
        assert_eq!(disposition("image/png", None), "inline");
        assert_eq!(disposition("IMAGE/PNG; charset=x", None), "inline");
        for risky in [
            "text/html",
            "image/svg+xml",
            "application/javascript",
            "text/xml",
        ] {
            assert_eq!(disposition(risky, None), "attachment", "{risky}");
        }
        assert_eq!(
            disposition("text/plain", Some("a \"b\";c.txt")),
            "inline; filename*=utf-8''a%20%22b%22%3Bc.txt"
        );
        assert_eq!(
            disposition("application/pdf", Some("보고서.pdf")),
            "attachment; filename*=utf-8''%EB%B3%B4%EA%B3%A0%EC%84%9C.pdf"
        );
    }

    #[test]
    fn file_names_are_names_not_paths() {
        assert!(check_filename("report.pdf").is_ok());
        assert!(check_filename("보고서 (최종).pdf").is_ok());
        for bad in [
            "",
            "../etc/passwd",
            "a/b",
            "a\\b",
            "a\0b",
            "..",
            &"x".repeat(256),
        ] {
            assert!(check_filename(bad).is_err(), "{bad:?}");
        }
    }
}

//! Link previews (`GET /_matrix/client/v1/media/preview_url`, off unless `[url_preview]
//! enabled`): the page is fetched through the [outbound guard](crate::outbound), its OpenGraph
//! data read ([`html`]), and its `og:image` fetched the same way and stored as media any local
//! user may download. Answers and failures are kept for an hour per URL.

pub mod html;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::StatusCode;
use ruma::UserId;
use serde_json::{Map, Value, json};
use url::Url;

use crate::config::UrlPreviewConfig;
use crate::error::{Error, Result};
use crate::media::essence;
use crate::outbound::{FetchError, Fetched, Outbound};
use crate::services::Services;

/// How long an answer (or a failure) is reused.
const CACHE_FOR: Duration = Duration::from_secs(60 * 60);
/// URLs remembered at most.
const CACHE_ENTRIES: usize = 10_000;

/// A cached answer: the preview, or the refusal to give it.
#[derive(Clone)]
enum Answer {
    Preview(Value),
    Refused {
        status: StatusCode,
        errcode: &'static str,
        message: String,
    },
}

impl Answer {
    fn into_result(self) -> Result<Value> {
        match self {
            Answer::Preview(value) => Ok(value),
            Answer::Refused {
                status,
                errcode,
                message,
            } => Err(Error::custom(status, errcode, message)),
        }
    }
}

pub struct Previews {
    config: UrlPreviewConfig,
    cache: Mutex<HashMap<String, (Instant, Answer)>>,
}

fn refusal(error: FetchError) -> Answer {
    let (status, errcode) = match &error {
        FetchError::Invalid(_) => (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
        FetchError::Refused(_) => (StatusCode::FORBIDDEN, "M_FORBIDDEN"),
        FetchError::Failed(_) => (StatusCode::BAD_GATEWAY, "M_UNKNOWN"),
    };
    Answer::Refused {
        status,
        errcode,
        message: error.to_string(),
    }
}

/// The body as text, in the charset the server or the page declares (UTF-8 otherwise).
fn text_of(fetched: &Fetched) -> String {
    let from_header = fetched
        .content_type
        .as_deref()
        .and_then(|ct| {
            ct.split(';')
                .find_map(|p| p.trim().strip_prefix("charset="))
        })
        .map(|c| c.trim_matches('"').to_ascii_lowercase());
    let label = from_header.or_else(|| html::declared_charset(&fetched.body));
    let encoding = label
        .and_then(|l| encoding_rs::Encoding::for_label(l.as_bytes()))
        .unwrap_or(encoding_rs::UTF_8);
    encoding.decode(&fetched.body).0.into_owned()
}

impl Previews {
    pub fn new(config: &UrlPreviewConfig) -> Self {
        Self {
            config: config.clone(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, url: &str) -> Option<Answer> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(url)
            .filter(|(at, _)| at.elapsed() < CACHE_FOR)
            .map(|(_, answer)| answer.clone())
    }

    fn remember(&self, url: String, answer: Answer) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_FOR);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(url, (Instant::now(), answer));
    }

    /// The preview of `url` for `user`.
    pub async fn preview(&self, services: &Services, user: &UserId, url: &str) -> Result<Value> {
        if !self.config.enabled {
            return Err(Error::unrecognized(
                StatusCode::NOT_FOUND,
                "Link previews are turned off on this server",
            ));
        }
        let url =
            Url::parse(url).map_err(|_| Error::invalid_param("url is not a valid absolute URL"))?;
        let key = url.as_str().to_owned();
        if let Some(answer) = self.cached(&key) {
            return answer.into_result();
        }
        let answer = match self.make(services, user, url).await {
            Ok(preview) => Answer::Preview(preview),
            Err(error) => refusal(error),
        };
        if let Answer::Refused { message, .. } = &answer {
            tracing::info!(%message, "no link preview");
        }
        self.remember(key, answer.clone());
        answer.into_result()
    }

    async fn make(
        &self,
        services: &Services,
        user: &UserId,
        url: Url,
    ) -> std::result::Result<Value, FetchError> {
        let outbound: &Outbound = &services.outbound;
        let page = outbound.get(url, self.config.max_page_bytes).await?;
        let kind = essence(page.content_type.as_deref().unwrap_or_default());
        let mut preview = Map::new();
        if kind.starts_with("image/") {
            // A link to a picture previews as the picture.
            if !page.truncated {
                self.add_image(services, user, page.body, &kind, &mut preview)
                    .await;
            }
            return Ok(Value::Object(preview));
        }
        if !(kind == "text/html" || kind == "application/xhtml+xml") {
            return Ok(Value::Object(preview));
        }
        let parsed = html::parse(&text_of(&page));
        let title = parsed
            .properties
            .get("og:title")
            .or(parsed.properties.get("twitter:title"))
            .cloned()
            .or(parsed.title);
        let description = parsed
            .properties
            .get("og:description")
            .or(parsed.properties.get("twitter:description"))
            .cloned()
            .or(parsed.description);
        for (key, value) in &parsed.properties {
            if key.starts_with("og:") && !key.starts_with("og:image") {
                preview.insert(key.clone(), json!(value));
            }
        }
        if let Some(title) = title {
            preview.insert("og:title".into(), json!(title));
        }
        if let Some(description) = description {
            preview.insert("og:description".into(), json!(description));
        }
        let image = parsed
            .properties
            .get("og:image")
            .or(parsed.properties.get("twitter:image"))
            .and_then(|src| page.url.join(src).ok());
        if let Some(image_url) = image
            && let Ok(fetched) = outbound.get(image_url, self.config.max_image_bytes).await
        {
            let kind = essence(fetched.content_type.as_deref().unwrap_or_default());
            if kind.starts_with("image/") && !fetched.truncated {
                self.add_image(services, user, fetched.body, &kind, &mut preview)
                    .await;
            }
        }
        Ok(Value::Object(preview))
    }

    /// Stores a fetched picture as media and describes it in the preview.
    async fn add_image(
        &self,
        services: &Services,
        user: &UserId,
        bytes: Vec<u8>,
        content_type: &str,
        preview: &mut Map<String, Value>,
    ) {
        let size = bytes.len();
        let dimensions = image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok());
        match services
            .media
            .store_fetched(user, bytes, content_type)
            .await
        {
            Ok(media_id) => {
                preview.insert("og:image".into(), json!(services.media.mxc(&media_id)));
                preview.insert("og:image:type".into(), json!(content_type));
                preview.insert("matrix:image:size".into(), json!(size));
                if let Some((width, height)) = dimensions {
                    preview.insert("og:image:width".into(), json!(width));
                    preview.insert("og:image:height".into(), json!(height));
                }
            }
            Err(error) => tracing::info!(%error, "link preview picture not stored"),
        }
    }
}

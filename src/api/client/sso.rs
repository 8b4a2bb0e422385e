//! Single sign-on over HTTP: `GET /login/sso/redirect[/{idpId}]?redirectUrl=` sends the browser
//! to the provider, and the provider sends it back to `/_sori/client/oidc/callback`, which
//! hands the client a login token (at once for allow-listed clients, after a confirmation
//! page for any other).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::api::ruma::RequestOrigin;
use crate::error::{Error, Result};
use crate::identity::sso::{CALLBACK_PATH, COOKIE, SIGN_ON_LIFETIME, confirmation_page};
use crate::services::Services;

fn query_map(query: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// The sign-on cookie, scoped to the callback, HttpOnly, sent on the provider's top-level
/// redirect back (Lax), Secure when the server is reached over https.
fn cookie(services: &Services, value: &str, max_age: u64) -> Result<HeaderValue> {
    let secure = if services.config.base_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path={CALLBACK_PATH}; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .map_err(|_| Error::internal("sign-on cookie"))
}

async fn start(services: &Services, idp: Option<&str>, query: Option<&str>) -> Result<Response> {
    let query = query_map(query);
    let client_redirect = query
        .get("redirectUrl")
        .ok_or_else(|| Error::missing_param("redirectUrl is required"))?;
    let (to, value) = services.sso.start(idp, client_redirect).await?;
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(to.as_str()).map_err(|_| Error::internal("provider URL"))?,
    );
    headers.insert(
        header::SET_COOKIE,
        cookie(services, &value, SIGN_ON_LIFETIME.as_secs())?,
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /_matrix/client/v3/login/sso/redirect`: the only provider.
pub async fn redirect(
    State(services): State<Arc<Services>>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    start(&services, None, query.as_deref()).await
}

/// `GET /_matrix/client/v3/login/sso/redirect/{idpId}`
pub async fn redirect_to(
    State(services): State<Arc<Services>>,
    Path(idp): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    start(&services, Some(&idp), query.as_deref()).await
}

/// `GET /_sori/client/oidc/callback`: where the provider sends the browser back.
pub async fn callback(
    State(services): State<Arc<Services>>,
    RequestOrigin(from): RequestOrigin,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let sent = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned());
    let finished = services
        .sso
        .finish(
            &query_map(query.as_deref()),
            sent.as_deref(),
            &services.accounts,
            &services.profiles,
            &services.login_tokens,
            &from,
        )
        .await?;
    let mut response = if finished.allowed {
        let mut response = StatusCode::FOUND.into_response();
        response.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(finished.redirect.as_str())
                .map_err(|_| Error::invalid_param("redirectUrl cannot be redirected to"))?,
        );
        response
    } else {
        Html(confirmation_page(&finished.redirect)).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::SET_COOKIE, cookie(&services, "", 0)?);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The page carries a login token: no other site may frame it.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    Ok(response)
}

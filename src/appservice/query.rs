//! Questions to appservices: does this user (or alias) of your namespace exist? — asked when
//! a client looks up one Sori does not know, so the bridge can create it first — and the
//! ping an appservice asks for to check that Sori reaches it.

use std::time::{Duration, Instant};

use http::StatusCode;
use ruma::api::error::{BadStatusErrorData, ErrorKind};
use ruma::{RoomAliasId, UserId};

use super::{Appservice, Appservices};
use crate::error::{Error, Result};

/// `{url}/_matrix/app/v1/<kind>/<id>`, the id escaped as one path segment.
fn query_url(appservice: &Appservice, kind: &str, id: &str) -> Option<String> {
    let base = appservice.registration.url.as_deref()?;
    let mut url = url::Url::parse(base).ok()?;
    url.path_segments_mut()
        .ok()?
        .extend(["_matrix", "app", "v1", kind, id]);
    Some(url.to_string())
}

impl Appservices {
    /// Asks the appservice that claims `user_id` whether it exists (it creates the user
    /// when it does); `true` when it answered yes. Any failure is a no.
    pub async fn query_user(&self, user_id: &UserId) -> bool {
        let Some(appservice) = self.all().iter().find(|a| {
            a.registration
                .users
                .iter()
                .any(|ns| ns.matches(user_id.as_str()))
        }) else {
            return false;
        };
        self.ask(appservice, "users", user_id.as_str()).await
    }

    /// Asks the appservice whose namespace holds `alias` whether it exists (it creates the
    /// room and alias when it does); `true` when it answered yes.
    pub async fn query_alias(&self, alias: &RoomAliasId) -> bool {
        let Some(appservice) = self.all().iter().find(|a| a.is_alias(alias)) else {
            return false;
        };
        self.ask(appservice, "rooms", alias.as_str()).await
    }

    async fn ask(&self, appservice: &Appservice, kind: &str, id: &str) -> bool {
        let Some(url) = query_url(appservice, kind, id) else {
            return false;
        };
        let answer = self
            .http
            .get(&url)
            .bearer_auth(&appservice.registration.hs_token)
            .send()
            .await;
        match answer {
            Ok(response) => response.status().is_success(),
            Err(error) => {
                tracing::warn!(appservice = appservice.id(), %error, "appservice query failed");
                false
            }
        }
    }

    /// `POST {url}/_matrix/app/v1/ping` for the appservice; how long it took, or the spec's
    /// errors for an appservice without a URL, one that answers an error, and one that
    /// cannot be reached or does not answer in time.
    pub async fn ping(
        &self,
        appservice: &Appservice,
        transaction_id: Option<&str>,
    ) -> Result<Duration> {
        let Some(base) = appservice.registration.url.as_deref() else {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::UrlNotSet,
                "The appservice has no URL",
            ));
        };
        let mut body = serde_json::json!({});
        if let Some(id) = transaction_id {
            body["transaction_id"] = id.into();
        }
        let started = Instant::now();
        let sent = self
            .http
            .post(format!("{base}/_matrix/app/v1/ping"))
            .bearer_auth(&appservice.registration.hs_token)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                return Err(Error::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    ErrorKind::ConnectionTimeout,
                    "The appservice did not answer in time",
                ));
            }
            Err(e) => {
                return Err(Error::new(
                    StatusCode::BAD_GATEWAY,
                    ErrorKind::ConnectionFailed,
                    format!("The appservice cannot be reached: {e}"),
                ));
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(started.elapsed());
        }
        let text = response.text().await.unwrap_or_default();
        let mut data = BadStatusErrorData::new();
        data.status = Some(status);
        data.body = Some(text.chars().take(1000).collect());
        Err(Error::new(
            StatusCode::BAD_GATEWAY,
            ErrorKind::BadStatus(data),
            format!("The appservice answered {status}"),
        ))
    }
}

/// Whether the user exists here, after asking the appservice whose namespace holds them
/// (which creates its users on demand).
pub async fn user_known(services: &crate::services::Services, user_id: &UserId) -> Result<bool> {
    if services.accounts.exists(user_id)? {
        return Ok(true);
    }
    if !services.accounts.is_local(user_id) || !services.appservices.query_user(user_id).await {
        return Ok(false);
    }
    services.accounts.exists(user_id)
}

/// The room a local alias names, after asking the appservice whose namespace holds it when
/// nobody registered it yet.
pub async fn resolve_alias(
    services: &crate::services::Services,
    alias: &RoomAliasId,
) -> Result<Option<ruma::OwnedRoomId>> {
    if let Some(room_id) = services.aliases.resolve(alias)? {
        return Ok(Some(room_id));
    }
    if !services.appservices.query_alias(alias).await {
        return Ok(None);
    }
    services.aliases.resolve(alias)
}

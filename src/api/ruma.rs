//! The bridge between axum and ruma: the [`Ruma`] extractor parses a request into the
//! endpoint's ruma request type after checking its size, JSON and access token, and
//! [`RumaResponse`] serialises the endpoint's ruma response.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{Method, header};
use ruma::api::auth_scheme::{
    self, AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional,
    NoAccessToken, NoAuthentication,
};
use ruma::api::error::{DeserializationError, FromHttpRequestError};
use ruma::api::{IncomingRequest, IncomingRequestExt, OutgoingResponse, OutgoingResponseExt};
use ruma::{DeviceId, UserId};

use crate::admin::audit::Origin;
use crate::error::{Error, Result};
use crate::rooms::pdu::Recipient;
use crate::services::Services;
use crate::users::sessions::Session;

/// Whether an endpoint needs an access token, as its ruma auth scheme says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRequirement {
    Required,
    Optional,
    Ignored,
    /// No token: another server's `X-Matrix` signature.
    ServerSignature,
}

/// Maps each ruma auth scheme Sori serves to what it asks of the caller.
pub trait AuthRequirement {
    const REQUIREMENT: TokenRequirement;
}

impl AuthRequirement for AccessToken {
    const REQUIREMENT: TokenRequirement = TokenRequirement::Required;
}
impl AuthRequirement for AccessTokenOptional {
    const REQUIREMENT: TokenRequirement = TokenRequirement::Optional;
}
// Until application services exist, an appservice token is checked like any access token:
// an unknown one is refused rather than ignored.
impl AuthRequirement for AppserviceToken {
    const REQUIREMENT: TokenRequirement = TokenRequirement::Required;
}
impl AuthRequirement for AppserviceTokenOptional {
    const REQUIREMENT: TokenRequirement = TokenRequirement::Optional;
}
impl AuthRequirement for NoAuthentication {
    const REQUIREMENT: TokenRequirement = TokenRequirement::Ignored;
}
impl AuthRequirement for NoAccessToken {
    const REQUIREMENT: TokenRequirement = TokenRequirement::Ignored;
}
impl AuthRequirement for ruma::api::federation::authentication::ServerSignatures {
    const REQUIREMENT: TokenRequirement = TokenRequirement::ServerSignature;
}

/// Marks a route that serves an endpoint whose last path parameter is empty (state events with
/// an empty state key: `/state/m.room.name/` or `/state/m.room.name`), which a router cannot
/// capture as a segment.
#[derive(Clone, Copy, Debug)]
pub struct EmptyLastPathArg;

/// A parsed, authorised request of endpoint type `T`.
pub struct Ruma<T> {
    pub body: T,
    /// Who the access token acts for (always set when the endpoint requires a token).
    pub session: Option<Session>,
    /// The client's address (from the socket, or `X-Forwarded-For` when trusted).
    pub client_ip: IpAddr,
    /// The client's `User-Agent`, for the audit log.
    pub user_agent: Option<String>,
    /// Whether a POST/PUT came without a body (ruma reads that as `{}`; endpoints whose body
    /// is the content itself refuse it).
    pub body_empty: bool,
    /// The body as sent (shared, not copied): for the fields of an unstable endpoint that
    /// ruma's request type does not model yet.
    pub raw_body: Bytes,
    /// For the federation API: the server whose signature the request carries (checked).
    pub origin: Option<ruma::OwnedServerName>,
    /// What is kept alive until the response is written (see [`crate::api::hold`]).
    hold: Option<crate::api::hold::ResponseHold>,
}

impl<T> Ruma<T> {
    /// Keeps `thing` alive until the response has been written out.
    pub fn keep_until_written(&self, thing: impl Send + Sync + 'static) {
        if let Some(hold) = &self.hold {
            hold.keep(thing);
        }
    }

    /// Refuses a POST/PUT that came without a body, for endpoints whose body is the content.
    pub fn require_body(&self) -> Result<()> {
        if self.body_empty {
            Err(Error::not_json("The request needs a JSON body"))
        } else {
            Ok(())
        }
    }

    /// The authenticated user; an endpoint that requires a token always has one.
    pub fn user_id(&self) -> Result<&UserId> {
        self.session
            .as_ref()
            .map(|s| s.user_id.as_ref())
            .ok_or_else(Error::missing_token)
    }

    pub fn device_id(&self) -> Result<&DeviceId> {
        self.session
            .as_ref()
            .map(|s| s.device_id.as_ref())
            .ok_or_else(Error::missing_token)
    }

    /// Who events are served to: the user and the device of the access token.
    pub fn recipient(&self) -> Result<Recipient<'_>> {
        Ok(Recipient {
            user: self.user_id()?,
            device: self.device_id()?,
        })
    }

    pub fn session(&self) -> Result<&Session> {
        self.session.as_ref().ok_or_else(Error::missing_token)
    }

    /// Who makes the request and from where, for the audit log.
    pub fn origin(&self) -> Origin {
        Origin {
            actor: self.session.as_ref().map(|s| s.user_id.clone()),
            ip: Some(self.client_ip),
            user_agent: self.user_agent.clone(),
        }
    }
}

/// The session of a request's access token (header or `access_token` query), for handlers
/// that read the body themselves (streamed uploads) or answer with raw bytes.
pub struct Authenticated(pub Session);

impl FromRequestParts<Arc<Services>> for Authenticated {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        services: &Arc<Services>,
    ) -> Result<Self> {
        let request = http::Request::from_parts(parts.clone(), ());
        let token = auth_scheme::extract_bearer_or_query_token(&request)
            .map_err(|_| Error::missing_token())?
            .ok_or_else(Error::missing_token)?;
        Ok(Authenticated(authenticate(
            services,
            &token,
            parts.uri.query(),
            true,
        )?))
    }
}

/// Who a token acts for: a device's session, or, for an appservice's `as_token`, the user
/// its `user_id` query parameter names (its own sender without one), who must be one of its
/// users and, unless the request registers them, registered and active.
pub(crate) fn authenticate(
    services: &Services,
    token: &str,
    query: Option<&str>,
    require_registered: bool,
) -> Result<Session> {
    let Some(appservice) = services.appservices.by_as_token(token) else {
        return services.sessions.authenticate(token);
    };
    let asked = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(name, _)| name == "user_id")
        .map(|(_, value)| value.into_owned());
    let user_id = match asked {
        None => appservice.sender.clone(),
        Some(id) => ruma::OwnedUserId::try_from(id)
            .map_err(|_| Error::invalid_param("user_id is not a valid user id"))?,
    };
    if !appservice.is_user(&user_id) {
        return Err(Error::new(
            http::StatusCode::FORBIDDEN,
            ruma::api::error::ErrorKind::Exclusive,
            "The user is not in the appservice's namespace",
        ));
    }
    if require_registered && !services.accounts.is_active(&user_id)? {
        return Err(Error::forbidden(
            "The appservice has not registered this user, or it is deactivated",
        ));
    }
    Ok(Session {
        user_id,
        device_id: format!("_appservice_{}", appservice.id()).into(),
        appservice: Some(appservice.id().to_owned()),
    })
}

/// The request's address and user agent (no actor: see [`Authenticated`]), for handlers
/// outside the [`Ruma`] extractor.
pub struct RequestOrigin(pub Origin);

impl FromRequestParts<Arc<Services>> for RequestOrigin {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        services: &Arc<Services>,
    ) -> Result<Self> {
        Ok(RequestOrigin(origin_of(
            &parts.headers,
            &parts.extensions,
            services.config.listen.trust_forwarded_for,
        )))
    }
}

/// Runs the rest of the request with its address and user agent known to the audit log
/// (events drafted deep below the handler are audited with them).
pub async fn with_request_origin(
    axum::extract::State(services): axum::extract::State<Arc<Services>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let origin = origin_of(
        request.headers(),
        request.extensions(),
        services.config.listen.trust_forwarded_for,
    );
    crate::admin::audit::within_request(origin, next.run(request)).await
}

fn origin_of(
    headers: &http::HeaderMap,
    extensions: &http::Extensions,
    trust_forwarded_for: bool,
) -> Origin {
    Origin {
        actor: None,
        ip: Some(client_ip(headers, extensions, trust_forwarded_for)),
        user_agent: user_agent(headers),
    }
}

fn user_agent(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(crate::admin::audit::clip)
}

fn client_ip(
    headers: &http::HeaderMap,
    extensions: &http::Extensions,
    trust_forwarded_for: bool,
) -> IpAddr {
    if trust_forwarded_for
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return ip;
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST))
}

/// Reads the body, refusing anything over `limit` bytes with 413.
async fn read_body(
    body: axum::body::Body,
    headers: &http::HeaderMap,
    limit: usize,
) -> Result<Bytes> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Error::too_large(format!(
            "Request body is larger than {limit} bytes"
        )));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            Error::too_large(format!("Request body is larger than {limit} bytes"))
        } else {
            Error::bad_json(format!("Could not read the request body: {e}"))
        }
    })
}

/// Whether the body is meant to be JSON (anything but an explicitly different media type).
fn expects_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.starts_with("application/json") || ct.starts_with("text/plain"))
}

fn parse_error(error: FromHttpRequestError, body_empty: bool) -> Error {
    match error {
        FromHttpRequestError::Deserialization(DeserializationError::Json(e)) => {
            if body_empty {
                Error::not_json("The request needs a JSON body")
            } else {
                Error::bad_json(format!("Invalid request body: {e}"))
            }
        }
        FromHttpRequestError::Deserialization(DeserializationError::Ident(e)) => {
            Error::invalid_param(format!("Invalid identifier: {e}"))
        }
        FromHttpRequestError::Deserialization(DeserializationError::Query(e)) => {
            Error::invalid_param(format!("Invalid query parameter: {e}"))
        }
        FromHttpRequestError::Deserialization(e) => {
            Error::bad_json(format!("Invalid request: {e}"))
        }
        FromHttpRequestError::MethodMismatch { .. } => {
            Error::unrecognized(http::StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        }
        other => Error::bad_json(format!("Invalid request: {other}")),
    }
}

impl<T> FromRequest<Arc<Services>> for Ruma<T>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: AuthRequirement,
{
    type Rejection = Error;

    async fn from_request(request: Request, services: &Arc<Services>) -> Result<Self> {
        let (mut parts, body) = request.into_parts();
        let path_params = RawPathParams::from_request_parts(&mut parts, services)
            .await
            .map_err(|e| Error::invalid_param(format!("Invalid path: {e}")))?;
        let mut path_args: Vec<String> = path_params.iter().map(|(_, v)| v.to_owned()).collect();
        if parts.extensions.get::<EmptyLastPathArg>().is_some() {
            path_args.push(String::new());
        }
        let hold = parts
            .extensions
            .get::<crate::api::hold::ResponseHold>()
            .cloned();
        let client_ip = client_ip(
            &parts.headers,
            &parts.extensions,
            services.config.listen.trust_forwarded_for,
        );
        let user_agent = user_agent(&parts.headers);

        let limit = services.config.limits.max_request_bytes;
        let bytes = read_body(body, &parts.headers, limit).await?;
        let has_body = matches!(parts.method, Method::POST | Method::PUT);
        if has_body
            && !bytes.is_empty()
            && expects_json(&parts.headers)
            && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err()
        {
            return Err(Error::not_json("The request body is not valid JSON"));
        }

        // Checked on the body as sent (before an empty one is read as `{}` below).
        let origin = match <T::Authentication as AuthRequirement>::REQUIREMENT {
            TokenRequirement::ServerSignature => {
                let signed = http::Request::from_parts(parts, bytes.as_ref());
                let origin = services
                    .federation
                    .authenticate(&services.outbound, &signed)
                    .await?;
                parts = signed.into_parts().0;
                Some(origin)
            }
            _ => None,
        };
        let body_empty = has_body && bytes.is_empty();
        // Clients send no body where every field is optional (matrix-nio's join, for one), as
        // Synapse allows: read it as `{}`. Endpoints that need content still refuse it
        // (`require_body`, or a missing field reported as M_NOT_JSON).
        let bytes = if body_empty {
            bytes::Bytes::from_static(b"{}")
        } else {
            bytes
        };
        let raw_body = bytes.clone();
        let http_request = http::Request::from_parts(parts, bytes.as_ref());
        // Endpoints without tokens ignore `Authorization` (a server signs even its key
        // fetches; a server's request carries its signature there, not a token).
        let token = match <T::Authentication as AuthRequirement>::REQUIREMENT {
            TokenRequirement::Required | TokenRequirement::Optional => {
                auth_scheme::extract_bearer_or_query_token(&http_request)
                    .map_err(|_| Error::missing_token())?
            }
            TokenRequirement::Ignored | TokenRequirement::ServerSignature => None,
        };
        let session = match (<T::Authentication as AuthRequirement>::REQUIREMENT, token) {
            (TokenRequirement::Ignored | TokenRequirement::ServerSignature, _) => None,
            (TokenRequirement::Required, None) => return Err(Error::missing_token()),
            (TokenRequirement::Optional, None) => None,
            (_, Some(token)) => {
                let registering = http_request.uri().path().ends_with("/register");
                Some(authenticate(
                    services,
                    &token,
                    http_request.uri().query(),
                    !registering,
                )?)
            }
        };

        let args: Vec<&str> = path_args.iter().map(String::as_str).collect();
        // Some ruma deserialisers panic on malformed input (e.g. a login body without
        // "type"); a client mistake must never become a 500, so a panic here is bad JSON.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            T::try_from_http_request(http_request, &args)
        }));
        let body = match parsed {
            Ok(result) => result.map_err(|e| parse_error(e, body_empty))?,
            Err(_) if body_empty => return Err(Error::not_json("The request needs a JSON body")),
            Err(_) => return Err(Error::bad_json("Invalid request body")),
        };
        Ok(Ruma {
            body,
            session,
            client_ip,
            user_agent,
            body_empty,
            raw_body,
            origin,
            hold,
        })
    }
}

/// A ruma response, serialised for the wire.
pub struct RumaResponse<T>(pub T);

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<BytesMut>() {
            Ok(response) => response
                .map(|body| axum::body::Body::from(body.freeze()))
                .into_response(),
            Err(e) => Error::internal(format!("serialising a response: {e}")).into_response(),
        }
    }
}

//! Requests to other homeservers: each ruma federation request is addressed through the
//! [`Resolver`], signed with this server's key (the `X-Matrix` authorization), and sent
//! through the outbound guard with this server's TLS settings (an extra CA; certificate
//! checks off only for development).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use ruma::api::auth_scheme::{AuthScheme, NoAuthentication};
use ruma::api::federation::authentication::{ServerSignatures, XMatrixSigningInput};
use ruma::api::path_builder::SinglePath;
use ruma::api::{IncomingResponseExt, OutgoingRequest, OutgoingRequestExt};
use ruma::{OwnedServerName, ServerName};
use url::Url;

use super::keys::ServerKeys;
use super::resolver::Resolver;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::outbound::Outbound;

/// Most of an answer read (a room's state can be large).
const MAX_RESPONSE_BYTES: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub struct FederationClient {
    http: OnceLock<reqwest::Client>,
    /// CAs trusted besides the system's (`[federation] ca_file`).
    roots: Vec<reqwest::Certificate>,
    verify: bool,
    resolver: Resolver,
    server_name: OwnedServerName,
    keys: Arc<ServerKeys>,
}

/// Why a request to another server failed: it could not be made or answered, or it answered
/// with an error.
#[derive(Debug)]
pub enum SendError {
    /// Refused by the outbound guard, or the connection or TLS failed, or no answer in time.
    Unreachable(String),
    /// The server answered, but not with what was asked (an error status, or a bad body).
    Answered { status: u16, message: String },
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Unreachable(why) => write!(f, "unreachable: {why}"),
            SendError::Answered { status, message } => write!(f, "answered {status}: {message}"),
        }
    }
}

impl From<SendError> for Error {
    fn from(error: SendError) -> Self {
        match error {
            SendError::Answered { status: 404, .. } => {
                Error::not_found("The other server does not know it")
            }
            SendError::Answered { status: 403, .. } => {
                Error::forbidden("The other server refused the request")
            }
            other => Error::new(
                http::StatusCode::BAD_GATEWAY,
                ruma::api::error::ErrorKind::Unknown,
                format!("The other server: {other}"),
            ),
        }
    }
}

impl FederationClient {
    /// Reads the configured CA now (a bad file stops the start); the HTTP client itself is
    /// built on first use, so a server that never federates does not load the TLS roots.
    pub fn new(config: &Config, keys: Arc<ServerKeys>) -> Result<Self> {
        let mut roots = Vec::new();
        if let Some(path) = &config.federation.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::internal(format!("federation.ca_file {}: {e}", path.display()))
            })?;
            roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::internal(format!("federation.ca_file {}: {e}", path.display()))
            })?;
        }
        let verify = config.federation.verify_certificates;
        if !verify {
            tracing::warn!(
                "federation.verify_certificates is off: other servers' certificates are NOT \
                 checked. Use this for development only."
            );
        }
        Ok(Self {
            http: OnceLock::new(),
            roots,
            verify,
            resolver: Resolver::default(),
            server_name: config.server_name.clone(),
            keys,
        })
    }

    fn http(&self, outbound: &Outbound) -> std::result::Result<&reqwest::Client, SendError> {
        if let Some(http) = self.http.get() {
            return Ok(http);
        }
        let mut builder = outbound
            .guarded_client()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .danger_accept_invalid_certs(!self.verify);
        for root in &self.roots {
            builder = builder.add_root_certificate(root.clone());
        }
        let http = builder.build().map_err(|e| {
            SendError::Unreachable(format!("cannot build the federation HTTP client: {e}"))
        })?;
        Ok(self.http.get_or_init(|| http))
    }

    /// Sends a signed request to `destination` and reads its answer.
    pub async fn send<R>(
        &self,
        outbound: &Outbound,
        destination: &ServerName,
        request: R,
    ) -> std::result::Result<R::IncomingResponse, SendError>
    where
        R: OutgoingRequest<Authentication = ServerSignatures, PathBuilder = SinglePath>,
    {
        let input = XMatrixSigningInput::new(
            self.server_name.clone(),
            destination.to_owned(),
            self.keys.key_pair(),
        );
        self.request(outbound, destination, request, input).await
    }

    /// Sends an unauthenticated request (key queries) to `destination`.
    pub async fn send_unsigned<R>(
        &self,
        outbound: &Outbound,
        destination: &ServerName,
        request: R,
    ) -> std::result::Result<R::IncomingResponse, SendError>
    where
        R: OutgoingRequest<Authentication = NoAuthentication, PathBuilder = SinglePath>,
    {
        self.request(outbound, destination, request, ()).await
    }

    async fn request<R>(
        &self,
        outbound: &Outbound,
        destination: &ServerName,
        request: R,
        authentication: <R::Authentication as AuthScheme>::Input<'_>,
    ) -> std::result::Result<R::IncomingResponse, SendError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
    {
        let http = self.http(outbound)?;
        let base = self.resolver.resolve(destination, http).await;
        let http_request = request
            .try_into_http_request::<Vec<u8>>(&base.base_url, authentication, ())
            .map_err(|e| SendError::Unreachable(format!("building the request: {e}")))?;
        self.execute::<R>(outbound, http_request).await
    }

    async fn execute<R: OutgoingRequest>(
        &self,
        outbound: &Outbound,
        request: http::Request<Vec<u8>>,
    ) -> std::result::Result<R::IncomingResponse, SendError> {
        let url = Url::parse(&request.uri().to_string())
            .map_err(|e| SendError::Unreachable(format!("bad URL: {e}")))?;
        outbound
            .check(&url)
            .map_err(|e| SendError::Unreachable(e.to_string()))?;
        let request = reqwest::Request::try_from(request.map(reqwest::Body::from))
            .map_err(|e| SendError::Unreachable(format!("building the request: {e}")))?;
        let response = self
            .http(outbound)?
            .execute(request)
            .await
            .map_err(|e| SendError::Unreachable(describe(&e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| SendError::Unreachable(describe(&e)))?;
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(SendError::Answered {
                    status: status.as_u16(),
                    message: "the answer is too large".into(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let mut answer = http::Response::builder().status(status);
        if let Some(map) = answer.headers_mut() {
            *map = headers;
        }
        let answer = answer
            .body(body.as_slice())
            .map_err(|e| SendError::Unreachable(format!("reading the answer: {e}")))?;
        R::IncomingResponse::try_from_http_response(answer).map_err(|e| SendError::Answered {
            status: status.as_u16(),
            message: e.to_string(),
        })
    }
}

/// A reqwest error with its causes (the TLS or connection reason is in the source chain).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

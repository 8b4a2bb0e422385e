//! The one way out for requests whose destination users can influence (URL previews, push
//! gateways, federation). Names are resolved here and only addresses that
//! [`address::AddressPolicy`] allows are handed to the connection, so a name cannot be made to
//! point at an internal address between the check and the connect; address literals are checked
//! before anything is sent; every redirect is checked again; only http and https; short
//! timeouts and a cap on what is read. Operator-configured endpoints (S3, ClamAV…) do not go
//! through here.

pub mod address;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use self::address::AddressPolicy;
use crate::config::OutboundConfig;
use crate::error::Result;

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 3;
/// Longest wait to connect, and for a whole request.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Why an outbound request did not happen or failed.
#[derive(Debug)]
pub enum FetchError {
    /// Not a URL this server fetches (scheme, syntax).
    Invalid(String),
    /// The destination is an address the policy refuses.
    Refused(String),
    /// The request went out and failed (connection, timeout, status, too many redirects).
    Failed(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Invalid(why) | FetchError::Refused(why) | FetchError::Failed(why) => {
                f.write_str(why)
            }
        }
    }
}

/// What a fetch brought back.
#[derive(Debug)]
pub struct Fetched {
    /// The URL the content came from, after redirects.
    pub url: Url,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// The body went on past the cap, and was cut there.
    pub truncated: bool,
}

/// The resolver refused every address of a name.
#[derive(Debug)]
struct RefusedName(String);

impl std::fmt::Display for RefusedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resolves only to refused addresses", self.0)
    }
}

impl std::error::Error for RefusedName {}

/// Resolves names and keeps only the addresses the policy allows.
struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| policy.allows(addr.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(RefusedName(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

pub struct Outbound {
    policy: Arc<AddressPolicy>,
    /// Built on first use: a server that never fetches anything never loads the system's
    /// certificate store.
    client: std::sync::OnceLock<reqwest::Client>,
}

impl Outbound {
    pub fn new(config: &OutboundConfig) -> Result<Self> {
        let policy = Arc::new(AddressPolicy::new(
            &config.ip_range_blacklist,
            &config.ip_range_whitelist,
        )?);
        Ok(Self {
            policy,
            client: std::sync::OnceLock::new(),
        })
    }

    fn client(&self) -> std::result::Result<&reqwest::Client, FetchError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = self
            .guarded_client()
            .connect_timeout(TIMEOUT)
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| {
                tracing::error!(error = %e, "cannot build the outbound HTTP client");
                FetchError::Failed("The server cannot make outbound requests".into())
            })?;
        Ok(self.client.get_or_init(|| client))
    }

    /// A client builder whose names resolve only to allowed addresses, with no proxy and no
    /// redirects, for a caller that needs its own TLS or timeouts (federation). Address
    /// literals do not resolve: every URL still goes through [`Outbound::check`] first.
    pub fn guarded_client(&self) -> reqwest::ClientBuilder {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: self.policy.clone(),
            }))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Sori/", env!("CARGO_PKG_VERSION")))
    }

    /// Checks a URL before anything is sent: http or https, and an address literal must be
    /// one the policy allows (names are checked as they resolve).
    pub fn check(&self, url: &Url) -> std::result::Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::Invalid(format!(
                "{} URLs are not fetched",
                url.scheme()
            )));
        }
        let ip = match url.host() {
            None => return Err(FetchError::Invalid("The URL has no host".into())),
            Some(Host::Domain(_)) => return Ok(()),
            Some(Host::Ipv4(v4)) => std::net::IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => std::net::IpAddr::V6(v6),
        };
        if self.policy.allows(ip) {
            Ok(())
        } else {
            Err(FetchError::Refused(format!("{ip} may not be reached")))
        }
    }

    /// Checks a URL as [`Outbound::check`] does, and a name by resolving it now: refused when
    /// every address it resolves to is refused. A name that does not resolve passes (it may
    /// resolve later, and is checked again at every request).
    pub async fn check_resolved(&self, url: &Url) -> std::result::Result<(), FetchError> {
        self.check(url)?;
        let Some(Host::Domain(name)) = url.host() else {
            return Ok(());
        };
        let Ok(found) = tokio::net::lookup_host((name, 0)).await else {
            return Ok(());
        };
        let found: Vec<SocketAddr> = found.collect();
        if !found.is_empty() && !found.iter().any(|addr| self.policy.allows(addr.ip())) {
            return Err(FetchError::Refused(
                RefusedName(name.to_owned()).to_string(),
            ));
        }
        Ok(())
    }

    /// `POST url` with a JSON body; redirects are not followed (a POST is not repeated
    /// elsewhere), and at most `max_bytes` of the answer are read. Returns the status and body.
    pub async fn post_json(
        &self,
        url: Url,
        body: Vec<u8>,
        timeout: Duration,
        max_bytes: usize,
    ) -> std::result::Result<(reqwest::StatusCode, Vec<u8>), FetchError> {
        self.check(&url)?;
        let response = self
            .client()?
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status();
        let mut answer = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| classify(&e))?;
            if answer.len() + chunk.len() > max_bytes {
                return Err(FetchError::Failed(format!(
                    "The answer is larger than {max_bytes} bytes"
                )));
            }
            answer.extend_from_slice(&chunk);
        }
        Ok((status, answer))
    }

    /// `GET url`, following up to three redirects (each checked like the first), reading at
    /// most `max_bytes` of the body.
    pub async fn get(
        &self,
        url: Url,
        max_bytes: usize,
    ) -> std::result::Result<Fetched, FetchError> {
        let mut url = url;
        for _ in 0..=MAX_REDIRECTS {
            self.check(&url)?;
            let response = self
                .client()?
                .get(url.clone())
                .send()
                .await
                .map_err(|e| classify(&e))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| FetchError::Failed(format!("{status} without a Location")))?;
                url = url
                    .join(location)
                    .map_err(|_| FetchError::Invalid("A redirect to an invalid URL".into()))?;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Failed(format!("The server answered {status}")));
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mut body = Vec::new();
            let mut truncated = false;
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| classify(&e))?;
                let room = max_bytes - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(Fetched {
                url,
                content_type,
                body,
                truncated,
            });
        }
        Err(FetchError::Failed(format!(
            "More than {MAX_REDIRECTS} redirects"
        )))
    }
}

/// A refused destination found anywhere in the error's causes is a refusal, not a failure.
fn classify(error: &reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<RefusedName>() {
            return FetchError::Refused(refused.to_string());
        }
        source = cause.source();
    }
    if error.is_timeout() {
        FetchError::Failed("The request timed out".into())
    } else {
        FetchError::Failed("The request failed".into())
    }
}

//! Finding another server's federation API from its server name (the spec's "resolving server
//! names"): an IP literal or a name with a port is used as it is; otherwise
//! `https://<name>/.well-known/matrix/server` may delegate to another host (and port); the
//! default port is 8448. Well-known answers are cached for a day, failures for an hour.
//!
//! SRV records (`_matrix-fed._tcp`, `_matrix._tcp`) are not looked up: a server that relies
//! on them alone is reached on port 8448 of its name.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ruma::{OwnedServerName, ServerName};
use serde::Deserialize;

/// The default federation port.
pub const DEFAULT_PORT: u16 = 8448;
const WELL_KNOWN_TTL: Duration = Duration::from_secs(24 * 60 * 60);
const WELL_KNOWN_FAILURE_TTL: Duration = Duration::from_secs(60 * 60);
/// Most of a well-known answer read.
const MAX_WELL_KNOWN_BYTES: usize = 64 * 1024;
const WELL_KNOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a server's federation API is: `https://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub base_url: String,
}

impl Destination {
    fn at(host: &str, port: u16) -> Self {
        Self {
            base_url: format!("https://{host}:{port}"),
        }
    }
}

#[derive(Default)]
pub struct Resolver {
    /// Delegations found (or not) through well-known, until when they hold.
    well_known: Mutex<HashMap<OwnedServerName, (Option<OwnedServerName>, Instant)>>,
}

#[derive(Deserialize)]
struct WellKnown {
    #[serde(rename = "m.server")]
    server: String,
}

/// Where `name` is without asking anyone: an IP literal or an explicit port.
fn direct(name: &ServerName) -> Option<Destination> {
    match name.port() {
        Some(port) => Some(Destination::at(name.host(), port)),
        None if name.is_ip_literal() => Some(Destination::at(name.host(), DEFAULT_PORT)),
        None => None,
    }
}

impl Resolver {
    /// Where `server` is, asking its well-known through `http` when needed.
    pub async fn resolve(&self, server: &ServerName, http: &reqwest::Client) -> Destination {
        if let Some(destination) = direct(server) {
            return destination;
        }
        let delegated = match self.cached(server) {
            Some(found) => found,
            None => {
                let found = fetch_well_known(server, http).await;
                let ttl = if found.is_some() {
                    WELL_KNOWN_TTL
                } else {
                    WELL_KNOWN_FAILURE_TTL
                };
                self.well_known
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(server.to_owned(), (found.clone(), Instant::now() + ttl));
                found
            }
        };
        match delegated {
            Some(delegated) => direct(&delegated)
                .unwrap_or_else(|| Destination::at(delegated.host(), DEFAULT_PORT)),
            None => Destination::at(server.host(), DEFAULT_PORT),
        }
    }

    fn cached(&self, server: &ServerName) -> Option<Option<OwnedServerName>> {
        let cache = self.well_known.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(server)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(found, _)| found.clone())
    }
}

/// The delegation `server` publishes, if any (anything unusable counts as none).
async fn fetch_well_known(server: &ServerName, http: &reqwest::Client) -> Option<OwnedServerName> {
    let url = format!("https://{}/.well-known/matrix/server", server.host());
    let response = http
        .get(&url)
        .timeout(WELL_KNOWN_TIMEOUT)
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = response.bytes().await.ok()?;
    if body.len() > MAX_WELL_KNOWN_BYTES {
        return None;
    }
    let parsed: WellKnown = serde_json::from_slice(&body).ok()?;
    match OwnedServerName::try_from(parsed.server.as_str()) {
        Ok(name) => Some(name),
        Err(error) => {
            tracing::debug!(%server, %error, "unusable m.server in well-known");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> OwnedServerName {
        text.try_into().unwrap()
    }

    #[test]
    fn literals_and_explicit_ports_are_used_as_they_are() {
        assert_eq!(
            direct(&name("127.0.0.1:8449")).unwrap().base_url,
            "https://127.0.0.1:8449"
        );
        assert_eq!(
            direct(&name("127.0.0.1")).unwrap().base_url,
            "https://127.0.0.1:8448"
        );
        assert_eq!(
            direct(&name("[::1]:9000")).unwrap().base_url,
            "https://[::1]:9000"
        );
        assert_eq!(
            direct(&name("matrix.example.org:443")).unwrap().base_url,
            "https://matrix.example.org:443"
        );
        assert!(direct(&name("example.org")).is_none(), "asks well-known");
    }
}

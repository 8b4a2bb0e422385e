//! Federation: this server's signing keys, other servers' keys, finding other servers, signed
//! requests to them, checking the signed requests they make, sending them the rooms' events,
//! and the TLS listener they reach this server on.

pub mod backfill;
pub mod client;
pub mod device_lists;
pub mod edu;
pub mod intake;
pub mod invite;
pub mod join;
pub mod keys;
pub mod knock;
pub mod presence;
pub mod query;
pub mod receiver;
pub mod remote_keys;
pub mod resolver;
pub mod sender;
pub mod tls;

use std::sync::Arc;

use ruma::api::federation::authentication::XMatrix;
use ruma::{OwnedServerName, ServerName};

use self::client::FederationClient;
use self::keys::ServerKeys;
use self::remote_keys::RemoteKeys;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::outbound::Outbound;
use crate::storage::Store;

pub struct Federation {
    pub client: FederationClient,
    pub remote_keys: RemoteKeys,
    /// The senders of the outgoing queues, per destination.
    pub senders: sender::Senders,
    server_name: OwnedServerName,
    enabled: bool,
    allowlist: Vec<String>,
}

/// Most PDUs and EDUs in one transaction (the spec's limits).
pub const MAX_PDUS: usize = 50;
pub const MAX_EDUS: usize = 100;

/// 401 `M_UNAUTHORIZED`: a request without a valid server signature.
pub fn unauthorized(why: impl Into<String>) -> Error {
    Error::new(
        http::StatusCode::UNAUTHORIZED,
        ruma::api::error::ErrorKind::Unauthorized,
        why,
    )
}

impl Federation {
    pub fn new(config: &Config, store: Arc<dyn Store>, keys: Arc<ServerKeys>) -> Result<Self> {
        Ok(Self {
            client: FederationClient::new(config, keys)?,
            remote_keys: RemoteKeys::new(store),
            senders: Default::default(),
            server_name: config.server_name.clone(),
            enabled: config.federation.enabled,
            allowlist: config.federation.domain_allowlist.clone(),
        })
    }

    /// Whether this server talks to `server` at all: federation on, and the server on the
    /// allowlist when there is one.
    pub fn talks_to(&self, server: &ServerName) -> bool {
        self.enabled
            && server != self.server_name
            && (self.allowlist.is_empty() || self.allowlist.iter().any(|s| s == server.as_str()))
    }

    /// Refuses a server this one does not talk to (403 `M_FORBIDDEN`).
    pub fn check_talks_to(&self, server: &ServerName) -> Result<()> {
        if self.talks_to(server) {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "This server does not federate with {server}"
            )))
        }
    }

    /// The server that signed `request` (its `X-Matrix` authorization), checked: 401
    /// `M_UNAUTHORIZED` when the signature is missing, malformed, for another destination or
    /// does not verify with the origin's key; 403 `M_FORBIDDEN` for a server this one does not
    /// federate with.
    pub async fn authenticate(
        &self,
        outbound: &Outbound,
        request: &http::Request<&[u8]>,
    ) -> Result<OwnedServerName> {
        let x_matrix = XMatrix::extract_from_http_headers(request.headers()).map_err(|e| {
            unauthorized(format!("Missing or malformed X-Matrix authorization: {e}"))
        })?;
        let origin = x_matrix.origin.clone();
        if origin == self.server_name {
            return Err(unauthorized("A request from this server's own name"));
        }
        self.check_talks_to(&origin)?;
        if x_matrix
            .destination
            .as_ref()
            .is_some_and(|d| *d != self.server_name)
        {
            return Err(unauthorized(format!(
                "The request is for {}, not this server",
                x_matrix
                    .destination
                    .as_ref()
                    .map(|d| d.as_str())
                    .unwrap_or_default()
            )));
        }
        let keys = self
            .remote_keys
            .keys_for(
                &self.client,
                outbound,
                &origin,
                &[x_matrix.key.as_str()],
                crate::now_ms(),
            )
            .await?;
        x_matrix
            .verify_http_request(request, &self.server_name, &keys)
            .map_err(|e| unauthorized(format!("The request's signature does not verify: {e}")))?;
        // A server that reaches us is up: what waits for it goes now.
        self.senders.contacted(&origin);
        Ok(origin)
    }
}

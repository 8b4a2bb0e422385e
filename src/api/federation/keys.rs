//! Key publication and server version, the first things another server asks; and key queries
//! answered as a notary (other servers' keys, vouched for with this server's signature).

use std::sync::Arc;

use ruma::ServerName;
use ruma::api::federation::discovery::{
    ServerSigningKeys, get_remote_server_keys, get_remote_server_keys_batch, get_server_keys,
    get_server_version,
};
use ruma::serde::Raw;

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::services::Services;

/// `GET /_matrix/key/v2/server`
pub async fn server_keys(
    services: Arc<Services>,
    _req: Ruma<get_server_keys::v2::Request>,
) -> Result<get_server_keys::v2::Response> {
    let document = services.server_keys.server_key_document()?;
    let raw = serde_json::value::to_raw_value(&document)
        .map_err(|e| Error::internal(format!("serialising the key document: {e}")))?;
    Ok(get_server_keys::v2::Response::new(Raw::from_json(raw)))
}

/// `GET /_matrix/federation/v1/version`
pub async fn version(
    _services: Arc<Services>,
    _req: Ruma<get_server_version::v1::Request>,
) -> Result<get_server_version::v1::Response> {
    let mut server = get_server_version::v1::Server::new();
    server.name = Some("Sori".to_owned());
    server.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let mut response = get_server_version::v1::Response::new();
    response.server = Some(server);
    Ok(response)
}

/// Servers one batch key query may ask about (each may cost this server a fetch).
const MAX_SERVERS_PER_QUERY: usize = 20;

/// The key documents of `server` that this server vouches for as a notary: its own, or the
/// server's latest (fetched again when not valid until `minimum_valid_until_ms`) with this
/// server's signature added. None for a server this one does not federate with.
async fn notarised(
    services: &Services,
    server: &ServerName,
    minimum_valid_until_ms: u64,
) -> Result<Vec<Raw<ServerSigningKeys>>> {
    let mut document = if server == services.config.server_name {
        services.server_keys.server_key_document()?
    } else if services.federation.talks_to(server) {
        match services
            .federation
            .remote_keys
            .document(
                &services.federation.client,
                &services.outbound,
                server,
                minimum_valid_until_ms,
            )
            .await?
        {
            Some(document) => document,
            None => return Ok(Vec::new()),
        }
    } else {
        return Ok(Vec::new());
    };
    services.server_keys.sign_json(&mut document)?;
    let raw = serde_json::value::to_raw_value(&document)
        .map_err(|e| Error::internal(format!("serialising a key document: {e}")))?;
    Ok(vec![Raw::from_json(raw)])
}

/// `GET /_matrix/key/v2/query/{serverName}`
pub async fn query(
    services: Arc<Services>,
    req: Ruma<get_remote_server_keys::v2::Request>,
) -> Result<get_remote_server_keys::v2::Response> {
    let server_keys = notarised(
        &services,
        &req.body.server_name,
        u64::from(req.body.minimum_valid_until_ts.get()),
    )
    .await?;
    Ok(get_remote_server_keys::v2::Response::new(server_keys))
}

/// `POST /_matrix/key/v2/query`
pub async fn query_batch(
    services: Arc<Services>,
    req: Ruma<get_remote_server_keys_batch::v2::Request>,
) -> Result<get_remote_server_keys_batch::v2::Response> {
    if req.body.server_keys.len() > MAX_SERVERS_PER_QUERY {
        return Err(Error::invalid_param(format!(
            "At most {MAX_SERVERS_PER_QUERY} servers per query"
        )));
    }
    let now = crate::now_ms();
    let mut server_keys = Vec::new();
    for (server, criteria) in &req.body.server_keys {
        let minimum = criteria
            .values()
            .filter_map(|c| c.minimum_valid_until_ts)
            .map(|ts| u64::from(ts.get()))
            .max()
            .unwrap_or(now);
        server_keys.extend(notarised(&services, server, minimum).await?);
    }
    Ok(get_remote_server_keys_batch::v2::Response::new(server_keys))
}

//! Key publication and server version, the first things another server asks.

use std::sync::Arc;

use ruma::api::federation::discovery::{get_server_keys, get_server_version};
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

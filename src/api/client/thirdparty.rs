//! Third-party networks: none are bridged through the protocol lookup API yet.

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::api::client::thirdparty::get_protocols;

use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::services::Services;

/// `GET /_matrix/client/v3/thirdparty/protocols`
pub async fn protocols(
    _services: Arc<Services>,
    _req: Ruma<get_protocols::v3::Request>,
) -> Result<get_protocols::v3::Response> {
    Ok(get_protocols::v3::Response::new(BTreeMap::new()))
}

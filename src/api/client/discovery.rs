//! Discovery: supported versions, `.well-known` delegation and capabilities.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use ruma::RoomVersionId;
use ruma::api::client::discovery::{get_capabilities, get_supported_versions};
use serde_json::{Value, json};

use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::services::Services;

/// Spec versions whose client-server API Sori serves.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11",
    "v1.12", "v1.13", "v1.14", "v1.15", "v1.16",
];

/// `GET /_matrix/client/versions`
pub async fn versions(
    _services: Arc<Services>,
    _req: Ruma<get_supported_versions::Request>,
) -> Result<get_supported_versions::Response> {
    let mut response = get_supported_versions::Response::new(
        SUPPORTED_VERSIONS.iter().map(|v| (*v).to_owned()).collect(),
    );
    // Unstable features that are really implemented; each appears when its issue lands.
    response.unstable_features = BTreeMap::from([
        // Refresh tokens (MSC2918), stable since v1.3; older clients still look for the flag.
        ("org.matrix.msc2918.refresh_token".to_owned(), true),
        // Custom profile fields (MSC4133), stable since v1.16.
        ("uk.tcpip.msc4133".to_owned(), true),
        ("uk.tcpip.msc4133.stable".to_owned(), true),
        // Simplified sliding sync (MSC4186): Element X needs it.
        ("org.matrix.simplified_msc3575".to_owned(), true),
        // Authenticated media (MSC3916), stable since v1.11; older clients look for the flag.
        ("org.matrix.msc3916.stable".to_owned(), true),
        // Sori's own extensions (docs/extensions.md).
        ("io.sori.read_by".to_owned(), true),
    ]);
    Ok(response)
}

/// `GET /.well-known/matrix/client`
pub async fn well_known_client(State(services): State<Arc<Services>>) -> Json<Value> {
    let mut document = json!({ "m.homeserver": { "base_url": services.config.base_url() } });
    if !services.config.e2ee.default_encryption {
        // Element and its relatives read this to stop turning encryption on in new rooms.
        document["io.element.e2ee"] = json!({ "default": false });
    }
    Json(document)
}

/// `GET /.well-known/matrix/server`
pub async fn well_known_server(State(services): State<Arc<Services>>) -> Json<Value> {
    let server = match &services.config.well_known.server {
        Some(s) => s.clone(),
        None => {
            // host:port of the public base URL (the default port of its scheme if absent).
            let base = services.config.base_url();
            let (scheme, rest) = base.split_once("://").unwrap_or(("https", base.as_str()));
            let authority = rest.split('/').next().unwrap_or(rest);
            let has_port = authority
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                && !authority.ends_with(']');
            if has_port {
                authority.to_owned()
            } else {
                format!("{authority}:{}", if scheme == "http" { 80 } else { 443 })
            }
        }
    };
    Json(json!({ "m.server": server }))
}

/// `GET /_matrix/client/v3/capabilities`
pub async fn capabilities(
    services: Arc<Services>,
    req: Ruma<get_capabilities::v3::Request>,
) -> Result<get_capabilities::v3::Response> {
    let mut caps = get_capabilities::v3::Capabilities::new();
    // A directory account's password is changed in the directory.
    caps.change_password.enabled = services
        .signin
        .check_password_change(&services.accounts, req.user_id()?)
        .is_ok();
    // Clients before v1.16 read these; newer ones read profile_fields.
    #[allow(deprecated)]
    {
        caps.set_displayname.enabled = true;
        caps.set_avatar_url.enabled = true;
    }
    caps.thirdparty_id_changes.enabled = false;
    caps.get_login_token.enabled = true;
    caps.profile_fields = Some(get_capabilities::v3::ProfileFieldsCapability::new(true));
    caps.room_versions = get_capabilities::v3::RoomVersionsCapability::new(
        crate::rooms::create::DEFAULT_ROOM_VERSION,
        [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12]
            .into_iter()
            .map(|v| (v, get_capabilities::v3::RoomVersionStability::Stable))
            .collect(),
    );
    Ok(get_capabilities::v3::Response::new(caps))
}

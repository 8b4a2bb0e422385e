//! Asking other servers about their users (`/query/profile`).

use ruma::UserId;
use ruma::api::federation::query::get_profile_information;
use ruma::profile::{ProfileFieldName, UserProfile};

use crate::error::Result;
use crate::services::Services;

/// The profile of a user of another server (one field of it, when `field` is given).
pub async fn remote_profile(
    services: &Services,
    user_id: &UserId,
    field: Option<&str>,
) -> Result<UserProfile> {
    let server = user_id.server_name();
    services.federation.check_talks_to(server)?;
    let mut request = get_profile_information::v1::Request::new(user_id.to_owned());
    request.field = field.map(ProfileFieldName::from);
    let response = services
        .federation
        .client
        .send(&services.outbound, server, request)
        .await?;
    Ok(response.data)
}

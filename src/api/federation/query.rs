//! `GET /_matrix/federation/v1/query/profile`: another server asks about one of our users.

use std::sync::Arc;

use ruma::api::federation::query::get_profile_information;
use ruma::profile::UserProfile;

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::services::Services;

pub async fn profile(
    services: Arc<Services>,
    req: Ruma<get_profile_information::v1::Request>,
) -> Result<get_profile_information::v1::Response> {
    let user = &req.body.user_id;
    let known = user.server_name() == services.config.server_name
        && services.accounts.get(user)?.is_some_and(|a| !a.deactivated);
    if !known {
        return Err(Error::not_found("No such user"));
    }
    let fields = services.profiles.get(user)?;
    let profile: UserProfile = match &req.body.field {
        None => fields.into_iter().collect(),
        Some(wanted) => fields
            .into_iter()
            .filter(|(name, _)| name == wanted.as_str())
            .collect(),
    };
    Ok(profile.into())
}

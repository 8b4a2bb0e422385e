//! Profiles: the whole profile and single fields (`displayname`, `avatar_url`, custom fields
//! of v1.16), and the user directory that finds people by them. Anyone may read a local
//! user's profile; only its owner may change it.

use std::sync::Arc;

use ruma::UserId;
use ruma::api::client::profile::{
    delete_profile_field, get_profile, get_profile_field, set_profile_field,
};
use ruma::api::client::user_directory::search_users;
use ruma::profile::{ProfileFieldValue, UserProfile};

use super::require_self;
use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::search::users as directory;
use crate::services::Services;

/// Most users one directory search returns.
const MAX_DIRECTORY_RESULTS: usize = 100;

/// Refuses an unknown user (after asking the appservice whose namespace may hold them).
async fn require_known(services: &Services, user_id: &UserId) -> Result<()> {
    if crate::appservice::query::user_known(services, user_id).await? {
        Ok(())
    } else {
        Err(Error::not_found("No such user"))
    }
}

/// After a change of the display name or avatar, tells the user's rooms.
async fn announce(services: &Services, user_id: &UserId, field: &str) -> Result<()> {
    if !matches!(field, "displayname" | "avatar_url") {
        return Ok(());
    }
    let text = |field| -> Result<Option<String>> {
        Ok(services
            .profiles
            .field(user_id, field)?
            .and_then(|v| v.as_str().map(str::to_owned)))
    };
    crate::rooms::membership::announce_profile(
        &services.timeline,
        user_id,
        text("displayname")?,
        text("avatar_url")?,
    )
    .await
}

/// `GET /_matrix/client/v3/profile/{userId}`
pub async fn get(
    services: Arc<Services>,
    req: Ruma<get_profile::v3::Request>,
) -> Result<get_profile::v3::Response> {
    if req.body.user_id.server_name() != services.config.server_name {
        let mut response = get_profile::v3::Response::new();
        response.data =
            crate::federation::query::remote_profile(&services, &req.body.user_id, None).await?;
        return Ok(response);
    }
    require_known(&services, &req.body.user_id).await?;
    let mut response = get_profile::v3::Response::new();
    response.data = services
        .profiles
        .get(&req.body.user_id)?
        .into_iter()
        .collect::<UserProfile>();
    Ok(response)
}

/// `GET /_matrix/client/v3/profile/{userId}/{keyName}`
pub async fn get_field(
    services: Arc<Services>,
    req: Ruma<get_profile_field::v3::Request>,
) -> Result<get_profile_field::v3::Response> {
    let field = req.body.field.as_str();
    let value = if req.body.user_id.server_name() != services.config.server_name {
        crate::federation::query::remote_profile(&services, &req.body.user_id, Some(field))
            .await?
            .get(field)
            .cloned()
    } else {
        require_known(&services, &req.body.user_id).await?;
        services.profiles.field(&req.body.user_id, field)?
    };
    let value = value.ok_or_else(|| Error::not_found(format!("{field} is not set")))?;
    let value = ProfileFieldValue::new(field, value)
        .map_err(|e| Error::internal(format!("stored profile field {field}: {e}")))?;
    Ok(get_profile_field::v3::Response::new(value))
}

/// `PUT /_matrix/client/v3/profile/{userId}/{keyName}`
pub async fn set_field(
    services: Arc<Services>,
    req: Ruma<set_profile_field::v3::Request>,
) -> Result<set_profile_field::v3::Response> {
    require_self(req.user_id()?, &req.body.user_id)?;
    let value = &req.body.value;
    if value.field_name().as_str() == "avatar_url"
        && let Some(url) = value.value().as_str()
    {
        // An avatar is shown wherever its user appears: any local user may fetch it.
        services.media.publish_avatar(&req.body.user_id, url)?;
    }
    services.profiles.set_field(
        &req.body.user_id,
        value.field_name().as_str(),
        Some(value.value().into_owned()),
    )?;
    announce(&services, &req.body.user_id, value.field_name().as_str()).await?;
    Ok(set_profile_field::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/profile/{userId}/{keyName}`
pub async fn delete_field(
    services: Arc<Services>,
    req: Ruma<delete_profile_field::v3::Request>,
) -> Result<delete_profile_field::v3::Response> {
    require_self(req.user_id()?, &req.body.user_id)?;
    services
        .profiles
        .set_field(&req.body.user_id, req.body.field.as_str(), None)?;
    announce(&services, &req.body.user_id, req.body.field.as_str()).await?;
    Ok(delete_profile_field::v3::Response::new())
}

/// `POST /_matrix/client/v3/user_directory/search`: people by display name or user id, among
/// those the searcher may find (see `users::directory`).
pub async fn search_users(
    services: Arc<Services>,
    req: Ruma<search_users::v3::Request>,
) -> Result<search_users::v3::Response> {
    let limit = usize::try_from(u64::from(req.body.limit))
        .unwrap_or(MAX_DIRECTORY_RESULTS)
        .min(MAX_DIRECTORY_RESULTS);
    let (found, limited) =
        directory::search(&services, req.user_id()?, &req.body.search_term, limit)?;
    let results = found
        .into_iter()
        .map(|found| {
            let mut user = search_users::v3::User::new(found.user_id);
            user.display_name = found.display_name;
            user.avatar_url = found.avatar_url;
            user
        })
        .collect();
    Ok(search_users::v3::Response::new(results, limited))
}

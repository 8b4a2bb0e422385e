//! Account management: password change, deactivation, third-party identifiers.

use std::sync::Arc;

use ruma::api::client::account::{
    ThirdPartyIdRemovalStatus, change_password, deactivate, get_3pids,
};

use super::{delete_devices, require_password};
use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::services::Services;
use crate::users::accounts;

/// `POST /_matrix/client/v3/account/password`
pub async fn change_password(
    services: Arc<Services>,
    req: Ruma<change_password::v3::Request>,
) -> Result<change_password::v3::Response> {
    let session = req.session()?;
    let body = &req.body;
    services
        .signin
        .check_password_change(&services.accounts, &session.user_id)?;
    accounts::check_password_shape(&body.new_password)?;
    require_password(
        &services,
        &session.user_id,
        "password",
        body.auth.as_ref(),
        &req.origin(),
    )
    .await?;
    services
        .accounts
        .set_password(&session.user_id, body.new_password.clone(), &req.origin())
        .await?;
    if body.logout_devices {
        delete_devices(
            &services,
            &session.user_id,
            None,
            Some(&session.device_id),
            &req.origin(),
        )?;
    }
    tracing::info!(user_id = %session.user_id, "password changed");
    Ok(change_password::v3::Response::new())
}

/// `POST /_matrix/client/v3/account/deactivate`
pub async fn deactivate(
    services: Arc<Services>,
    req: Ruma<deactivate::v3::Request>,
) -> Result<deactivate::v3::Response> {
    let user_id = req.user_id()?.to_owned();
    // An appservice deactivates the users of its namespace without a password (a bridge
    // follows its directory); everyone else proves who they are.
    if req.session()?.appservice.is_none() {
        require_password(
            &services,
            &user_id,
            "deactivate",
            req.body.auth.as_ref(),
            &req.origin(),
        )
        .await?;
    }
    crate::users::removal::deactivate(&services, &user_id, req.body.erase, &req.origin()).await?;
    Ok(deactivate::v3::Response::new(
        ThirdPartyIdRemovalStatus::NoSupport,
    ))
}

/// `GET /_matrix/client/v3/account/3pid`: Sori keeps no e-mail addresses or phone numbers
/// (the directory lives in LDAP/SSO), so the list is always empty.
pub async fn threepids(
    _services: Arc<Services>,
    _req: Ruma<get_3pids::v3::Request>,
) -> Result<get_3pids::v3::Response> {
    Ok(get_3pids::v3::Response::new(Vec::new()))
}

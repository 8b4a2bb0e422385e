//! The admin API: Sori's own under `/_sori/admin/v1` (server roles, the audit log, room
//! exports) and the part of Synapse's (`/_synapse/admin`) that admin tools speak. Admins may
//! do everything, auditors may read, users get 403 on all of it.

pub mod audit;
pub mod roles;
pub mod synapse;

use std::sync::Arc;

use axum::extract::FromRequestParts;

use crate::admin::audit::Origin;
use crate::api::ruma::{Authenticated, RequestOrigin};
use crate::error::{Error, Result};
use crate::services::Services;
use crate::users::accounts::Role;
use crate::users::sessions::Session;

/// An admin API caller: authenticated, and an admin or auditor.
pub struct Caller {
    pub session: Session,
    pub role: Role,
    /// The request, acting as the caller, for the audit log.
    pub origin: Origin,
}

impl Caller {
    /// Refuses every modifying call to anyone but an admin.
    pub fn require_admin(&self) -> Result<()> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(Error::forbidden("Only server admins may change this")),
        }
    }
}

impl FromRequestParts<Arc<Services>> for Caller {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        services: &Arc<Services>,
    ) -> Result<Self> {
        let Authenticated(session) = Authenticated::from_request_parts(parts, services).await?;
        let RequestOrigin(origin) = RequestOrigin::from_request_parts(parts, services).await?;
        let role = match services.accounts.get(&session.user_id)? {
            Some(account) if !account.deactivated => account.role,
            _ => Role::User,
        };
        if role == Role::User {
            return Err(Error::forbidden(
                "Only server admins and auditors may use the admin API",
            ));
        }
        Ok(Caller {
            origin: origin.acting_as(&session.user_id),
            session,
            role,
        })
    }
}

/// A query string's parameters (the last of a repeated name wins); never fails, so bad
/// values are refused by the handler with a Matrix error.
pub(crate) fn query_params(raw: Option<&str>) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// A local user id from a path, that exists.
pub(crate) fn local_user(services: &Services, user_id: String) -> Result<ruma::OwnedUserId> {
    let user_id = ruma::OwnedUserId::try_from(user_id)
        .map_err(|_| Error::invalid_param("Invalid user id"))?;
    if !services.accounts.is_local(&user_id) {
        return Err(Error::invalid_param("Only local users can be looked up"));
    }
    if !services.accounts.exists(&user_id)? {
        return Err(Error::not_found("No such user"));
    }
    Ok(user_id)
}

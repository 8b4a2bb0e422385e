//! The admin API: Sori's own under `/_sori/admin/v1` (server roles) and the part of Synapse's
//! (`/_synapse/admin`) that admin tools speak. Admins may do everything, auditors may read,
//! users get 403 on all of it.

pub mod roles;
pub mod synapse;

use crate::error::{Error, Result};
use crate::services::Services;
use crate::users::accounts::Role;
use crate::users::sessions::Session;

/// The caller's role, if it may read the admin API (admins and auditors).
pub(crate) fn require_reader(services: &Services, session: &Session) -> Result<Role> {
    match services.accounts.get(&session.user_id)?.map(|a| a.role) {
        Some(role @ (Role::Admin | Role::Auditor)) => Ok(role),
        _ => Err(Error::forbidden(
            "Only server admins and auditors may use the admin API",
        )),
    }
}

/// Refuses every modifying call to anyone but an admin.
pub(crate) fn require_admin(services: &Services, session: &Session) -> Result<()> {
    match require_reader(services, session)? {
        Role::Admin => Ok(()),
        _ => Err(Error::forbidden("Only server admins may change this")),
    }
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

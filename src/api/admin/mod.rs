//! Sori's own admin API under `/_sori/admin/v1`: server roles now; the rest of the
//! administration (audit log, exports, the Synapse-compatible API) joins it later. Admins may
//! do everything, auditors may read, users get 403 on all of it.

pub mod roles;

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

//! Taking things away from a user: logging devices out with everything they published for
//! encryption, and deactivating an account (its devices, its rooms, optionally its profile).
//! Both cross several services, so they live here rather than in any one of them.

use ruma::{OwnedDeviceId, UserId};

use crate::admin::audit::Origin;
use crate::error::Result;
use crate::rooms::membership::{self, Change};
use crate::services::Services;

/// Deletes the user's devices (all but `keep` when `ids` is `None`) with everything they
/// published for encryption, their to-device inboxes and pushers, and tells those who share
/// a room.
pub fn delete_devices(
    services: &Services,
    user_id: &UserId,
    ids: Option<&[OwnedDeviceId]>,
    keep: Option<&ruma::DeviceId>,
    origin: &Origin,
) -> Result<()> {
    let deleted = match ids {
        Some(ids) => services.sessions.delete_devices(user_id, ids, origin)?,
        None => services
            .sessions
            .delete_all_devices(user_id, keep, origin)?,
    };
    if deleted.is_empty() {
        return Ok(());
    }
    let deleted: Vec<String> = deleted.iter().map(ToString::to_string).collect();
    services.keys.remove_devices(user_id, &deleted)?;
    services.to_device.remove_devices(user_id, &deleted)?;
    services.pushers.remove_devices(user_id, &deleted)?;
    crate::sync::wake_sharers(services, user_id)
}

/// Deactivates the account: nobody can log in to it again, its devices are gone, it leaves
/// every room it is in or invited to, and with `erase` its profile is emptied.
pub async fn deactivate(
    services: &Services,
    user_id: &UserId,
    erase: bool,
    origin: &Origin,
) -> Result<()> {
    services.accounts.deactivate(user_id, origin)?;
    delete_devices(services, user_id, None, None, origin)?;
    if erase {
        let fields: Vec<String> = services.profiles.get(user_id)?.keys().cloned().collect();
        for key in fields {
            services.profiles.set_field(user_id, &key, None)?;
        }
    }
    for (room_id, record) in services.timeline.memberships_of(user_id)? {
        if !matches!(record.membership.as_str(), "join" | "invite" | "knock") {
            continue;
        }
        let left = membership::change(
            &services.timeline,
            Change::new(&room_id, user_id, user_id, "leave"),
        )
        .await;
        // One room refusing (a broken state) must not keep the account in the others.
        if let Err(error) = left {
            tracing::warn!(%room_id, %error, "a deactivated user could not leave a room");
        }
    }
    tracing::info!(user_id = %user_id, "account deactivated");
    Ok(())
}

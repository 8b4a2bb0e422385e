//! Client-server API handlers, one file per area of the spec. Each handler parses (the
//! [`Ruma`](super::ruma::Ruma) extractor did that), authorises, calls a service, and maps the
//! result to the endpoint's ruma response.

pub mod account;
pub mod account_data;
pub mod appservice;
pub mod backup;
pub mod devices;
pub mod directory;
pub mod discovery;
pub mod filter;
pub mod keys;
pub mod media;
pub mod membership;
pub mod messages;
pub mod presence;
pub mod profile;
pub mod push_rules;
pub mod pushers;
pub mod read_by;
pub mod receipts;
pub mod register;
pub mod relations;
pub mod rooms;
pub mod search;
pub mod session;
pub mod sliding_sync;
pub mod sso;
pub mod sync;
pub mod tags;
pub mod thirdparty;
pub mod to_device;
pub mod typing;
pub mod voip;

use ruma::UserId;

use crate::error::{Error, Result};

/// Refuses acting on another user's resources (filters, account data, presence...).
fn require_self(requester: &UserId, target: &UserId) -> Result<()> {
    if requester == target {
        Ok(())
    } else {
        Err(Error::forbidden("You cannot act on behalf of another user"))
    }
}

use crate::users::removal::delete_devices;

/// Runs user-interactive auth with the account's password (`m.login.password`) for an action
/// named by `purpose` (e.g. `deactivate`).
async fn require_password(
    services: &crate::services::Services,
    user_id: &UserId,
    purpose: &str,
    auth: Option<&ruma::api::client::uiaa::AuthData>,
    origin: &crate::admin::audit::Origin,
) -> Result<()> {
    use ruma::api::client::uiaa::{AuthData, AuthFlow, AuthType, UserIdentifier};
    let challenge = crate::users::uia::Challenge {
        purpose: format!("{purpose}:{user_id}"),
        flows: vec![AuthFlow::new(vec![AuthType::Password])],
        params: None,
        auth,
    };
    services
        .uia
        .authenticate(challenge, async |auth| {
            let AuthData::Password(password) = auth else {
                return Err(Error::forbidden("Password authentication required"));
            };
            let UserIdentifier::Matrix(id) = &password.identifier else {
                return Err(Error::forbidden("Only m.id.user identifiers are supported"));
            };
            if services.accounts.parse_login_name(&id.user).as_deref() != Some(user_id) {
                return Err(Error::forbidden("You can only authenticate as yourself"));
            }
            let whose = services
                .signin
                .check_password(
                    &services.accounts,
                    &services.profiles,
                    &crate::identity::Login::Name(user_id.localpart().to_owned()),
                    &password.password,
                    origin,
                )
                .await
                .map_err(|e| match e.errcode().as_str() {
                    "M_FORBIDDEN" => Error::forbidden("Invalid password"),
                    _ => e,
                })?;
            if whose == user_id {
                Ok(())
            } else {
                Err(Error::forbidden("Invalid password"))
            }
        })
        .await
}

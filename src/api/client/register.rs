//! Registration: `POST /register` with user-interactive auth, username availability and
//! registration token validity.

use std::sync::Arc;

use ring::digest::{SHA256, digest};
use ruma::api::client::account::register::{self, RegistrationKind};
use ruma::api::client::account::{check_registration_token_validity, get_username_availability};
use ruma::api::client::uiaa::{AuthData, AuthFlow, AuthType};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::services::Services;
use crate::users::accounts::{self, Role};
use crate::users::uia::Challenge;

/// Compares two secrets without leaking where they differ (their digests are compared).
fn same_secret(a: &str, b: &str) -> bool {
    digest(&SHA256, a.as_bytes()).as_ref() == digest(&SHA256, b.as_bytes()).as_ref()
}

fn invalid_token() -> Error {
    Error::new(
        http::StatusCode::UNAUTHORIZED,
        ruma::api::error::ErrorKind::Forbidden,
        "Invalid registration token",
    )
}

fn registration_closed() -> Error {
    Error::forbidden("Registration is disabled on this server")
}

/// `POST /_matrix/client/v3/register`
pub async fn register(
    services: Arc<Services>,
    req: Ruma<register::v3::Request>,
) -> Result<register::v3::Response> {
    let body = &req.body;
    if body.login_type.is_some() {
        return register_for_appservice(&services, &req).await;
    }
    services.registration_limiter.check(req.client_ip)?;
    if body.kind == RegistrationKind::Guest {
        return Err(Error::forbidden("Guest access is disabled on this server"));
    }
    let config = &services.config.registration;
    if !config.enabled {
        return Err(registration_closed());
    }

    // Refuse a bad or taken name before the client goes through authentication.
    let user_id = match &body.username {
        Some(name) => {
            let user_id = services.accounts.user_id_for(name)?;
            services.appservices.refuse_claimed_user(&user_id, None)?;
            if services.accounts.exists(&user_id)? {
                return Err(Error::user_in_use());
            }
            Some(user_id)
        }
        None => None,
    };
    if let Some(password) = &body.password {
        accounts::check_password_shape(password)?;
    }

    let needs_token = config.token.is_some() || config.require_token;
    let stage = if needs_token {
        AuthType::RegistrationToken
    } else {
        AuthType::Dummy
    };
    // The admin-made token the registration used, if any: one of its uses is taken when the
    // account is created.
    let mut used_token = None;
    services
        .uia
        .authenticate(
            Challenge {
                purpose: "register".to_owned(),
                flows: vec![AuthFlow::new(vec![stage])],
                params: None,
                auth: body.auth.as_ref(),
            },
            async |auth| match auth {
                AuthData::Dummy(_) if !needs_token => Ok(()),
                AuthData::RegistrationToken(t) if needs_token => {
                    if config
                        .token
                        .as_deref()
                        .is_some_and(|expected| same_secret(&t.token, expected))
                    {
                        return Ok(());
                    }
                    if services.registration_tokens.is_valid(&t.token)? {
                        used_token = Some(t.token.clone());
                        return Ok(());
                    }
                    Err(invalid_token())
                }
                _ => Err(invalid_token()),
            },
        )
        .await?;
    if let Some(token) = &used_token
        && !services.registration_tokens.consume(token)?
    {
        return Err(invalid_token());
    }

    let password = body
        .password
        .clone()
        .ok_or_else(|| Error::missing_param("A password is required"))?;
    let user_id = match user_id {
        Some(id) => id,
        None => services.accounts.user_id_for(&crate::random::string(
            b"abcdefghijklmnopqrstuvwxyz0123456789",
            12,
        ))?,
    };
    let created = services
        .accounts
        .create(
            &user_id,
            Some(password),
            Role::User,
            &req.origin().acting_as(&user_id),
        )
        .await;
    if let Err(e) = created {
        if let Some(token) = &used_token {
            services.registration_tokens.refund(token)?;
        }
        return Err(e);
    }
    // A new user starts with their localpart as display name, as on other homeservers.
    services.profiles.set_field(
        &user_id,
        "displayname",
        Some(serde_json::Value::String(user_id.localpart().to_owned())),
    )?;
    tracing::info!(user_id = %user_id, "registered");

    registered(&services, &user_id, body, &req.origin(), "registration")
}

/// The answer to a registration, logged in on a new device unless `inhibit_login`.
fn registered(
    services: &Services,
    user_id: &ruma::UserId,
    body: &register::v3::Request,
    origin: &crate::admin::audit::Origin,
    method: &str,
) -> Result<register::v3::Response> {
    let mut response = register::v3::Response::new(user_id.to_owned());
    if !body.inhibit_login {
        let (device_id, issued) = services.sessions.login(
            user_id,
            body.device_id.as_deref(),
            body.initial_device_display_name.clone(),
            origin,
            method,
            body.refresh_token,
        )?;
        response.access_token = Some(issued.access_token);
        response.device_id = Some(device_id);
        response.refresh_token = issued.refresh_token;
        response.expires_in = issued.expires_in_ms.map(std::time::Duration::from_millis);
    }
    Ok(response)
}

/// Registration by an appservice (`type: m.login.application_service` with its
/// `as_token`): a user of its namespace, without password or user-interactive auth.
async fn register_for_appservice(
    services: &Services,
    req: &Ruma<register::v3::Request>,
) -> Result<register::v3::Response> {
    let body = &req.body;
    if body.login_type != Some(register::LoginType::ApplicationService) {
        return Err(Error::bad_json("Unknown registration type"));
    }
    let appservice = req
        .session
        .as_ref()
        .and_then(|s| s.appservice.as_deref())
        .and_then(|id| services.appservices.by_id(id))
        .ok_or_else(Error::missing_token)?;
    let name = body
        .username
        .as_deref()
        .ok_or_else(|| Error::missing_param("An appservice registration needs a username"))?;
    let user_id = services.accounts.bridge_user_id_for(name)?;
    if !appservice.is_user(&user_id) {
        return Err(Error::exclusive(format!(
            "{user_id} is not in the appservice's namespace"
        )));
    }
    let origin = req.origin().acting_as(&appservice.sender);
    let signs_in_with = format!("appservice:{}", appservice.id());
    match services.accounts.get(&user_id)? {
        // Registering again one of its own users it deactivated brings them back (a person
        // who returns to the directory).
        Some(account)
            if account.deactivated && account.signs_in_with.as_deref() == Some(&signs_in_with) =>
        {
            services.accounts.reactivate(&user_id, &origin)?;
        }
        Some(_) => return Err(Error::user_in_use()),
        None => {
            services
                .accounts
                .create_external(&user_id, &signs_in_with, Role::User, &origin)
                .await?;
            services.profiles.set_field(
                &user_id,
                "displayname",
                Some(serde_json::Value::String(user_id.localpart().to_owned())),
            )?;
        }
    }
    registered(
        services,
        &user_id,
        body,
        &origin,
        "m.login.application_service",
    )
}

/// `GET /_matrix/client/v3/register/available`
pub async fn available(
    services: Arc<Services>,
    req: Ruma<get_username_availability::v3::Request>,
) -> Result<get_username_availability::v3::Response> {
    services.registration_limiter.check(req.client_ip)?;
    let user_id = services.accounts.user_id_for(&req.body.username)?;
    services.appservices.refuse_claimed_user(&user_id, None)?;
    if services.accounts.exists(&user_id)? {
        return Err(Error::user_in_use());
    }
    Ok(get_username_availability::v3::Response::new(true))
}

/// `GET /_matrix/client/v1/register/m.login.registration_token/validity`
pub async fn token_validity(
    services: Arc<Services>,
    req: Ruma<check_registration_token_validity::v1::Request>,
) -> Result<check_registration_token_validity::v1::Response> {
    services.registration_limiter.check(req.client_ip)?;
    let config = &services.config.registration;
    if !config.enabled {
        return Err(registration_closed());
    }
    let valid = config
        .token
        .as_deref()
        .is_some_and(|t| same_secret(t, &req.body.token))
        || services.registration_tokens.is_valid(&req.body.token)?;
    Ok(check_registration_token_validity::v1::Response::new(valid))
}

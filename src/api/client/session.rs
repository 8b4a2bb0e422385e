//! Sessions: login flows, password login, token refresh, logout and whoami.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use ruma::api::client::account::whoami;
use ruma::api::client::session::login::v3::{DiscoveryInfo, HomeserverInfo};
use ruma::api::client::session::{
    get_login_token, get_login_types, login, logout, logout_all, refresh_token,
};
use ruma::api::client::uiaa::UserIdentifier;
use ruma::api::error::ErrorKind;

use super::delete_devices;
use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::identity::Login;
use crate::services::Services;

/// The login type of a JWT login (Synapse's name, which clients and bridges use).
const JWT_LOGIN: &str = "org.matrix.login.jwt";

/// `GET /_matrix/client/v3/login`: exactly the flows that are enabled.
pub async fn login_types(
    services: Arc<Services>,
    _req: Ruma<get_login_types::v3::Request>,
) -> Result<get_login_types::v3::Response> {
    use get_login_types::v3::{LoginType, PasswordLoginType, TokenLoginType};
    let mut token = TokenLoginType::new();
    token.get_login_token = true;
    let mut flows = vec![
        LoginType::Password(PasswordLoginType::new()),
        LoginType::Token(token),
    ];
    let providers = services.sso.providers();
    if !providers.is_empty() {
        use get_login_types::v3::{IdentityProvider, SsoLoginType};
        let mut sso = SsoLoginType::new();
        sso.identity_providers = providers
            .into_iter()
            .map(|(id, name)| IdentityProvider::new(id, name))
            .collect();
        flows.push(LoginType::Sso(sso));
    }
    if !services.appservices.is_empty() {
        flows.push(LoginType::ApplicationService(
            get_login_types::v3::ApplicationServiceLoginType::new(),
        ));
    }
    if services.signin.offers_jwt() {
        flows.push(
            LoginType::new(JWT_LOGIN, Default::default())
                .map_err(|e| Error::internal(format!("login type: {e}")))?,
        );
    }
    Ok(get_login_types::v3::Response::new(flows))
}

/// `POST /_matrix/client/v3/login`
pub async fn login(
    services: Arc<Services>,
    req: Ruma<login::v3::Request>,
) -> Result<login::v3::Response> {
    let body = &req.body;
    let appservice = req
        .session
        .as_ref()
        .and_then(|s| s.appservice.as_deref())
        .and_then(|id| services.appservices.by_id(id));
    if appservice.is_none_or(|a| a.registration.rate_limited) {
        services.login_limiter.check(req.client_ip)?;
    }
    let origin = req.origin();
    let method = body.login_info.login_type();
    let checked = match &body.login_info {
        login::v3::LoginInfo::ApplicationService(info) => {
            appservice_login(&services, appservice.map(|a| a.as_ref()), info)
        }
        login::v3::LoginInfo::Password(password) => {
            password_login(&services, password, &origin).await
        }
        login::v3::LoginInfo::Token(token) => services.login_tokens.redeem(&token.token),
        other if other.login_type() == JWT_LOGIN && services.signin.offers_jwt() => {
            let data = other.data();
            let token = data
                .get("token")
                .and_then(|t| t.as_str())
                .ok_or_else(|| Error::missing_param("A JWT login needs a token"))?;
            services
                .signin
                .check_jwt(&services.accounts, &services.profiles, token, &origin)
                .await
        }
        _ => {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::Unknown,
                "Unsupported login type",
            ));
        }
    };
    let user_id = match checked {
        Ok(user_id) => user_id,
        Err(e) => {
            // Refused credentials are audited with what was tried, never the secret.
            if matches!(e.errcode().as_str(), "M_FORBIDDEN" | "M_UNKNOWN_TOKEN") {
                let tried = attempted_identifier(&body.login_info).unwrap_or_default();
                services.audit.record(origin.record(
                    "login_failed",
                    tried,
                    serde_json::json!({"method": method, "errcode": e.errcode()}),
                ))?;
            }
            return Err(e);
        }
    };

    if !services.accounts.is_active(&user_id)? {
        return Err(Error::new(
            StatusCode::FORBIDDEN,
            ErrorKind::UserDeactivated,
            "This account is deactivated",
        ));
    }

    let (device_id, issued) = services.sessions.login(
        &user_id,
        body.device_id.as_deref(),
        body.initial_device_display_name.clone(),
        &origin,
        method,
        body.refresh_token,
    )?;
    tracing::info!(user_id = %user_id, device_id = %device_id, "logged in");

    let mut response = login::v3::Response::new(user_id.clone(), issued.access_token, device_id);
    response.well_known = Some(DiscoveryInfo::new(HomeserverInfo::new(
        services.config.base_url(),
    )));
    response.refresh_token = issued.refresh_token;
    response.expires_in = issued.expires_in_ms.map(Duration::from_millis);
    Ok(response)
}

/// `m.login.application_service`: one of the appservice's users, with its `as_token`.
fn appservice_login(
    services: &Services,
    appservice: Option<&crate::appservice::Appservice>,
    info: &login::v3::ApplicationService,
) -> Result<ruma::OwnedUserId> {
    let appservice = appservice.ok_or_else(Error::missing_token)?;
    #[allow(deprecated)] // the legacy top-level `user` field is still sent by old clients
    let name = match (&info.identifier, &info.user) {
        (Some(UserIdentifier::Matrix(id)), _) => id.user.clone(),
        (None, Some(user)) => user.clone(),
        _ => return Err(Error::missing_param("Missing identifier")),
    };
    let user_id = services
        .accounts
        .parse_login_name(&name)
        .filter(|u| appservice.is_user(u))
        .ok_or_else(|| Error::exclusive("The user is not in the appservice's namespace"))?;
    if !services.accounts.exists(&user_id)? {
        return Err(Error::forbidden(
            "The appservice has not registered this user",
        ));
    }
    Ok(user_id)
}

/// `m.login.password`: whose password it is.
async fn password_login(
    services: &Services,
    password: &login::v3::Password,
    origin: &crate::admin::audit::Origin,
) -> Result<ruma::OwnedUserId> {
    #[allow(deprecated)] // the legacy top-level `user` field is still sent by old clients
    let login = match (&password.identifier, &password.user) {
        (Some(UserIdentifier::Matrix(id)), _) => Login::Name(id.user.clone()),
        (Some(UserIdentifier::Email(email)), _) => Login::Email(email.address.clone()),
        (Some(_), _) => {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::Unknown,
                "Only m.id.user identifiers and e-mail addresses are supported",
            ));
        }
        (None, Some(user)) => Login::Name(user.clone()),
        (None, None) => return Err(Error::missing_param("Missing identifier")),
    };
    services
        .signin
        .check_password(
            &services.accounts,
            &services.profiles,
            &login,
            &password.password,
            origin,
        )
        .await
        .inspect_err(|e| {
            if e.errcode() == "M_FORBIDDEN" {
                tracing::info!("failed login");
            }
        })
}

/// The user a refused password login named (as typed), for the audit log.
fn attempted_identifier(info: &login::v3::LoginInfo) -> Option<String> {
    let login::v3::LoginInfo::Password(password) = info else {
        return None;
    };
    #[allow(deprecated)] // the legacy top-level `user` field is still sent by old clients
    match (&password.identifier, &password.user) {
        (Some(UserIdentifier::Matrix(id)), _) => Some(id.user.clone()),
        (Some(UserIdentifier::Email(email)), _) => Some(email.address.clone()),
        (None, Some(user)) => Some(user.clone()),
        _ => None,
    }
    // Cut: a login name is short, a megabyte "name" is not worth keeping.
    .map(|name| crate::admin::audit::clip(&name))
}

/// How long a token from `/login/get_token` works (the spec's recommendation).
const LOGIN_TOKEN_LIFETIME: Duration = Duration::from_secs(120);

/// `POST /_matrix/client/v1/login/get_token`: a single-use token that lets another device of
/// the user in (QR login), after the user proves it is them again.
pub async fn get_login_token(
    services: Arc<Services>,
    req: Ruma<get_login_token::v1::Request>,
) -> Result<get_login_token::v1::Response> {
    let user_id = req.user_id()?;
    super::require_password(
        &services,
        user_id,
        "get_login_token",
        req.body.auth.as_ref(),
        &req.origin(),
    )
    .await?;
    let token = services.login_tokens.issue(user_id, LOGIN_TOKEN_LIFETIME)?;
    tracing::info!(user_id = %user_id, "login token issued");
    Ok(get_login_token::v1::Response::new(
        LOGIN_TOKEN_LIFETIME,
        token,
    ))
}

/// `POST /_matrix/client/v3/refresh`
pub async fn refresh(
    services: Arc<Services>,
    req: Ruma<refresh_token::v3::Request>,
) -> Result<refresh_token::v3::Response> {
    services.login_limiter.check(req.client_ip)?;
    let issued = services.sessions.refresh(&req.body.refresh_token)?;
    let mut response = refresh_token::v3::Response::new(issued.access_token);
    response.refresh_token = issued.refresh_token;
    response.expires_in_ms = issued.expires_in_ms.map(Duration::from_millis);
    Ok(response)
}

/// `POST /_matrix/client/v3/logout`: ends this device's session (and deletes the device).
pub async fn logout(
    services: Arc<Services>,
    req: Ruma<logout::v3::Request>,
) -> Result<logout::v3::Response> {
    let session = req.session()?;
    delete_devices(
        &services,
        &session.user_id,
        Some(std::slice::from_ref(&session.device_id)),
        None,
        &req.origin(),
    )?;
    Ok(logout::v3::Response::new())
}

/// `POST /_matrix/client/v3/logout/all`
pub async fn logout_all(
    services: Arc<Services>,
    req: Ruma<logout_all::v3::Request>,
) -> Result<logout_all::v3::Response> {
    delete_devices(&services, req.user_id()?, None, None, &req.origin())?;
    Ok(logout_all::v3::Response::new())
}

/// `GET /_matrix/client/v3/account/whoami`
pub async fn whoami(
    _services: Arc<Services>,
    req: Ruma<whoami::v3::Request>,
) -> Result<whoami::v3::Response> {
    let session = req.session()?;
    let mut response = whoami::v3::Response::new(session.user_id.clone(), false);
    response.device_id = Some(session.device_id.clone());
    Ok(response)
}

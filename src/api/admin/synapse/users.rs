//! Synapse's user admin API: the user list and details, creating and modifying users,
//! passwords, deactivation, sessions (`whois`), joined rooms, and the `admin` flag, which is
//! the server role seen through Synapse's eyes (`admin: true` is the role `admin`, clearing
//! it makes the user a `user`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{body, flag, page, paging};
use crate::admin::users::{self, ListQuery, Order, UserView};
use crate::api::admin::{Caller, local_user, query_params};
use crate::error::{Error, Result};
use crate::services::Services;
use crate::users::accounts::Role;

/// The admin room's bot is a `bot`, as Synapse marks such accounts; people have no type.
fn user_type(user: &UserView) -> Option<&'static str> {
    (user.account.signs_in_with.as_deref() == Some(crate::admin::bot::BOT_ACCOUNT)).then_some("bot")
}

/// A user as Synapse's list shows one.
fn listed(user: &UserView) -> Value {
    json!({
        "name": user.user_id,
        "user_type": user_type(user),
        "is_guest": false,
        "admin": user.account.role == Role::Admin,
        "deactivated": user.account.deactivated,
        "erased": false,
        "shadow_banned": false,
        "displayname": user.displayname,
        "avatar_url": user.avatar_url,
        "creation_ts": user.account.created_ts,
        "locked": false,
        "last_seen_ts": user.last_seen_ts,
    })
}

/// A user as Synapse's details show one (`creation_ts` in seconds there, as Synapse does),
/// with Sori's role beside the flag.
fn details(user: &UserView) -> Value {
    json!({
        "name": user.user_id,
        "displayname": user.displayname,
        "threepids": [],
        "avatar_url": user.avatar_url,
        "is_guest": false,
        "admin": user.account.role == Role::Admin,
        "role": user.account.role,
        "deactivated": user.account.deactivated,
        "erased": false,
        "shadow_banned": false,
        "creation_ts": user.account.created_ts / 1000,
        "appservice_id": null,
        "consent_server_notice_sent": null,
        "consent_version": null,
        "consent_ts": null,
        "external_ids": user.account.signs_in_with.as_ref().map_or(json!([]), |provider| {
            json!([{"auth_provider": provider, "external_id": user.user_id.localpart()}])
        }),
        "user_type": user_type(user),
        "locked": false,
        "suspended": false,
        "last_seen_ts": user.last_seen_ts,
    })
}

/// `GET /_synapse/admin/v2/users`
pub async fn list(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let params = query_params(raw.as_deref());
    let (from, limit) = paging(&params)?;
    let query = ListQuery {
        name: params.get("name").cloned(),
        user_id: params.get("user_id").cloned(),
        admins: flag(&params, "admins")?,
        role: None,
        deactivated: flag(&params, "deactivated")?.unwrap_or(false),
        order_by: params
            .get("order_by")
            .map_or(Ok(Order::Name), |o| Order::parse(o))?,
        backwards: super::backwards(&params)?,
    };
    // Sori has no guests: asking for only guests finds nobody.
    let only_guests = flag(&params, "guests")? == Some(true);
    flag(&params, "locked")?;
    let found = tokio::task::spawn_blocking(move || users::list(&services, &query))
        .await
        .map_err(|e| Error::internal(format!("listing users: {e}")))??;
    let found = if only_guests { Vec::new() } else { found };
    let total = found.len();
    let (users, next) = page(found, from, limit);
    let mut body = json!({
        "users": users.iter().map(listed).collect::<Vec<_>>(),
        "total": total,
    });
    if let Some(next) = next {
        body["next_token"] = next.into();
    }
    Ok(Json(body).into_response())
}

/// `GET /_synapse/admin/v2/users/{userId}`
pub async fn get(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Response> {
    let user_id = local_user(&services, user_id)?;
    let user =
        users::view(&services, &user_id)?.ok_or_else(|| Error::not_found("User not found"))?;
    Ok(Json(details(&user)).into_response())
}

fn yes() -> bool {
    true
}

/// What `PUT /v2/users/{userId}` may set. Third-party ids, external ids, user types and locks
/// are Synapse features Sori does not have: accepted and ignored, as the tools send them.
#[derive(Deserialize)]
struct Modify {
    password: Option<String>,
    #[serde(default = "yes")]
    logout_devices: bool,
    displayname: Option<String>,
    avatar_url: Option<String>,
    admin: Option<bool>,
    deactivated: Option<bool>,
}

/// `PUT /_synapse/admin/v2/users/{userId}`: creates the user (201) or changes them (200).
pub async fn put(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(user_id): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    caller.require_admin()?;
    let user_id = ruma::OwnedUserId::try_from(user_id)
        .map_err(|_| Error::invalid_param("Invalid user id"))?;
    if !services.accounts.is_local(&user_id) {
        return Err(Error::invalid_param(
            "This endpoint can only be used with local users",
        ));
    }
    let change: Modify = body(&bytes)?;
    if let Some(password) = &change.password {
        crate::users::accounts::check_password_shape(password)?;
    }
    let origin = &caller.origin;
    let created = match services.accounts.get(&user_id)? {
        Some(_) => false,
        None => {
            // The same rules as registration for the name.
            let checked = services.accounts.user_id_for(user_id.localpart())?;
            let role = if change.admin == Some(true) {
                Role::Admin
            } else {
                Role::User
            };
            services
                .accounts
                .create(&checked, change.password.clone(), role, origin)
                .await?;
            let name = change
                .displayname
                .clone()
                .unwrap_or_else(|| user_id.localpart().to_owned());
            services
                .profiles
                .set_field(&user_id, "displayname", Some(name.into()))?;
            true
        }
    };
    if !created {
        if let Some(password) = change.password {
            services
                .signin
                .check_password_change(&services.accounts, &user_id)?;
            services
                .accounts
                .set_password(&user_id, password, origin)
                .await?;
            if change.logout_devices {
                crate::users::removal::delete_devices(&services, &user_id, None, None, origin)?;
            }
        }
        if let Some(admin) = change.admin {
            let role = services.accounts.get(&user_id)?.map(|a| a.role);
            // Clearing the flag of an auditor leaves them an auditor; setting it makes an admin.
            if admin && role != Some(Role::Admin) {
                services
                    .accounts
                    .change_role(&user_id, Role::Admin, origin)?;
            } else if !admin && role == Some(Role::Admin) {
                services
                    .accounts
                    .change_role(&user_id, Role::User, origin)?;
            }
        }
        let mut profile_changed = false;
        if let Some(name) = change.displayname {
            services
                .profiles
                .set_field(&user_id, "displayname", Some(name.into()))?;
            profile_changed = true;
        }
        if let Some(url) = change.avatar_url {
            services.media.publish_avatar(&user_id, &url)?;
            services
                .profiles
                .set_field(&user_id, "avatar_url", Some(url.into()))?;
            profile_changed = true;
        }
        if profile_changed {
            let text = |field| -> Result<Option<String>> {
                Ok(services
                    .profiles
                    .field(&user_id, field)?
                    .and_then(|v| v.as_str().map(str::to_owned)))
            };
            crate::rooms::membership::announce_profile(
                &services.timeline,
                &user_id,
                text("displayname")?,
                text("avatar_url")?,
            )
            .await?;
        }
    } else if change.avatar_url.is_some() {
        let url = change.avatar_url.unwrap_or_default();
        services.media.publish_avatar(&user_id, &url)?;
        services
            .profiles
            .set_field(&user_id, "avatar_url", Some(url.into()))?;
    }
    let deactivated = services
        .accounts
        .get(&user_id)?
        .is_some_and(|a| a.deactivated);
    match change.deactivated {
        Some(true) if !deactivated => {
            if services.accounts.is_last_admin(&user_id)? {
                return Err(Error::forbidden("The last admin cannot be deactivated"));
            }
            crate::users::removal::deactivate(&services, &user_id, false, origin).await?;
        }
        Some(false) if deactivated => services.accounts.reactivate(&user_id, origin)?,
        _ => {}
    }
    let user =
        users::view(&services, &user_id)?.ok_or_else(|| Error::not_found("User not found"))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(details(&user))).into_response())
}

/// `GET /_synapse/admin/v1/whois/{userId}`: the user's devices and where they were last seen.
pub async fn whois(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Response> {
    let user_id = local_user(&services, user_id)?;
    let mut devices = serde_json::Map::new();
    for device in services.sessions.devices(&user_id)? {
        let connections: Vec<Value> = device
            .last_seen_ip
            .iter()
            .map(|ip| json!({"ip": ip, "last_seen": device.last_seen_ts, "user_agent": null}))
            .collect();
        devices.insert(
            device.device_id.to_string(),
            json!({"sessions": [{"connections": connections}]}),
        );
    }
    Ok(Json(json!({"user_id": user_id, "devices": devices})).into_response())
}

#[derive(Deserialize)]
struct ResetPassword {
    new_password: String,
    #[serde(default = "yes")]
    logout_devices: bool,
}

/// `POST /_synapse/admin/v1/reset_password/{userId}`
pub async fn reset_password(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(user_id): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    caller.require_admin()?;
    let user_id = local_user(&services, user_id)?;
    let reset: ResetPassword = body(&bytes)?;
    services
        .signin
        .check_password_change(&services.accounts, &user_id)?;
    services
        .accounts
        .set_password(&user_id, reset.new_password, &caller.origin)
        .await?;
    if reset.logout_devices {
        crate::users::removal::delete_devices(&services, &user_id, None, None, &caller.origin)?;
    }
    Ok(Json(json!({})).into_response())
}

#[derive(Deserialize)]
struct Deactivate {
    #[serde(default)]
    erase: bool,
}

/// `POST /_synapse/admin/v1/deactivate/{userId}`
pub async fn deactivate(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(user_id): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    caller.require_admin()?;
    let user_id = local_user(&services, user_id)?;
    let Deactivate { erase } = body(&bytes)?;
    if services.accounts.is_last_admin(&user_id)? {
        return Err(Error::forbidden("The last admin cannot be deactivated"));
    }
    crate::users::removal::deactivate(&services, &user_id, erase, &caller.origin).await?;
    Ok(Json(json!({"id_server_unbind_result": "success"})).into_response())
}

/// `GET /_synapse/admin/v1/users/{userId}/joined_rooms`
pub async fn joined_rooms(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Response> {
    let user_id = local_user(&services, user_id)?;
    let rooms = services.timeline.joined_rooms(&user_id)?;
    Ok(Json(json!({"total": rooms.len(), "joined_rooms": rooms})).into_response())
}

/// `GET /_synapse/admin/v1/users/{userId}/admin`
pub async fn get_admin(
    State(services): State<Arc<Services>>,
    _caller: Caller,
    Path(user_id): Path<String>,
) -> Result<Response> {
    let user_id = local_user(&services, user_id)?;
    let admin = services
        .accounts
        .get(&user_id)?
        .is_some_and(|a| a.role == Role::Admin);
    Ok(Json(json!({ "admin": admin })).into_response())
}

#[derive(Deserialize)]
struct SetAdmin {
    admin: bool,
}

/// `PUT /_synapse/admin/v1/users/{userId}/admin`
pub async fn set_admin(
    State(services): State<Arc<Services>>,
    caller: Caller,
    Path(user_id): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    caller.require_admin()?;
    let user_id = local_user(&services, user_id)?;
    let SetAdmin { admin } = serde_json::from_slice(&bytes)
        .map_err(|e| Error::bad_json(format!("Expected {{\"admin\": true | false}}: {e}")))?;
    let role = if admin { Role::Admin } else { Role::User };
    services
        .accounts
        .change_role(&user_id, role, &caller.origin)?;
    Ok(Json(json!({})).into_response())
}

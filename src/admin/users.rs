//! What admins see of accounts: each user with their profile and last activity, and the
//! filtered, ordered, paged list the admin API and the admin room show.

use ruma::{OwnedUserId, UserId};

use crate::error::{Error, Result};
use crate::services::Services;
use crate::users::accounts::{AccountRecord, Role};

/// One account as admins see it.
#[derive(Clone, Debug)]
pub struct UserView {
    pub user_id: OwnedUserId,
    pub account: AccountRecord,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    /// The latest time any of the user's devices was seen (ms).
    pub last_seen_ts: Option<u64>,
}

/// Which users a list shows, in which order.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// A substring of the user id or display name (case-insensitive).
    pub name: Option<String>,
    /// A substring of the user id only.
    pub user_id: Option<String>,
    /// Only admins (`Some(true)`) or only non-admins (`Some(false)`).
    pub admins: Option<bool>,
    pub role: Option<Role>,
    /// Include deactivated accounts.
    pub deactivated: bool,
    pub order_by: Order,
    pub backwards: bool,
}

/// The orders Synapse's user list offers (those Sori has data for sort as such; the rest,
/// all equal here, fall back to the name).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    Name,
    DisplayName,
    CreationTs,
    Admin,
    Deactivated,
    AvatarUrl,
    LastSeenTs,
}

impl Order {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "name" | "is_guest" | "user_type" | "shadow_banned" | "locked" => Order::Name,
            "displayname" => Order::DisplayName,
            "creation_ts" => Order::CreationTs,
            "admin" => Order::Admin,
            "deactivated" => Order::Deactivated,
            "avatar_url" => Order::AvatarUrl,
            "last_seen_ts" => Order::LastSeenTs,
            other => {
                return Err(Error::invalid_param(format!(
                    "Unknown value for order_by: {other}"
                )));
            }
        })
    }
}

/// The user as admins see them; `None` for an unknown (or remote) user.
pub fn view(services: &Services, user_id: &UserId) -> Result<Option<UserView>> {
    let Some(account) = services.accounts.get(user_id)? else {
        return Ok(None);
    };
    view_of(services, user_id.to_owned(), account).map(Some)
}

fn view_of(services: &Services, user_id: OwnedUserId, account: AccountRecord) -> Result<UserView> {
    let profile = services.profiles.get(&user_id)?;
    let text = |key: &str| profile.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let last_seen_ts = services
        .sessions
        .devices(&user_id)?
        .iter()
        .filter_map(|d| d.last_seen_ts)
        .max();
    Ok(UserView {
        displayname: text("displayname"),
        avatar_url: text("avatar_url"),
        last_seen_ts,
        user_id,
        account,
    })
}

/// Every user `query` selects, in its order.
pub fn list(services: &Services, query: &ListQuery) -> Result<Vec<UserView>> {
    let name = query.name.as_deref().map(str::to_lowercase);
    let mut users = Vec::new();
    for (user_id, account) in services.accounts.all()? {
        if account.deactivated && !query.deactivated {
            continue;
        }
        if query
            .admins
            .is_some_and(|admins| admins != (account.role == Role::Admin))
            || query.role.is_some_and(|role| role != account.role)
            || query
                .user_id
                .as_deref()
                .is_some_and(|part| !user_id.as_str().contains(part))
        {
            continue;
        }
        let user = view_of(services, user_id, account)?;
        if let Some(name) = &name
            && !user.user_id.as_str().to_lowercase().contains(name)
            && !user
                .displayname
                .as_deref()
                .is_some_and(|d| d.to_lowercase().contains(name))
        {
            continue;
        }
        users.push(user);
    }
    users.sort_by(|a, b| {
        let by = match query.order_by {
            Order::Name => std::cmp::Ordering::Equal,
            Order::DisplayName => a.displayname.cmp(&b.displayname),
            Order::CreationTs => a.account.created_ts.cmp(&b.account.created_ts),
            Order::Admin => (a.account.role == Role::Admin).cmp(&(b.account.role == Role::Admin)),
            Order::Deactivated => a.account.deactivated.cmp(&b.account.deactivated),
            Order::AvatarUrl => a.avatar_url.cmp(&b.avatar_url),
            Order::LastSeenTs => a.last_seen_ts.cmp(&b.last_seen_ts),
        };
        by.then_with(|| a.user_id.cmp(&b.user_id))
    });
    if query.backwards {
        users.reverse();
    }
    Ok(users)
}

//! Application services (bridges): their registrations and namespaces, which events each
//! one hears of (written to its durable queue in the same commit as the event), the
//! transactions that deliver them (`sender`) with the ephemeral events of typing, receipts
//! and presence (`ephemeral`), and the questions Sori asks them about users and aliases it
//! does not know (`query`). Appservices are configured by the operator and
//! trusted: requests to them do not go through the outbound guard.

pub mod ephemeral;
pub mod query;
pub mod registration;
pub mod sender;

use std::sync::Arc;
use std::time::Duration;

use ring::digest::{SHA256, digest};
use ruma::{OwnedUserId, RoomAliasId, RoomId, UserId};

use crate::error::{Error, Result};
pub use registration::{Namespace, Registration};

/// One configured appservice.
#[derive(Debug)]
pub struct Appservice {
    pub registration: Registration,
    /// `@<sender_localpart>:<server_name>`.
    pub sender: OwnedUserId,
    /// Ephemeral events waiting for the next transaction (see [`ephemeral`]).
    ephemeral: std::sync::Mutex<Vec<serde_json::Value>>,
    /// Wakes the delivery loop when an ephemeral event waits.
    pub wake: tokio::sync::Notify,
}

impl Appservice {
    pub fn id(&self) -> &str {
        &self.registration.id
    }

    /// Whether the user is the appservice's own or in any of its user namespaces.
    pub fn is_user(&self, user_id: &UserId) -> bool {
        user_id == self.sender
            || self
                .registration
                .users
                .iter()
                .any(|ns| ns.matches(user_id.as_str()))
    }

    pub fn claims_user(&self, user_id: &UserId) -> bool {
        exclusive(&self.registration.users, user_id.as_str())
    }

    pub fn claims_alias(&self, alias: &RoomAliasId) -> bool {
        exclusive(&self.registration.aliases, alias.as_str())
    }

    pub fn is_alias(&self, alias: &RoomAliasId) -> bool {
        self.registration
            .aliases
            .iter()
            .any(|ns| ns.matches(alias.as_str()))
    }
}

fn exclusive(namespaces: &[Namespace], id: &str) -> bool {
    namespaces.iter().any(|ns| ns.exclusive && ns.matches(id))
}

/// Compares two secrets without leaking where they differ (their digests are compared).
fn same_secret(a: &str, b: &str) -> bool {
    digest(&SHA256, a.as_bytes()).as_ref() == digest(&SHA256, b.as_bytes()).as_ref()
}

/// Makes sure each appservice's own user (`sender_localpart`) exists, as the spec asks.
pub async fn ensure_senders(services: &crate::services::Services) -> Result<()> {
    for appservice in services.appservices.all() {
        if services.accounts.exists(&appservice.sender)? {
            continue;
        }
        services
            .accounts
            .create_external(
                &appservice.sender,
                &format!("appservice:{}", appservice.id()),
                crate::users::accounts::Role::User,
                &crate::admin::audit::Origin::server(),
            )
            .await?;
    }
    Ok(())
}

/// Every configured appservice.
pub struct Appservices {
    list: Vec<Arc<Appservice>>,
    /// For transactions, queries and pings: the appservices are the operator's, so no
    /// outbound guard; short timeouts so that one hanging bridge cannot hold much.
    pub(crate) http: reqwest::Client,
}

impl Appservices {
    /// Reads the configured registration files; any problem stops the start.
    pub fn load(config: &crate::config::Config) -> Result<Self> {
        let registrations = registration::load(
            &config.appservices.registration_files,
            config.server_name.as_str(),
        )
        .map_err(Error::internal)?;
        let mut list = Vec::new();
        for registration in registrations {
            let sender = UserId::parse_with_server_name(
                registration.sender_localpart.as_str(),
                &config.server_name,
            )
            .map_err(|e| {
                Error::internal(format!(
                    "appservice {}: sender_localpart is not a valid localpart: {e}",
                    registration.id
                ))
            })?;
            list.push(Arc::new(Appservice {
                registration,
                sender,
                ephemeral: Default::default(),
                wake: Default::default(),
            }));
        }
        // reqwest's TLS takes its crypto provider from here (already installed is fine).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.appservices.timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Sori/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format!("appservice HTTP client: {e}")))?;
        Ok(Self { list, http })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn all(&self) -> &[Arc<Appservice>] {
        &self.list
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<Appservice>> {
        self.list.iter().find(|a| a.id() == id)
    }

    /// The appservice whose `as_token` this is.
    pub fn by_as_token(&self, token: &str) -> Option<&Arc<Appservice>> {
        self.list
            .iter()
            .find(|a| same_secret(&a.registration.as_token, token))
    }

    /// The appservice that claims the user id exclusively, if one does.
    pub fn claiming_user(&self, user_id: &UserId) -> Option<&Arc<Appservice>> {
        self.list.iter().find(|a| a.claims_user(user_id))
    }

    /// The appservice that claims the alias exclusively, if one does.
    pub fn claiming_alias(&self, alias: &RoomAliasId) -> Option<&Arc<Appservice>> {
        self.list.iter().find(|a| a.claims_alias(alias))
    }

    /// Refuses a name someone other than `by` wants in an appservice's exclusive namespace.
    pub fn refuse_claimed_user(&self, user_id: &UserId, by: Option<&str>) -> Result<()> {
        match self.claiming_user(user_id) {
            Some(owner) if Some(owner.id()) != by => Err(Error::exclusive(format!(
                "{user_id} is reserved by the appservice {}",
                owner.id()
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses an alias someone other than `by` wants in an appservice's exclusive namespace.
    pub fn refuse_claimed_alias(&self, alias: &RoomAliasId, by: Option<&str>) -> Result<()> {
        match self.claiming_alias(alias) {
            Some(owner) if Some(owner.id()) != by => Err(Error::exclusive(format!(
                "{alias} is reserved by the appservice {}",
                owner.id()
            ))),
            _ => Ok(()),
        }
    }

    /// The appservices that hear of an event: sent by or about one of their users, in a room
    /// one of their users is joined to, or in a room of their room or alias namespaces.
    pub fn interested(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        state_key: Option<&str>,
        members: &dyn Fn() -> Result<Vec<OwnedUserId>>,
        aliases: &dyn Fn() -> Result<Vec<ruma::OwnedRoomAliasId>>,
    ) -> Result<Vec<Arc<Appservice>>> {
        if self.list.is_empty() {
            return Ok(Vec::new());
        }
        let about = state_key.and_then(|k| <&UserId>::try_from(k).ok());
        let mut members_read = None;
        let mut aliases_read = None;
        let mut found = Vec::new();
        // A bridge without a URL is told nothing: queuing for it would only pile up.
        for appservice in self.list.iter().filter(|a| a.registration.url.is_some()) {
            let registration = &appservice.registration;
            let mut hears = appservice.is_user(sender)
                || about.is_some_and(|u| appservice.is_user(u))
                || registration
                    .rooms
                    .iter()
                    .any(|ns| ns.matches(room_id.as_str()));
            if !hears && !registration.aliases.is_empty() {
                if aliases_read.is_none() {
                    aliases_read = Some(aliases()?);
                }
                hears = aliases_read
                    .iter()
                    .flatten()
                    .any(|alias| appservice.is_alias(alias));
            }
            if !hears {
                if members_read.is_none() {
                    members_read = Some(members()?);
                }
                hears = members_read
                    .iter()
                    .flatten()
                    .any(|user| appservice.is_user(user));
            }
            if hears {
                found.push(appservice.clone());
            }
        }
        Ok(found)
    }
}

//! Accounts: creation with a validated localpart, argon2id password hashes, server roles and
//! deactivation. Hashing is [`Passwords`]' job (off the async workers, with pooled memory).

use std::sync::{Arc, Mutex, OnceLock};

use http::StatusCode;
use ruma::api::error::ErrorKind;
use ruma::{OwnedServerName, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};

use crate::admin::audit::{Audit, Origin, Record};
use crate::error::{Error, Result};
use crate::storage::{Store, StoreExt, Table, keys};
use crate::users::passwords::Passwords;

/// Longest password accepted; argon2 takes any length, but a megabyte "password" is an attack.
pub const MAX_PASSWORD_BYTES: usize = 512;

/// A server-wide role (DESIGN §1: SYSTEM_ADMIN, AUDITOR, USER).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Auditor,
    #[default]
    User,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct AccountRecord {
    /// argon2id PHC string; `None` for accounts that log in elsewhere (SSO, LDAP, appservice).
    pub password_hash: Option<String>,
    #[serde(default)]
    pub role: Role,
    pub created_ts: u64,
    #[serde(default)]
    pub deactivated: bool,
    /// Where the password lives when not here (`ldap`): such an account signs in there, and
    /// its password cannot be changed through Sori.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signs_in_with: Option<String>,
}

pub struct Accounts {
    store: Arc<dyn Store>,
    server_name: OwnedServerName,
    /// Serialises "is the name free? then take it" so two registrations cannot both win.
    create_lock: Mutex<()>,
    /// A hash of a random password: checking an unknown user against it costs what a real
    /// check costs, so timing does not tell unknown users from wrong passwords.
    decoy_hash: OnceLock<String>,
    passwords: Passwords,
    /// Registrations, role changes, password resets and deactivations are audited in the
    /// batch that makes them.
    audit: Arc<Audit>,
    /// Fired on every role change (the admin room invites new admins).
    pub role_changes: Arc<tokio::sync::Notify>,
}

/// Refuses passwords the server will not store.
pub fn check_password_shape(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(Error::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::WeakPassword,
            "Empty password",
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::WeakPassword,
            format!("Passwords are at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

impl Accounts {
    pub fn new(store: Arc<dyn Store>, server_name: OwnedServerName, audit: Arc<Audit>) -> Self {
        Self {
            audit,
            role_changes: Default::default(),
            store,
            server_name,
            create_lock: Mutex::new(()),
            decoy_hash: OnceLock::new(),
            passwords: Passwords::default(),
        }
    }

    pub fn server_name(&self) -> &OwnedServerName {
        &self.server_name
    }

    /// Whether `user_id` belongs to this server.
    pub fn is_local(&self, user_id: &UserId) -> bool {
        user_id.server_name() == self.server_name
    }

    /// Checks a localpart chosen at registration and builds the user id. Registration is
    /// stricter than the grammar of existing ids: lower case, `a-z 0-9 . _ = - / +`.
    pub fn user_id_for(&self, localpart: &str) -> Result<OwnedUserId> {
        if localpart.starts_with('_') {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::InvalidUsername,
                "Usernames starting with '_' are reserved for bridges",
            ));
        }
        self.bridge_user_id_for(localpart)
    }

    /// [`Accounts::user_id_for`] for an appservice, whose users may start with `_`.
    pub fn bridge_user_id_for(&self, localpart: &str) -> Result<OwnedUserId> {
        let invalid = |msg: &str| {
            Error::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::InvalidUsername,
                msg.to_owned(),
            )
        };
        if localpart.is_empty() {
            return Err(invalid("The username is empty"));
        }
        if !localpart
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._=-/+".contains(&c))
        {
            return Err(invalid(
                "Usernames may only contain a-z, 0-9 and . _ = - / +",
            ));
        }
        // "@" + localpart + ":" + server name, at most 255 bytes in all.
        if 2 + localpart.len() + self.server_name.as_str().len() > 255 {
            return Err(invalid("The user id would be longer than 255 bytes"));
        }
        UserId::parse(format!("@{localpart}:{}", self.server_name))
            .map_err(|_| invalid("Invalid username"))
    }

    /// Turns what a client typed at login (`alice` or `@alice:server`) into a local user id.
    pub fn parse_login_name(&self, name: &str) -> Option<OwnedUserId> {
        let user_id = if name.starts_with('@') {
            UserId::parse(name).ok()?
        } else {
            UserId::parse_with_server_name(name.to_lowercase(), &self.server_name).ok()?
        };
        self.is_local(&user_id).then_some(user_id)
    }

    pub fn get(&self, user_id: &UserId) -> Result<Option<AccountRecord>> {
        if !self.is_local(user_id) {
            return Ok(None);
        }
        self.store
            .get_json(Table::Accounts, &keys::account(user_id.localpart()))
    }

    /// Every local account that is not deactivated.
    pub fn active_users(&self) -> Result<Vec<OwnedUserId>> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|(_, record)| !record.deactivated)
            .map(|(user_id, _)| user_id)
            .collect())
    }

    /// Every local account, deactivated ones too, in localpart order.
    pub fn all(&self) -> Result<Vec<(OwnedUserId, AccountRecord)>> {
        let mut accounts = Vec::new();
        for entry in self.store.scan_prefix(Table::Accounts, b"")? {
            let (key, value) = entry?;
            let record: AccountRecord = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("corrupt account: {e}")))?;
            let localpart = String::from_utf8_lossy(&key);
            if let Ok(user_id) =
                UserId::parse_with_server_name(localpart.as_ref(), &self.server_name)
            {
                accounts.push((user_id, record));
            }
        }
        Ok(accounts)
    }

    /// Whether the id is taken (deactivated accounts keep their name forever).
    pub fn exists(&self, user_id: &UserId) -> Result<bool> {
        Ok(self.get(user_id)?.is_some())
    }

    /// Whether the account exists and may act.
    pub fn is_active(&self, user_id: &UserId) -> Result<bool> {
        Ok(self.get(user_id)?.is_some_and(|a| !a.deactivated))
    }

    /// Creates an account; `M_USER_IN_USE` if the name is taken.
    pub async fn create(
        &self,
        user_id: &UserId,
        password: Option<String>,
        role: Role,
        origin: &Origin,
    ) -> Result<()> {
        if let Some(p) = &password {
            check_password_shape(p)?;
        }
        let password_hash = match password {
            Some(p) => Some(self.passwords.hash(p).await?),
            None => None,
        };
        self.insert(
            user_id,
            AccountRecord {
                password_hash,
                role,
                created_ts: crate::now_ms(),
                deactivated: false,
                signs_in_with: None,
            },
            origin.record("register", user_id, serde_json::json!({"role": role})),
        )
    }

    /// Creates an account whose password lives elsewhere (`signs_in_with`, e.g. the company
    /// directory); `M_USER_IN_USE` if the name is taken.
    pub async fn create_external(
        &self,
        user_id: &UserId,
        signs_in_with: &str,
        role: Role,
        origin: &Origin,
    ) -> Result<()> {
        self.insert(
            user_id,
            AccountRecord {
                password_hash: None,
                role,
                created_ts: crate::now_ms(),
                deactivated: false,
                signs_in_with: Some(signs_in_with.to_owned()),
            },
            origin.record(
                // A bridge's user is the bridge's doing.
                if signs_in_with.starts_with("appservice:") {
                    "appservice_register"
                } else {
                    "register"
                },
                user_id,
                serde_json::json!({"role": role, "signs_in_with": signs_in_with}),
            ),
        )
    }

    fn insert(&self, user_id: &UserId, record: AccountRecord, audited: Record) -> Result<()> {
        let _guard = self.create_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.exists(user_id)? {
            return Err(Error::user_in_use());
        }
        let mut batch = crate::storage::Batch::new();
        batch.put_json(Table::Accounts, keys::account(user_id.localpart()), &record)?;
        self.audit.write(batch, [audited])
    }

    /// Checks a password. Unknown and password-less accounts fail the same way, and take the
    /// same time, as a wrong password. Deactivation is for the caller to check afterwards, so
    /// that only someone who knows the password learns the account is deactivated.
    pub async fn check_password(&self, user_id: &UserId, password: &str) -> Result<bool> {
        let hash = match self.get(user_id)? {
            Some(AccountRecord {
                password_hash: Some(h),
                ..
            }) => Some(h),
            _ => None,
        };
        let password = password.to_owned();
        match hash {
            Some(h) => self.passwords.verify(password, h).await,
            None => {
                let decoy = match self.decoy_hash.get() {
                    Some(d) => d.clone(),
                    None => {
                        let d = self.passwords.hash(crate::random::token("")).await?;
                        self.decoy_hash.get_or_init(|| d).clone()
                    }
                };
                self.passwords.verify(password, decoy).await?;
                Ok(false)
            }
        }
    }

    /// Sets a new password (audited as `password_reset`, by the user or an admin).
    pub async fn set_password(
        &self,
        user_id: &UserId,
        password: String,
        origin: &Origin,
    ) -> Result<()> {
        check_password_shape(&password)?;
        let hash = self.passwords.hash(password).await?;
        let by_self = origin.actor.as_deref() == Some(user_id);
        self.update(
            user_id,
            |record| record.password_hash = Some(hash),
            origin.record(
                "password_reset",
                user_id,
                serde_json::json!({"by_self": by_self}),
            ),
        )
    }

    /// Sets the user's server role. Every role change goes through here, so this is where it
    /// is recorded (the audit log's `role_change`).
    pub fn set_role(&self, user_id: &UserId, role: Role, origin: &Origin) -> Result<()> {
        let before = self
            .get(user_id)?
            .ok_or_else(|| Error::not_found("No such user"))?
            .role;
        if before == role {
            return Ok(());
        }
        self.update(
            user_id,
            |record| record.role = role,
            origin.record(
                "role_change",
                user_id,
                serde_json::json!({"from": before, "to": role}),
            ),
        )?;
        self.role_changes.notify_one();
        Ok(())
    }

    /// Sets a role as an admin asks it (the admin API): like [`Accounts::set_role`], but never
    /// leaves the server without an active admin.
    pub fn change_role(&self, user_id: &UserId, role: Role, origin: &Origin) -> Result<()> {
        if role != Role::Admin && self.is_last_admin(user_id)? {
            return Err(Error::forbidden("The last admin cannot be demoted"));
        }
        self.set_role(user_id, role, origin)
    }

    /// Whether the user is the only active admin (who must stay one, and stay active).
    pub fn is_last_admin(&self, user_id: &UserId) -> Result<bool> {
        let current = self
            .get(user_id)?
            .ok_or_else(|| Error::not_found("No such user"))?;
        Ok(current.role == Role::Admin
            && !current.deactivated
            && self.count_active(|record| record.role == Role::Admin)? <= 1)
    }

    /// How many active accounts `keep` selects.
    fn count_active(&self, keep: impl Fn(&AccountRecord) -> bool) -> Result<usize> {
        let mut count = 0;
        for entry in self.store.scan_prefix(Table::Accounts, b"")? {
            let (_, value) = entry?;
            let record: AccountRecord = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("corrupt account: {e}")))?;
            count += usize::from(!record.deactivated && keep(&record));
        }
        Ok(count)
    }

    /// Marks the account deactivated; the name stays taken and nobody can log in to it.
    pub fn deactivate(&self, user_id: &UserId, origin: &Origin) -> Result<()> {
        self.update(
            user_id,
            |record| record.deactivated = true,
            origin.record("deactivate", user_id, serde_json::json!({})),
        )
    }

    /// Lets a deactivated account log in again (an admin's decision).
    pub fn reactivate(&self, user_id: &UserId, origin: &Origin) -> Result<()> {
        self.update(
            user_id,
            |record| record.deactivated = false,
            origin.record("reactivate", user_id, serde_json::json!({})),
        )
    }

    fn update(
        &self,
        user_id: &UserId,
        change: impl FnOnce(&mut AccountRecord),
        audited: Record,
    ) -> Result<()> {
        let _guard = self.create_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut record = self
            .get(user_id)?
            .ok_or_else(|| Error::not_found("No such user"))?;
        change(&mut record);
        let mut batch = crate::storage::Batch::new();
        batch.put_json(Table::Accounts, keys::account(user_id.localpart()), &record)?;
        self.audit.write(batch, [audited])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> (tempfile::TempDir, Accounts) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::storage::rocksdb::RocksStore::open(dir.path(), 8).unwrap());
        let audit = Arc::new(Audit::new(store.clone()).unwrap());
        (
            dir,
            Accounts::new(store, "example.org".try_into().unwrap(), audit),
        )
    }

    #[test]
    fn localparts_are_checked() {
        let (_dir, a) = accounts();
        assert_eq!(
            a.user_id_for("alice.b-c_d=e/f+g").unwrap().as_str(),
            "@alice.b-c_d=e/f+g:example.org"
        );
        for bad in [
            "",
            "Alice",
            "al ice",
            "al:ice",
            "ali@ce",
            "_bridge",
            "한글",
            &"a".repeat(250),
        ] {
            assert_eq!(
                a.user_id_for(bad).unwrap_err().errcode(),
                "M_INVALID_USERNAME",
                "{bad}"
            );
        }
    }

    #[test]
    fn login_names_accept_localpart_or_full_id_of_this_server_only() {
        let (_dir, a) = accounts();
        assert_eq!(
            a.parse_login_name("alice").unwrap().as_str(),
            "@alice:example.org"
        );
        assert_eq!(
            a.parse_login_name("@alice:example.org").unwrap().as_str(),
            "@alice:example.org"
        );
        assert!(a.parse_login_name("@alice:elsewhere.org").is_none());
        assert!(a.parse_login_name("not an id at all:").is_none());
    }

    #[tokio::test]
    async fn passwords_verify_and_deactivation_locks_out() {
        let (_dir, a) = accounts();
        let alice = a.user_id_for("alice").unwrap();
        a.create(
            &alice,
            Some("correct horse".into()),
            Role::User,
            &Origin::server(),
        )
        .await
        .unwrap();
        let stored = a.get(&alice).unwrap().unwrap();
        assert!(
            stored
                .password_hash
                .as_deref()
                .unwrap()
                .starts_with("$argon2id$")
        );
        assert!(a.check_password(&alice, "correct horse").await.unwrap());
        assert!(!a.check_password(&alice, "wrong").await.unwrap());
        assert!(
            !a.check_password(&a.user_id_for("nobody").unwrap(), "x")
                .await
                .unwrap()
        );

        let err = a
            .create(&alice, Some("again".into()), Role::User, &Origin::server())
            .await
            .unwrap_err();
        assert_eq!(err.errcode(), "M_USER_IN_USE");

        a.deactivate(&alice, &Origin::server()).unwrap();
        assert!(a.exists(&alice).unwrap());
        assert!(!a.is_active(&alice).unwrap());
    }
}

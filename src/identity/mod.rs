//! Company identity: who may sign in, and how. Passwords kept here (argon2id) for local
//! accounts, the company directory (LDAP bind) for everyone else, tokens a company system
//! signed (JWT), and single sign-on through OpenID Connect providers. A person's account is
//! created at their first sign-in and their server role follows the identity provider. Every
//! password check goes through here: `/login`, and user-interactive auth.

pub mod jwt;
pub mod ldap;
pub mod login_tokens;
pub mod oidc;
pub mod sso;

use ruma::{OwnedUserId, UserId};

use self::jwt::JwtLogin;
use self::ldap::Directory;
use crate::admin::audit::Origin;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::users::accounts::{Accounts, Role};
use crate::users::profiles::Profiles;

/// Where an account's password lives, when not here.
pub const LDAP: &str = "ldap";
/// Accounts created by a JWT login.
pub const JWT: &str = "jwt";

/// What a person typed to say who they are.
#[derive(Clone, Debug)]
pub enum Login {
    /// `m.id.user`: a localpart, a user id, or any directory login attribute (an employee
    /// number).
    Name(String),
    /// `m.id.thirdparty` with medium `email`.
    Email(String),
}

pub struct SignIn {
    directory: Option<Directory>,
    fallback_to_local: bool,
    jwt: Option<JwtLogin>,
}

fn bad_credentials() -> Error {
    Error::forbidden("Invalid username or password")
}

impl SignIn {
    pub fn new(config: &Config) -> Result<Self> {
        Ok(Self {
            directory: Directory::new(&config.ldap)?,
            fallback_to_local: config.ldap.fallback_to_local,
            jwt: JwtLogin::new(&config.jwt)?,
        })
    }

    /// Whether `org.matrix.login.jwt` is offered.
    pub fn offers_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// Checks a password and returns whose it is: a local account's, or a directory person's
    /// (whose account is created on first sign-in and whose role follows the directory).
    /// Wrong passwords, unknown and filtered-out people all get the same `M_FORBIDDEN`; a
    /// directory that cannot be reached gets 503 `M_UNAVAILABLE`.
    pub async fn check_password(
        &self,
        accounts: &Accounts,
        profiles: &Profiles,
        login: &Login,
        password: &str,
        from: &Origin,
    ) -> Result<OwnedUserId> {
        let named = match login {
            Login::Name(name) => accounts.parse_login_name(name),
            Login::Email(_) => None,
        };
        let Some(directory) = &self.directory else {
            let user = named.ok_or_else(bad_credentials)?;
            return if accounts.check_password(&user, password).await? {
                Ok(user)
            } else {
                Err(bad_credentials())
            };
        };
        // Local accounts (bots, break-glass admins) first: they do not need the directory.
        if self.fallback_to_local
            && let Some(user) = &named
            && accounts
                .get(user)?
                .is_some_and(|a| a.password_hash.is_some() && a.signs_in_with.is_none())
            && accounts.check_password(user, password).await?
        {
            return Ok(user.clone());
        }
        let directory_login = match login {
            // `@minsu:server` is looked up as `minsu`.
            Login::Name(name) if name.starts_with('@') => match &named {
                Some(user) => user.localpart().to_owned(),
                None => return Err(bad_credentials()),
            },
            Login::Name(name) => name.clone(),
            Login::Email(address) => address.clone(),
        };
        let Some(person) = directory.authenticate(&directory_login, password).await? else {
            tracing::info!("failed directory sign-in");
            return Err(bad_credentials());
        };
        let user = accounts.user_id_for(&person.localpart).map_err(|e| {
            tracing::warn!(dn = %person.dn, error = %e, "a directory entry's localpart is not a valid user id");
            bad_credentials()
        })?;
        // A local account of the same name with its own password is someone else's (or was
        // registered to squat the name): the directory person does not get into it.
        if accounts
            .get(&user)?
            .is_some_and(|a| a.signs_in_with.as_deref() != Some(LDAP) && a.password_hash.is_some())
        {
            tracing::warn!(user_id = %user, dn = %person.dn,
                "a directory person matches a local account with its own password; refused");
            return Err(bad_credentials());
        }
        provision(
            accounts,
            profiles,
            &user,
            LDAP,
            person.role,
            person.display_name.as_deref(),
            from,
        )
        .await?;
        Ok(user)
    }

    /// Checks a JWT and returns whose it is, creating the account (when allowed) and setting
    /// the role from the token.
    pub async fn check_jwt(
        &self,
        accounts: &Accounts,
        profiles: &Profiles,
        token: &str,
        from: &Origin,
    ) -> Result<OwnedUserId> {
        let invalid = || Error::forbidden("Invalid token");
        let jwt = self.jwt.as_ref().ok_or_else(invalid)?;
        let claims = jwt.verify(token).ok_or_else(invalid)?;
        let user = accounts
            .user_id_for(&claims.subject.to_lowercase())
            .map_err(|_| invalid())?;
        if !jwt.creates_users() && !accounts.exists(&user)? {
            return Err(Error::forbidden("No account for this token's subject"));
        }
        provision(
            accounts,
            profiles,
            &user,
            JWT,
            claims.role,
            claims.display_name.as_deref(),
            from,
        )
        .await?;
        Ok(user)
    }

    /// Refuses a password change for an account whose password lives elsewhere.
    pub fn check_password_change(&self, accounts: &Accounts, user_id: &UserId) -> Result<()> {
        if accounts
            .get(user_id)?
            .is_some_and(|a| a.signs_in_with.is_some())
        {
            return Err(Error::forbidden(
                "This account signs in through the company directory or single sign-on; \
                 its password is changed there",
            ));
        }
        Ok(())
    }
}

/// Makes sure the account an identity provider vouched for exists: created (signing in
/// through `signs_in_with`, named `display_name` or its localpart) with `role`, or, when it
/// exists, given `role` if the provider sets one. Whether an existing account may be entered
/// at all is the caller's decision. `from` is the sign-in request, for the audit log.
pub(crate) async fn provision(
    accounts: &Accounts,
    profiles: &Profiles,
    user: &UserId,
    signs_in_with: &str,
    role: Option<Role>,
    display_name: Option<&str>,
    from: &Origin,
) -> Result<()> {
    // The provider vouched for the person: the account is created by its own first sign-in,
    // and a role change follows the provider (the server acts, not the person).
    let created_by = from.acting_as(user);
    let following = Origin {
        actor: None,
        ..from.clone()
    };
    match accounts
        .create_external(user, signs_in_with, role.unwrap_or(Role::User), &created_by)
        .await
    {
        Ok(()) => {
            tracing::info!(user_id = %user, signs_in_with, "account created at first sign-in");
            let name = display_name.unwrap_or(user.localpart());
            profiles.set_field(user, "displayname", Some(name.into()))
        }
        // Known already (or created by a sign-in racing this one): its role follows the
        // provider.
        Err(e) if e.errcode() == "M_USER_IN_USE" => match role {
            Some(role) => accounts.set_role(user, role, &following),
            None => Ok(()),
        },
        Err(e) => Err(e),
    }
}

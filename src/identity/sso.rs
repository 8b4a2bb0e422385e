//! Single sign-on (`m.login.sso`): sends a person to their OpenID Connect provider and, when
//! they come back, turns the provider's word into a Matrix account and a single-use login
//! token for the client. Each sign-on in flight is bound to the browser that started it by a
//! short-lived cookie, and its `state`, nonce and PKCE verifier are used once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::digest::{SHA256, digest};
use ruma::OwnedUserId;
use serde_json::{Map, Value};
use url::Url;

use super::jwt::role_from;
use super::login_tokens::LoginTokens;
use super::oidc::OidcProvider;
use crate::admin::audit::Origin;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::users::accounts::Accounts;
use crate::users::profiles::Profiles;

/// The path providers send people back to.
pub const CALLBACK_PATH: &str = "/_sori/client/oidc/callback";
/// The cookie that binds a sign-on to its browser.
pub const COOKIE: &str = "sori_sso";
/// How long a sign-on may take at the provider.
pub const SIGN_ON_LIFETIME: Duration = Duration::from_secs(600);
/// How long the login token handed to the client works.
const LOGIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Sign-ons in flight at most (each is a few hundred bytes; this bounds a flood).
const MAX_PENDING: usize = 10_000;

struct Pending {
    provider: usize,
    client_redirect: Url,
    nonce: String,
    verifier: String,
    cookie_hash: Vec<u8>,
    expires: Instant,
}

/// Where a finished sign-on sends the browser.
pub struct Finished {
    /// The client's URL with `loginToken`.
    pub redirect: Url,
    /// On the allow list: redirect at once; otherwise ask the person first.
    pub allowed: bool,
}

pub struct Sso {
    providers: Vec<OidcProvider>,
    allowlist: Vec<String>,
    callback: String,
    pending: Mutex<HashMap<String, Pending>>,
}

fn sha256(value: &str) -> Vec<u8> {
    digest(&SHA256, value.as_bytes()).as_ref().to_vec()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Sso {
    pub fn new(config: &Config) -> Result<Self> {
        let providers = config
            .oidc
            .providers
            .iter()
            .map(OidcProvider::new)
            .collect::<Result<Vec<_>>>()?;
        let mut ids = std::collections::HashSet::new();
        for provider in &providers {
            if !ids.insert(provider.config.id.clone()) {
                return Err(Error::internal(format!(
                    "[oidc] two providers have the id {:?}",
                    provider.config.id
                )));
            }
        }
        Ok(Self {
            providers,
            allowlist: config.oidc.client_redirect_allowlist.clone(),
            callback: format!("{}{CALLBACK_PATH}", config.base_url().trim_end_matches('/')),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The providers clients may offer: (id, name).
    pub fn providers(&self) -> Vec<(String, String)> {
        self.providers
            .iter()
            .map(|p| (p.config.id.clone(), p.config.name.clone()))
            .collect()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a sign-on with provider `idp` (the only one when `None`) for a client that
    /// wants to end up at `client_redirect`. Returns the provider URL to send the browser to
    /// and the cookie value that binds the sign-on to it.
    pub async fn start(&self, idp: Option<&str>, client_redirect: &str) -> Result<(Url, String)> {
        let client_redirect = Url::parse(client_redirect)
            .map_err(|_| Error::invalid_param("redirectUrl is not an absolute URL"))?;
        let index = match idp {
            Some(id) => self
                .providers
                .iter()
                .position(|p| p.config.id == id)
                .ok_or_else(|| Error::not_found("No such identity provider"))?,
            None if self.providers.len() == 1 => 0,
            None if self.providers.is_empty() => {
                return Err(Error::not_found("Single sign-on is not configured"));
            }
            None => {
                return Err(Error::invalid_param(
                    "Several identity providers: name one (/login/sso/redirect/{idpId})",
                ));
            }
        };
        let state = crate::random::token("");
        let nonce = crate::random::token("");
        let verifier = crate::random::token("");
        let cookie = crate::random::token("");
        let url = self.providers[index]
            .authorization_url(&self.callback, &state, &nonce, &b64(&sha256(&verifier)))
            .await?;
        let mut pending = self.pending();
        let now = Instant::now();
        pending.retain(|_, p| p.expires > now);
        if pending.len() >= MAX_PENDING {
            return Err(Error::limit_exceeded(SIGN_ON_LIFETIME.as_millis() as u64));
        }
        pending.insert(
            state,
            Pending {
                provider: index,
                client_redirect,
                nonce,
                verifier,
                cookie_hash: sha256(&cookie),
                expires: now + SIGN_ON_LIFETIME,
            },
        );
        Ok((url, cookie))
    }

    /// Finishes a sign-on when the provider sends the browser back with `query` (`code` and
    /// `state`, or `error`), and `cookie` from the browser. The state is used up whatever
    /// happens.
    pub async fn finish(
        &self,
        query: &HashMap<String, String>,
        cookie: Option<&str>,
        accounts: &Accounts,
        profiles: &Profiles,
        login_tokens: &LoginTokens,
        from: &Origin,
    ) -> Result<Finished> {
        let refused = |why: &str| {
            tracing::info!(reason = why, "single sign-on refused");
            Error::forbidden("Single sign-on failed")
        };
        let state = query.get("state").ok_or_else(|| refused("no state"))?;
        let pending = self
            .pending()
            .remove(state)
            .ok_or_else(|| refused("unknown or used state"))?;
        if pending.expires <= Instant::now() {
            return Err(refused("the sign-on took too long"));
        }
        if cookie.map(sha256) != Some(pending.cookie_hash.clone()) {
            return Err(refused("another browser's sign-on"));
        }
        if let Some(error) = query.get("error") {
            tracing::info!(error, "the provider ended the sign-on with an error");
            return Err(Error::forbidden("Single sign-on was cancelled or refused"));
        }
        let code = query.get("code").ok_or_else(|| refused("no code"))?;
        let provider = &self.providers[pending.provider];
        let claims = provider
            .sign_in(code, &self.callback, &pending.verifier, &pending.nonce)
            .await?;
        let user = self
            .account(provider, &claims, accounts, profiles, from)
            .await?;
        let token = login_tokens.issue(&user, LOGIN_TOKEN_LIFETIME)?;
        let mut redirect = pending.client_redirect;
        redirect.query_pairs_mut().append_pair("loginToken", &token);
        let allowed = self
            .allowlist
            .iter()
            .any(|prefix| redirect.as_str().starts_with(prefix.as_str()));
        tracing::info!(user_id = %user, provider = provider.config.id, "single sign-on");
        Ok(Finished { redirect, allowed })
    }

    /// The account the provider's claims name: created on first sign-on; an account of the
    /// same name that another way created is only entered with `allow_existing_users`.
    async fn account(
        &self,
        provider: &OidcProvider,
        claims: &Map<String, Value>,
        accounts: &Accounts,
        profiles: &Profiles,
        from: &Origin,
    ) -> Result<OwnedUserId> {
        let config = &provider.config;
        let refused = |why: String| {
            tracing::warn!(provider = config.id, reason = why, "single sign-on refused");
            Error::forbidden("Single sign-on failed")
        };
        let localpart = claims
            .get(&config.localpart_claim)
            .and_then(Value::as_str)
            .map(str::to_lowercase)
            .ok_or_else(|| refused(format!("no {} claim", config.localpart_claim)))?;
        let user = accounts
            .user_id_for(&localpart)
            .map_err(|_| refused(format!("{localpart:?} is not a valid localpart")))?;
        let role = config.role_claim.as_ref().map(|claim| {
            role_from(
                claims.get(claim),
                &config.admin_roles,
                &config.auditor_roles,
            )
        });
        let signs_in_with = format!("oidc:{}", config.id);
        if let Some(account) = accounts.get(&user)?
            && account.signs_in_with.as_deref() != Some(signs_in_with.as_str())
            && !config.allow_existing_users
        {
            return Err(refused(format!(
                "{user} exists and was not created by this provider"
            )));
        }
        let display_name = config
            .displayname_claim
            .as_ref()
            .and_then(|c| claims.get(c))
            .and_then(Value::as_str);
        super::provision(
            accounts,
            profiles,
            &user,
            &signs_in_with,
            role,
            display_name,
            from,
        )
        .await?;
        Ok(user)
    }
}

/// A page that asks the person before a login goes to a client not on the allow list.
pub fn confirmation_page(redirect: &Url) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;")
    };
    let host = redirect.host_str().unwrap_or(redirect.scheme());
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Continue to your account</title>\
         </head><body><h1>Continue to your account?</h1>\
         <p>You signed in to be logged in at <strong>{host}</strong>. Continue only if you \
         started this sign-in yourself: whoever opened the link gets your account.</p>\
         <p><a href=\"{href}\">Continue to {host}</a></p></body></html>",
        host = escape(host),
        href = escape(redirect.as_str()),
    )
}

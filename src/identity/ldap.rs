//! LDAP sign-in (OpenLDAP, Active Directory): find the person by any login attribute with the
//! service account, then bind as them with the password they gave. The directory is the
//! operator's own server: trusted, reached without the outbound guard.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::LdapConfig;
use crate::error::{Error, Result};
use crate::users::accounts::Role;

/// LDAP's result code for a wrong password (or a locked or expired account).
const INVALID_CREDENTIALS: u32 = 49;

/// A person the directory vouched for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub dn: String,
    /// The Matrix localpart, from `localpart_attribute`, lowercased.
    pub localpart: String,
    pub display_name: Option<String>,
    pub mail: Option<String>,
    /// From `admin_filter` / `auditor_filter`, when configured.
    pub role: Option<Role>,
}

pub struct Directory {
    config: LdapConfig,
    bind_password: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

fn unavailable(why: impl std::fmt::Display) -> Error {
    tracing::warn!(error = %why, "the LDAP directory is unavailable");
    Error::custom(
        StatusCode::SERVICE_UNAVAILABLE,
        "M_UNAVAILABLE",
        "The company directory cannot be reached; try again shortly",
    )
}

impl Directory {
    /// The directory of `[ldap]`, or `None` when LDAP sign-in is off.
    pub fn new(config: &LdapConfig) -> Result<Option<Self>> {
        if !config.enabled {
            return Ok(None);
        }
        let bind_password = match (&config.bind_password, &config.bind_password_file) {
            (_, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| Error::internal(format!("[ldap] bind_password_file {file}: {e}")))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            (Some(password), None) => password.clone(),
            (None, None) => String::new(),
        };
        let tls = match &config.ca_file {
            Some(file) => Some(Arc::new(tls_with_ca(file)?)),
            None => None,
        };
        Ok(Some(Self {
            config: config.clone(),
            bind_password,
            tls,
        }))
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms.max(1))
    }

    /// A new connection, not bound yet.
    async fn open(&self) -> Result<Ldap> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout())
            .set_starttls(self.config.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.config.url)
            .await
            .map_err(unavailable)?;
        tokio::spawn(async move {
            if let Err(error) = conn.drive().await {
                tracing::debug!(%error, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    /// A connection bound as the service account (anonymous when none is configured).
    async fn service(&self) -> Result<Ldap> {
        let mut ldap = self.open().await?;
        if let Some(dn) = &self.config.bind_dn {
            ldap.with_timeout(self.timeout())
                .simple_bind(dn, &self.bind_password)
                .await
                .map_err(unavailable)?
                .success()
                .map_err(|e| unavailable(format!("the service account cannot bind: {e}")))?;
        }
        Ok(ldap)
    }

    /// The filter that finds `login` by any login attribute, among the entries `user_filter`
    /// allows (disabled accounts are left out there). The login is escaped (RFC 4515), so it
    /// can only ever be a value.
    fn find_filter(&self, login: &str) -> String {
        find_filter(&self.config, login)
    }

    /// Checks `login` and `password` against the directory: the person, or `None` for an
    /// unknown, ambiguous or filtered-out login or a wrong password.
    pub async fn authenticate(&self, login: &str, password: &str) -> Result<Option<Person>> {
        // An empty password is an "unauthenticated bind" (RFC 4513 §5.1.2): it succeeds
        // without checking anything.
        if login.is_empty() || password.is_empty() {
            return Ok(None);
        }
        let mut ldap = self.service().await?;
        let mut attributes = vec![self.config.localpart_attribute.as_str()];
        attributes.extend(self.config.displayname_attribute.as_deref());
        attributes.extend(self.config.mail_attribute.as_deref());
        let (entries, _) = ldap
            .with_timeout(self.timeout())
            .search(
                &self.config.base_dn,
                Scope::Subtree,
                &self.find_filter(login),
                attributes,
            )
            .await
            .map_err(unavailable)?
            .success()
            .map_err(unavailable)?;
        if entries.len() > 1 {
            tracing::warn!(
                matches = entries.len(),
                "an LDAP login matches several entries; refused"
            );
            return Ok(None);
        }
        let Some(entry) = entries.into_iter().next() else {
            return Ok(None);
        };
        let entry = SearchEntry::construct(entry);
        let first = |attribute: Option<&str>| {
            attribute
                .and_then(|a| entry.attrs.get(a))
                .and_then(|values| values.first())
                .cloned()
        };
        let Some(localpart) = first(Some(&self.config.localpart_attribute)) else {
            tracing::warn!(dn = %entry.dn, "an LDAP entry has no localpart attribute");
            return Ok(None);
        };

        // The password is checked by binding as the person, on a connection of its own so the
        // service account's session stays as it was.
        let mut own = self.open().await?;
        let bound = own
            .with_timeout(self.timeout())
            .simple_bind(&entry.dn, password)
            .await
            .map_err(unavailable)?;
        let _ = own.unbind().await;
        match bound.rc {
            0 => {}
            INVALID_CREDENTIALS => return Ok(None),
            other => return Err(unavailable(format!("bind answered {other}"))),
        }

        let role = self.role(&mut ldap, &entry.dn).await?;
        let _ = ldap.unbind().await;
        Ok(Some(Person {
            dn: entry.dn.clone(),
            localpart: localpart.to_lowercase(),
            display_name: first(self.config.displayname_attribute.as_deref()),
            mail: first(self.config.mail_attribute.as_deref()),
            role,
        }))
    }

    /// The role the directory gives the entry: admin if it matches `admin_filter`, else
    /// auditor if it matches `auditor_filter`, else user; `None` when neither is configured
    /// (the role is then managed in Sori).
    async fn role(&self, ldap: &mut Ldap, dn: &str) -> Result<Option<Role>> {
        if self.config.admin_filter.is_none() && self.config.auditor_filter.is_none() {
            return Ok(None);
        }
        for (filter, role) in [
            (&self.config.admin_filter, Role::Admin),
            (&self.config.auditor_filter, Role::Auditor),
        ] {
            let Some(filter) = filter else { continue };
            let (entries, _) = ldap
                .with_timeout(self.timeout())
                .search(dn, Scope::Base, filter, vec!["1.1"])
                .await
                .map_err(unavailable)?
                .success()
                .map_err(unavailable)?;
            if !entries.is_empty() {
                return Ok(Some(role));
            }
        }
        Ok(Some(Role::User))
    }
}

/// The search filter for a login: any login attribute (and the localpart attribute, which
/// user-interactive auth signs in with) equal to the escaped login, within `user_filter`.
fn find_filter(config: &LdapConfig, login: &str) -> String {
    let value = ldap_escape(login);
    let mut attributes: Vec<&str> = config.login_attributes.iter().map(String::as_str).collect();
    if !attributes.contains(&config.localpart_attribute.as_str()) {
        attributes.push(&config.localpart_attribute);
    }
    let any: String = attributes
        .iter()
        .map(|attribute| format!("({attribute}={value})"))
        .collect();
    format!("(&{}(|{any}))", config.user_filter)
}

/// A TLS client configuration that trusts the CA in `file` (PEM) besides nothing else: the
/// directory's own CA.
fn tls_with_ca(file: &str) -> Result<rustls::ClientConfig> {
    let pem =
        std::fs::read(file).map_err(|e| Error::internal(format!("[ldap] ca_file {file}: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| Error::internal(format!("[ldap] ca_file {file}: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::internal(format!("[ldap] ca_file {file}: {e}")))?;
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LdapConfig {
        LdapConfig {
            user_filter: "(objectClass=inetOrgPerson)".into(),
            login_attributes: vec!["uid".into(), "mail".into()],
            localpart_attribute: "uid".into(),
            ..Default::default()
        }
    }

    #[test]
    fn logins_are_values_never_filter_syntax() {
        let config = config();
        assert_eq!(
            find_filter(&config, "minsu"),
            "(&(objectClass=inetOrgPerson)(|(uid=minsu)(mail=minsu)))"
        );
        // RFC 4515: `*`, `(`, `)`, `\` and NUL become \2a, \28, \29, \5c, \00.
        assert_eq!(
            find_filter(&config, "*)(uid=*"),
            "(&(objectClass=inetOrgPerson)(|(uid=\\2a\\29\\28uid=\\2a)(mail=\\2a\\29\\28uid=\\2a)))"
        );
        assert!(find_filter(&config, "a\\b\0").contains("(uid=a\\5cb\\00)"));
    }

    #[test]
    fn the_localpart_attribute_is_always_searched() {
        let config = LdapConfig {
            login_attributes: vec!["mail".into()],
            localpart_attribute: "sAMAccountName".into(),
            ..config()
        };
        assert_eq!(
            find_filter(&config, "kim"),
            "(&(objectClass=inetOrgPerson)(|(mail=kim)(sAMAccountName=kim)))"
        );
    }
}

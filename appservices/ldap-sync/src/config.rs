//! The bridge's configuration: one TOML file (see `ldap-sync.example.toml`), every key with
//! a default but the directory's and the homeserver's addresses.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The homeserver's client API.
    pub homeserver: String,
    /// The appservice registration file the homeserver has (its tokens and namespaces).
    pub registration: PathBuf,
    /// The name of the company space.
    #[serde(default = "default_company")]
    pub company_name: String,
    /// Where the bridge remembers what it made (rooms, users, memberships).
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    /// Seconds between syncs in daemon mode.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// The start of every alias the bridge makes (`#<prefix>company`, `#<prefix>unit_<id>`,
    /// `#<prefix>room_<id>`); the registration's alias namespace must hold them.
    #[serde(default = "default_alias_prefix")]
    pub alias_prefix: String,
    pub ldap: LdapConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// A CA (PEM) to trust for ldaps and StartTLS, besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    pub bind_dn: String,
    #[serde(default)]
    pub bind_password: String,
    /// Read the password from this file instead (its first line).
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    pub users_base_dn: String,
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// People matching this too are disabled: their accounts are deactivated.
    #[serde(default)]
    pub disabled_filter: Option<String>,
    pub units_base_dn: String,
    #[serde(default = "default_unit_filter")]
    pub unit_filter: String,
    /// A unit's stable id (it survives renames): `entryUUID` (OpenLDAP), `objectGUID` (AD).
    #[serde(default = "default_unit_id")]
    pub unit_id_attribute: String,
    #[serde(default = "default_unit_name")]
    pub unit_name_attribute: String,
    /// The unit attribute listing its people's DNs.
    #[serde(default = "default_unit_member")]
    pub unit_member_attribute: String,
    #[serde(default)]
    pub attributes: Attributes,
}

/// Which directory attribute fills which field.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Attributes {
    /// The localpart of the Matrix id (`uid`, or `employeeNumber`, `sAMAccountName`).
    pub localpart: String,
    pub display_name: String,
    pub mail: String,
    pub title: String,
    pub phone: String,
    pub employee_number: String,
    /// An IANA time zone name, for `m.tz` (empty: none).
    pub timezone: String,
}

impl Default for Attributes {
    fn default() -> Self {
        Self {
            localpart: "uid".into(),
            display_name: "displayName".into(),
            mail: "mail".into(),
            title: "title".into(),
            phone: "telephoneNumber".into(),
            employee_number: "employeeNumber".into(),
            timezone: String::new(),
        }
    }
}

fn default_company() -> String {
    "Company".into()
}
fn default_state_file() -> PathBuf {
    "ldap-sync-state.json".into()
}
fn default_interval() -> u64 {
    900
}
fn default_alias_prefix() -> String {
    "ldap_".into()
}
fn default_timeout() -> u64 {
    10
}
fn default_user_filter() -> String {
    "(objectClass=inetOrgPerson)".into()
}
fn default_unit_filter() -> String {
    "(objectClass=groupOfNames)".into()
}
fn default_unit_id() -> String {
    "entryUUID".into()
}
fn default_unit_name() -> String {
    "cn".into()
}
fn default_unit_member() -> String {
    "member".into()
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut config: Config =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(file) = &config.ldap.bind_password_file {
            let secret = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            config.ldap.bind_password = secret.lines().next().unwrap_or_default().to_owned();
        }
        Ok(config)
    }
}

/// What the bridge needs of its appservice registration.
#[derive(Clone, Debug, Deserialize)]
pub struct Registration {
    pub as_token: String,
    pub sender_localpart: String,
}

impl Registration {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        yaml_serde::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_loads() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("ldap-sync.example.toml");
        let config = Config::load(&example).unwrap();
        assert_eq!(config.ldap.attributes.localpart, "uid");
        assert_eq!(config.alias_prefix, "ldap_");
    }
}

//! Reading the company directory: the people (with their profile fields and whether they are
//! disabled) and the org units (nested as their DNs are, each with its members), into what
//! the sync compares with Matrix. A directory that cannot be read fails the whole read, so
//! an outage changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use crate::config::LdapConfig;

/// A person as Matrix shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub dn: String,
    pub localpart: String,
    pub display_name: String,
    /// Extended profile fields (MSC4133): name → value.
    pub fields: BTreeMap<String, String>,
    pub disabled: bool,
    /// The ids of the units the person is in.
    pub units: BTreeSet<String>,
}

/// An org unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub id: String,
    pub dn: String,
    pub name: String,
    /// The id of the unit it is nested in.
    pub parent: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Directory {
    /// By localpart.
    pub people: BTreeMap<String, Person>,
    /// By id.
    pub units: BTreeMap<String, Unit>,
    /// What was left out and why (missing or duplicate ids).
    pub skipped: Vec<String>,
}

/// The localpart for a directory id: lower case, and every character a Matrix localpart
/// cannot hold written as `=` and its UTF-8 bytes in hex (`김` → `=ea=b9=80`), so that the
/// mapping is the same every time and never merges two ids.
pub fn localpart(id: &str) -> String {
    let mut out = String::new();
    for c in id.trim().to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/+".contains(c) {
            out.push(c);
        } else {
            let mut bytes = [0u8; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("={byte:02x}"));
            }
        }
    }
    out
}

fn first(entry: &SearchEntry, attribute: &str) -> Option<String> {
    if attribute.is_empty() {
        return None;
    }
    entry
        .attrs
        .get(attribute)
        .and_then(|v| v.first())
        .cloned()
        .or_else(|| {
            // Binary attributes (AD's objectGUID) come as bytes: hex them.
            entry
                .bin_attrs
                .get(attribute)
                .and_then(|v| v.first())
                .map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
        })
        .filter(|v| !v.trim().is_empty())
}

/// DNs compare without case and spaces around separators.
fn normal_dn(dn: &str) -> String {
    dn.split(',')
        .map(|part| part.trim().to_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}

/// The DN of the entry `dn` is directly under.
fn parent_dn(dn: &str) -> Option<String> {
    normal_dn(dn)
        .split_once(',')
        .map(|(_, rest)| rest.to_owned())
}

async fn search(
    ldap: &mut ldap3::Ldap,
    base: &str,
    filter: &str,
    attributes: Vec<String>,
) -> Result<Vec<SearchEntry>, String> {
    let (entries, _) = ldap
        .search(base, Scope::Subtree, filter, attributes)
        .await
        .map_err(|e| format!("searching {base}: {e}"))?
        .success()
        .map_err(|e| format!("searching {base}: {e}"))?;
    Ok(entries.into_iter().map(SearchEntry::construct).collect())
}

/// Reads the whole directory.
pub async fn read(config: &LdapConfig) -> Result<Directory, String> {
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(Duration::from_secs(config.timeout_secs))
        .set_starttls(config.starttls);
    if let Some(ca) = &config.ca_file {
        settings = settings.set_config(tls_config(ca)?);
    }
    let (connection, mut ldap) = LdapConnAsync::with_settings(settings, &config.url)
        .await
        .map_err(|e| format!("cannot reach the directory at {}: {e}", config.url))?;
    ldap3::drive!(connection);
    ldap.with_timeout(Duration::from_secs(config.timeout_secs))
        .simple_bind(&config.bind_dn, &config.bind_password)
        .await
        .map_err(|e| format!("binding as {}: {e}", config.bind_dn))?
        .success()
        .map_err(|e| format!("binding as {}: {e}", config.bind_dn))?;
    let a = &config.attributes;
    let person_attributes: Vec<String> = [
        &a.localpart,
        &a.display_name,
        &a.mail,
        &a.title,
        &a.phone,
        &a.employee_number,
        &a.timezone,
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .cloned()
    .collect();
    let people = search(
        &mut ldap,
        &config.users_base_dn,
        &config.user_filter,
        person_attributes,
    )
    .await?;
    let disabled: BTreeSet<String> = match &config.disabled_filter {
        Some(filter) => search(
            &mut ldap,
            &config.users_base_dn,
            &format!("(&{}{filter})", config.user_filter),
            vec!["1.1".to_owned()],
        )
        .await?
        .into_iter()
        .map(|e| normal_dn(&e.dn))
        .collect(),
        None => BTreeSet::new(),
    };
    let units = search(
        &mut ldap,
        &config.units_base_dn,
        &config.unit_filter,
        vec![
            config.unit_id_attribute.clone(),
            config.unit_name_attribute.clone(),
            config.unit_member_attribute.clone(),
        ],
    )
    .await?;
    let _ = ldap.unbind().await;
    Ok(assemble(config, people, &disabled, units))
}

/// Builds the directory from the entries read.
fn assemble(
    config: &LdapConfig,
    people: Vec<SearchEntry>,
    disabled: &BTreeSet<String>,
    units: Vec<SearchEntry>,
) -> Directory {
    let a = &config.attributes;
    let mut directory = Directory::default();
    let mut by_dn: HashMap<String, String> = HashMap::new();
    let mut people = people;
    people.sort_by_key(|entry| normal_dn(&entry.dn));
    for entry in people {
        let Some(id) = first(&entry, &a.localpart) else {
            directory
                .skipped
                .push(format!("{}: no {}", entry.dn, a.localpart));
            continue;
        };
        let localpart = localpart(&id);
        if localpart.is_empty() || directory.people.contains_key(&localpart) {
            directory
                .skipped
                .push(format!("{}: the id {id:?} is taken or empty", entry.dn));
            continue;
        }
        let mut fields = BTreeMap::new();
        for (field, attribute) in [
            ("io.sori.mail", &a.mail),
            ("io.sori.title", &a.title),
            ("io.sori.phone", &a.phone),
            ("io.sori.employee_number", &a.employee_number),
            ("m.tz", &a.timezone),
        ] {
            if let Some(value) = first(&entry, attribute) {
                fields.insert(field.to_owned(), value);
            }
        }
        by_dn.insert(normal_dn(&entry.dn), localpart.clone());
        directory.people.insert(
            localpart.clone(),
            Person {
                dn: entry.dn.clone(),
                display_name: first(&entry, &a.display_name).unwrap_or_else(|| id.clone()),
                fields,
                disabled: disabled.contains(&normal_dn(&entry.dn)),
                units: BTreeSet::new(),
                localpart,
            },
        );
    }
    let mut unit_by_dn: HashMap<String, String> = HashMap::new();
    for entry in &units {
        match first(entry, &config.unit_id_attribute) {
            Some(id) if !directory.units.contains_key(&id) => {
                unit_by_dn.insert(normal_dn(&entry.dn), id.clone());
                directory.units.insert(
                    id.clone(),
                    Unit {
                        name: first(entry, &config.unit_name_attribute)
                            .unwrap_or_else(|| id.clone()),
                        dn: entry.dn.clone(),
                        parent: None,
                        id,
                    },
                );
            }
            _ => directory.skipped.push(format!(
                "{}: no or duplicate {}",
                entry.dn, config.unit_id_attribute
            )),
        }
    }
    // Nesting follows the DNs: a unit's parent is the nearest unit above it.
    let ids: Vec<String> = directory.units.keys().cloned().collect();
    for id in ids {
        let mut above = parent_dn(&directory.units[&id].dn);
        while let Some(dn) = above {
            if let Some(parent) = unit_by_dn.get(&dn) {
                directory.units.get_mut(&id).expect("listed").parent = Some(parent.clone());
                break;
            }
            above = parent_dn(&dn);
        }
    }
    for entry in &units {
        let Some(id) = unit_by_dn.get(&normal_dn(&entry.dn)) else {
            continue;
        };
        for member in entry
            .attrs
            .get(&config.unit_member_attribute)
            .into_iter()
            .flatten()
        {
            if let Some(localpart) = by_dn.get(&normal_dn(member))
                && let Some(person) = directory.people.get_mut(localpart)
            {
                person.units.insert(id.clone());
            }
        }
    }
    directory
}

fn tls_config(ca: &std::path::Path) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    let pem = std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        let cert: rustls::pki_types::CertificateDer<'static> =
            cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    Ok(std::sync::Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localparts_are_mapped_the_same_way_every_time() {
        assert_eq!(localpart("Minsu.Kim"), "minsu.kim");
        assert_eq!(localpart("김"), "=ea=b9=80");
        assert_eq!(localpart("a b"), "a=20b");
        assert_eq!(
            localpart("x=y"),
            "x=3dy",
            "= itself is escaped, so nothing merges"
        );
        assert_ne!(localpart("a_b"), localpart("a=5fb"));
    }

    fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: dn.to_owned(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            bin_attrs: HashMap::new(),
        }
    }

    fn config() -> LdapConfig {
        toml::from_str(
            "url = \"ldap://x\"\nbind_dn = \"cn=x\"\nusers_base_dn = \"ou=people,dc=x\"\n\
             units_base_dn = \"ou=units,dc=x\"\n",
        )
        .unwrap()
    }

    #[test]
    fn entries_without_or_with_a_taken_id_are_left_out_and_said() {
        let people = vec![
            entry(
                "uid=b,ou=people,dc=x",
                &[("uid", &["Kim"]), ("displayName", &["Kim B"])],
            ),
            entry(
                "uid=a,ou=people,dc=x",
                &[("uid", &["kim"]), ("displayName", &["Kim A"])],
            ),
            entry("uid=c,ou=people,dc=x", &[("displayName", &["No Id"])]),
            entry("uid=d,ou=people,dc=x", &[("uid", &["이도윤"])]),
        ];
        let units = vec![
            entry(
                "cn=Top,ou=units,dc=x",
                &[
                    ("entryUUID", &["u1"]),
                    ("cn", &["Top"]),
                    ("member", &["uid=a,ou=people,dc=x"]),
                ],
            ),
            entry(
                "cn=Sub,cn=Top,ou=units,dc=x",
                &[
                    ("entryUUID", &["u2"]),
                    ("cn", &["Sub"]),
                    (
                        "member",
                        &["UID=A, ou=people,dc=x", "uid=gone,ou=people,dc=x"],
                    ),
                ],
            ),
            entry("cn=NoId,ou=units,dc=x", &[("cn", &["NoId"])]),
        ];
        let directory = assemble(&config(), people, &BTreeSet::new(), units);
        // The first by DN keeps the id; the other and the one without are said.
        assert_eq!(directory.people["kim"].display_name, "Kim A");
        assert_eq!(directory.people.len(), 2);
        assert_eq!(
            directory.people["=ec=9d=b4=eb=8f=84=ec=9c=a4"].display_name,
            "이도윤"
        );
        assert_eq!(directory.skipped.len(), 3, "{:?}", directory.skipped);
        assert_eq!(directory.units["u2"].parent.as_deref(), Some("u1"));
        let units: Vec<&str> = directory.people["kim"]
            .units
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(units, ["u1", "u2"], "DNs compare without case or spaces");
    }

    #[test]
    fn parents_follow_the_dns() {
        assert_eq!(
            parent_dn("cn=Backend, cn=Eng,ou=units,dc=x").as_deref(),
            Some("cn=eng,ou=units,dc=x")
        );
        assert_eq!(parent_dn("dc=x"), None);
    }
}

//! Appservice registration files (the spec's YAML format), read and checked at start-up: a
//! broken file stops the start with a message naming the file and the problem.

use std::path::Path;

use regex::Regex;
use serde::Deserialize;

/// A registration as the file says it.
#[derive(Debug, Deserialize)]
struct File {
    id: String,
    url: Option<String>,
    as_token: String,
    hs_token: String,
    sender_localpart: String,
    #[serde(default)]
    namespaces: NamespacesFile,
    rate_limited: Option<bool>,
    #[serde(default)]
    protocols: Option<Vec<String>>,
    #[serde(default)]
    receive_ephemeral: bool,
    #[serde(default, rename = "de.sorunome.msc2409.push_ephemeral")]
    push_ephemeral: bool,
}

#[derive(Debug, Default, Deserialize)]
struct NamespacesFile {
    #[serde(default)]
    users: Vec<NamespaceFile>,
    #[serde(default)]
    aliases: Vec<NamespaceFile>,
    #[serde(default)]
    rooms: Vec<NamespaceFile>,
}

#[derive(Debug, Deserialize)]
struct NamespaceFile {
    #[serde(default)]
    exclusive: bool,
    regex: String,
}

/// One namespace: a regular expression (matched from the start of the id, as Synapse does)
/// and whether the appservice claims it alone.
#[derive(Clone, Debug)]
pub struct Namespace {
    pub exclusive: bool,
    pub source: String,
    pub regex: Regex,
}

impl Namespace {
    pub fn matches(&self, id: &str) -> bool {
        self.regex.is_match(id)
    }
}

/// A checked registration.
#[derive(Clone, Debug)]
pub struct Registration {
    pub id: String,
    /// Where transactions and queries go; `None`: the appservice only calls in.
    pub url: Option<String>,
    pub as_token: String,
    pub hs_token: String,
    pub sender_localpart: String,
    pub users: Vec<Namespace>,
    pub aliases: Vec<Namespace>,
    pub rooms: Vec<Namespace>,
    pub rate_limited: bool,
    pub protocols: Vec<String>,
    /// Typing, receipts and presence go to it as well (MSC2409).
    pub receive_ephemeral: bool,
}

fn namespaces(list: Vec<NamespaceFile>, kind: &str) -> Result<Vec<Namespace>, String> {
    list.into_iter()
        .map(|ns| {
            let regex = Regex::new(&format!("^(?:{})", ns.regex))
                .map_err(|e| format!("the {kind} regex {:?} does not compile: {e}", ns.regex))?;
            Ok(Namespace {
                exclusive: ns.exclusive,
                source: ns.regex,
                regex,
            })
        })
        .collect()
}

/// Parses and checks one registration file's text.
pub fn parse(text: &str) -> Result<Registration, String> {
    let file: File = yaml_serde::from_str(text).map_err(|e| format!("not a registration: {e}"))?;
    for (name, value) in [
        ("id", &file.id),
        ("as_token", &file.as_token),
        ("hs_token", &file.hs_token),
        ("sender_localpart", &file.sender_localpart),
    ] {
        if value.trim().is_empty() {
            return Err(format!("{name} is empty"));
        }
    }
    if file.as_token == file.hs_token {
        return Err("as_token and hs_token must differ".to_owned());
    }
    let url = match file.url {
        Some(url) if url.trim().is_empty() => None,
        Some(url) => {
            let parsed =
                url::Url::parse(&url).map_err(|e| format!("url {url:?} is not a URL: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("url {url:?} is not http or https"));
            }
            Some(url.trim_end_matches('/').to_owned())
        }
        None => None,
    };
    Ok(Registration {
        id: file.id,
        url,
        as_token: file.as_token,
        hs_token: file.hs_token,
        sender_localpart: file.sender_localpart,
        users: namespaces(file.namespaces.users, "users")?,
        aliases: namespaces(file.namespaces.aliases, "aliases")?,
        rooms: namespaces(file.namespaces.rooms, "rooms")?,
        rate_limited: file.rate_limited.unwrap_or(true),
        protocols: file.protocols.unwrap_or_default(),
        receive_ephemeral: file.receive_ephemeral || file.push_ephemeral,
    })
}

/// Reads every file and checks them against each other: ids and tokens are unique, and no
/// exclusive namespace is claimed twice.
pub fn load(paths: &[impl AsRef<Path>], server_name: &str) -> Result<Vec<Registration>, String> {
    let mut loaded: Vec<Registration> = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let named =
            |problem: String| format!("appservice registration {}: {problem}", path.display());
        let text =
            std::fs::read_to_string(path).map_err(|e| named(format!("cannot read it: {e}")))?;
        let registration = parse(&text).map_err(named)?;
        for other in &loaded {
            if other.id == registration.id {
                return Err(named(format!(
                    "the id {:?} is taken by another registration",
                    other.id
                )));
            }
            for token in [&registration.as_token, &registration.hs_token] {
                if token == &other.as_token || token == &other.hs_token {
                    return Err(named(format!(
                        "a token is the same as one of the registration {:?}",
                        other.id
                    )));
                }
            }
            for (mine, theirs, kind) in [
                (&registration.users, &other.users, "users"),
                (&registration.aliases, &other.aliases, "aliases"),
                (&registration.rooms, &other.rooms, "rooms"),
            ] {
                for ns in mine.iter().filter(|ns| ns.exclusive) {
                    if theirs.iter().any(|t| t.exclusive && t.source == ns.source) {
                        return Err(named(format!(
                            "the exclusive {kind} namespace {:?} is also {:?}'s",
                            ns.source, other.id
                        )));
                    }
                }
            }
            let sender = format!("@{}:{server_name}", registration.sender_localpart);
            if other
                .users
                .iter()
                .any(|ns| ns.exclusive && ns.matches(&sender))
            {
                return Err(named(format!(
                    "its sender {sender} is in {:?}'s exclusive namespace",
                    other.id
                )));
            }
        }
        loaded.push(registration);
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIDGE: &str = r##"
id: ldap-sync
url: "http://127.0.0.1:9999/"
as_token: as-secret
hs_token: hs-secret
sender_localpart: _ldap
rate_limited: false
namespaces:
  users:
    - exclusive: true
      regex: "@_ldap_.*:example\\.org"
  aliases:
    - exclusive: true
      regex: "#_ldap_.*"
  rooms: []
de.sorunome.msc2409.push_ephemeral: true
"##;

    #[test]
    fn a_registration_parses_with_anchored_namespaces() {
        let r = parse(BRIDGE).unwrap();
        assert_eq!(r.url.as_deref(), Some("http://127.0.0.1:9999"));
        assert!(!r.rate_limited && r.receive_ephemeral);
        assert!(r.users[0].matches("@_ldap_kim:example.org"));
        assert!(!r.users[0].matches("@kim_ldap_:example.org"));
        assert!(r.aliases[0].exclusive);
    }

    #[test]
    fn broken_registrations_say_what_is_wrong() {
        let cases = [
            ("id: [unclosed", "not a registration"),
            (
                &BRIDGE.replace("as_token: as-secret", "as_token: \"\""),
                "as_token is empty",
            ),
            (
                &BRIDGE.replace("hs_token: hs-secret", "hs_token: as-secret"),
                "must differ",
            ),
            (
                &BRIDGE.replace("#_ldap_.*", "#_ldap_(.*"),
                "does not compile",
            ),
            (
                &BRIDGE.replace("http://127.0.0.1:9999/", "ftp://x"),
                "not http",
            ),
            (
                &BRIDGE.replace("sender_localpart: _ldap\n", ""),
                "not a registration",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn registrations_may_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let first = write("a.yaml", BRIDGE);
        let same_id = write(
            "b.yaml",
            &BRIDGE.replace("as-secret", "x1").replace("hs-secret", "x2"),
        );
        let error = load(&[&first, &same_id], "example.org").unwrap_err();
        assert!(error.contains("b.yaml") && error.contains("id"), "{error}");
        let same_token = write("c.yaml", &BRIDGE.replace("id: ldap-sync", "id: other"));
        assert!(
            load(&[&first, &same_token], "example.org")
                .unwrap_err()
                .contains("token")
        );
        let overlap = write(
            "d.yaml",
            &BRIDGE
                .replace("id: ldap-sync", "id: other")
                .replace("as-secret", "x1")
                .replace("hs-secret", "x2")
                .replace("sender_localpart: _ldap", "sender_localpart: _other"),
        );
        assert!(
            load(&[&first, &overlap], "example.org")
                .unwrap_err()
                .contains("exclusive")
        );
        let missing = dir.path().join("missing.yaml");
        assert!(
            load(&[&missing], "example.org")
                .unwrap_err()
                .contains("missing.yaml")
        );
        assert_eq!(load(&[&first], "example.org").unwrap().len(), 1);
    }
}

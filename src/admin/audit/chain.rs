//! The shape of an audit entry, how it is hashed into the chain, and the walk that checks a
//! stored chain (`sori audit verify`).

use ring::digest::{SHA256, digest};
use ruma::CanonicalJsonValue;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{Direction, KeyRange, Store, Table, keys};

/// The `prev_hash` of the first entry ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where the `Global` table keeps the last pruned entry (id and hash), so the chain that
/// remains after pruning still starts from a known hash.
pub const ANCHOR_KEY: &[u8] = b"audit_anchor";

/// One audit log entry as stored and served.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Entry {
    pub id: u64,
    pub ts: u64,
    /// Who acted: a user id, or null for the server itself and the offline `sori` command.
    pub actor: Option<String>,
    pub action: String,
    /// What the action was done to: a user id, room id, media URI, or an attempted login.
    pub target: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: serde_json::Value,
    pub prev_hash: String,
    /// SHA-256 (hex) over the canonical JSON of every other field, `prev_hash` included.
    pub hash: String,
}

impl Entry {
    /// The hash this entry should carry, from its other fields.
    pub fn compute_hash(&self) -> Result<String> {
        let mut value = serde_json::to_value(self)
            .map_err(|e| Error::internal(format!("serialising an audit entry: {e}")))?;
        if let Some(object) = value.as_object_mut() {
            object.remove("hash");
        }
        let canonical = CanonicalJsonValue::try_from(value)
            .map_err(|e| Error::internal(format!("audit entry is not canonical JSON: {e}")))?;
        Ok(hex(
            digest(&SHA256, canonical.to_string().as_bytes()).as_ref()
        ))
    }
}

/// The id and hash of the entry the next one links to.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Link {
    pub id: u64,
    pub hash: String,
}

impl Link {
    pub fn genesis() -> Self {
        Self {
            id: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where pruning left the chain's start, if anything was pruned.
pub fn anchor(store: &dyn Store) -> Result<Option<Link>> {
    match store.get(Table::Global, ANCHOR_KEY)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::internal(format!("corrupt audit anchor: {e}"))),
    }
}

/// What a walk over the chain found.
#[derive(Debug, PartialEq)]
pub struct Report {
    /// Entries checked and found intact (before the first broken one).
    pub intact: u64,
    /// The entry the chain starts after (pruned up to it), if pruning happened.
    pub anchor: Option<Link>,
    pub last_id: u64,
    /// The first broken entry and what is wrong with it.
    pub broken: Option<(u64, String)>,
}

/// Walks the whole stored chain from the anchor and stops at the first entry that is not
/// what the chain says it should be.
pub fn verify(store: &dyn Store) -> Result<Report> {
    let anchor = anchor(store)?;
    let mut expected = anchor.clone().unwrap_or_else(Link::genesis);
    let mut report = Report {
        intact: 0,
        anchor,
        last_id: expected.id,
        broken: None,
    };
    for item in store.scan(Table::Audit, KeyRange::all(), Direction::Forward)? {
        let (key, value) = item?;
        let Some(id) = keys::trailing_u64(&key).filter(|_| key.len() == 8) else {
            report.broken = Some((0, format!("a key that is no entry id: {key:?}")));
            break;
        };
        if let Err(problem) = check(id, &value, &expected) {
            report.broken = Some((id, problem));
            break;
        }
        let entry: Entry = serde_json::from_slice(&value).expect("checked above");
        expected = Link {
            id,
            hash: entry.hash,
        };
        report.intact += 1;
        report.last_id = id;
    }
    Ok(report)
}

/// Why the stored entry `id` does not follow `expected`, if it does not.
fn check(id: u64, value: &[u8], expected: &Link) -> std::result::Result<(), String> {
    let entry: Entry =
        serde_json::from_slice(value).map_err(|e| format!("not a readable entry ({e})"))?;
    if entry.id != id {
        return Err(format!("stored under id {id} but says it is {}", entry.id));
    }
    if id <= expected.id {
        return Err(format!("id does not follow entry {}", expected.id));
    }
    if entry.prev_hash != expected.hash {
        return Err(format!(
            "prev_hash does not match the hash of entry {} (an entry before it was removed or \
             replaced)",
            expected.id
        ));
    }
    match entry.compute_hash() {
        Ok(hash) if hash == entry.hash => Ok(()),
        Ok(_) => Err("its content does not match its hash (the entry was changed)".into()),
        Err(e) => Err(format!("cannot be hashed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, prev_hash: &str) -> Entry {
        let mut entry = Entry {
            id,
            ts: 1_700_000_000_000 + id,
            actor: Some("@boss:example.org".into()),
            action: "login".into(),
            target: Some("@boss:example.org".into()),
            ip: Some("127.0.0.1".into()),
            user_agent: None,
            details: serde_json::json!({"device_id": "ABC", "b": 1, "a": [1, 2]}),
            prev_hash: prev_hash.into(),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash().unwrap();
        entry
    }

    #[test]
    fn the_hash_covers_every_field_and_the_link() {
        let first = entry(1, GENESIS);
        assert_eq!(first.hash.len(), 64);
        assert_eq!(first.compute_hash().unwrap(), first.hash, "stable");
        let mut changed = first.clone();
        changed.details["device_id"] = "XYZ".into();
        assert_ne!(changed.compute_hash().unwrap(), first.hash);
        let relinked = entry(1, &first.hash);
        assert_ne!(relinked.hash, first.hash);
    }

    #[test]
    fn checking_names_what_is_wrong() {
        let first = entry(1, GENESIS);
        let bytes = serde_json::to_vec(&first).unwrap();
        assert!(check(1, &bytes, &Link::genesis()).is_ok());
        assert!(
            check(2, &bytes, &Link::genesis())
                .unwrap_err()
                .contains("stored under")
        );
        let after = Link {
            id: 0,
            hash: "ff".repeat(32),
        };
        assert!(check(1, &bytes, &after).unwrap_err().contains("prev_hash"));
        let tampered = String::from_utf8(bytes).unwrap().replace("login", "logon");
        assert!(
            check(1, tampered.as_bytes(), &Link::genesis())
                .unwrap_err()
                .contains("content")
        );
        assert!(
            check(1, b"{not json", &Link::genesis())
                .unwrap_err()
                .contains("readable")
        );
    }
}

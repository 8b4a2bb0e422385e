//! The first checks on an event (PDU) from another server, before anything else looks at it
//! (the spec's "checks performed on receipt of a PDU", first three steps): its size, that it
//! parses as an event of the room's version, its event id, and the signatures of every server
//! that must have signed it (the sender's; for versions 1 and 2 the event id's; a restricted
//! join's authorising server), checked with each server's keys as they were when the event
//! was made. An event whose content no longer matches its hash is kept redacted, as the spec
//! says; one whose signatures do not verify is refused.

use std::collections::BTreeMap;

use ruma::signatures::{PublicKeyMap, Verified};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, OwnedServerName, RoomVersionId};

use super::Federation;
use crate::error::{Error, Result};
use crate::outbound::Outbound;
use crate::rooms::pdu::{self, MAX_PDU_BYTES};

/// A PDU that passed: its event id, and the event as it is to be kept.
#[derive(Debug)]
pub struct Checked {
    pub event_id: OwnedEventId,
    pub pdu: CanonicalJsonObject,
    /// Its content did not match its hash, so it is kept redacted.
    pub redacted: bool,
}

/// Why a PDU is refused (logged with the event; the spec drops such events silently).
fn refused(why: impl std::fmt::Display) -> Error {
    Error::forbidden(format!("Refused event: {why}"))
}

impl Federation {
    /// Checks a PDU of a room of `version` received from another server.
    pub async fn check_pdu(
        &self,
        outbound: &Outbound,
        own_keys: &super::keys::ServerKeys,
        version: &RoomVersionId,
        mut pdu: CanonicalJsonObject,
    ) -> Result<Checked> {
        let size = serde_json::to_vec(&pdu)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        if size > MAX_PDU_BYTES {
            return Err(refused(format!("{size} bytes, more than {MAX_PDU_BYTES}")));
        }
        // What is received is the event as sent: anything the sender's server added after
        // signing does not belong to it.
        pdu.remove("unsigned");
        let rules = pdu::rules(version)?;
        let event_id = pdu::event_id(&pdu, &rules).map_err(refused)?;
        let made_at = match pdu.get("origin_server_ts") {
            Some(CanonicalJsonValue::Integer(ts)) => u64::try_from(i64::from(*ts)).unwrap_or(0),
            _ => return Err(refused("no origin_server_ts")),
        };
        let signers =
            ruma::signatures::required_server_signatures_to_verify_event(&pdu, &rules.signatures)
                .map_err(refused)?;
        let mut keys = PublicKeyMap::new();
        for server in &signers {
            let key_ids = key_ids_signed_by(&pdu, server);
            if key_ids.is_empty() {
                return Err(refused(format!("no signature of {server}")));
            }
            if *server == self.server_name {
                let mut own = BTreeMap::new();
                own.insert(own_keys.key_id(), own_keys.verify_key());
                keys.insert(server.to_string(), own);
                continue;
            }
            let ids: Vec<&str> = key_ids.iter().map(String::as_str).collect();
            keys.extend(
                self.remote_keys
                    .keys_for(&self.client, outbound, server, &ids, made_at)
                    .await?,
            );
        }
        match ruma::signatures::verify_event(&keys, &pdu, &rules).map_err(refused)? {
            Verified::All => Ok(Checked {
                event_id,
                pdu,
                redacted: false,
            }),
            Verified::Signatures => {
                tracing::info!(%event_id, "content hash mismatch: kept redacted");
                Ok(Checked {
                    event_id,
                    pdu: pdu::redact(pdu, &rules)?,
                    redacted: true,
                })
            }
        }
    }
}

/// The key ids `server` signed the PDU with.
fn key_ids_signed_by(pdu: &CanonicalJsonObject, server: &OwnedServerName) -> Vec<String> {
    match pdu.get("signatures") {
        Some(CanonicalJsonValue::Object(signatures)) => match signatures.get(server.as_str()) {
            Some(CanonicalJsonValue::Object(by_key)) => by_key.keys().cloned().collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::federation::keys::ServerKeys;
    use crate::storage::Store;

    struct Fixture {
        _dir: tempfile::TempDir,
        federation: Federation,
        outbound: Outbound,
        ours: Arc<ServerKeys>,
        theirs: ServerKeys,
    }

    /// This server (`example.org`) with the keys of `other.example` already kept.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::storage::rocksdb::RocksStore::open(dir.path(), 8).unwrap());
        let config = crate::config::Config {
            server_name: "example.org".try_into().unwrap(),
            ..Default::default()
        };
        let ours =
            Arc::new(ServerKeys::load_or_generate(&store, config.server_name.clone()).unwrap());
        // Another server's key, made in a store of its own.
        let other_dir = tempfile::tempdir().unwrap();
        let other_store: Arc<dyn Store> =
            Arc::new(crate::storage::rocksdb::RocksStore::open(other_dir.path(), 8).unwrap());
        let other: OwnedServerName = "other.example".try_into().unwrap();
        let theirs = ServerKeys::load_or_generate(&other_store, other.clone()).unwrap();
        let federation = Federation::new(&config, store, ours.clone()).unwrap();
        federation
            .remote_keys
            .keep(&other, theirs.server_key_document().unwrap())
            .unwrap();
        Fixture {
            _dir: dir,
            federation,
            outbound: Outbound::new(&Default::default()).unwrap(),
            ours,
            theirs,
        }
    }

    /// A message from `sender`, signed by `keys` as `server`.
    fn signed(sender: &str, server: &str, keys: &ServerKeys) -> CanonicalJsonObject {
        let mut event: CanonicalJsonObject = serde_json::from_value(json!({
            "room_id": "!room:example.org",
            "sender": sender,
            "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": "hello"},
            "origin_server_ts": 1_700_000_000_000u64,
            "depth": 5,
            "prev_events": [],
            "auth_events": [],
        }))
        .unwrap();
        let rules = pdu::rules(&RoomVersionId::V11).unwrap();
        pdu::hash_sign_and_id(&mut event, server, keys.key_pair(), &rules).unwrap();
        event
    }

    async fn check(f: &Fixture, event: CanonicalJsonObject) -> Result<Checked> {
        f.federation
            .check_pdu(&f.outbound, &f.ours, &RoomVersionId::V11, event)
            .await
    }

    #[tokio::test]
    async fn a_well_signed_event_passes_with_its_id() {
        let f = fixture();
        let event = signed("@bob:other.example", "other.example", &f.theirs);
        let rules = pdu::rules(&RoomVersionId::V11).unwrap();
        let expected = pdu::event_id(&event, &rules).unwrap();
        let checked = check(&f, event).await.unwrap();
        assert_eq!(checked.event_id, expected);
        assert!(!checked.redacted);
        // An event of this server, signed with its own key.
        let own = signed("@alice:example.org", "example.org", &f.ours);
        assert!(!check(&f, own).await.unwrap().redacted);
    }

    #[tokio::test]
    async fn changed_content_is_kept_redacted_and_changed_envelopes_are_refused() {
        let f = fixture();
        let mut event = signed("@bob:other.example", "other.example", &f.theirs);
        event.insert(
            "content".into(),
            serde_json::from_value(json!({"msgtype": "m.text", "body": "changed"})).unwrap(),
        );
        let checked = check(&f, event).await.unwrap();
        assert!(checked.redacted);
        assert!(
            matches!(checked.pdu.get("content"), Some(CanonicalJsonValue::Object(c)) if c.is_empty())
        );

        // The type is covered by the signature: changing it breaks the signature.
        let mut event = signed("@bob:other.example", "other.example", &f.theirs);
        event.insert(
            "type".into(),
            CanonicalJsonValue::String("m.room.topic".into()),
        );
        assert!(check(&f, event).await.is_err());
        // Signed by a server other than the sender's.
        let event = signed("@bob:other.example", "example.org", &f.ours);
        assert!(check(&f, event).await.is_err());
        // Too large.
        let mut event = signed("@bob:other.example", "other.example", &f.theirs);
        event.insert(
            "content".into(),
            serde_json::from_value(json!({"body": "x".repeat(70_000)})).unwrap(),
        );
        assert!(check(&f, event).await.is_err());
    }
}

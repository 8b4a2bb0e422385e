//! Other servers' signing keys: fetched from the server itself
//! (`GET /_matrix/key/v2/server`), checked (its own signature, its name), and kept. A key
//! counts until its `valid_until_ts`, but at most seven days past the fetch (as the spec asks
//! of room versions 5 and later); an old key (`old_verify_keys`) counts for what was signed
//! before its `expired_ts`, so old events keep verifying. The latest document a server signed
//! is kept too, for answering key queries as a notary.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ruma::api::federation::discovery::{ServerSigningKeys, get_server_keys};
use ruma::serde::Base64;
use ruma::signatures::PublicKeyMap;
use ruma::{CanonicalJsonObject, OwnedServerName, ServerName};
use serde::{Deserialize, Serialize};

use super::client::{FederationClient, SendError};
use crate::error::{Error, Result};
use crate::outbound::Outbound;
use crate::storage::{Batch, Store, StoreExt, Table, keys};

/// The longest a fetched key is trusted without asking again.
const MAX_VALIDITY_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// A server is asked again at most this often when a key is missing (a bogus key id must
/// not make every request fetch).
const REFETCH_AFTER: Duration = Duration::from_secs(30);

/// A key as kept: its bytes (base64) and the last moment it counts for.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
struct KeptKey {
    key: String,
    valid_until_ts: u64,
}

pub struct RemoteKeys {
    store: std::sync::Arc<dyn Store>,
    /// When each server was last asked.
    asked: Mutex<HashMap<OwnedServerName, Instant>>,
    /// One fetch per server at a time: whoever needs a key while it is being fetched waits
    /// for that fetch instead of giving up (a join checks hundreds of events at once while
    /// the other server's own requests want the same key).
    fetching: Mutex<HashMap<OwnedServerName, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl RemoteKeys {
    pub fn new(store: std::sync::Arc<dyn Store>) -> Self {
        Self {
            store,
            asked: Mutex::default(),
            fetching: Mutex::default(),
        }
    }

    /// The keys of `server` that count at `at_ms`, asking the server when one of `key_ids`
    /// is missing or expired.
    pub async fn keys_for(
        &self,
        client: &FederationClient,
        outbound: &Outbound,
        server: &ServerName,
        key_ids: &[&str],
        at_ms: u64,
    ) -> Result<PublicKeyMap> {
        let mut kept = self.kept(server, at_ms)?;
        if key_ids.iter().any(|id| !kept.contains_key(*id)) {
            let lock = self
                .fetching
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(server.to_owned())
                .or_default()
                .clone();
            let _fetching = lock.lock().await;
            // A fetch that ended while this one waited may have brought the key.
            kept = self.kept(server, at_ms)?;
            if key_ids.iter().any(|id| !kept.contains_key(*id)) && self.may_ask(server) {
                match self.fetch(client, outbound, server).await {
                    Ok(()) => kept = self.kept(server, at_ms)?,
                    Err(error) => {
                        tracing::info!(%server, %error, "cannot fetch the server's keys")
                    }
                }
            }
        }
        let mut map = PublicKeyMap::new();
        map.insert(server.to_string(), kept);
        Ok(map)
    }

    /// The latest key document `server` signed, fetched again if it is no longer valid at
    /// `minimum_valid_until_ms`; the kept one when the server cannot be reached.
    pub async fn document(
        &self,
        client: &FederationClient,
        outbound: &Outbound,
        server: &ServerName,
        minimum_valid_until_ms: u64,
    ) -> Result<Option<CanonicalJsonObject>> {
        let kept: Option<CanonicalJsonObject> = self
            .store
            .get_json(Table::RemoteKeyDocuments, server.as_bytes())?;
        let fresh = kept.as_ref().is_some_and(|document| {
            document
                .get("valid_until_ts")
                .and_then(|v| match v {
                    ruma::CanonicalJsonValue::Integer(n) => u64::try_from(i64::from(*n)).ok(),
                    _ => None,
                })
                .is_some_and(|until| until >= minimum_valid_until_ms)
        });
        if fresh || !self.may_ask(server) {
            return Ok(kept);
        }
        match self.fetch(client, outbound, server).await {
            Ok(()) => self
                .store
                .get_json(Table::RemoteKeyDocuments, server.as_bytes()),
            Err(error) => {
                tracing::info!(%server, %error, "cannot fetch the server's keys");
                Ok(kept)
            }
        }
    }

    /// Keys of `server` that count at `at_ms`, as kept.
    fn kept(&self, server: &ServerName, at_ms: u64) -> Result<BTreeMap<String, Base64>> {
        let prefix = keys::remote_server_keys_of(server.as_str());
        let mut found = BTreeMap::new();
        for entry in self.store.scan_prefix(Table::RemoteServerKeys, &prefix)? {
            let (key, value) = entry?;
            let Ok(kept) = serde_json::from_slice::<KeptKey>(&value) else {
                continue;
            };
            if kept.valid_until_ts < at_ms {
                continue;
            }
            let (Ok(key_id), Ok(bytes)) = (
                std::str::from_utf8(&key[prefix.len()..]),
                Base64::parse(&kept.key),
            ) else {
                continue;
            };
            found.insert(key_id.to_owned(), bytes);
        }
        Ok(found)
    }

    /// Whether `server` may be asked now (and notes that it is).
    fn may_ask(&self, server: &ServerName) -> bool {
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if asked
            .get(server)
            .is_some_and(|last| now.duration_since(*last) < REFETCH_AFTER)
        {
            return false;
        }
        asked.insert(server.to_owned(), now);
        true
    }

    /// Asks `server` for its keys, checks the answer and keeps it.
    async fn fetch(
        &self,
        client: &FederationClient,
        outbound: &Outbound,
        server: &ServerName,
    ) -> std::result::Result<(), SendError> {
        let response = client
            .send_unsigned(outbound, server, get_server_keys::v2::Request::new())
            .await?;
        let document: CanonicalJsonObject = serde_json::from_str(response.server_key.json().get())
            .map_err(|e| SendError::Answered {
                status: 200,
                message: format!("the key document is not canonical JSON: {e}"),
            })?;
        self.keep(server, document)
            .map_err(|e| SendError::Answered {
                status: 200,
                message: e.to_string(),
            })
    }

    /// Checks a key document `server` signed and keeps its keys and the document.
    pub(crate) fn keep(&self, server: &ServerName, document: CanonicalJsonObject) -> Result<()> {
        let parsed: ServerSigningKeys = serde_json::to_value(&document)
            .and_then(serde_json::from_value)
            .map_err(|e| Error::bad_json(format!("a malformed key document: {e}")))?;
        if parsed.server_name != server {
            return Err(Error::forbidden(format!(
                "the key document is for {}, not {server}",
                parsed.server_name
            )));
        }
        // Signed by itself, with one of the keys it lists.
        let own: BTreeMap<String, Base64> = parsed
            .verify_keys
            .iter()
            .map(|(id, key)| (id.to_string(), key.key.clone()))
            .collect();
        let mut map = PublicKeyMap::new();
        map.insert(server.to_string(), own);
        ruma::signatures::verify_json(&map, &document)
            .map_err(|e| Error::forbidden(format!("the key document does not verify: {e}")))?;

        let now = crate::now_ms();
        let valid_until = u64::from(parsed.valid_until_ts.get()).min(now + MAX_VALIDITY_MS);
        let mut batch = Batch::new();
        for (id, key) in &parsed.verify_keys {
            batch.put_json(
                Table::RemoteServerKeys,
                keys::remote_server_key(server.as_str(), id.as_str()),
                &KeptKey {
                    key: key.key.encode(),
                    valid_until_ts: valid_until,
                },
            )?;
        }
        for (id, old) in &parsed.old_verify_keys {
            batch.put_json(
                Table::RemoteServerKeys,
                keys::remote_server_key(server.as_str(), id.as_str()),
                &KeptKey {
                    key: old.key.encode(),
                    valid_until_ts: u64::from(old.expired_ts.get()),
                },
            )?;
        }
        batch.put_json(
            Table::RemoteKeyDocuments,
            server.as_bytes().to_vec(),
            &document,
        )?;
        self.store.write(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::keys::ServerKeys;
    use std::sync::Arc;

    fn fixture() -> (tempfile::TempDir, RemoteKeys, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::storage::rocksdb::RocksStore::open(dir.path(), 8).unwrap());
        (dir, RemoteKeys::new(store.clone()), store)
    }

    #[test]
    fn a_self_signed_document_is_kept_and_its_keys_count_until_they_expire() {
        let (_dir, remote, store) = fixture();
        let name: OwnedServerName = "other.example".try_into().unwrap();
        let other = ServerKeys::load_or_generate(&store, name.clone()).unwrap();
        remote
            .keep(&name, other.server_key_document().unwrap())
            .unwrap();
        let now = crate::now_ms();
        let kept = remote.kept(&name, now).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[&other.key_id()], other.verify_key());
        // Trusted for at most a week, whatever the document says.
        assert!(
            remote
                .kept(&name, now + MAX_VALIDITY_MS + 60_000)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn forged_or_misnamed_documents_are_refused() {
        let (_dir, remote, store) = fixture();
        let name: OwnedServerName = "other.example".try_into().unwrap();
        let other = ServerKeys::load_or_generate(&store, name.clone()).unwrap();
        let mut document = other.server_key_document().unwrap();
        // Named for another server.
        let elsewhere: OwnedServerName = "evil.example".try_into().unwrap();
        assert!(remote.keep(&elsewhere, document.clone()).is_err());
        // Changed after signing.
        document.insert(
            "valid_until_ts".into(),
            ruma::CanonicalJsonValue::Integer(ruma::Int::MAX),
        );
        assert!(remote.keep(&name, document).is_err());
        assert!(remote.kept(&name, 0).unwrap().is_empty());
    }
}

//! The server's ed25519 signing key: generated on first start, stored in the database, and
//! published (self-signed) at `/_matrix/key/v2/server` so other servers can verify our events.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ruma::serde::Base64;
use ruma::signatures::Ed25519KeyPair;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedServerName};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{Batch, Store, StoreExt, Table, keys};

/// How long other servers may cache our key answer.
const VALIDITY_MS: u64 = 24 * 60 * 60 * 1000;

#[derive(Deserialize, Serialize)]
struct StoredKey {
    /// The part after `ed25519:` in the key id.
    version: String,
    /// PKCS#8 document, base64.
    pkcs8: String,
}

pub struct ServerKeys {
    server_name: OwnedServerName,
    key_pair: Ed25519KeyPair,
}

impl ServerKeys {
    /// Loads the signing key, generating and storing one on first start.
    pub fn load_or_generate(store: &Arc<dyn Store>, server_name: OwnedServerName) -> Result<Self> {
        let stored: StoredKey = match store.get_json(Table::Global, keys::SIGNING_KEY)? {
            Some(stored) => stored,
            None => {
                let document = Ed25519KeyPair::generate();
                let stored = StoredKey {
                    version: crate::random::string(
                        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                        8,
                    ),
                    pkcs8: STANDARD_NO_PAD.encode(&*document),
                };
                let mut batch = Batch::new();
                batch.put_json(Table::Global, keys::SIGNING_KEY, &stored)?;
                store.write(batch)?;
                tracing::info!(key_id = %format!("ed25519:{}", stored.version), "generated the server signing key");
                stored
            }
        };
        let document = STANDARD_NO_PAD
            .decode(&stored.pkcs8)
            .map_err(|e| Error::internal(format!("stored signing key: {e}")))?;
        let key_pair = Ed25519KeyPair::from_der(&document, stored.version)
            .map_err(|e| Error::internal(format!("stored signing key: {e}")))?;
        Ok(Self {
            server_name,
            key_pair,
        })
    }

    /// `ed25519:<version>`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.key_pair.version())
    }

    pub fn key_pair(&self) -> &Ed25519KeyPair {
        &self.key_pair
    }

    pub fn public_key_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.key_pair.public_key())
    }

    /// Signs a JSON object in place as this server (adds to its `signatures`).
    pub fn sign_json(&self, object: &mut CanonicalJsonObject) -> Result<()> {
        ruma::signatures::sign_json(self.server_name.as_str(), &self.key_pair, object)
            .map_err(|e| Error::internal(format!("signing: {e}")))
    }

    /// The self-signed key answer of `GET /_matrix/key/v2/server`.
    pub fn server_key_document(&self) -> Result<CanonicalJsonObject> {
        let mut verify_keys = BTreeMap::new();
        let mut key = CanonicalJsonObject::new();
        key.insert(
            "key".into(),
            CanonicalJsonValue::String(self.public_key_base64()),
        );
        verify_keys.insert(self.key_id(), CanonicalJsonValue::Object(key));
        let valid_until = (crate::now_ms() + VALIDITY_MS) as i64;
        let mut document = CanonicalJsonObject::new();
        document.insert(
            "server_name".into(),
            CanonicalJsonValue::String(self.server_name.to_string()),
        );
        document.insert(
            "verify_keys".into(),
            CanonicalJsonValue::Object(verify_keys),
        );
        document.insert(
            "old_verify_keys".into(),
            CanonicalJsonValue::Object(BTreeMap::new()),
        );
        document.insert(
            "valid_until_ts".into(),
            CanonicalJsonValue::Integer(
                valid_until
                    .try_into()
                    .map_err(|_| Error::internal("timestamp"))?,
            ),
        );
        self.sign_json(&mut document)?;
        Ok(document)
    }

    /// Checks that the public key decodes (used by tests and start-up sanity checks).
    pub fn verify_key(&self) -> Base64 {
        Base64::new(self.key_pair.public_key().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::signatures::verify_json;

    #[test]
    fn the_key_is_generated_once_and_its_document_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::storage::rocksdb::RocksStore::open(dir.path(), 8).unwrap());
        let name: OwnedServerName = "example.org".try_into().unwrap();
        let first = ServerKeys::load_or_generate(&store, name.clone()).unwrap();
        let again = ServerKeys::load_or_generate(&store, name.clone()).unwrap();
        assert_eq!(first.key_id(), again.key_id());
        assert_eq!(first.public_key_base64(), again.public_key_base64());
        assert!(first.key_id().starts_with("ed25519:"));

        let document = first.server_key_document().unwrap();
        let mut public_keys = BTreeMap::new();
        let mut server_keys = BTreeMap::new();
        server_keys.insert(first.key_id(), first.verify_key());
        public_keys.insert("example.org".to_owned(), server_keys);
        verify_json(&public_keys, &document).unwrap();

        // A tampered document no longer verifies.
        let mut tampered = document.clone();
        tampered.insert(
            "server_name".into(),
            CanonicalJsonValue::String("evil.org".into()),
        );
        assert!(verify_json(&public_keys, &tampered).is_err());
    }
}

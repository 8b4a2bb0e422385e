//! Login tokens (`m.login.token`): single-use and short-lived, handed out to a signed-in device
//! that lets another one in (`POST /login/get_token`), and later at the end of single sign-on.
//! Only a hash of each token is stored; redeeming one deletes it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ring::digest::{SHA256, digest};
use ruma::OwnedUserId;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{Batch, Direction, KeyRange, Store, StoreExt, Table};

#[derive(Deserialize, Serialize)]
struct Record {
    user_id: OwnedUserId,
    expires_ts: u64,
}

pub struct LoginTokens {
    store: Arc<dyn Store>,
    /// Serialises redeeming, so a token cannot be used twice at once.
    lock: Mutex<()>,
}

fn key(token: &str) -> Vec<u8> {
    digest(&SHA256, token.as_bytes()).as_ref().to_vec()
}

fn refused() -> Error {
    Error::forbidden("Invalid or expired login token")
}

impl LoginTokens {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            lock: Mutex::new(()),
        }
    }

    /// A new token that signs `user_id` in once within `lifetime`. Expired tokens are
    /// removed on the way.
    pub fn issue(&self, user_id: &ruma::UserId, lifetime: Duration) -> Result<String> {
        let now = crate::now_ms();
        let token = crate::random::token("sorilt_");
        let mut batch = Batch::new();
        for entry in self
            .store
            .scan(Table::LoginTokens, KeyRange::all(), Direction::Forward)?
        {
            let (key, value) = entry?;
            let expired = serde_json::from_slice::<Record>(&value)
                .map_or(true, |record| record.expires_ts <= now);
            if expired {
                batch.delete(Table::LoginTokens, key);
            }
        }
        batch.put_json(
            Table::LoginTokens,
            key(&token),
            &Record {
                user_id: user_id.to_owned(),
                expires_ts: now + lifetime.as_millis() as u64,
            },
        )?;
        self.store.write(batch)?;
        Ok(token)
    }

    /// Whose the token is, if it is valid now; it cannot be used again either way.
    pub fn redeem(&self, token: &str) -> Result<OwnedUserId> {
        self.redeem_at(token, crate::now_ms())
    }

    fn redeem_at(&self, token: &str, now: u64) -> Result<OwnedUserId> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let key = key(token);
        let record: Record = self
            .store
            .get_json(Table::LoginTokens, &key)?
            .ok_or_else(refused)?;
        let mut batch = Batch::new();
        batch.delete(Table::LoginTokens, key);
        self.store.write(batch)?;
        if record.expires_ts <= now {
            return Err(refused());
        }
        Ok(record.user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::rocksdb::RocksStore;

    #[test]
    fn a_token_works_once_and_only_before_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = LoginTokens::new(Arc::new(RocksStore::open(dir.path(), 8).unwrap()));
        let alice: OwnedUserId = "@alice:example.org".try_into().unwrap();

        let token = tokens.issue(&alice, Duration::from_secs(60)).unwrap();
        assert_eq!(tokens.redeem(&token).unwrap(), alice);
        assert!(tokens.redeem(&token).is_err(), "single use");
        assert!(tokens.redeem("sorilt_made_up").is_err());

        let late = tokens.issue(&alice, Duration::from_secs(60)).unwrap();
        assert!(tokens.redeem_at(&late, crate::now_ms() + 60_001).is_err());
        assert!(
            tokens.redeem(&late).is_err(),
            "an expired token is gone too"
        );
    }
}

//! Registration tokens (Synapse's admin API, `m.login.registration_token`): admins hand out
//! tokens, each good for a number of registrations until it expires.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{Batch, Direction, KeyRange, Store, StoreExt, Table};

/// Longest token accepted or generated.
pub const MAX_LENGTH: usize = 64;

/// A token and how it has been used.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct RegistrationToken {
    pub token: String,
    /// Registrations it allows in all; `None`: unlimited.
    pub uses_allowed: Option<u64>,
    /// Registrations under way with it (Sori counts a registration when it completes).
    pub pending: u64,
    pub completed: u64,
    /// Milliseconds since the epoch after which it no longer works; `None`: never.
    pub expiry_time: Option<u64>,
}

impl RegistrationToken {
    pub fn is_valid(&self, now: u64) -> bool {
        self.expiry_time.is_none_or(|at| now < at)
            && self
                .uses_allowed
                .is_none_or(|allowed| self.pending + self.completed < allowed)
    }
}

/// The characters a token may hold (Synapse's rule: URL-safe without escaping).
fn check_token(token: &str) -> Result<()> {
    if token.is_empty()
        || token.len() > MAX_LENGTH
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
    {
        return Err(Error::invalid_param(format!(
            "token must be 1 to {MAX_LENGTH} characters of A-Z a-z 0-9 . _ ~ -"
        )));
    }
    Ok(())
}

fn check_expiry(expiry_time: Option<u64>) -> Result<()> {
    if expiry_time.is_some_and(|at| at <= crate::now_ms()) {
        return Err(Error::invalid_param("expiry_time must be in the future"));
    }
    Ok(())
}

pub struct RegistrationTokens {
    store: Arc<dyn Store>,
    /// Serialises the read-modify-write of a token's counts.
    lock: Mutex<()>,
}

impl RegistrationTokens {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            lock: Mutex::new(()),
        }
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, token: &str) -> Result<Option<RegistrationToken>> {
        if token.is_empty() || token.len() > MAX_LENGTH {
            return Ok(None);
        }
        self.store
            .get_json(Table::RegistrationTokens, token.as_bytes())
    }

    /// Every token, in token order; with `valid`, only those that do (or do not) work now.
    pub fn list(&self, valid: Option<bool>) -> Result<Vec<RegistrationToken>> {
        let now = crate::now_ms();
        let mut tokens = Vec::new();
        for entry in self.store.scan(
            Table::RegistrationTokens,
            KeyRange::all(),
            Direction::Forward,
        )? {
            let (_, value) = entry?;
            let token: RegistrationToken = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("corrupt registration token: {e}")))?;
            if valid.is_none_or(|v| v == token.is_valid(now)) {
                tokens.push(token);
            }
        }
        Ok(tokens)
    }

    /// Creates a token (`token`, or a random one of `length` characters).
    pub fn create(
        &self,
        token: Option<String>,
        length: usize,
        uses_allowed: Option<u64>,
        expiry_time: Option<u64>,
    ) -> Result<RegistrationToken> {
        let token = match token {
            Some(token) => token,
            None => {
                if length == 0 || length > MAX_LENGTH {
                    return Err(Error::invalid_param(format!(
                        "length must be between 1 and {MAX_LENGTH}"
                    )));
                }
                crate::random::string(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-",
                    length,
                )
            }
        };
        check_token(&token)?;
        check_expiry(expiry_time)?;
        let _guard = self.guard();
        if self.get(&token)?.is_some() {
            return Err(Error::invalid_param(format!(
                "Token already exists: {token}"
            )));
        }
        let record = RegistrationToken {
            token,
            uses_allowed,
            pending: 0,
            completed: 0,
            expiry_time,
        };
        self.put(&record)?;
        Ok(record)
    }

    /// Changes a token's allowance or expiry (`Some(None)` clears one); `None` if unknown.
    pub fn update(
        &self,
        token: &str,
        uses_allowed: Option<Option<u64>>,
        expiry_time: Option<Option<u64>>,
    ) -> Result<Option<RegistrationToken>> {
        if let Some(expiry) = expiry_time {
            check_expiry(expiry)?;
        }
        let _guard = self.guard();
        let Some(mut record) = self.get(token)? else {
            return Ok(None);
        };
        if let Some(allowed) = uses_allowed {
            record.uses_allowed = allowed;
        }
        if let Some(expiry) = expiry_time {
            record.expiry_time = expiry;
        }
        self.put(&record)?;
        Ok(Some(record))
    }

    /// Deletes a token; `false` if unknown.
    pub fn delete(&self, token: &str) -> Result<bool> {
        let _guard = self.guard();
        if self.get(token)?.is_none() {
            return Ok(false);
        }
        let mut batch = Batch::new();
        batch.delete(Table::RegistrationTokens, token.as_bytes());
        self.store.write(batch)?;
        Ok(true)
    }

    /// Whether the token works now.
    pub fn is_valid(&self, token: &str) -> Result<bool> {
        Ok(self
            .get(token)?
            .is_some_and(|t| t.is_valid(crate::now_ms())))
    }

    /// Takes one use of the token for a registration; `false` if it no longer works (used up
    /// by a registration racing this one, or expired meanwhile).
    pub fn consume(&self, token: &str) -> Result<bool> {
        let _guard = self.guard();
        match self.get(token)? {
            Some(mut record) if record.is_valid(crate::now_ms()) => {
                record.completed += 1;
                self.put(&record)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Gives a use back (the registration it was taken for failed).
    pub fn refund(&self, token: &str) -> Result<()> {
        let _guard = self.guard();
        if let Some(mut record) = self.get(token)? {
            record.completed = record.completed.saturating_sub(1);
            self.put(&record)?;
        }
        Ok(())
    }

    fn put(&self, record: &RegistrationToken) -> Result<()> {
        let mut batch = Batch::new();
        batch.put_json(Table::RegistrationTokens, record.token.as_bytes(), record)?;
        self.store.write(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> (tempfile::TempDir, RegistrationTokens) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::storage::rocksdb::RocksStore::open(dir.path(), 8).unwrap());
        (dir, RegistrationTokens::new(store))
    }

    #[test]
    fn a_token_works_as_often_as_allowed_and_until_it_expires() {
        let (_dir, t) = tokens();
        let made = t.create(Some("abc".into()), 16, Some(2), None).unwrap();
        assert_eq!((made.pending, made.completed), (0, 0));
        assert!(t.consume("abc").unwrap());
        assert!(t.consume("abc").unwrap());
        assert!(!t.consume("abc").unwrap(), "used up");
        t.refund("abc").unwrap();
        assert!(t.is_valid("abc").unwrap());
        t.update("abc", Some(None), None).unwrap();
        assert!(t.consume("abc").unwrap(), "unlimited now");

        let random = t
            .create(None, 20, None, Some(crate::now_ms() + 60_000))
            .unwrap();
        assert_eq!(random.token.len(), 20);
        assert_eq!(t.list(Some(true)).unwrap().len(), 2);
        assert!(t.delete(&random.token).unwrap());
        assert!(!t.delete(&random.token).unwrap());
        assert!(!t.is_valid("nope").unwrap());
    }

    #[test]
    fn bad_tokens_and_expiries_are_refused() {
        let (_dir, t) = tokens();
        for bad in ["", "has space", "ünïcode", &"a".repeat(65)] {
            assert_eq!(
                t.create(Some(bad.into()), 16, None, None)
                    .unwrap_err()
                    .errcode(),
                "M_INVALID_PARAM",
                "{bad:?}"
            );
        }
        assert!(t.create(None, 0, None, None).is_err());
        assert!(t.create(None, 65, None, None).is_err());
        assert!(t.create(Some("late".into()), 16, None, Some(1)).is_err());
        t.create(Some("dup".into()), 16, None, None).unwrap();
        assert!(t.create(Some("dup".into()), 16, None, None).is_err());
    }
}

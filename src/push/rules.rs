//! Push rules: the spec's server-default ruleset plus the user's own rules and overrides,
//! kept as the `m.push_rules` global account data so `/sync` delivers changes like any other.

use std::sync::{Arc, Mutex};

use http::StatusCode;
use ruma::UserId;
use ruma::api::error::ErrorKind;
use ruma::push::{InsertPushRuleError, RemovePushRuleError, Ruleset};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::users::account_data::AccountData;

const EVENT_TYPE: &str = "m.push_rules";

#[derive(Deserialize, Serialize)]
struct Content {
    global: Ruleset,
}

pub struct PushRules {
    account_data: Arc<AccountData>,
    /// Serialises read-modify-write of a ruleset.
    lock: Mutex<()>,
    /// Parsed rulesets, read for every member on every event; replaced on update.
    cache: Mutex<std::collections::HashMap<ruma::OwnedUserId, Arc<Ruleset>>>,
}

impl PushRules {
    pub fn new(account_data: Arc<AccountData>) -> Self {
        Self {
            account_data,
            lock: Mutex::new(()),
            cache: Mutex::new(Default::default()),
        }
    }

    /// The user's ruleset, shared from the cache.
    pub fn cached(&self, user_id: &UserId) -> Result<Arc<Ruleset>> {
        if let Some(ruleset) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user_id)
        {
            return Ok(ruleset.clone());
        }
        let ruleset = Arc::new(self.get(user_id)?);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user_id.to_owned(), ruleset.clone());
        Ok(ruleset)
    }

    /// The user's ruleset: the stored one, or the server default for a user who changed nothing.
    pub fn get(&self, user_id: &UserId) -> Result<Ruleset> {
        match self.account_data.get(user_id, None, EVENT_TYPE)? {
            Some(raw) => {
                let mut content: Content = serde_json::from_str(raw.get())
                    .map_err(|e| Error::internal(format!("stored push rules: {e}")))?;
                // Rules added to the spec's defaults since this ruleset was stored appear too.
                content
                    .global
                    .update_with_server_default(Ruleset::server_default(user_id));
                Ok(content.global)
            }
            None => Ok(Ruleset::server_default(user_id)),
        }
    }

    /// Applies `change` to the user's ruleset and stores the result if it succeeded.
    pub fn update(
        &self,
        user_id: &UserId,
        change: impl FnOnce(&mut Ruleset) -> Result<()>,
    ) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut ruleset = self.get(user_id)?;
        change(&mut ruleset)?;
        let content = serde_json::value::to_raw_value(&Content { global: ruleset })
            .map_err(|e| Error::internal(format!("serialising push rules: {e}")))?;
        self.account_data.set(user_id, None, EVENT_TYPE, content)?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user_id);
        Ok(())
    }
}

pub fn insert_error(e: InsertPushRuleError) -> Error {
    match e {
        InsertPushRuleError::UnknownRuleId => Error::not_found(e.to_string()),
        other => Error::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidParam,
            other.to_string(),
        ),
    }
}

pub fn remove_error(e: RemovePushRuleError) -> Error {
    match e {
        RemovePushRuleError::NotFound => Error::not_found("No such push rule"),
        other => Error::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidParam,
            other.to_string(),
        ),
    }
}

//! Filters: definitions a client uploads once and then names by id in `/sync`.

use std::sync::Arc;

use ruma::UserId;
use ruma::api::client::filter::FilterDefinition;

use crate::error::Result;
use crate::storage::{Batch, Store, StoreExt, Table, keys};

pub struct Filters {
    store: Arc<dyn Store>,
}

impl Filters {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Stores a filter and returns its id.
    pub fn create(&self, user_id: &UserId, filter: &FilterDefinition) -> Result<String> {
        let id = self.store.next_count()?.to_string();
        let mut batch = Batch::new();
        batch.put_json(Table::Filters, keys::filter(user_id.as_str(), &id), filter)?;
        self.store.write(batch)?;
        Ok(id)
    }

    /// The user's filter with that id; another user's filter ids find nothing.
    pub fn get(&self, user_id: &UserId, filter_id: &str) -> Result<Option<FilterDefinition>> {
        self.store
            .get_json(Table::Filters, &keys::filter(user_id.as_str(), filter_id))
    }
}

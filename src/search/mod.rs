//! Search: messages (`POST /_matrix/client/v3/search`) through a [`SearchIndex`] backend, and
//! people in the user directory ([`users`]), both matched the way Korean needs ([`analyzer`]).
//!
//! Events reach the backend through the search [`outbox`], written in the event's own store
//! batch and drained by the [`indexer`]; queries go through [`messages`], which keeps to what
//! the searcher may see.

pub mod analyzer;
pub mod document;
pub mod embedded;
pub mod index;
pub mod indexer;
pub mod meilisearch;
pub mod messages;
pub mod outbox;
pub mod users;

use std::sync::Arc;

use tokio::sync::Notify;

use self::index::SearchIndex;
use crate::config::{Config, SearchBackend};
use crate::error::Result;
use crate::watchers::Watchers;

/// The search backend the configuration chose, and the indexer's wake-up.
pub struct Search {
    index: Arc<dyn SearchIndex>,
    signal: Arc<Notify>,
}

impl Search {
    pub fn new(config: &Config, watchers: &Watchers) -> Result<Self> {
        let index: Arc<dyn SearchIndex> = match config.search.backend {
            SearchBackend::Embedded => Arc::new(embedded::Embedded::open(
                &config.storage.path.join("search"),
            )?),
            SearchBackend::Meilisearch => {
                Arc::new(meilisearch::Meilisearch::new(&config.search.meilisearch)?)
            }
        };
        Ok(Self {
            index,
            signal: watchers.worker(),
        })
    }

    pub fn index(&self) -> &dyn SearchIndex {
        &*self.index
    }
}

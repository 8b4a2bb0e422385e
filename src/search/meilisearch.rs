//! The Meilisearch backend (`[search] backend = "meilisearch"`), through `meilisearch-sdk` on
//! Sori's own HTTP client. Meilisearch is configured by the operator and trusted, so requests
//! to it skip the outbound guard.
//!
//! One index (`<prefix>events`) holds a document per event; its settings (searchable,
//! filterable and sortable attributes, ranking rules ending with `count:desc` so equal matches
//! come newest first) are applied when the indexer starts. Meilisearch analyses Korean itself
//! (its tokenizer segments Hangul with a Korean dictionary). Its ranking depends on the
//! document and the query only, so `rank` pages resume by offset; `recent` pages by count.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::AsyncReadExt as _;
use meilisearch_sdk::client::Client;
use meilisearch_sdk::errors::{Error as MeiliError, ErrorCode, MeilisearchError};
use meilisearch_sdk::request::{HttpClient, Method, parse_response};
use meilisearch_sdk::search::MatchingStrategies;
use meilisearch_sdk::settings::Settings;
use meilisearch_sdk::task_info::TaskInfo;
use meilisearch_sdk::tasks::Task;
use ruma::{OwnedEventId, OwnedRoomId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::document::Document;
use super::index::{Change, Hit, Hits, Key, Order, Query, Resume, SearchIndex};
use crate::config::MeilisearchConfig;
use crate::error::{Error, Result};

/// How long one batch may wait for Meilisearch to process it before the indexer tries again.
const TASK_TIMEOUT: Duration = Duration::from_secs(60);

fn failed(what: &str) -> impl Fn(MeiliError) -> Error + '_ {
    move |e| Error::internal(format!("meilisearch: {what}: {e}"))
}

/// `meilisearch-sdk`'s transport on Sori's reqwest (rustls with ring; no second HTTP stack).
#[derive(Clone)]
struct Transport {
    http: reqwest::Client,
    api_key: Option<String>,
}

fn other(error: impl std::error::Error + Send + Sync + 'static) -> MeiliError {
    MeiliError::Other(Box::new(error))
}

#[async_trait]
impl HttpClient for Transport {
    async fn stream_request<
        Q: Serialize + Send + Sync,
        B: futures_util::AsyncRead + Send + Sync + 'static,
        Output: DeserializeOwned + 'static,
    >(
        &self,
        url: &str,
        method: Method<Q, B>,
        content_type: &str,
        expected_status_code: u16,
    ) -> std::result::Result<Output, MeiliError> {
        let query = yaup::to_string(method.query())?;
        let url = format!("{url}{query}");
        let verb = match &method {
            Method::Get { .. } => reqwest::Method::GET,
            Method::Delete { .. } => reqwest::Method::DELETE,
            Method::Post { .. } => reqwest::Method::POST,
            Method::Put { .. } => reqwest::Method::PUT,
            Method::Patch { .. } => reqwest::Method::PATCH,
        };
        let mut request = self.http.request(verb, &url);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = method.into_body() {
            let mut bytes = Vec::new();
            std::pin::pin!(body)
                .read_to_end(&mut bytes)
                .await
                .map_err(other)?;
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes);
        }
        let response = request.send().await.map_err(other)?;
        let status = response.status().as_u16();
        let mut body = response.text().await.map_err(other)?;
        if body.is_empty() {
            body = "null".to_owned();
        }
        parse_response(status, expected_status_code, &body, url)
    }

    fn is_tokio(&self) -> bool {
        true
    }
}

/// A document as Meilisearch stores it: Sori's fields plus a primary key Meilisearch accepts
/// (event ids hold `$`, which it does not).
#[derive(Serialize)]
struct Stored<'a> {
    id: String,
    #[serde(flatten)]
    document: &'a Document,
}

/// What a hit brings back.
#[derive(Deserialize)]
struct Found {
    event_id: OwnedEventId,
    room_id: OwnedRoomId,
    count: u64,
}

fn primary_key(event_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(event_id)
}

/// A string in a Meilisearch filter expression.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn list(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| quoted(v)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The query's filter expression; `before` keeps only documents older than that count.
fn filter(query: &Query, before: Option<u64>) -> String {
    let rooms: Vec<String> = query
        .rooms
        .iter()
        .map(|room| match room.upto {
            None => format!("room_id = {}", quoted(room.room_id.as_str())),
            Some(upto) => format!(
                "(room_id = {} AND count <= {upto})",
                quoted(room.room_id.as_str())
            ),
        })
        .collect();
    let mut clauses = vec![format!("({})", rooms.join(" OR "))];
    if let Some(senders) = &query.senders {
        clauses.push(format!("sender IN {}", list(senders)));
    }
    if !query.not_senders.is_empty() {
        clauses.push(format!("sender NOT IN {}", list(&query.not_senders)));
    }
    if let Some(types) = &query.types {
        clauses.push(format!("type IN {}", list(types)));
    }
    if !query.not_types.is_empty() {
        clauses.push(format!("type NOT IN {}", list(&query.not_types)));
    }
    if let Some(has_url) = query.has_url {
        clauses.push(format!("has_url = {has_url}"));
    }
    if let Some(before) = before {
        clauses.push(format!("count < {before}"));
    }
    clauses.join(" AND ")
}

pub struct Meilisearch {
    client: Client<Transport>,
    index: String,
    /// The index exists with Sori's settings (filters and sorts fail without them).
    ready: AtomicBool,
}

impl Meilisearch {
    pub fn new(config: &MeilisearchConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::internal(format!("meilisearch client: {e}")))?;
        let api_key = (!config.api_key.is_empty()).then(|| config.api_key.clone());
        let transport = Transport {
            http,
            api_key: api_key.clone(),
        };
        Ok(Self {
            client: Client::new_with_client(config.url.trim_end_matches('/'), api_key, transport),
            index: format!("{}events", config.index_prefix),
            ready: AtomicBool::new(false),
        })
    }

    /// Waits for a task, polling without blocking the runtime: what Meilisearch made of it.
    async fn outcome(
        &self,
        task: TaskInfo,
        what: &str,
    ) -> Result<std::result::Result<(), MeilisearchError>> {
        let deadline = tokio::time::Instant::now() + TASK_TIMEOUT;
        let mut interval = Duration::from_millis(10);
        loop {
            match self.client.get_task(&task).await.map_err(failed(what))? {
                Task::Succeeded { .. } => return Ok(Ok(())),
                Task::Failed { content } => return Ok(Err(content.error)),
                Task::Enqueued { .. } | Task::Processing { .. } => {}
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::internal(format!(
                    "meilisearch: {what}: not done in {} s",
                    TASK_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(Duration::from_millis(200));
        }
    }

    /// Waits for a task; a failed task is an error.
    async fn finish(&self, task: TaskInfo, what: &str) -> Result<()> {
        self.outcome(task, what)
            .await?
            .map_err(|e| Error::internal(format!("meilisearch: {what}: {e}")))
    }
}

#[async_trait]
impl SearchIndex for Meilisearch {
    async fn prepare(&self) -> Result<()> {
        let created = self
            .client
            .create_index(&self.index, Some("id"))
            .await
            .map_err(failed("create index"))?;
        match self.outcome(created, "create index").await? {
            Ok(()) => {}
            // Already there from an earlier start.
            Err(e) if e.error_code == ErrorCode::IndexAlreadyExists => {}
            Err(e) => {
                return Err(Error::internal(format!("meilisearch: create index: {e}")));
            }
        }
        let settings = Settings::new()
            .with_searchable_attributes(["body", "name", "topic"])
            .with_filterable_attributes(["room_id", "sender", "type", "count", "has_url"])
            .with_sortable_attributes(["count"])
            .with_ranking_rules([
                "words",
                "typo",
                "proximity",
                "attribute",
                "sort",
                "exactness",
                "count:desc",
            ]);
        let task = self
            .client
            .index(&self.index)
            .set_settings(&settings)
            .await
            .map_err(failed("settings"))?;
        self.finish(task, "settings").await?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    async fn apply(&self, changes: Vec<Change>) -> Result<()> {
        let index = self.client.index(&self.index);
        // Consecutive changes of one kind go in one task; tasks run in the order they were
        // enqueued, so a removal after an indexing wins.
        let mut tasks = Vec::new();
        let mut changes = changes.into_iter().peekable();
        while let Some(change) = changes.next() {
            match change {
                Change::Put(document) => {
                    let mut documents = vec![*document];
                    while let Some(Change::Put(_)) = changes.peek() {
                        if let Some(Change::Put(next)) = changes.next() {
                            documents.push(*next);
                        }
                    }
                    let stored: Vec<Stored> = documents
                        .iter()
                        .map(|document| Stored {
                            id: primary_key(&document.event_id),
                            document,
                        })
                        .collect();
                    tasks.push(
                        index
                            .add_or_replace(&stored, Some("id"))
                            .await
                            .map_err(failed("add documents"))?,
                    );
                }
                Change::Remove(event_id) => {
                    let mut ids = vec![primary_key(event_id.as_str())];
                    while let Some(Change::Remove(_)) = changes.peek() {
                        if let Some(Change::Remove(next)) = changes.next() {
                            ids.push(primary_key(next.as_str()));
                        }
                    }
                    tasks.push(
                        index
                            .delete_documents(&ids)
                            .await
                            .map_err(failed("delete documents"))?,
                    );
                }
            }
        }
        for task in tasks {
            self.finish(task, "indexing").await?;
        }
        Ok(())
    }

    async fn search(&self, query: &Query, after: Option<Resume>, limit: usize) -> Result<Hits> {
        if query.rooms.is_empty() || query.words.is_empty() || query.keys.is_empty() {
            return Ok(Hits::default());
        }
        // A search that comes before the indexer set the index up does it first.
        if !self.ready.load(Ordering::Acquire) {
            self.prepare().await?;
        }
        let index = self.client.index(&self.index);
        let keys: Vec<&str> = query
            .keys
            .iter()
            .map(|key| match key {
                Key::Body => "body",
                Key::Name => "name",
                Key::Topic => "topic",
            })
            .collect();
        let (before, offset) = match query.order {
            Order::Recent => (after.map(|a| a.count), 0),
            Order::Rank => (None, after.map_or(0, |a| a.offset)),
        };
        let expression = filter(query, before);
        let sort = ["count:desc"];
        let retrieve = ["event_id", "room_id", "count"];
        let mut search = index.search();
        search
            .with_query(&query.term)
            .with_filter(&expression)
            .with_attributes_to_search_on(&keys)
            .with_attributes_to_retrieve(meilisearch_sdk::search::Selectors::Some(&retrieve))
            .with_matching_strategy(MatchingStrategies::ALL)
            .with_show_ranking_score(true)
            .with_offset(offset as usize)
            .with_limit(limit);
        if query.order == Order::Recent {
            search.with_sort(&sort);
        }
        let results = match search.execute::<Found>().await {
            Ok(results) => results,
            // Before the indexer first set the index up, there is nothing to find.
            Err(MeiliError::Meilisearch(e)) if e.error_code == ErrorCode::IndexNotFound => {
                return Ok(Hits::default());
            }
            Err(e) => return Err(failed("search")(e)),
        };
        let hits = results
            .hits
            .into_iter()
            .enumerate()
            .map(|(i, hit)| {
                let rank = hit.ranking_score;
                Hit {
                    event_id: hit.result.event_id,
                    room_id: hit.result.room_id,
                    count: hit.result.count,
                    rank: (query.order == Order::Rank).then_some(rank).flatten(),
                    resume: Resume {
                        rank: None,
                        count: hit.result.count,
                        offset: offset + i as u64 + 1,
                    },
                }
            })
            .collect();
        Ok(Hits {
            hits,
            total: results.estimated_total_hits.unwrap_or_default() as u64,
        })
    }

    async fn clear(&self) -> Result<()> {
        let task = self
            .client
            .index(&self.index)
            .delete_all_documents()
            .await
            .map_err(failed("clear"))?;
        self.finish(task, "clear").await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::index::RoomScope;

    #[test]
    fn filters_quote_what_users_control_and_scope_left_rooms() {
        let query = Query {
            term: "회의".into(),
            words: Vec::new(),
            keys: vec![Key::Body],
            rooms: vec![
                RoomScope {
                    room_id: "!a:sori.test".try_into().unwrap(),
                    upto: None,
                },
                RoomScope {
                    room_id: "!b\"OR 1=1:sori.test".try_into().unwrap(),
                    upto: Some(42),
                },
            ],
            senders: Some(vec!["@x:sori.test".into()]),
            not_senders: Vec::new(),
            types: None,
            not_types: vec!["m.room.name".into()],
            has_url: Some(false),
            order: Order::Recent,
        };
        assert_eq!(
            filter(&query, Some(7)),
            "(room_id = \"!a:sori.test\" OR (room_id = \"!b\\\"OR 1=1:sori.test\" AND \
             count <= 42)) AND sender IN [\"@x:sori.test\"] AND type NOT IN [\"m.room.name\"] \
             AND has_url = false AND count < 7"
        );
        assert_eq!(primary_key("$abc+/="), "JGFiYysvPQ");
    }
}

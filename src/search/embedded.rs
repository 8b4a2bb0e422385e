//! The embedded search backend (the default): a tantivy index in a directory of its own, with
//! Sori's tokenizer ([`super::analyzer`]) on the text fields.
//!
//! Ranking is BM25 over statistics that do not depend on the rest of the index (see
//! [`StableStatistics`]): a document's score for a query never changes, so `(score, count)` is
//! a fixed total order and a page resumes exactly after the previous one even while new
//! messages are indexed.

use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ruma::{OwnedEventId, OwnedRoomId};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    Bm25StatisticsProvider, BooleanQuery, Occur, PhrasePrefixQuery, PhraseQuery, RangeQuery,
    TermQuery, TermSetQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::tokenizer::{Token as TantivyToken, TokenStream, Tokenizer};
use tantivy::{
    DocAddress, DocId, Index, IndexReader, IndexWriter, Order as TantivyOrder, ReloadPolicy, Score,
    Searcher, SegmentReader, TantivyDocument, Term,
};

use super::analyzer::{self, QueryWord};
use super::document::Document;
use super::index::{Change, Hit, Hits, Key, Order, Query, Resume, SearchIndex};
use crate::error::{Error, Result};

const TOKENIZER: &str = "sori";
/// The indexing buffer: tantivy's minimum (15 MB), which holds a few thousand messages
/// between commits; more would only cost resident memory.
const WRITER_MEMORY: usize = 15_000_000;
const QUERIES_AT_ONCE: usize = 4;

fn failed(what: &str) -> impl Fn(tantivy::TantivyError) -> Error + '_ {
    move |e| Error::internal(format!("search index: {what}: {e}"))
}

#[derive(Clone, Copy)]
struct Fields {
    event_id: Field,
    room_id: Field,
    sender: Field,
    kind: Field,
    count: Field,
    has_url: Field,
    body: Field,
    name: Field,
    topic: Field,
}

impl Fields {
    fn schema() -> (Schema, Fields) {
        let mut builder = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TOKENIZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let fields = Fields {
            event_id: builder.add_text_field("event_id", STRING | STORED),
            room_id: builder.add_text_field("room_id", STRING | STORED),
            sender: builder.add_text_field("sender", STRING),
            kind: builder.add_text_field("type", STRING),
            count: builder.add_u64_field("count", INDEXED | FAST),
            has_url: builder.add_u64_field("has_url", INDEXED),
            body: builder.add_text_field("body", text.clone()),
            name: builder.add_text_field("name", text.clone()),
            topic: builder.add_text_field("topic", text),
        };
        (builder.build(), fields)
    }

    fn key(&self, key: Key) -> Field {
        match key {
            Key::Body => self.body,
            Key::Name => self.name,
            Key::Topic => self.topic,
        }
    }

    fn document(&self, document: &Document) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        doc.add_text(self.event_id, &document.event_id);
        doc.add_text(self.room_id, &document.room_id);
        doc.add_text(self.sender, &document.sender);
        doc.add_text(self.kind, &document.kind);
        doc.add_u64(self.count, document.count);
        doc.add_u64(self.has_url, u64::from(document.has_url));
        for (key, text) in document.texts() {
            doc.add_text(self.key(key), text);
        }
        doc
    }
}

/// Sori's analyzer as a tantivy tokenizer.
#[derive(Clone, Default)]
struct SoriTokenizer;

struct SoriTokens {
    tokens: Vec<TantivyToken>,
    next: usize,
}

impl Tokenizer for SoriTokenizer {
    type TokenStream<'a> = SoriTokens;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> SoriTokens {
        let tokens = analyzer::document_tokens(text)
            .into_iter()
            .map(|t| TantivyToken {
                offset_from: 0,
                offset_to: 0,
                position: t.position,
                text: t.text,
                position_length: 1,
            })
            .collect();
        SoriTokens { tokens, next: 0 }
    }
}

impl TokenStream for SoriTokens {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &TantivyToken {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut TantivyToken {
        &mut self.tokens[self.next - 1]
    }
}

/// BM25 statistics as if every index were the same: a fixed corpus size and term rarity. A
/// score then depends on the document alone (how often and how densely the words occur in
/// it), which is what stable pagination needs; the rarity of words matters little when every
/// word must occur anyway.
struct StableStatistics;

impl Bm25StatisticsProvider for StableStatistics {
    fn total_num_tokens(&self, _field: Field) -> tantivy::Result<u64> {
        // About 40 tokens a document: a short chat line.
        Ok(40 * 1_000_000)
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(1_000_000)
    }

    fn doc_freq(&self, _term: &Term) -> tantivy::Result<u64> {
        Ok(1_000)
    }
}

pub struct Embedded {
    writer: Arc<Mutex<IndexWriter<TantivyDocument>>>,
    searching: Arc<Searching>,
    /// Queries run at once: more would only queue for the cores, and each blocking thread
    /// the runtime adds keeps its own allocator arena (resident memory).
    running: tokio::sync::Semaphore,
}

/// What queries need, shared with the blocking tasks that run them.
struct Searching {
    fields: Fields,
    reader: IndexReader,
}

impl Embedded {
    /// Opens the index in `dir`, creating it when missing.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::internal(format!("cannot create search index {}: {e}", dir.display()))
        })?;
        let (schema, fields) = Fields::schema();
        let directory = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| Error::internal(format!("search index {}: {e}", dir.display())))?;
        let index = Index::open_or_create(directory, schema).map_err(|e| {
            Error::internal(format!(
                "search index {}: {e} (an index of an older layout: remove the directory and \
                 run `sori search reindex`)",
                dir.display()
            ))
        })?;
        index.tokenizers().register(TOKENIZER, SoriTokenizer);
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY)
            .map_err(|e| {
                Error::internal(format!(
                    "search index {}: {e} (is another Sori using this data directory?)",
                    dir.display()
                ))
            })?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(failed("reader"))?;
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            searching: Arc::new(Searching { fields, reader }),
            running: tokio::sync::Semaphore::new(QUERIES_AT_ONCE),
        })
    }
}

impl Searching {
    fn word_query(&self, field: Field, word: &QueryWord) -> Box<dyn tantivy::query::Query> {
        let terms: Vec<(usize, Term)> = word
            .tokens
            .iter()
            .map(|t| (t.position, Term::from_field_text(field, &t.text)))
            .collect();
        if word.prefix {
            Box::new(PhrasePrefixQuery::new_with_offset(terms))
        } else if terms.len() == 1 {
            let (_, term) = terms.into_iter().next().expect("one term");
            Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs))
        } else {
            Box::new(PhraseQuery::new_with_offset(terms))
        }
    }

    fn count_term(&self, count: u64) -> Term {
        Term::from_field_u64(self.fields.count, count)
    }

    fn text_terms(&self, field: Field, values: &[String]) -> Box<dyn tantivy::query::Query> {
        Box::new(TermSetQuery::new(
            values.iter().map(|v| Term::from_field_text(field, v)),
        ))
    }

    /// The query's clauses but the resume point.
    fn clauses(&self, query: &Query) -> Vec<(Occur, Box<dyn tantivy::query::Query>)> {
        let fields = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn tantivy::query::Query>)> = Vec::new();
        for word in &query.words {
            let in_any_key = query
                .keys
                .iter()
                .map(|key| (Occur::Should, self.word_query(fields.key(*key), word)))
                .collect();
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(in_any_key))));
        }
        let mut rooms: Vec<(Occur, Box<dyn tantivy::query::Query>)> = Vec::new();
        let unbounded: Vec<String> = query
            .rooms
            .iter()
            .filter(|r| r.upto.is_none())
            .map(|r| r.room_id.to_string())
            .collect();
        if !unbounded.is_empty() {
            rooms.push((Occur::Should, self.text_terms(fields.room_id, &unbounded)));
        }
        for room in &query.rooms {
            if let Some(upto) = room.upto {
                let room_term = Term::from_field_text(fields.room_id, room.room_id.as_str());
                rooms.push((
                    Occur::Should,
                    Box::new(BooleanQuery::new(vec![
                        (
                            Occur::Must,
                            Box::new(TermQuery::new(room_term, IndexRecordOption::Basic)),
                        ),
                        (
                            Occur::Must,
                            Box::new(RangeQuery::new(
                                Bound::Unbounded,
                                Bound::Included(self.count_term(upto)),
                            )),
                        ),
                    ])),
                ));
            }
        }
        clauses.push((Occur::Must, Box::new(BooleanQuery::new(rooms))));
        if let Some(senders) = &query.senders {
            clauses.push((Occur::Must, self.text_terms(fields.sender, senders)));
        }
        if !query.not_senders.is_empty() {
            clauses.push((
                Occur::MustNot,
                self.text_terms(fields.sender, &query.not_senders),
            ));
        }
        if let Some(types) = &query.types {
            clauses.push((Occur::Must, self.text_terms(fields.kind, types)));
        }
        if !query.not_types.is_empty() {
            clauses.push((
                Occur::MustNot,
                self.text_terms(fields.kind, &query.not_types),
            ));
        }
        if let Some(has_url) = query.has_url {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_u64(fields.has_url, u64::from(has_url)),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        clauses
    }

    fn hit(
        &self,
        searcher: &Searcher,
        address: DocAddress,
        rank: Option<Score>,
        count: u64,
    ) -> Result<Hit> {
        let doc: TantivyDocument = searcher.doc(address).map_err(failed("stored document"))?;
        let text = |field: Field| {
            doc.get_first(field)
                .and_then(|v| v.as_str().map(str::to_owned))
        };
        let corrupt = || Error::internal("search index: a document without its event");
        let event_id = text(self.fields.event_id)
            .and_then(|id| OwnedEventId::try_from(id).ok())
            .ok_or_else(corrupt)?;
        let room_id = text(self.fields.room_id)
            .and_then(|id| OwnedRoomId::try_from(id).ok())
            .ok_or_else(corrupt)?;
        Ok(Hit {
            event_id,
            room_id,
            count,
            rank: rank.map(f64::from),
            resume: Resume {
                rank: rank.map(f32::to_bits),
                count,
                offset: 0,
            },
        })
    }

    fn search_now(&self, query: &Query, after: Option<Resume>, limit: usize) -> Result<Hits> {
        if query.rooms.is_empty() || query.words.is_empty() || query.keys.is_empty() {
            return Ok(Hits::default());
        }
        let searcher = self.reader.searcher();
        let matching = BooleanQuery::new(self.clauses(query));
        let total = searcher
            .search(&matching, &Count)
            .map_err(failed("count"))? as u64;
        let mut hits = Vec::new();
        match query.order {
            Order::Recent => {
                let mut clauses = self.clauses(query);
                if let Some(after) = after {
                    clauses.push((
                        Occur::Must,
                        Box::new(RangeQuery::new(
                            Bound::Unbounded,
                            Bound::Excluded(self.count_term(after.count)),
                        )),
                    ));
                }
                let top =
                    TopDocs::with_limit(limit).order_by_u64_field("count", TantivyOrder::Desc);
                for (count, address) in searcher
                    .search(&BooleanQuery::new(clauses), &top)
                    .map_err(failed("search"))?
                {
                    hits.push(self.hit(&searcher, address, None, count.unwrap_or(0))?);
                }
            }
            Order::Rank => {
                let after = after.map(|a| (f32::from_bits(a.rank.unwrap_or(0)), a.count));
                let top = TopDocs::with_limit(limit).tweak_score(move |segment: &SegmentReader| {
                    let counts = segment
                        .fast_fields()
                        .u64("count")
                        .ok()
                        .map(|column| column.first_or_default_col(0));
                    move |doc: DocId, score: Score| {
                        let count = counts.as_ref().map_or(0, |c| c.get_val(doc));
                        let key = (score, count);
                        // Only what sorts after the resume point competes.
                        match after {
                            Some(after) if key >= after => None,
                            _ => Some(key),
                        }
                    }
                });
                let found = searcher
                    .search_with_statistics_provider(&matching, &top, &StableStatistics)
                    .map_err(failed("search"))?;
                for (key, address) in found {
                    if let Some((score, count)) = key {
                        hits.push(self.hit(&searcher, address, Some(score), count)?);
                    }
                }
            }
        }
        Ok(Hits { hits, total })
    }
}

#[async_trait]
impl SearchIndex for Embedded {
    async fn apply(&self, changes: Vec<Change>) -> Result<()> {
        let writer = self.writer.clone();
        let reader = self.searching.reader.clone();
        let fields = self.searching.fields;
        tokio::task::spawn_blocking(move || {
            let mut writer = writer.lock().unwrap_or_else(|p| p.into_inner());
            for change in changes {
                match change {
                    Change::Put(document) => {
                        writer.delete_term(Term::from_field_text(
                            fields.event_id,
                            &document.event_id,
                        ));
                        writer
                            .add_document(fields.document(&document))
                            .map_err(failed("add"))?;
                    }
                    Change::Remove(event_id) => {
                        writer
                            .delete_term(Term::from_field_text(fields.event_id, event_id.as_str()));
                    }
                }
            }
            writer.commit().map_err(failed("commit"))?;
            reader.reload().map_err(failed("reload"))
        })
        .await
        .map_err(|e| Error::internal(format!("search index task: {e}")))?
    }

    async fn search(&self, query: &Query, after: Option<Resume>, limit: usize) -> Result<Hits> {
        let _permit = self
            .running
            .acquire()
            .await
            .map_err(|e| Error::internal(format!("search index: {e}")))?;
        let searching = self.searching.clone();
        let query = query.clone();
        tokio::task::spawn_blocking(move || searching.search_now(&query, after, limit))
            .await
            .map_err(|e| Error::internal(format!("search index task: {e}")))?
    }

    async fn clear(&self) -> Result<()> {
        let writer = self.writer.clone();
        let reader = self.searching.reader.clone();
        tokio::task::spawn_blocking(move || {
            let mut writer = writer.lock().unwrap_or_else(|p| p.into_inner());
            writer.delete_all_documents().map_err(failed("clear"))?;
            writer.commit().map_err(failed("commit"))?;
            reader.reload().map_err(failed("reload"))
        })
        .await
        .map_err(|e| Error::internal(format!("search index task: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::index::RoomScope;

    fn doc(n: u64, room: &str, body: &str) -> Change {
        Change::Put(Box::new(Document {
            event_id: format!("$e{n}"),
            room_id: format!("!{room}:sori.test"),
            sender: "@a:sori.test".into(),
            kind: "m.room.message".into(),
            count: n,
            origin_server_ts: n,
            body: vec![body.into()],
            name: None,
            topic: None,
            has_url: false,
        }))
    }

    fn query(term: &str, rooms: &[(&str, Option<u64>)], order: Order) -> Query {
        Query {
            term: term.into(),
            words: analyzer::query(term, 16),
            keys: vec![Key::Body, Key::Name, Key::Topic],
            rooms: rooms
                .iter()
                .map(|(r, upto)| RoomScope {
                    room_id: OwnedRoomId::try_from(format!("!{r}:sori.test")).unwrap(),
                    upto: *upto,
                })
                .collect(),
            senders: None,
            not_senders: Vec::new(),
            types: None,
            not_types: Vec::new(),
            has_url: None,
            order,
        }
    }

    async fn all_pages(index: &Embedded, query: &Query, page: usize) -> Vec<u64> {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let hits = index.search(query, after, page).await.unwrap();
            let Some(last) = hits.hits.last() else {
                return seen;
            };
            after = Some(last.resume);
            seen.extend(hits.hits.iter().map(|h| h.count));
        }
    }

    #[tokio::test]
    async fn finds_korean_inside_words_in_the_searchers_rooms_only() {
        let dir = tempfile::tempdir().unwrap();
        let index = Embedded::open(dir.path()).unwrap();
        index
            .apply(vec![
                doc(1, "a", "오늘 회의는 3시"),
                doc(2, "a", "회의록 공유드립니다"),
                doc(3, "b", "회의 취소"),
                doc(4, "a", "점심 뭐 먹죠"),
                doc(5, "a", "API 배포 일정"),
            ])
            .await
            .unwrap();
        let found = index
            .search(&query("회의", &[("a", None)], Order::Recent), None, 10)
            .await
            .unwrap();
        assert_eq!(found.total, 2);
        let counts: Vec<u64> = found.hits.iter().map(|h| h.count).collect();
        assert_eq!(counts, vec![2, 1]);
        // A left room is searched up to the leave only.
        let found = index
            .search(
                &query("회의", &[("a", Some(1)), ("b", None)], Order::Recent),
                None,
                10,
            )
            .await
            .unwrap();
        let counts: Vec<u64> = found.hits.iter().map(|h| h.count).collect();
        assert_eq!(counts, vec![3, 1]);
        let found = index
            .search(&query("api 배포", &[("a", None)], Order::Rank), None, 10)
            .await
            .unwrap();
        assert_eq!(found.hits.len(), 1);
        assert_eq!(found.hits[0].event_id, "$e5");
        assert!(found.hits[0].rank.unwrap() > 0.0);
    }

    #[tokio::test]
    async fn pages_neither_repeat_nor_skip_in_either_order() {
        let dir = tempfile::tempdir().unwrap();
        let index = Embedded::open(dir.path()).unwrap();
        // Scores tie often (same words, same length) and differ sometimes.
        let changes = (1..=57)
            .map(|n| {
                let body = match n % 3 {
                    0 => "배포 완료".to_owned(),
                    1 => format!("배포 배포 {n}번"),
                    _ => format!("오늘 저녁에 서버 배포를 진행합니다 {n}"),
                };
                doc(n, "a", &body)
            })
            .collect();
        index.apply(changes).await.unwrap();
        for order in [Order::Rank, Order::Recent] {
            let q = query("배포", &[("a", None)], order);
            let mut seen = all_pages(&index, &q, 5).await;
            assert_eq!(seen.len(), 57, "{order:?}");
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), 57, "{order:?}: a page repeated a hit");
        }
        // The order is the same one page at a time as all at once.
        let q = query("배포", &[("a", None)], Order::Rank);
        let at_once: Vec<u64> = index
            .search(&q, None, 100)
            .await
            .unwrap()
            .hits
            .iter()
            .map(|h| h.count)
            .collect();
        assert_eq!(all_pages(&index, &q, 4).await, at_once);
    }

    #[tokio::test]
    async fn a_document_is_replaced_by_its_event_and_removed_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let index = Embedded::open(dir.path()).unwrap();
        index.apply(vec![doc(1, "a", "비밀 계획")]).await.unwrap();
        // Indexing the same event again (a redelivery) keeps one document.
        index.apply(vec![doc(1, "a", "비밀 계획")]).await.unwrap();
        let q = query("계획", &[("a", None)], Order::Recent);
        assert_eq!(index.search(&q, None, 10).await.unwrap().total, 1);
        index
            .apply(vec![Change::Remove(OwnedEventId::try_from("$e1").unwrap())])
            .await
            .unwrap();
        assert_eq!(index.search(&q, None, 10).await.unwrap().total, 0);
        // And the index opens again after a restart with what it had.
        index.apply(vec![doc(2, "a", "새 계획")]).await.unwrap();
        drop(index);
        let index = Embedded::open(dir.path()).unwrap();
        assert_eq!(index.search(&q, None, 10).await.unwrap().total, 1);
    }
}

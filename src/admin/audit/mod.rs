//! The audit log: who did what to whom, when and from where. Every entry is written in the
//! same store batch as the action it records (where the action writes one), and carries the
//! hash of the entry before it, so a removed or edited entry breaks the chain and
//! `sori audit verify` names it. Pruning by age leaves an anchor (the last pruned entry's id
//! and hash) from which the rest still verifies.

pub mod chain;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use ruma::{OwnedUserId, UserId};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::storage::{Batch, Direction, KeyRange, Store, StoreExt, Table, keys};
pub use chain::{Entry, Link};

/// Longest text an entry keeps of what a client sent (a user agent, a login name).
const MAX_TEXT: usize = 256;
/// Most entries one query walks before answering with what it found and a `next_batch`.
const MAX_SCANNED: usize = 20_000;
/// Most entries pruned in one store batch.
const PRUNE_BATCH: usize = 5_000;

/// Who is acting and from where: the authenticated user and the request's address and
/// user agent. Background work and the offline `sori` command act without one.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub actor: Option<OwnedUserId>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl Origin {
    /// The server acting on its own (start-up, background tasks, the offline command).
    pub fn server() -> Self {
        Self::default()
    }

    pub fn of(actor: &UserId, ip: IpAddr, user_agent: Option<&str>) -> Self {
        Self {
            actor: Some(actor.to_owned()),
            ip: Some(ip),
            user_agent: user_agent.map(clip),
        }
    }

    /// The same request, with the acting user now known (a login).
    pub fn acting_as(&self, actor: &UserId) -> Self {
        Self {
            actor: Some(actor.to_owned()),
            ..self.clone()
        }
    }

    /// An entry for `action` on `target` by this origin.
    pub fn record(&self, action: &str, target: impl ToString, details: Value) -> Record {
        Record {
            action: action.to_owned(),
            actor: self.actor.as_ref().map(|a| a.to_string()),
            target: Some(target.to_string()).filter(|t| !t.is_empty()),
            ip: self.ip.map(|ip| ip.to_string()),
            user_agent: self.user_agent.clone(),
            details,
        }
    }
}

tokio::task_local! {
    /// The request being served (address and user agent), for entries written far below its
    /// handler.
    static REQUEST: Origin;
}

/// Runs `serve` as the request from `origin`.
pub async fn within_request<F: std::future::Future>(origin: Origin, serve: F) -> F::Output {
    REQUEST.scope(origin, serve).await
}

/// The request being served, if any (no actor: entries name theirs).
pub fn current_request() -> Origin {
    REQUEST.try_with(Origin::clone).unwrap_or_default()
}

/// Cuts client-sent text to [`MAX_TEXT`] bytes on a character boundary.
pub fn clip(text: &str) -> String {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// What to append: an entry before it has an id, a time and its place in the chain.
#[derive(Clone, Debug)]
pub struct Record {
    pub action: String,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: Value,
}

/// Which entries a query wants, newest first.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// Only entries with an id below this (a `next_batch`).
    pub before: Option<u64>,
    pub limit: usize,
    pub action: Option<String>,
    /// Entries where this user acted or was acted on.
    pub user_id: Option<String>,
    pub since_ts: Option<u64>,
    pub until_ts: Option<u64>,
}

pub struct Audit {
    store: Arc<dyn Store>,
    /// The chain's end. Held from hashing an entry until its batch is written, so entries
    /// are stored in the order they link.
    head: Mutex<Link>,
}

/// The chain, locked for appending entries to one batch; [`Chain::written`] once it is.
pub struct Chain<'a> {
    head: MutexGuard<'a, Link>,
    next: Link,
}

impl Chain<'_> {
    /// Adds `record` to `batch` as the next entry.
    pub fn append(&mut self, batch: &mut Batch, record: Record) -> Result<()> {
        let id = self.next.id + 1;
        let mut entry = Entry {
            id,
            ts: crate::now_ms(),
            actor: record.actor,
            action: record.action,
            target: record.target,
            ip: record.ip,
            user_agent: record.user_agent,
            details: record.details,
            prev_hash: self.next.hash.clone(),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash()?;
        batch.put_json(Table::Audit, keys::audit_entry(id), &entry)?;
        tracing::info!(
            audit_id = id,
            action = %entry.action,
            actor = entry.actor.as_deref().unwrap_or("-"),
            target = entry.target.as_deref().unwrap_or("-"),
            "audit"
        );
        self.next = Link {
            id,
            hash: entry.hash,
        };
        Ok(())
    }

    /// The batch holding the appended entries is stored: they are the chain's end now.
    pub fn written(mut self) {
        *self.head = self.next.clone();
    }
}

impl Audit {
    pub fn new(store: Arc<dyn Store>) -> Result<Self> {
        let head = Self::stored_head(&*store)?;
        Ok(Self {
            store,
            head: Mutex::new(head),
        })
    }

    /// The last stored entry, or the anchor, or the genesis.
    fn stored_head(store: &dyn Store) -> Result<Link> {
        let last = store
            .scan(Table::Audit, KeyRange::all(), Direction::Backward)?
            .next()
            .transpose()?;
        match last {
            Some((key, value)) => {
                let id = keys::trailing_u64(&key).unwrap_or(0);
                // A damaged last entry still gets linked to (by the hash it claims, or of its
                // bytes), so appending goes on and `verify` points at the damage.
                let hash = serde_json::from_slice::<Entry>(&value)
                    .map(|e| e.hash)
                    .unwrap_or_else(|_| {
                        tracing::error!(audit_id = id, "the last audit entry is unreadable");
                        chain::hex(ring::digest::digest(&ring::digest::SHA256, &value).as_ref())
                    });
                Ok(Link { id, hash })
            }
            None => Ok(chain::anchor(store)?.unwrap_or_else(Link::genesis)),
        }
    }

    /// Locks the chain to append entries to a batch the caller writes.
    pub fn chain(&self) -> Chain<'_> {
        let head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let next = head.clone();
        Chain { head, next }
    }

    /// Writes `batch` (the action's own changes) with `records` appended to the chain.
    pub fn write(&self, mut batch: Batch, records: impl IntoIterator<Item = Record>) -> Result<()> {
        let mut chain = self.chain();
        for record in records {
            chain.append(&mut batch, record)?;
        }
        self.store.write(batch)?;
        chain.written();
        Ok(())
    }

    /// Appends one entry for an action that stores nothing else (a failed login, an export).
    pub fn record(&self, record: Record) -> Result<()> {
        self.write(Batch::new(), [record])
    }

    /// Entries matching `query`, newest first, and where to go on from if there may be more.
    pub fn query(&self, query: &Query) -> Result<(Vec<Entry>, Option<u64>)> {
        let range = match query.before {
            Some(before) => KeyRange::between(&[], &keys::audit_entry(before)),
            None => KeyRange::all(),
        };
        let mut entries = Vec::new();
        let mut scanned = 0;
        for item in self.store.scan(Table::Audit, range, Direction::Backward)? {
            let (key, value) = item?;
            let id = keys::trailing_u64(&key).unwrap_or(0);
            scanned += 1;
            let entry: Entry = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("audit entry {id} is unreadable: {e}")))?;
            // Entries are appended in time order: nothing older can match from here on.
            if query.since_ts.is_some_and(|since| entry.ts < since) {
                return Ok((entries, None));
            }
            if matches(query, &entry) {
                entries.push(entry);
                if entries.len() >= query.limit {
                    return Ok((entries, Some(id)));
                }
            }
            if scanned >= MAX_SCANNED {
                return Ok((entries, Some(id)));
            }
        }
        Ok((entries, None))
    }

    /// Deletes entries older than `cutoff_ts`, keeping the chain verifiable: the last pruned
    /// entry becomes the anchor, and the pruning itself is an entry. Returns how many went.
    pub fn prune_before(&self, cutoff_ts: u64) -> Result<u64> {
        let mut pruned = 0;
        loop {
            let mut chain = self.chain();
            let mut batch = Batch::new();
            let mut through = None;
            let mut count = 0u64;
            for item in self
                .store
                .scan(Table::Audit, KeyRange::all(), Direction::Forward)?
            {
                let (key, value) = item?;
                let id = keys::trailing_u64(&key).unwrap_or(0);
                let Ok(entry) = serde_json::from_slice::<Entry>(&value) else {
                    // Never prune past damage: `verify` must still be able to show it.
                    break;
                };
                // Keep the newest entry: the chain's end stays stored.
                if entry.ts >= cutoff_ts || id == chain.next.id || count as usize >= PRUNE_BATCH {
                    break;
                }
                batch.delete(Table::Audit, key);
                through = Some(Link {
                    id,
                    hash: entry.hash,
                });
                count += 1;
            }
            let Some(through) = through else {
                return Ok(pruned);
            };
            batch.put_json(Table::Global, chain::ANCHOR_KEY, &through)?;
            chain.append(
                &mut batch,
                Origin::server().record(
                    "audit_prune",
                    "",
                    serde_json::json!({"through_id": through.id, "through_hash": through.hash, "entries": count}),
                ),
            )?;
            self.store.write(batch)?;
            chain.written();
            pruned += count;
            // A batch that was not full reached the cutoff (or the newest entry): done.
            if (count as usize) < PRUNE_BATCH {
                return Ok(pruned);
            }
        }
    }

    /// Prunes by `[audit] retention_days` once an hour, for as long as the server runs.
    pub fn spawn_retention(self: &Arc<Self>, retention_days: u64) {
        if retention_days == 0 {
            return;
        }
        let audit = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tick.tick().await;
                let Some(audit) = audit.upgrade() else { return };
                let cutoff = crate::now_ms().saturating_sub(retention_days * 86_400_000);
                let result = tokio::task::spawn_blocking(move || audit.prune_before(cutoff)).await;
                match result {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::info!(entries = n, "pruned old audit entries"),
                    Ok(Err(e)) => tracing::error!(error = %e, "pruning the audit log failed"),
                    Err(e) => tracing::error!(error = %e, "pruning the audit log panicked"),
                }
            }
        });
    }

    /// Every stored entry in order, as stored (one JSON object per line), for log stores.
    pub fn export_jsonl(store: &dyn Store, out: &mut dyn std::io::Write) -> Result<u64> {
        let mut written = 0;
        for item in store.scan(Table::Audit, KeyRange::all(), Direction::Forward)? {
            let (_, value) = item?;
            out.write_all(&value)
                .and_then(|_| out.write_all(b"\n"))
                .map_err(|e| Error::internal(format!("writing the export: {e}")))?;
            written += 1;
        }
        Ok(written)
    }

    /// The entry with this id.
    pub fn get(&self, id: u64) -> Result<Option<Entry>> {
        self.store.get_json(Table::Audit, &keys::audit_entry(id))
    }
}

fn matches(query: &Query, entry: &Entry) -> bool {
    query.action.as_deref().is_none_or(|a| a == entry.action)
        && query
            .user_id
            .as_deref()
            .is_none_or(|u| entry.actor.as_deref() == Some(u) || entry.target.as_deref() == Some(u))
        && query.until_ts.is_none_or(|until| entry.ts <= until)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        Arc::new(crate::storage::rocksdb::RocksStore::open(dir.path(), 8).unwrap())
    }

    fn origin(user: &str) -> Origin {
        Origin::of(
            &UserId::parse(user).unwrap(),
            std::net::Ipv4Addr::LOCALHOST.into(),
            Some("test-agent"),
        )
    }

    /// Appends `n` entries alternating between two actors and two actions.
    fn fill(audit: &Audit, n: usize) {
        for i in 0..n {
            let (who, action) = if i % 2 == 0 {
                ("@boss:example.org", "login")
            } else {
                ("@minsu:example.org", "logout")
            };
            audit
                .record(origin(who).record(action, who, json!({"n": i})))
                .unwrap();
        }
    }

    #[test]
    fn entries_chain_across_restarts_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        {
            let audit = Audit::new(open(&dir)).unwrap();
            fill(&audit, 3);
        }
        let store = open(&dir);
        let audit = Audit::new(store.clone()).unwrap();
        fill(&audit, 2);
        let report = chain::verify(&*store).unwrap();
        assert_eq!(report.broken, None);
        assert_eq!((report.intact, report.last_id), (5, 5));
        let fourth = audit.get(4).unwrap().unwrap();
        assert_eq!(fourth.prev_hash, audit.get(3).unwrap().unwrap().hash);
        assert_eq!(fourth.ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(fourth.user_agent.as_deref(), Some("test-agent"));
    }

    #[test]
    fn queries_filter_newest_first_and_page() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Audit::new(open(&dir)).unwrap();
        fill(&audit, 7);
        let mut query = Query {
            limit: 2,
            action: Some("login".into()),
            ..Default::default()
        };
        let (page, next) = audit.query(&query).unwrap();
        let ids: Vec<u64> = page.iter().map(|e| e.id).collect();
        assert_eq!(ids, [7, 5]);
        query.before = next;
        let (page, next) = audit.query(&query).unwrap();
        assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 1]);
        query.before = next;
        let (page, next) = audit.query(&query).unwrap();
        assert!(page.is_empty() && next.is_none());

        let by_user = Query {
            limit: 100,
            user_id: Some("@minsu:example.org".into()),
            ..Default::default()
        };
        let (page, _) = audit.query(&by_user).unwrap();
        assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [6, 4, 2]);
        let future = Query {
            limit: 100,
            since_ts: Some(crate::now_ms() + 60_000),
            ..Default::default()
        };
        assert!(audit.query(&future).unwrap().0.is_empty());
    }

    #[test]
    fn pruning_leaves_an_anchor_the_rest_verifies_from() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let audit = Audit::new(store.clone()).unwrap();
        fill(&audit, 5);
        let fourth_hash = audit.get(4).unwrap().unwrap().hash;
        // Everything is older than "a minute from now": all but the newest entry go.
        assert_eq!(audit.prune_before(crate::now_ms() + 60_000).unwrap(), 4);
        assert!(audit.get(4).unwrap().is_none());
        let report = chain::verify(&*store).unwrap();
        assert_eq!(report.broken, None, "{report:?}");
        assert_eq!(
            report.anchor,
            Some(Link {
                id: 4,
                hash: fourth_hash.clone()
            })
        );
        // The newest entry stays, and the pruning is itself an entry.
        assert_eq!(report.intact, 2);
        let prune = audit.get(6).unwrap().unwrap();
        assert_eq!(prune.action, "audit_prune");
        assert_eq!(prune.details["through_hash"], fourth_hash);
        // Appending and verifying go on after a restart.
        drop(audit);
        let audit = Audit::new(store.clone()).unwrap();
        fill(&audit, 1);
        assert_eq!(chain::verify(&*store).unwrap().broken, None);
    }

    #[test]
    fn a_changed_or_removed_entry_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let audit = Audit::new(store.clone()).unwrap();
        fill(&audit, 6);

        // One byte of entry 3 changed (its ip: 127.0.0.1 → 127.0.0.2).
        let key = keys::audit_entry(3);
        let original = store.get(Table::Audit, &key).unwrap().unwrap();
        let mut tampered = original.clone();
        let at = tampered.windows(9).position(|w| w == b"127.0.0.1").unwrap();
        tampered[at + 8] = b'2';
        store.put(Table::Audit, key.clone(), tampered).unwrap();
        let report = chain::verify(&*store).unwrap();
        assert_eq!(report.intact, 2);
        let (id, problem) = report.broken.unwrap();
        assert_eq!(id, 3);
        assert!(problem.contains("changed"), "{problem}");

        // Entry 3 restored, entry 4 removed: entry 5 no longer follows.
        store.put(Table::Audit, key, original).unwrap();
        let mut batch = Batch::new();
        batch.delete(Table::Audit, keys::audit_entry(4));
        store.write(batch).unwrap();
        let (id, problem) = chain::verify(&*store).unwrap().broken.unwrap();
        assert_eq!(id, 5);
        assert!(problem.contains("prev_hash"), "{problem}");
    }
}

//! The embedded default backend: one RocksDB database, one column family per [`Table`].

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType,
    IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions,
};

use super::{Batch, Direction, KeyRange, Op, Scan, Store, Table, keys};
use crate::error::{Error, Result};

pub struct RocksStore {
    db: DB,
    /// Last count handed out; the stored value is never behind it.
    count: AtomicU64,
    /// Serialises counter increments so that stored and handed-out values stay in step.
    count_lock: Mutex<()>,
    /// Serialises commits (count + batch), see [`Store::commit`].
    commit_lock: Mutex<()>,
    /// Count of the latest commit.
    committed: AtomicU64,
}

fn storage_error(e: rocksdb::Error) -> Error {
    Error::internal(format!("storage: {e}"))
}

impl RocksStore {
    /// Opens (or creates) the database at `path`. `cache_mb` sizes the block cache shared by
    /// every table.
    pub fn open(path: &Path, cache_mb: usize) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|e| {
            Error::internal(format!(
                "cannot create data directory {}: {e}",
                path.display()
            ))
        })?;

        let cache = Cache::new_lru_cache(cache_mb.max(1) * 1024 * 1024);
        let mut block = BlockBasedOptions::default();
        block.set_block_cache(&cache);
        block.set_bloom_filter(10.0, false);
        // Index and filter blocks live in the block cache, partitioned: a big SST's single
        // index block is megabytes, and once evicted every point read of an old event (the
        // create and power-level events each send checks) read and decompressed it again —
        // sends slowed with the database's size. Partitions are small and cached like data;
        // the top level and L0's blocks stay pinned, at high priority.
        block.set_cache_index_and_filter_blocks(true);
        block.set_cache_index_and_filter_blocks_with_high_priority(true);
        block.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        block.set_partition_filters(true);
        block.set_pin_top_level_index_and_filter(true);
        block.set_pin_l0_filter_and_index_blocks_in_cache(true);

        let mut table_opts = Options::default();
        table_opts.set_block_based_table_factory(&block);
        table_opts.set_compression_type(DBCompressionType::Lz4);
        table_opts.set_bottommost_compression_type(DBCompressionType::Zstd);

        let mut db_opts = table_opts.clone();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        // A small server: keep background threads and open files modest.
        db_opts.increase_parallelism(2);
        db_opts.set_max_open_files(512);
        db_opts.set_keep_log_file_num(4);

        let descriptors = Table::ALL
            .iter()
            .map(|t| ColumnFamilyDescriptor::new(t.name(), table_opts.clone()))
            .collect::<Vec<_>>();
        let db = DB::open_cf_descriptors(&db_opts, path, descriptors).map_err(|e| {
            Error::internal(format!(
                "cannot open the database at {}: {e}",
                path.display()
            ))
        })?;

        let stored = db
            .get_cf(
                db.cf_handle(Table::Global.name()).expect("created above"),
                keys::COUNTER,
            )
            .map_err(storage_error)?
            .map(|v| keys::trailing_u64(&v).ok_or_else(|| Error::internal("corrupt counter")))
            .transpose()?
            .unwrap_or(0);

        Ok(Self {
            db,
            count: AtomicU64::new(stored),
            count_lock: Mutex::new(()),
            commit_lock: Mutex::new(()),
            committed: AtomicU64::new(stored),
        })
    }

    /// Hands out `n` consecutive counts; returns the first.
    fn reserve(&self, n: u64) -> Result<u64> {
        let _guard = self.count_lock.lock().unwrap_or_else(|p| p.into_inner());
        let first = self.count.load(Ordering::Acquire) + 1;
        let last = first + n - 1;
        // Not synced on its own: the synced batch that uses these counts syncs the WAL up to
        // and including this write, so a count can never be seen in data yet missing on disk.
        self.db
            .put_cf(self.cf(Table::Global), keys::COUNTER, keys::u64_be(last))
            .map_err(storage_error)?;
        self.count.store(last, Ordering::Release);
        Ok(first)
    }

    fn cf(&self, table: Table) -> &rocksdb::ColumnFamily {
        // Every table is created when the database is opened.
        self.db
            .cf_handle(table.name())
            .expect("column family exists")
    }
}

impl Store for RocksStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(table), key).map_err(storage_error)
    }

    fn write(&self, batch: Batch) -> Result<()> {
        let mut wb = WriteBatch::default();
        for op in batch.into_ops() {
            match op {
                Op::Put(table, key, value) => wb.put_cf(self.cf(table), key, value),
                Op::Delete(table, key) => wb.delete_cf(self.cf(table), key),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(wb, &opts).map_err(storage_error)
    }

    fn scan(&self, table: Table, range: KeyRange, direction: Direction) -> Result<Scan<'_>> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(range.lower);
        if let Some(upper) = range.upper {
            opts.set_iterate_upper_bound(upper);
        }
        let mode = match direction {
            Direction::Forward => IteratorMode::Start,
            Direction::Backward => IteratorMode::End,
        };
        let iter = self.db.iterator_cf_opt(self.cf(table), opts, mode);
        Ok(Box::new(iter.map(|item| {
            item.map(|(k, v)| (k.into_vec(), v.into_vec()))
                .map_err(storage_error)
        })))
    }

    fn next_count(&self) -> Result<u64> {
        self.reserve(1)
    }

    fn current_count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    fn commit_many(&self, counts: u64, build: &mut dyn FnMut(u64) -> Result<Batch>) -> Result<u64> {
        let _guard = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let first = self.reserve(counts.max(1))?;
        self.write(build(first)?)?;
        self.committed
            .store(first + counts.max(1) - 1, Ordering::Release);
        Ok(first)
    }

    fn committed_count(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StoreExt;

    fn open(dir: &tempfile::TempDir) -> RocksStore {
        RocksStore::open(dir.path(), 8).unwrap()
    }

    fn collect(scan: Scan<'_>) -> Vec<Vec<u8>> {
        scan.map(|e| e.unwrap().0).collect()
    }

    #[test]
    fn batch_is_applied_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store
            .put(Table::Accounts, b"gone".to_vec(), b"1".to_vec())
            .unwrap();

        let mut batch = Batch::new();
        batch.put(Table::Accounts, b"a".to_vec(), b"1".to_vec());
        batch.put(Table::Profiles, b"a".to_vec(), b"{}".to_vec());
        batch.delete(Table::Accounts, b"gone".to_vec());
        store.write(batch).unwrap();

        assert_eq!(
            store.get(Table::Accounts, b"a").unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(
            store.get(Table::Profiles, b"a").unwrap(),
            Some(b"{}".to_vec())
        );
        assert_eq!(store.get(Table::Accounts, b"gone").unwrap(), None);
    }

    #[test]
    fn scans_are_ordered_both_ways_and_stay_in_their_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut batch = Batch::new();
        for n in [3u64, 1, 256, 2, 10] {
            batch.put(
                Table::AccountDataChanges,
                keys::account_data_change("@a:x", n),
                vec![],
            );
        }
        batch.put(
            Table::AccountDataChanges,
            keys::account_data_change("@a:xy", 5),
            vec![],
        );
        batch.put(
            Table::AccountDataChanges,
            keys::account_data_change("@0:x", 5),
            vec![],
        );
        store.write(batch).unwrap();

        let prefix = keys::prefix(&[b"@a:x"]);
        let forward = collect(
            store
                .scan_prefix(Table::AccountDataChanges, &prefix)
                .unwrap(),
        );
        let counts: Vec<u64> = forward
            .iter()
            .map(|k| keys::trailing_u64(k).unwrap())
            .collect();
        assert_eq!(counts, vec![1, 2, 3, 10, 256]);

        let backward = collect(
            store
                .scan(
                    Table::AccountDataChanges,
                    KeyRange::prefix(&prefix),
                    Direction::Backward,
                )
                .unwrap(),
        );
        let counts: Vec<u64> = backward
            .iter()
            .map(|k| keys::trailing_u64(k).unwrap())
            .collect();
        assert_eq!(counts, vec![256, 10, 3, 2, 1]);

        // A bounded range: counts 2 up to (not including) 10, walked backwards.
        let range = KeyRange::between(
            &keys::account_data_change("@a:x", 2),
            &keys::account_data_change("@a:x", 10),
        );
        let keys_in = collect(
            store
                .scan(Table::AccountDataChanges, range, Direction::Backward)
                .unwrap(),
        );
        let counts: Vec<u64> = keys_in
            .iter()
            .map(|k| keys::trailing_u64(k).unwrap())
            .collect();
        assert_eq!(counts, vec![3, 2]);
    }

    #[test]
    fn counter_is_monotonic_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        assert_eq!(store.current_count(), 0);
        let a = store.next_count().unwrap();
        let b = store.next_count().unwrap();
        assert!(b > a);
        // A synced write after the increments makes them durable with it.
        store
            .put(Table::Accounts, b"x".to_vec(), b"1".to_vec())
            .unwrap();
        drop(store);
        let store = open(&dir);
        assert_eq!(store.current_count(), b);
        assert!(store.next_count().unwrap() > b);
    }

    #[test]
    fn a_commit_of_many_counts_writes_them_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let before = store.next_count().unwrap();
        let first = store
            .commit_many(3, &mut |first| {
                let mut batch = Batch::new();
                for count in first..first + 3 {
                    batch.put(Table::Pdus, keys::pdu(1, count).to_vec(), b"event".to_vec());
                }
                Ok(batch)
            })
            .unwrap();
        assert_eq!(first, before + 1);
        assert_eq!(
            store.committed_count(),
            first + 2,
            "the last count is readable"
        );
        let next = store.commit(&mut |_| Ok(Batch::new())).unwrap();
        assert_eq!(next, first + 3, "no count is handed out twice");
        // A batch that cannot be built writes nothing, and its counts are never reused.
        let failed = store.commit_many(2, &mut |_| Err(Error::internal("refused")));
        assert!(failed.is_err());
        assert_eq!(store.committed_count(), next);
        assert!(store.next_count().unwrap() > next + 2);
        let stored = collect(
            store
                .scan(
                    Table::Pdus,
                    KeyRange::prefix(&keys::pdus_of(1)),
                    Direction::Forward,
                )
                .unwrap(),
        );
        assert_eq!(stored.len(), 3);
    }

    #[test]
    fn counter_never_repeats_under_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(open(&dir));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..250)
                        .map(|_| store.next_count().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 1000);
        assert_eq!(*all.last().unwrap(), 1000);
    }

    #[test]
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(&dir);
            store
                .put(
                    Table::Profiles,
                    b"alice".to_vec(),
                    b"{\"displayname\":\"A\"}".to_vec(),
                )
                .unwrap();
        }
        let store = open(&dir);
        let profile: serde_json::Value =
            store.get_json(Table::Profiles, b"alice").unwrap().unwrap();
        assert_eq!(profile["displayname"], "A");
    }
}

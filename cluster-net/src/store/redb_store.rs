//! The production [`DurableStore`]: one redb database file per peer.
//!
//! Durable batches commit with `redb::Durability::Immediate` (the commit
//! fsyncs before returning). Relaxed batches use `Durability::None`; they
//! become durable with the next immediate commit.

use std::ops::Range;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{DurableStore, MetaKey, StoreError, WriteBatch, WriteOp};

/// File name of the database inside the directory given to [`RedbStore::open`].
pub const RAFT_DB_FILE_NAME: &str = "raft.redb";

const LOG_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

/// redb-backed storage; one file per peer.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl RedbStore {
    /// Opens (or creates) `<dir>/raft.redb`. A file that exists but cannot be
    /// read as a redb database (truncated, corrupt, empty) is an error: the
    /// peer must never silently start with an empty log.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        let path = dir.join(RAFT_DB_FILE_NAME);
        let open_err = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(format!("create directory: {e}")))?;
        let db = match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == 0 => {
                return Err(open_err("file is empty (truncated?)".to_string()))
            }
            Ok(_) => open_existing(&path).map_err(open_err)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Database::create(&path).map_err(|e| open_err(e.to_string()))?
            }
            Err(e) => return Err(open_err(e.to_string())),
        };
        let store = RedbStore {
            db,
            path: path.clone(),
        };
        store.create_tables().map_err(|e| match e {
            StoreError::Io { reason, .. } => open_err(reason),
            other => other,
        })?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    fn create_tables(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.io(e))?;
        txn.open_table(LOG_TABLE).map_err(|e| self.io(e))?;
        txn.open_table(META_TABLE).map_err(|e| self.io(e))?;
        txn.commit().map_err(|e| self.io(e))
    }
}

/// Opens an existing database file. redb asserts on some damaged files
/// (e.g. a file shorter than its header records) instead of returning an
/// error; that panic is caught and reported as a damaged file.
fn open_existing(path: &Path) -> Result<Database, String> {
    match std::panic::catch_unwind(|| Database::open(path)) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no detail");
            Err(format!(
                "database file is damaged (truncated or corrupt): {detail}"
            ))
        }
    }
}

impl DurableStore for RedbStore {
    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.io(e))?;
        let table = txn.open_table(META_TABLE).map_err(|e| self.io(e))?;
        let value = table.get(key.as_str()).map_err(|e| self.io(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn log_range(&self, range: Range<u64>) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(|e| self.io(e))?;
        let table = txn.open_table(LOG_TABLE).map_err(|e| self.io(e))?;
        let mut out = Vec::new();
        for item in table.range(range).map_err(|e| self.io(e))? {
            let (k, v) = item.map_err(|e| self.io(e))?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn log_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.io(e))?;
        let table = txn.open_table(LOG_TABLE).map_err(|e| self.io(e))?;
        if table.is_empty().map_err(|e| self.io(e))? {
            return Ok(None);
        }
        let last = table.last().map_err(|e| self.io(e))?;
        Ok(last.map(|(k, v)| (k.value(), v.value().to_vec())))
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(|e| self.io(e))?;
        txn.set_durability(match batch.durability {
            super::Durability::Immediate => redb::Durability::Immediate,
            super::Durability::Relaxed => redb::Durability::None,
        });
        {
            let mut log = txn.open_table(LOG_TABLE).map_err(|e| self.io(e))?;
            let mut meta = txn.open_table(META_TABLE).map_err(|e| self.io(e))?;
            for op in &batch.ops {
                match op {
                    WriteOp::PutMeta(key, value) => {
                        meta.insert(key.as_str(), value.as_slice())
                            .map_err(|e| self.io(e))?;
                    }
                    WriteOp::DeleteMeta(key) => {
                        meta.remove(key.as_str()).map_err(|e| self.io(e))?;
                    }
                    WriteOp::PutLog(index, value) => {
                        log.insert(*index, value.as_slice())
                            .map_err(|e| self.io(e))?;
                    }
                    WriteOp::TruncateLogFrom(index) => {
                        log.retain_in(*index.., |_, _| false)
                            .map_err(|e| self.io(e))?;
                    }
                    WriteOp::PurgeLogUpTo(index) => {
                        log.retain_in(..=*index, |_, _| false)
                            .map_err(|e| self.io(e))?;
                    }
                }
            }
        }
        // With Durability::Immediate, redb fsyncs here: when commit returns
        // Ok the batch is on stable storage.
        txn.commit().map_err(|e| self.io(e))
    }
}

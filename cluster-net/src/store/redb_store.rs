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
    /// Opens the existing `<dir>/raft.redb`. A missing file is
    /// [`StoreError::Missing`] (never silently created: a peer whose disk was
    /// lost must not start empty as the member it was); a file that cannot
    /// be read as a redb database (truncated, corrupt, empty) is
    /// [`StoreError::Open`].
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        let path = dir.join(RAFT_DB_FILE_NAME);
        match std::fs::metadata(&path) {
            Ok(_) => RedbStore::open_file(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::Missing { path }),
            Err(e) => Err(StoreError::Open {
                path,
                reason: e.to_string(),
            }),
        }
    }

    /// Creates a new, empty `<dir>/raft.redb` (and `dir`), durably: the
    /// file and its directory entry are synced before this returns. Refuses
    /// to touch an existing file.
    pub fn create(dir: &Path) -> Result<RedbStore, StoreError> {
        let path = dir.join(RAFT_DB_FILE_NAME);
        let open_err = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        create_dir_durably(dir).map_err(|e| open_err(format!("create directory: {e}")))?;
        if path.exists() {
            return Err(open_err(
                "the database already exists (not creating it again)".to_string(),
            ));
        }
        let db = Database::create(&path).map_err(|e| open_err(e.to_string()))?;
        // The new file's name lives in the directory: without this sync a
        // power cut could lose the whole file after commits were acknowledged.
        sync_dir(dir).map_err(|e| open_err(format!("sync directory: {e}")))?;
        RedbStore::with_tables(db, path)
    }

    /// [`open`](RedbStore::open) if the database exists, else
    /// [`create`](RedbStore::create): for a peer allowed to start empty.
    pub fn open_or_create(dir: &Path) -> Result<RedbStore, StoreError> {
        match RedbStore::open(dir) {
            Err(StoreError::Missing { .. }) => RedbStore::create(dir),
            other => other,
        }
    }

    fn open_file(path: PathBuf) -> Result<RedbStore, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == 0 => {
                return Err(open_err("file is empty (truncated?)".to_string()))
            }
            Ok(_) => {}
            Err(e) => return Err(open_err(e.to_string())),
        }
        let db = open_existing(&path).map_err(open_err)?;
        RedbStore::with_tables(db, path)
    }

    fn with_tables(db: Database, path: PathBuf) -> Result<RedbStore, StoreError> {
        let store = RedbStore {
            db,
            path: path.clone(),
        };
        store.create_tables().map_err(|e| match e {
            StoreError::Io { reason, .. } => StoreError::Open { path, reason },
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

/// Creates `dir` and any missing parents, syncing each parent whose entry
/// changed, so the directory survives a power cut.
fn create_dir_durably(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// fsyncs a directory (its entries), where the platform allows it.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
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

//! An in-memory [`DurableStore`] for tests: every commit is "durable" for the
//! life of the value; clones share the same data, so a test can drop a peer
//! and restart it from a clone.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{DurableStore, MetaKey, StoreError, WriteBatch, WriteOp};

#[derive(Debug, Default)]
struct MemState {
    meta: BTreeMap<MetaKey, Vec<u8>>,
    log: BTreeMap<u64, Vec<u8>>,
}

/// In-memory storage backend; clones share state.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    inner: Arc<Mutex<MemState>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemState> {
        // A panic while holding the lock leaves consistent data (every
        // mutation below is a single map operation), so poison is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl DurableStore for MemStore {
    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().meta.get(&key).cloned())
    }

    fn log_range(&self, range: Range<u64>) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        Ok(self
            .lock()
            .log
            .range(range)
            .map(|(k, v)| (*k, v.clone()))
            .collect())
    }

    fn log_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(self
            .lock()
            .log
            .last_key_value()
            .map(|(k, v)| (*k, v.clone())))
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut state = self.lock();
        for op in batch.ops {
            match op {
                WriteOp::PutMeta(key, value) => {
                    state.meta.insert(key, value);
                }
                WriteOp::DeleteMeta(key) => {
                    state.meta.remove(&key);
                }
                WriteOp::PutLog(index, value) => {
                    state.log.insert(index, value);
                }
                WriteOp::TruncateLogFrom(index) => {
                    state.log.split_off(&index);
                }
                WriteOp::PurgeLogUpTo(index) => {
                    let kept = match index.checked_add(1) {
                        Some(next) => state.log.split_off(&next),
                        None => BTreeMap::new(),
                    };
                    state.log = kept;
                }
            }
        }
        Ok(())
    }
}

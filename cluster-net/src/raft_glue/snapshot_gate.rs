//! Orders log compaction after the snapshot it relies on.
//!
//! openraft 0.9 installs a received snapshot on its state machine worker
//! and, in the same step, asks the log store to purge the log the snapshot
//! covers. The two run concurrently: the purge can be durable while the
//! snapshot is still being decoded, and a crash then leaves a log purged
//! past the stored snapshot (the entries in between are gone for good).
//!
//! The gate is shared by the log store and the state machine of one peer:
//! - it knows the last log id of the durable snapshot;
//! - snapshots are saved through it, and only when newer than the stored
//!   one (a build captured before an install may finish after it);
//! - while a snapshot is being received, a purge past the durable snapshot
//!   waits until the snapshot is saved (or its install failed).
//!
//! Snapshot saves and purges both commit under the gate's lock, so neither
//! sees a state the other is half way through.
//!
//! The gate also decides when a snapshot is due by what a restart would
//! replay: client writes applied and log bytes appended since the last
//! snapshot (openraft only counts log entries, and one entry carries up to
//! `batch_entries_max` writes). The node's trigger task waits on
//! [`SnapshotGate::snapshot_due`] and asks openraft for a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::codec::encode;
use super::types::LogId;
use crate::store::{DurableStore, MetaKey, StoreError, WriteBatch, WriteOp};

/// Longest wait of a purge for the snapshot it relies on. Past it the purge
/// fails (openraft stops this peer's Raft); nothing was purged, so a restart
/// is safe.
const PURGE_WAIT_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
struct GateState {
    /// Last log id covered by the durable snapshot.
    durable: Option<LogId>,
    /// A snapshot is being received (its install has not finished).
    receiving: bool,
    /// Why the last install failed, until the next reception starts.
    failed: Option<String>,
}

/// Shared between one peer's log store and state machine.
#[derive(Debug)]
pub(crate) struct SnapshotGate {
    state: Mutex<GateState>,
    /// Bumped whenever `state` changes, to wake waiting purges.
    changed: watch::Sender<u64>,
    /// Client writes applied since the last snapshot was captured.
    writes_since: AtomicU64,
    /// Log bytes appended since the last snapshot was captured.
    log_bytes_since: AtomicU64,
    /// Thresholds of the two counters (0: no limit).
    every_writes: AtomicU64,
    every_log_bytes: AtomicU64,
    /// Signalled when a threshold is reached.
    due: Notify,
}

/// What a purge attempt did.
enum PurgeAttempt {
    Done,
    /// The snapshot this purge relies on is not durable yet.
    Wait,
}

impl SnapshotGate {
    /// A gate for a store whose durable snapshot ends at `durable`.
    pub(crate) fn new(durable: Option<LogId>) -> Arc<SnapshotGate> {
        Arc::new(SnapshotGate {
            state: Mutex::new(GateState {
                durable,
                ..GateState::default()
            }),
            changed: watch::channel(0).0,
            writes_since: AtomicU64::new(0),
            log_bytes_since: AtomicU64::new(0),
            every_writes: AtomicU64::new(0),
            every_log_bytes: AtomicU64::new(0),
            due: Notify::new(),
        })
    }

    /// Asks for a snapshot after `every_writes` client writes applied or
    /// `every_log_bytes` log bytes appended since the last one (0: never).
    pub(crate) fn set_snapshot_policy(&self, every_writes: u64, every_log_bytes: u64) {
        self.every_writes.store(every_writes, Ordering::Relaxed);
        self.every_log_bytes
            .store(every_log_bytes, Ordering::Relaxed);
    }

    fn count(&self, counter: &AtomicU64, limit: &AtomicU64, amount: u64) {
        let total = counter.fetch_add(amount, Ordering::Relaxed) + amount;
        let limit = limit.load(Ordering::Relaxed);
        if limit > 0 && total >= limit {
            // Stores one permit when nobody waits: the trigger runs later.
            self.due.notify_one();
        }
    }

    /// `writes` client writes were applied to the state machine.
    pub(crate) fn applied_writes(&self, writes: u64) {
        self.count(&self.writes_since, &self.every_writes, writes);
    }

    /// `bytes` of log entries were appended.
    pub(crate) fn appended_log_bytes(&self, bytes: u64) {
        self.count(&self.log_bytes_since, &self.every_log_bytes, bytes);
    }

    /// A snapshot of the current state was captured (built or installed):
    /// what a restart would replay starts again from nothing.
    pub(crate) fn snapshot_captured(&self) {
        self.writes_since.store(0, Ordering::Relaxed);
        self.log_bytes_since.store(0, Ordering::Relaxed);
    }

    /// Resolves once a snapshot is due.
    pub(crate) async fn snapshot_due(&self) {
        self.due.notified().await
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // Every mutation is a plain field assignment; poison carries no
        // half-done change.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A snapshot reception started (openraft asked for a buffer).
    pub(crate) fn begin_receiving(&self) {
        let mut state = self.lock();
        state.receiving = true;
        state.failed = None;
        drop(state);
        self.bump();
    }

    /// The install of a received snapshot failed: waiting purges give up.
    pub(crate) fn install_failed(&self, reason: String) {
        let mut state = self.lock();
        state.receiving = false;
        state.failed = Some(reason);
        drop(state);
        self.bump();
    }

    /// The install of a received snapshot finished without a save (the
    /// stored snapshot was already as new).
    pub(crate) fn install_done(&self) {
        self.lock().receiving = false;
        self.bump();
    }

    /// Saves a snapshot durably if it is newer than the stored one; returns
    /// whether it was saved. Blocking (fsync): call from the blocking seam.
    pub(crate) fn save_snapshot(
        &self,
        store: &dyn DurableStore,
        last_log_id: Option<LogId>,
        meta: Vec<u8>,
        data: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        // `None` < `Some(_)`: a snapshot of nothing is never newer.
        if last_log_id <= state.durable {
            return Ok(false);
        }
        let mut batch = WriteBatch::durable();
        batch
            .push(WriteOp::PutMeta(MetaKey::SnapshotMeta, meta))
            .push(WriteOp::PutMeta(MetaKey::SnapshotData, data));
        store.commit(batch)?;
        state.durable = last_log_id;
        drop(state);
        self.bump();
        Ok(true)
    }

    /// Purges the log up to `upto` (marker and removal in one atomic batch)
    /// once the snapshot it relies on is durable: at once when the durable
    /// snapshot covers `upto` or no snapshot is being received (openraft's
    /// storage suite purges logs with no snapshot at all; in a running peer
    /// every purge past the durable snapshot comes from a received one).
    pub(crate) async fn purge<S: DurableStore>(
        self: &Arc<Self>,
        store: &Arc<S>,
        upto: LogId,
    ) -> Result<(), StoreError> {
        let waited = super::runtime::timeout(PURGE_WAIT_MAX, async {
            loop {
                // Subscribed before the attempt, so a change made after it
                // is not missed.
                let mut changes = self.changed.subscribe();
                let gate = Arc::clone(self);
                let store = Arc::clone(store);
                let attempt = super::runtime::blocking(move || gate.try_purge(&*store, upto))
                    .await
                    .unwrap_or_else(|| {
                        Err(StoreError::Unavailable(
                            "runtime is shutting down".to_string(),
                        ))
                    })?;
                match attempt {
                    PurgeAttempt::Done => return Ok(()),
                    PurgeAttempt::Wait => {
                        if changes.changed().await.is_err() {
                            return Err(StoreError::Unavailable("snapshot gate closed".into()));
                        }
                    }
                }
            }
        })
        .await;
        waited.unwrap_or_else(|| {
            Err(StoreError::Unavailable(format!(
                "purge up to log index {} waited {} s for the snapshot it relies on",
                upto.index,
                PURGE_WAIT_MAX.as_secs()
            )))
        })
    }

    fn try_purge(&self, store: &dyn DurableStore, upto: LogId) -> Result<PurgeAttempt, StoreError> {
        let state = self.lock();
        let covered = state.durable.is_some_and(|d| d.index >= upto.index);
        if !covered {
            if let Some(reason) = &state.failed {
                return Err(StoreError::Unavailable(format!(
                    "not purging the log up to {}: the snapshot it relies on failed to install: {reason}",
                    upto.index
                )));
            }
            if state.receiving {
                return Ok(PurgeAttempt::Wait);
            }
        }
        let mut batch = WriteBatch::durable();
        batch
            .push(WriteOp::PutMeta(
                MetaKey::LastPurged,
                encode(&upto, "last purged")?,
            ))
            .push(WriteOp::PurgeLogUpTo(upto.index));
        store.commit(batch)?;
        Ok(PurgeAttempt::Done)
    }
}

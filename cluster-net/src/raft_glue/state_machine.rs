//! `RaftStateMachine` over the core [`Pinset`], with snapshots persisted in
//! any [`DurableStore`].

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use cluster_core::pinset::{ApplyResult, SnapshotError, SNAPSHOT_VERSION};
use cluster_core::Pinset;
use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, Snapshot,
};

use super::changes::PinsetChanges;
use super::codec::{decode, encode, sto_err};
use super::runtime;
use super::snapshot_gate::SnapshotGate;
use super::types::{LogId, RaftEntry, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::store::{DurableStore, MetaKey, StoreError};

/// The pinset shared between the state machine and readers.
pub(crate) type SharedPinset = Arc<RwLock<Pinset>>;

/// Read access to the shared pinset (poison is ignored: the pinset is only
/// mutated through `apply`, which does not leave it half-changed on panic
/// paths that matter here).
pub(crate) fn read_pinset(p: &SharedPinset) -> std::sync::RwLockReadGuard<'_, Pinset> {
    p.read().unwrap_or_else(|e| e.into_inner())
}

fn write_pinset(p: &SharedPinset) -> std::sync::RwLockWriteGuard<'_, Pinset> {
    p.write().unwrap_or_else(|e| e.into_inner())
}

/// The replicated state: the pinset plus what openraft needs to know about it.
pub(crate) struct StateMachine<S: DurableStore> {
    store: Arc<S>,
    pinset: SharedPinset,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshots_built: u64,
    gate: Arc<SnapshotGate>,
    changes: Arc<PinsetChanges>,
}

/// A stored snapshot: openraft metadata plus the pinset's own snapshot bytes.
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

fn load_snapshot<S: DurableStore>(store: &S) -> Result<Option<StoredSnapshot>, StoreError> {
    let meta = store.get_meta(MetaKey::SnapshotMeta)?;
    let data = store.get_meta(MetaKey::SnapshotData)?;
    match (meta, data) {
        (Some(meta), Some(data)) => Ok(Some(StoredSnapshot {
            meta: decode(&meta, "snapshot meta")?,
            data,
        })),
        (None, None) => Ok(None),
        _ => Err(StoreError::Corrupt {
            what: "snapshot".to_string(),
            reason: "metadata and data are not both present".to_string(),
        }),
    }
}

/// Saves `snap` durably through the gate if it is newer than the stored
/// snapshot; returns whether it was saved.
async fn save_snapshot<S: DurableStore>(
    store: &Arc<S>,
    gate: &Arc<SnapshotGate>,
    snap: &StoredSnapshot,
) -> Result<bool, StoreError> {
    let meta = encode(&snap.meta, "snapshot meta")?;
    let (store, gate) = (Arc::clone(store), Arc::clone(gate));
    let last_log_id = snap.meta.last_log_id;
    // The copy of the data is the price of the blocking seam's `'static`
    // closure; it is small next to the fsync of the same bytes.
    let data = snap.data.clone();
    runtime::blocking(move || gate.save_snapshot(&*store, last_log_id, meta, data))
        .await
        .unwrap_or_else(|| {
            Err(StoreError::Unavailable(
                "runtime is shutting down".to_string(),
            ))
        })
}

/// Refuses a store whose log was purged past its snapshot: the entries in
/// between are gone, so the state cannot be rebuilt (a crash during a
/// snapshot install could leave this before the purge waited for it).
fn check_purge_behind_snapshot<S: DurableStore>(
    store: &S,
    snapshot: Option<&StoredSnapshot>,
) -> Result<(), StoreError> {
    let Some(bytes) = store.get_meta(MetaKey::LastPurged)? else {
        return Ok(());
    };
    let purged: LogId = decode(&bytes, "last purged")?;
    let snapshot_index = snapshot.and_then(|s| s.meta.last_log_id).map(|id| id.index);
    if snapshot_index.is_some_and(|s| s >= purged.index) {
        return Ok(());
    }
    Err(StoreError::PurgedPastSnapshot {
        purged: purged.index,
        snapshot: snapshot_index,
    })
}

impl<S: DurableStore> StateMachine<S> {
    /// Opens the state machine: restores the last persisted snapshot, if any.
    /// openraft then re-applies the committed log after it.
    /// Refuses a store whose log was purged past its snapshot.
    pub(crate) fn open(store: Arc<S>, pinset: SharedPinset) -> Result<StateMachine<S>, StoreError> {
        let stored = load_snapshot(&*store)?;
        check_purge_behind_snapshot(&*store, stored.as_ref())?;
        let mut sm = StateMachine {
            store,
            pinset,
            last_applied: None,
            last_membership: StoredMembership::default(),
            snapshots_built: 0,
            gate: SnapshotGate::new(stored.as_ref().and_then(|s| s.meta.last_log_id)),
            changes: Arc::new(PinsetChanges::default()),
        };
        if let Some(snap) = stored {
            let restored = Pinset::restore(&snap.data).map_err(|e| match e {
                SnapshotError::UnknownVersion(version) => StoreError::UnknownFormat {
                    what: "snapshot data".to_string(),
                    version,
                    supported: SNAPSHOT_VERSION,
                },
                other => StoreError::Corrupt {
                    what: "snapshot data".to_string(),
                    reason: other.to_string(),
                },
            })?;
            *write_pinset(&sm.pinset) = restored;
            sm.last_applied = snap.meta.last_log_id;
            sm.last_membership = snap.meta.last_membership.clone();
        } else {
            *write_pinset(&sm.pinset) = Pinset::new();
        }
        Ok(sm)
    }

    /// The feed of changed pins, for the pin tracker.
    pub(crate) fn changes(&self) -> Arc<PinsetChanges> {
        Arc::clone(&self.changes)
    }

    /// The gate the log store purges through.
    pub(crate) fn gate(&self) -> Arc<SnapshotGate> {
        Arc::clone(&self.gate)
    }

    async fn install(&mut self, snap: &StoredSnapshot) -> Result<(), StorageError> {
        let subject = || ErrorSubject::Snapshot(Some(snap.meta.signature()));
        let restored = match Pinset::restore(&snap.data) {
            Ok(restored) => restored,
            Err(e) => {
                self.gate.install_failed(e.to_string());
                let e = StoreError::Corrupt {
                    what: "received snapshot".to_string(),
                    reason: e.to_string(),
                };
                return Err(sto_err(subject(), ErrorVerb::Read, e));
            }
        };
        // Persist first: after a crash the peer restarts from this snapshot,
        // and the purge of the log it covers waits for this save.
        if let Err(e) = save_snapshot(&self.store, &self.gate, snap).await {
            self.gate.install_failed(e.to_string());
            return Err(sto_err(subject(), ErrorVerb::Write, e));
        }
        self.gate.install_done();
        self.gate.snapshot_captured();
        {
            // Recorded under the pinset's lock, like applied entries: a
            // reader that sees the new applied index also sees the change.
            let mut pinset = write_pinset(&self.pinset);
            *pinset = restored;
            self.changes.record_replaced();
        }
        self.last_applied = snap.meta.last_log_id;
        self.last_membership = snap.meta.last_membership.clone();
        Ok(())
    }
}

impl<S: DurableStore> RaftStateMachine<TypeConfig> for StateMachine<S> {
    type SnapshotBuilder = SnapshotBuilder<S>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<ApplyResult>>, StorageError>
    where
        I: IntoIterator<Item = RaftEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut pinset = write_pinset(&self.pinset);
        for entry in entries {
            let index = entry.log_id.index;
            let applied = pinset.applied_index();
            let grows = index > applied || (index == 0 && applied == 0);
            if !grows {
                let e = StoreError::Corrupt {
                    what: format!("log entry {index}"),
                    reason: format!("applied out of order after {applied}"),
                };
                return Err(sto_err(
                    ErrorSubject::Apply(entry.log_id),
                    ErrorVerb::Write,
                    e,
                ));
            }
            // The order was checked above, so the pinset cannot refuse the index.
            let grown = "invariant: index checked to grow";
            match entry.payload {
                EntryPayload::Normal(batch) => {
                    self.gate.applied_writes(batch.len() as u64);
                    let results = pinset.apply_batch(index, &batch).expect(grown);
                    self.changes.record_batch(&results);
                    out.push(results)
                }
                EntryPayload::Blank => {
                    pinset.advance_to(index).expect(grown);
                    out.push(Vec::new());
                }
                EntryPayload::Membership(membership) => {
                    pinset.advance_to(index).expect(grown);
                    self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    out.push(Vec::new());
                }
            }
            self.last_applied = Some(entry.log_id);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        self.gate.snapshot_captured();
        // Capture the state now, while no entry is being applied, so the
        // bytes and the metadata describe the same log position.
        let data = read_pinset(&self.pinset).snapshot();
        SnapshotBuilder {
            store: Arc::clone(&self.store),
            gate: Arc::clone(&self.gate),
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            data,
            serial: self.snapshots_built,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        // From here until the install ends, a purge past the durable
        // snapshot waits (openraft purges while the install still runs).
        self.gate.begin_receiving();
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let snap = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        self.install(&snap).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let snap = load_snapshot(&*self.store)
            .map_err(|e| sto_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(snap.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

/// Builds (and persists) a snapshot of the state captured when it was made.
pub(crate) struct SnapshotBuilder<S: DurableStore> {
    store: Arc<S>,
    gate: Arc<SnapshotGate>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    data: Vec<u8>,
    serial: u64,
}

impl<S: DurableStore> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let snapshot_id = match self.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, self.serial),
            None => format!("0-0-{}", self.serial),
        };
        let snap = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.last_membership.clone(),
                snapshot_id,
            },
            data: std::mem::take(&mut self.data),
        };
        // Persisted before openraft learns about it (and may purge the log
        // it covers). Not saved when a newer snapshot is already stored (a
        // received one installed while this build ran).
        save_snapshot(&self.store, &self.gate, &snap)
            .await
            .map_err(|e| {
                sto_err(
                    ErrorSubject::Snapshot(Some(snap.meta.signature())),
                    ErrorVerb::Write,
                    e,
                )
            })?;
        Ok(Snapshot {
            meta: snap.meta,
            snapshot: Box::new(Cursor::new(snap.data)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::storage::RaftLogStorage;
    use openraft::{CommittedLeaderId, Membership};

    use super::*;
    use crate::raft_glue::log_store::LogStore;
    use crate::store::{MemStore, WriteBatch, WriteOp};

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn pair(store: &Arc<MemStore>) -> (LogStore<MemStore>, StateMachine<MemStore>) {
        let pinset = Arc::new(RwLock::new(Pinset::new()));
        let sm = StateMachine::open(Arc::clone(store), pinset).expect("open");
        (LogStore::new(Arc::clone(store), sm.gate()), sm)
    }

    fn snapshot_meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(log_id(index)),
            last_membership: StoredMembership::new(
                Some(log_id(0)),
                Membership::new(vec![std::collections::BTreeSet::from([1u64])], None),
            ),
            snapshot_id: format!("1-{index}-0"),
        }
    }

    fn stored_purge(store: &MemStore) -> Option<LogId> {
        store
            .get_meta(MetaKey::LastPurged)
            .unwrap()
            .map(|b| decode(&b, "purge").unwrap())
    }

    /// Item 12 (issue 10): openraft purges the log up to a received
    /// snapshot while the state machine worker is still decoding it. A
    /// crash in between left the purge marker past the stored snapshot.
    /// The purge must wait until the snapshot it relies on is durable.
    #[tokio::test]
    async fn purge_waits_for_the_received_snapshot_to_be_durable() {
        let store = Arc::new(MemStore::new());
        let (mut log, mut sm) = pair(&store);
        let data = sm.begin_receiving_snapshot().await.unwrap();
        let purge = tokio::spawn(async move { log.purge(log_id(10)).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        // "Crash" now: what is on disk must be restartable.
        assert_eq!(stored_purge(&store), None, "purge became durable first");
        assert!(load_snapshot(&*store).unwrap().is_none());
        let mut data = data;
        data.get_mut().extend_from_slice(&Pinset::new().snapshot());
        sm.install_snapshot(&snapshot_meta(10), data).await.unwrap();
        purge.await.unwrap().unwrap();
        assert_eq!(stored_purge(&store), Some(log_id(10)));
        let snap = load_snapshot(&*store).unwrap().expect("snapshot stored");
        assert_eq!(snap.meta.last_log_id, Some(log_id(10)));
    }

    /// Item 12: a snapshot built from an older state must not replace a
    /// newer stored one (the build runs in its own task and may finish after
    /// a received snapshot was installed and the log purged behind it).
    #[tokio::test]
    async fn an_older_snapshot_never_replaces_a_newer_one() {
        let store = Arc::new(MemStore::new());
        let (_log, mut sm) = pair(&store);
        let mut builder = sm.get_snapshot_builder().await; // captured at nothing applied
        let data = Box::new(Cursor::new(Pinset::new().snapshot()));
        sm.install_snapshot(&snapshot_meta(10), data).await.unwrap();
        builder.build_snapshot().await.unwrap();
        let snap = load_snapshot(&*store).unwrap().expect("snapshot stored");
        assert_eq!(snap.meta.last_log_id, Some(log_id(10)));
    }

    /// Item 12: a store whose log was purged past its snapshot (what the
    /// race above left behind) is refused with a typed error that says what
    /// to do, instead of starting with a hole in its state.
    #[test]
    fn a_store_purged_past_its_snapshot_is_refused() {
        let store = Arc::new(MemStore::new());
        let mut batch = WriteBatch::durable();
        batch.push(WriteOp::PutMeta(
            MetaKey::LastPurged,
            encode(&log_id(10), "purge").unwrap(),
        ));
        store.commit(batch).unwrap();
        let pinset = Arc::new(RwLock::new(Pinset::new()));
        match StateMachine::open(Arc::clone(&store), Arc::clone(&pinset)) {
            Err(
                e @ StoreError::PurgedPastSnapshot {
                    purged: 10,
                    snapshot: None,
                },
            ) => {
                let text = e.to_string();
                assert!(text.contains("join it again"), "{text}");
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a store purged past its snapshot opened"),
        }
        // A snapshot that covers the purge is fine.
        let mut batch = WriteBatch::durable();
        batch
            .push(WriteOp::PutMeta(
                MetaKey::SnapshotMeta,
                encode(&snapshot_meta(12), "meta").unwrap(),
            ))
            .push(WriteOp::PutMeta(
                MetaKey::SnapshotData,
                Pinset::new().snapshot(),
            ));
        store.commit(batch).unwrap();
        assert!(StateMachine::open(store, pinset).is_ok());
    }
}

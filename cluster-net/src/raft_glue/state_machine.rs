//! `RaftStateMachine` over the core [`Pinset`], with snapshots persisted in
//! any [`DurableStore`].

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use cluster_core::pinset::ApplyResult;
use cluster_core::Pinset;
use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, Snapshot,
};

use super::codec::{decode, encode, sto_err};
use super::log_store::commit_off_thread;
use super::types::{LogId, RaftEntry, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::store::{DurableStore, MetaKey, StoreError, WriteBatch, WriteOp};

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

async fn save_snapshot<S: DurableStore>(
    store: &Arc<S>,
    snap: &StoredSnapshot,
) -> Result<(), StoreError> {
    let mut batch = WriteBatch::durable();
    batch
        .push(WriteOp::PutMeta(
            MetaKey::SnapshotMeta,
            encode(&snap.meta, "snapshot meta")?,
        ))
        .push(WriteOp::PutMeta(MetaKey::SnapshotData, snap.data.clone()));
    commit_off_thread(store, batch).await
}

impl<S: DurableStore> StateMachine<S> {
    /// Opens the state machine: restores the last persisted snapshot, if any.
    /// openraft then re-applies the committed log after it.
    pub(crate) fn open(store: Arc<S>, pinset: SharedPinset) -> Result<StateMachine<S>, StoreError> {
        let mut sm = StateMachine {
            store,
            pinset,
            last_applied: None,
            last_membership: StoredMembership::default(),
            snapshots_built: 0,
        };
        if let Some(snap) = load_snapshot(&*sm.store)? {
            let restored = Pinset::restore(&snap.data).map_err(|e| StoreError::Corrupt {
                what: "snapshot data".to_string(),
                reason: e.to_string(),
            })?;
            *write_pinset(&sm.pinset) = restored;
            sm.last_applied = snap.meta.last_log_id;
            sm.last_membership = snap.meta.last_membership.clone();
        } else {
            *write_pinset(&sm.pinset) = Pinset::new();
        }
        Ok(sm)
    }

    async fn install(&mut self, snap: &StoredSnapshot) -> Result<(), StorageError> {
        let subject = || ErrorSubject::Snapshot(Some(snap.meta.signature()));
        let restored = Pinset::restore(&snap.data).map_err(|e| {
            sto_err(
                subject(),
                ErrorVerb::Read,
                StoreError::Corrupt {
                    what: "received snapshot".to_string(),
                    reason: e.to_string(),
                },
            )
        })?;
        // Persist first: after a crash the peer restarts from this snapshot.
        save_snapshot(&self.store, snap)
            .await
            .map_err(|e| sto_err(subject(), ErrorVerb::Write, e))?;
        *write_pinset(&self.pinset) = restored;
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
                    out.push(pinset.apply_batch(index, &batch).expect(grown))
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
        // Capture the state now, while no entry is being applied, so the
        // bytes and the metadata describe the same log position.
        let data = read_pinset(&self.pinset).snapshot();
        SnapshotBuilder {
            store: Arc::clone(&self.store),
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            data,
            serial: self.snapshots_built,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
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
        // it covers).
        save_snapshot(&self.store, &snap).await.map_err(|e| {
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

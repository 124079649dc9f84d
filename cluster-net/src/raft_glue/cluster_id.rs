//! The cluster id of this peer: chosen at bootstrap, learnt when joining,
//! persisted in the store, and checked on every RPC.
//!
//! A peer with no cluster id adopts the id of a Raft message only while it
//! is joining (a persisted flag set by `join` before it asks a member): a
//! fresh store that never asked to join, such as a wiped disk restarted by
//! mistake, refuses the traffic instead of becoming a member with no memory.

use std::sync::{Arc, RwLock};

use super::codec::{decode, encode};
use crate::store::{DurableStore, MetaKey, StoreError, WriteBatch, WriteOp};

#[derive(Debug, Default)]
struct Slot {
    id: Option<u128>,
    joining: bool,
}

/// Shared, cached copy of the persisted cluster id and joining flag.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterIdCell(Arc<RwLock<Slot>>);

/// Why a cluster id was not adopted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdoptError {
    /// Another id is already in force.
    #[error("this peer belongs to cluster {0:032x}")]
    Mismatch(u128),
    /// The peer did not ask to join a cluster.
    #[error("this peer is not joining a cluster")]
    NotJoining,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ClusterIdCell {
    /// Loads the id and the joining flag from the store.
    pub(crate) fn load(store: &dyn DurableStore) -> Result<ClusterIdCell, StoreError> {
        let id = match store.get_meta(MetaKey::ClusterId)? {
            None => None,
            Some(bytes) => Some(u128::from_be_bytes(decode(&bytes, "cluster id")?)),
        };
        let joining = match store.get_meta(MetaKey::Joining)? {
            None => false,
            Some(bytes) => {
                decode::<()>(&bytes, "joining flag")?;
                true
            }
        };
        Ok(ClusterIdCell(Arc::new(RwLock::new(Slot { id, joining }))))
    }

    /// The current id.
    pub(crate) fn get(&self) -> Option<u128> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).id
    }

    /// True while this peer asked to join a cluster and has no id yet.
    pub(crate) fn is_joining(&self) -> bool {
        let slot = self.0.read().unwrap_or_else(|e| e.into_inner());
        slot.id.is_none() && slot.joining
    }

    /// Records (durably) that this peer asked to join a cluster; nothing to
    /// do when it already has a cluster id.
    pub(crate) fn begin_joining(&self, store: &dyn DurableStore) -> Result<(), StoreError> {
        let mut slot = self.0.write().unwrap_or_else(|e| e.into_inner());
        if slot.id.is_some() || slot.joining {
            return Ok(());
        }
        let mut batch = WriteBatch::durable();
        batch.push(WriteOp::PutMeta(
            MetaKey::Joining,
            encode(&(), "joining flag")?,
        ));
        store.commit(batch)?;
        slot.joining = true;
        Ok(())
    }

    /// Persists `id` (durably, clearing the joining flag) if no id is set.
    /// Returns the id in force afterwards, which differs from `id` when
    /// another one was already set. For bootstrap and for the answer to a
    /// join request.
    pub(crate) fn adopt(&self, store: &dyn DurableStore, id: u128) -> Result<u128, StoreError> {
        match self.adopt_if(store, id, false) {
            Ok(id) | Err(AdoptError::Mismatch(id)) => Ok(id),
            Err(AdoptError::Store(e)) => Err(e),
            Err(AdoptError::NotJoining) => unreachable!("invariant: joining not required"),
        }
    }

    /// Like [`adopt`](Self::adopt), for the id carried by a Raft message:
    /// only while this peer is joining.
    pub(crate) fn adopt_from_raft(
        &self,
        store: &dyn DurableStore,
        id: u128,
    ) -> Result<u128, AdoptError> {
        self.adopt_if(store, id, true)
    }

    fn adopt_if(
        &self,
        store: &dyn DurableStore,
        id: u128,
        only_joining: bool,
    ) -> Result<u128, AdoptError> {
        let mut slot = self.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = slot.id {
            return if existing == id {
                Ok(existing)
            } else {
                Err(AdoptError::Mismatch(existing))
            };
        }
        if only_joining && !slot.joining {
            return Err(AdoptError::NotJoining);
        }
        let mut batch = WriteBatch::durable();
        batch
            .push(WriteOp::PutMeta(
                MetaKey::ClusterId,
                encode(&id.to_be_bytes(), "cluster id")?,
            ))
            .push(WriteOp::DeleteMeta(MetaKey::Joining));
        store.commit(batch)?;
        slot.id = Some(id);
        slot.joining = false;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[test]
    fn raft_traffic_sets_the_id_only_while_joining() {
        let store = MemStore::new();
        let cell = ClusterIdCell::load(&store).unwrap();
        assert!(matches!(
            cell.adopt_from_raft(&store, 5),
            Err(AdoptError::NotJoining)
        ));
        assert_eq!(cell.get(), None);
        cell.begin_joining(&store).unwrap();
        // The flag is durable: a restart while joining still may adopt.
        let cell = ClusterIdCell::load(&store).unwrap();
        assert_eq!(cell.adopt_from_raft(&store, 5).unwrap(), 5);
        assert!(store.get_meta(MetaKey::Joining).unwrap().is_none());
        let cell = ClusterIdCell::load(&store).unwrap();
        assert_eq!(cell.get(), Some(5));
        assert!(matches!(
            cell.adopt_from_raft(&store, 6),
            Err(AdoptError::Mismatch(5))
        ));
    }
}

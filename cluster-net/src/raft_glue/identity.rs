//! Who a store belongs to: the peer id and the incarnation (a random id of
//! this life of the store), persisted when the store is created.
//!
//! A wiped or replaced disk comes back with a new incarnation. The
//! membership records each member's incarnation, every Raft message carries
//! the incarnation its sender knows for the target, and a peer refuses Raft
//! traffic addressed to another incarnation: a peer that lost its disk
//! cannot vote or acknowledge appends as the member it used to be.

use serde::{Deserialize, Serialize};

use super::codec::{decode, encode};
use crate::error::StartError;
use crate::store::{DurableStore, MetaKey, StoreError, WriteBatch, WriteOp};

/// What [`ClusterRaft::start`](crate::ClusterRaft::start) expects of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// The node is configured as a member of a cluster: the store must hold
    /// this peer's state. An empty store (missing, wiped or replaced disk)
    /// is refused with [`StartError::NoState`], which says how to re-join.
    Existing,
    /// A new peer, or one that may not have joined yet: an empty store gets
    /// a new identity with `incarnation`; a store with state is used as is.
    /// The caller draws `incarnation` at random (non-zero), so that the store
    /// itself stays deterministic under simulation.
    CreateIfEmpty {
        /// A random, non-zero id for this life of the store.
        incarnation: u128,
    },
}

/// The identity record of a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoreIdentity {
    /// The peer id (string form) the store belongs to.
    pub(crate) peer_id: String,
    /// Random id of this life of the store (never 0).
    pub(crate) incarnation: u128,
}

/// True when the store holds nothing at all (no record, no log entry).
fn is_blank(store: &dyn DurableStore) -> Result<bool, StoreError> {
    for key in MetaKey::ALL {
        if store.get_meta(key)?.is_some() {
            return Ok(false);
        }
    }
    Ok(store.log_last()?.is_none())
}

/// Reads the store's identity, or creates it (durably) for a blank store
/// when `boot` allows; refuses a store of another peer.
pub(crate) fn load_or_create(
    store: &dyn DurableStore,
    peer: &str,
    boot: Boot,
) -> Result<StoreIdentity, StartError> {
    if let Some(bytes) = store.get_meta(MetaKey::Identity)? {
        let identity: StoreIdentity = decode(&bytes, "store identity")?;
        if identity.peer_id != peer {
            return Err(StartError::WrongPeer {
                stored: identity.peer_id,
                given: peer.to_string(),
            });
        }
        return Ok(identity);
    }
    if !is_blank(store)? {
        return Err(StoreError::Corrupt {
            what: "store identity".to_string(),
            reason: "the store holds raft state but no identity record \
                     (written by an older version?)"
                .to_string(),
        }
        .into());
    }
    let incarnation = match boot {
        Boot::Existing => {
            return Err(StartError::NoState {
                peer: peer.to_string(),
            })
        }
        Boot::CreateIfEmpty { incarnation: 0 } => {
            return Err(StartError::Config(
                "the incarnation of a new store must be a non-zero random number".to_string(),
            ))
        }
        Boot::CreateIfEmpty { incarnation } => incarnation,
    };
    let identity = StoreIdentity {
        peer_id: peer.to_string(),
        incarnation,
    };
    let mut batch = WriteBatch::durable();
    batch.push(WriteOp::PutMeta(
        MetaKey::Identity,
        encode(&identity, "store identity")?,
    ));
    store.commit(batch)?;
    tracing::info!(peer, incarnation = %format!("{incarnation:032x}"), "new raft store");
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[test]
    fn identity_is_created_once_and_checked() {
        let store = MemStore::new();
        assert!(matches!(
            load_or_create(&store, "a", Boot::Existing),
            Err(StartError::NoState { .. })
        ));
        let first = load_or_create(&store, "a", Boot::CreateIfEmpty { incarnation: 7 }).unwrap();
        assert_eq!(first.incarnation, 7);
        // Restarts keep the stored incarnation, whatever the caller draws.
        let again = load_or_create(&store, "a", Boot::CreateIfEmpty { incarnation: 9 }).unwrap();
        assert_eq!(again, first);
        assert_eq!(load_or_create(&store, "a", Boot::Existing).unwrap(), first);
        assert!(matches!(
            load_or_create(&store, "b", Boot::Existing),
            Err(StartError::WrongPeer { .. })
        ));
    }

    #[test]
    fn state_without_identity_is_refused() {
        let store = MemStore::new();
        let mut batch = WriteBatch::durable();
        batch.push(WriteOp::PutLog(1, vec![1]));
        store.commit(batch).unwrap();
        assert!(matches!(
            load_or_create(&store, "a", Boot::CreateIfEmpty { incarnation: 7 }),
            Err(StartError::Store(StoreError::Corrupt { .. }))
        ));
    }
}

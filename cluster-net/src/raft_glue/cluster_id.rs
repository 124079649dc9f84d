//! The cluster id of this peer: chosen at bootstrap, learnt when joining,
//! persisted in the store, and checked on every RPC.

use std::sync::{Arc, RwLock};

use crate::store::{DurableStore, MetaKey, StoreError, WriteBatch, WriteOp};

/// Shared, cached copy of the persisted cluster id.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterIdCell(Arc<RwLock<Option<u128>>>);

impl ClusterIdCell {
    /// Loads the id from the store.
    pub(crate) fn load(store: &dyn DurableStore) -> Result<ClusterIdCell, StoreError> {
        let id = match store.get_meta(MetaKey::ClusterId)? {
            None => None,
            Some(bytes) => {
                let raw: [u8; 16] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt {
                            what: "cluster id".to_string(),
                            reason: format!("expected 16 bytes, found {}", bytes.len()),
                        })?;
                Some(u128::from_be_bytes(raw))
            }
        };
        Ok(ClusterIdCell(Arc::new(RwLock::new(id))))
    }

    /// The current id.
    pub(crate) fn get(&self) -> Option<u128> {
        *self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Persists `id` (durably) if no id is set. Returns the id in force
    /// afterwards, which differs from `id` when another one was already set.
    pub(crate) fn adopt(&self, store: &dyn DurableStore, id: u128) -> Result<u128, StoreError> {
        let mut slot = self.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = *slot {
            return Ok(existing);
        }
        let mut batch = WriteBatch::durable();
        batch.push(WriteOp::PutMeta(
            MetaKey::ClusterId,
            id.to_be_bytes().to_vec(),
        ));
        store.commit(batch)?;
        *slot = Some(id);
        Ok(id)
    }
}

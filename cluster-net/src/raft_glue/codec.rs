//! Encoding of stored records (postcard) and mapping of backend errors into
//! openraft's storage errors.

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::StorageError;
use crate::store::StoreError;

/// Serialises a record for the store.
pub(crate) fn encode<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(value).map_err(|e| StoreError::Corrupt {
        what: what.to_string(),
        reason: format!("encode: {e}"),
    })
}

/// Deserialises a stored record.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        what: what.to_string(),
        reason: format!("decode: {e}"),
    })
}

/// Wraps a store error for openraft.
pub(crate) fn sto_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: StoreError) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

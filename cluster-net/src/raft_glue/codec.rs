//! Encoding of stored records (a format version byte, then postcard) and
//! mapping of backend errors into openraft's storage errors.
//!
//! Every record this crate writes through the store (meta records and log
//! entries) starts with [`STORE_FORMAT_VERSION`]; a record of another
//! version is refused with [`StoreError::UnknownFormat`] instead of being
//! misread. Snapshot data is the pinset's own format, which carries its own
//! version byte (`cluster_core::pinset::SNAPSHOT_VERSION`).

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use cluster_core::pinset::SNAPSHOT_VERSION;

use super::types::StorageError;
use crate::store::{DurableStore, MetaKey, StoreError};

/// Version byte of the stored record format this build writes and reads.
pub(crate) const STORE_FORMAT_VERSION: u8 = 1;

/// Serialises a record for the store.
pub(crate) fn encode<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, StoreError> {
    let out = vec![STORE_FORMAT_VERSION];
    postcard::to_extend(value, out).map_err(|e| StoreError::Corrupt {
        what: what.to_string(),
        reason: format!("encode: {e}"),
    })
}

/// Deserialises a stored record; refuses another format version and
/// trailing bytes.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        what: what.to_string(),
        reason,
    };
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| corrupt("empty record".to_string()))?;
    if version != STORE_FORMAT_VERSION {
        return Err(StoreError::UnknownFormat {
            what: what.to_string(),
            version,
            supported: STORE_FORMAT_VERSION,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| corrupt(format!("decode: {e}")))?;
    if !rest.is_empty() {
        return Err(corrupt(format!("{} unexpected trailing bytes", rest.len())));
    }
    Ok(value)
}

/// Checks the format version of every record a start-up reads (meta
/// records, the first and last log entries, the snapshot data), so that a
/// store of another version is a typed error before openraft reads it.
pub(crate) fn check_store_format(store: &dyn DurableStore) -> Result<(), StoreError> {
    let check = |bytes: &[u8], what: &str, supported: u8| match bytes.first() {
        Some(&version) if version != supported => Err(StoreError::UnknownFormat {
            what: what.to_string(),
            version,
            supported,
        }),
        _ => Ok(()),
    };
    for key in MetaKey::ALL {
        if let Some(bytes) = store.get_meta(key)? {
            let supported = match key {
                MetaKey::SnapshotData => SNAPSHOT_VERSION,
                _ => STORE_FORMAT_VERSION,
            };
            check(&bytes, key.as_str(), supported)?;
        }
    }
    if let Some((index, bytes)) = store.log_last()? {
        check(&bytes, &format!("log entry {index}"), STORE_FORMAT_VERSION)?;
    }
    // The first entry follows the purge marker (read without the whole log).
    let first = match store.get_meta(MetaKey::LastPurged)? {
        Some(bytes) => decode::<openraft::LogId<u64>>(&bytes, "last purged")?.index + 1,
        None => 0,
    };
    if let Some((index, bytes)) = store.log_range(first..first + 1)?.into_iter().next() {
        check(&bytes, &format!("log entry {index}"), STORE_FORMAT_VERSION)?;
    }
    Ok(())
}

/// Wraps a store error for openraft.
pub(crate) fn sto_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: StoreError) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_their_format_version() {
        let bytes = encode(&(5u64, "x".to_string()), "record").unwrap();
        assert_eq!(bytes[0], STORE_FORMAT_VERSION);
        let back: (u64, String) = decode(&bytes, "record").unwrap();
        assert_eq!(back, (5, "x".to_string()));
        let mut future = bytes.clone();
        future[0] = STORE_FORMAT_VERSION + 1;
        assert!(matches!(
            decode::<(u64, String)>(&future, "record"),
            Err(StoreError::UnknownFormat { version, supported: STORE_FORMAT_VERSION, .. })
                if version == STORE_FORMAT_VERSION + 1
        ));
        let mut longer = bytes;
        longer.push(0);
        assert!(matches!(
            decode::<(u64, String)>(&longer, "record"),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<u64>(&[], "record"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}

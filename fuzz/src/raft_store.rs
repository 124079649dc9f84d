//! Records of the Raft store as read back from disk: log entries, vote, log
//! ids, snapshot metadata, identity, cluster id, joining flag (the snapshot
//! data itself is the pinset's format: see [`crate::snapshot`]). Each
//! reader runs on the same bytes; whatever one accepts must re-encode to
//! bytes it reads back the same, and a log entry's pinset entries must
//! apply without breaking the pinset's invariants.

use cluster_core::pinset::Pinset;
use cluster_net::fuzzing::{decode_record, Record};

/// Decodes `data` as every kind of stored record.
pub fn run(data: &[u8]) {
    for record in Record::ALL {
        let Ok(decoded) = decode_record(record, data) else {
            continue;
        };
        let again = decode_record(record, &decoded.reencoded)
            .unwrap_or_else(|e| panic!("{record:?}: re-encoded record refused: {e}"));
        assert_eq!(again.debug, decoded.debug, "{record:?}: round trip");
        assert_eq!(again.reencoded, decoded.reencoded, "{record:?}: encoding");
        if let Some((index, entries)) = decoded.entries {
            let mut pinset = Pinset::new();
            // Log index 0 is openraft's membership entry; a batch is applied at
            // its own index, after nothing.
            let _ = pinset.apply_batch(index, &entries);
            if let Err(e) = pinset.check_invariants() {
                panic!("stored entry {index} broke an invariant: {e}");
            }
        }
    }
}

//! Arbitrary bytes read as a sequence of postcard log entries, applied to a
//! pinset: apply never panics, the invariants hold after every entry and the
//! state survives a snapshot round trip.

use cluster_core::pinset::{Entry, Pinset};

/// Applies every entry `data` decodes to, one per log index.
pub fn run(data: &[u8]) {
    let mut pinset = Pinset::new();
    let mut rest = data;
    let mut index = 0;
    while let Ok((entry, tail)) = postcard::take_from_bytes::<Entry>(rest) {
        index += 1;
        let _ = pinset.apply(index, &entry);
        if let Err(e) = pinset.check_invariants() {
            panic!("invariant broken after entry {index}: {e}");
        }
        let restored = Pinset::restore(&pinset.snapshot()).expect("own snapshot restores");
        assert!(restored == pinset, "snapshot round trip changed the state");
        rest = tail;
    }
}

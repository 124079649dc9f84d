//! Arbitrary bytes decoded as a sequence of log entries, applied to a pinset:
//! apply must never panic, and the invariants must hold after every step.
#![no_main]

use cluster_core::pinset::{Entry, Pinset};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});

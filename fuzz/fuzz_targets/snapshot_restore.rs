//! Arbitrary bytes as a snapshot: restore must refuse or succeed, never panic,
//! and checking a restored state must not panic either.
#![no_main]

use cluster_core::Pinset;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pinset) = Pinset::restore(data) {
        let _ = pinset.check_invariants();
    }
});

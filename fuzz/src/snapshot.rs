//! Pinset snapshots as stored and sent in InstallSnapshot: the whole
//! restore path (`snapshot_restore`: raw bytes, which nearly always stop at
//! the checksum, as they should) and the body decoder behind it
//! (`snapshot_body`: the input is framed with a correct checksum, so the
//! decoder and the content checks are what gets fuzzed).

use cluster_core::pinset::{seal_snapshot_body, Pinset};
use cluster_core::Millis;

/// Restores raw bytes; whatever is accepted must be a sound state.
pub fn run_restore(data: &[u8]) {
    if let Ok(pinset) = Pinset::restore(data) {
        check_restored(&pinset);
    }
}

/// Restores `data` as a snapshot body behind a valid header and checksum.
pub fn run_body(data: &[u8]) {
    if let Ok(pinset) = Pinset::restore(&seal_snapshot_body(data)) {
        check_restored(&pinset);
    }
}

/// A restored state is one apply could have built: invariants hold (the
/// interning ones too, which restore does not check itself), it snapshots
/// to bytes that restore to the same state, and its readers do not panic.
fn check_restored(pinset: &Pinset) {
    if let Err(e) = pinset.check_invariants() {
        panic!("restore accepted a state that breaks an invariant: {e}");
    }
    let bytes = pinset.snapshot();
    let again = Pinset::restore(&bytes).expect("a restored state's snapshot restores");
    assert!(&again == pinset, "snapshot round trip changed the state");
    assert_eq!(again.snapshot(), bytes, "snapshot bytes are canonical");
    assert_eq!(pinset.iter().count(), pinset.len());
    let map = pinset.to_map();
    assert_eq!(map.len(), pinset.len());
    let first = pinset.page(None, 2);
    if let Some(last) = first.last() {
        let next = pinset.page(Some(&last.cid), 2);
        assert!(
            next.iter().all(|p| p.cid > last.cid),
            "pages follow CID order"
        );
    }
    for (cid, version) in pinset.expired(Millis(u64::MAX), usize::MAX) {
        assert_eq!(pinset.version(&cid), Some(version));
    }
    for pin in pinset.under_replicated() {
        assert!(
            pin.is_under_replicated(),
            "{} listed as under-replicated",
            pin.cid
        );
    }
}

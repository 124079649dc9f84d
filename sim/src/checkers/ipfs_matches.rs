//! Every peer's IPFS daemon holds exactly the pins allocated to it.

use std::collections::{BTreeMap, BTreeSet};

use cluster_core::{Cid, PeerId, Pin};

use super::Violation;

/// Compares each member's IPFS pins with what the pinset allocates to it.
pub fn check_ipfs_matches_allocations(
    pins: &BTreeMap<Cid, Pin>,
    ipfs: &BTreeMap<PeerId, BTreeSet<Cid>>,
) -> Result<(), Violation> {
    for (peer, held) in ipfs {
        let wanted: BTreeSet<&Cid> = pins
            .values()
            .filter(|p| p.is_allocated_to(peer))
            .map(|p| &p.cid)
            .collect();
        let held: BTreeSet<&Cid> = held.iter().collect();
        if wanted != held {
            let missing: Vec<_> = wanted.difference(&held).take(5).collect();
            let extra: Vec<_> = held.difference(&wanted).take(5).collect();
            return Err(Violation {
                checker: "ipfs_matches_allocations",
                detail: format!("{peer:?}: IPFS lacks {missing:?} and has extra {extra:?}"),
            });
        }
    }
    Ok(())
}

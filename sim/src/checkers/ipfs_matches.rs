//! Every member's IPFS daemon holds every pin allocated to it, and no pin
//! bearing the cluster's mark that is not allocated to it.

use std::collections::BTreeMap;

use cluster_core::{Cid, PeerId, Pin};

use super::{DaemonPin, Violation};

/// Compares each member's IPFS pins with what the pinset allocates to it.
pub fn check_ipfs_matches_allocations(
    pins: &BTreeMap<Cid, Pin>,
    ipfs: &BTreeMap<PeerId, BTreeMap<Cid, DaemonPin>>,
) -> Result<(), Violation> {
    for (peer, held) in ipfs {
        let missing: Vec<&Cid> = pins
            .values()
            .filter(|p| p.is_allocated_to(peer) && !held.contains_key(&p.cid))
            .map(|p| &p.cid)
            .take(5)
            .collect();
        let extra: Vec<&Cid> = held
            .iter()
            .filter(|(cid, h)| {
                h.by_cluster && !pins.get(*cid).is_some_and(|p| p.is_allocated_to(peer))
            })
            .map(|(cid, _)| cid)
            .take(5)
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(Violation {
                checker: "ipfs_matches_allocations",
                detail: format!(
                    "{peer:?}: IPFS lacks {missing:?} and holds cluster pins not allocated to it {extra:?}"
                ),
            });
        }
    }
    Ok(())
}

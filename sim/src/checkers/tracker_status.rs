//! Each peer's tracker tells the truth once the cluster settled: `pinned`
//! exactly where the pin is allocated (and only while its IPFS holds it),
//! `remote` elsewhere.

use std::collections::BTreeMap;

use cluster_core::{Cid, PeerId, Pin, TrackerStatus};

use super::{DaemonPin, Violation};

/// What the checker looked at, for the coverage table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// `pinned` answers checked.
    pub pinned: u64,
    /// `remote` answers checked.
    pub remote: u64,
}

/// Checks every peer's status answers for every pin of the final pinset.
pub fn check_tracker_status(
    pins: &BTreeMap<Cid, Pin>,
    statuses: &BTreeMap<PeerId, BTreeMap<Cid, TrackerStatus>>,
    ipfs: &BTreeMap<PeerId, BTreeMap<Cid, DaemonPin>>,
) -> Result<StatusCounts, Violation> {
    let mut counts = StatusCounts::default();
    for (peer, status) in statuses {
        let held = ipfs.get(peer);
        for pin in pins.values() {
            let got = status
                .get(&pin.cid)
                .copied()
                .unwrap_or(TrackerStatus::Unpinned);
            let want = if pin.is_allocated_to(peer) {
                TrackerStatus::Pinned
            } else {
                TrackerStatus::Remote
            };
            if got != want {
                return Err(Violation {
                    checker: "tracker_status",
                    detail: format!("{peer:?}: {} reports {got} but should be {want}", pin.cid),
                });
            }
            if got == TrackerStatus::Pinned {
                counts.pinned += 1;
                if !held.is_some_and(|h| h.contains_key(&pin.cid)) {
                    return Err(Violation {
                        checker: "tracker_status",
                        detail: format!("{peer:?}: {} reports pinned but IPFS lacks it", pin.cid),
                    });
                }
            } else {
                counts.remote += 1;
            }
        }
        if let Some((cid, s)) = status
            .iter()
            .find(|(cid, s)| !pins.contains_key(*cid) && **s != TrackerStatus::Unpinned)
        {
            return Err(Violation {
                checker: "tracker_status",
                detail: format!("{peer:?}: {cid} is not in the pinset but reports {s}"),
            });
        }
    }
    Ok(counts)
}

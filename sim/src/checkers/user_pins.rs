//! The user's own pins (made by hand on a CID IPFS did not hold) are never
//! removed by the cluster, whatever the cluster wanted of that CID.

use std::collections::BTreeMap;

use cluster_core::{Cid, PeerId, PinMode};

use super::{DaemonPin, Violation};

/// Checks that every user pin is still held, in a mode that covers it.
pub fn check_user_pins(
    user: &BTreeMap<PeerId, BTreeMap<Cid, PinMode>>,
    ipfs: &BTreeMap<PeerId, BTreeMap<Cid, DaemonPin>>,
) -> Result<(), Violation> {
    for (peer, mine) in user {
        let held = ipfs.get(peer);
        for (cid, mode) in mine {
            let kept = held
                .and_then(|h| h.get(cid))
                .is_some_and(|h| h.mode == PinMode::Recursive || *mode == PinMode::Direct);
            if !kept {
                return Err(Violation {
                    checker: "user_pins",
                    detail: format!("{peer:?}: the user's own {mode:?} pin of {cid} was removed"),
                });
            }
        }
    }
    Ok(())
}

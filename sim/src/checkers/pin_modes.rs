//! Pins are held in IPFS in the mode the cluster asked: a recursive pin as
//! recursive; a direct pin as direct or covered by a recursive one.

use std::collections::BTreeMap;

use cluster_core::{Cid, PeerId, Pin, PinMode};

use super::{DaemonPin, Violation};

/// Checks the mode of every allocated pin each member's IPFS holds.
pub fn check_pin_modes(
    pins: &BTreeMap<Cid, Pin>,
    ipfs: &BTreeMap<PeerId, BTreeMap<Cid, DaemonPin>>,
) -> Result<(), Violation> {
    for (peer, held) in ipfs {
        for pin in pins.values().filter(|p| p.is_allocated_to(peer)) {
            let Some(h) = held.get(&pin.cid) else {
                continue; // Presence is another checker's promise.
            };
            if pin.mode() == PinMode::Recursive && h.mode != PinMode::Recursive {
                return Err(Violation {
                    checker: "pin_modes",
                    detail: format!(
                        "{peer:?}: {} is wanted recursive but IPFS holds it {:?}",
                        pin.cid, h.mode
                    ),
                });
            }
        }
    }
    Ok(())
}

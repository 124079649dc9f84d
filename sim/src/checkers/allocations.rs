//! Allocations respect replication factors and name only current members.

use std::collections::BTreeMap;

use cluster_core::{Cid, PeerId, Pin};

use super::Violation;

/// Checks every pin of the final state against the members of the cluster.
///
/// After the heal phase a pin may stay under-replicated only if the cluster
/// has fewer members than its minimum.
pub fn check_allocations(pins: &BTreeMap<Cid, Pin>, members: &[PeerId]) -> Result<(), Violation> {
    let bad = |detail: String| {
        Err(Violation {
            checker: "allocations",
            detail,
        })
    };
    for pin in pins.values() {
        if let Err(e) = pin.validate() {
            return bad(format!("{}: invalid stored pin: {e}", pin.cid));
        }
        if let Some(p) = pin.allocations.iter().find(|p| !members.contains(p)) {
            return bad(format!(
                "{} allocated to {p}, which is not a member",
                pin.cid
            ));
        }
        if pin.is_everywhere() {
            continue;
        }
        let min = pin.options.replication_factor_min as usize;
        if pin.allocations.len() < min && members.len() >= min {
            return bad(format!(
                "{} has {} allocations, min {min}, with {} members (under_replicated={})",
                pin.cid,
                pin.allocations.len(),
                members.len(),
                pin.is_under_replicated()
            ));
        }
    }
    Ok(())
}

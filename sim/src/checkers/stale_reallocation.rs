//! A re-allocation lands only on the version of the pin it was computed
//! from: the leader plans from its pinset, and when the pin changed before
//! the proposal commits (a client re-pinned it with new options or
//! allocations, unpinned it, a peer was removed), the state machine must
//! refuse it as stale. Applied anyway, it puts allocations computed for the
//! old options under the new ones, which no later check can tell from a
//! legitimate move once client traffic overwrote the pin again.
//!
//! Judged the moment the leader's driver reports the re-allocation applied,
//! from the version its own pinset held when the proposal was sent: versions
//! only grow (each is the log index of the change), and the proposal takes a
//! log index past everything the leader had applied, so a pin already past
//! the planned version then can never be at it when the entry applies.

use cluster_core::pinset::PinVersion;
use cluster_core::repair::Reallocation;

use super::Violation;

/// Checks an applied re-allocation against the version of its pin in the
/// proposing leader's pinset when it was proposed (`None`: the pin was gone).
pub fn check_reallocation_base(
    step: &Reallocation,
    at_proposing: Option<PinVersion>,
) -> Result<(), Violation> {
    if at_proposing == Some(step.version) {
        return Ok(());
    }
    Err(Violation {
        checker: "stale_reallocation",
        detail: format!(
            "re-allocation of {} ({:?}) computed from version {} was applied, but the \
             pin was at {} when it was proposed: allocations {:?} landed on a version \
             they were not computed from",
            step.cid,
            step.reason,
            step.version.0,
            at_proposing.map_or("no version (unpinned)".to_string(), |v| format!(
                "version {}",
                v.0
            )),
            step.allocations,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_core::repair::RepairReason;
    use cluster_core::{Cid, PeerId};

    fn step(version: u64) -> Reallocation {
        Reallocation {
            cid: Cid::from_bytes(&[&[0x01, 0x55, 0x12, 0x20][..], &[7; 32]].concat())
                .expect("valid cid"),
            allocations: vec![PeerId::synthetic(1)],
            version: PinVersion(version),
            reason: RepairReason::Departed,
            dropped: Vec::new(),
        }
    }

    #[test]
    fn a_reallocation_on_its_own_version_passes() {
        assert!(check_reallocation_base(&step(7), Some(PinVersion(7))).is_ok());
    }

    #[test]
    fn a_reallocation_on_a_newer_version_or_a_gone_pin_fails() {
        let v = check_reallocation_base(&step(7), Some(PinVersion(9))).unwrap_err();
        assert_eq!(v.checker, "stale_reallocation");
        assert!(check_reallocation_base(&step(7), None).is_err());
    }
}

//! A re-allocation lands only on the version of the pin it was computed
//! from: the leader plans from its pinset, and when the pin changed before
//! the proposal applies (a client re-pinned it with new options or
//! allocations, unpinned it, a peer was removed), the state machine must
//! refuse it as stale. Applied anyway, it puts allocations computed for the
//! old options under the new ones, which no later check can tell from a
//! legitimate move once client traffic overwrote the pin again.
//!
//! Judged the moment the leader's driver reports the re-allocation applied,
//! against its own pinset when the proposal was sent and right after it
//! applied:
//! - versions only grow (each is the log index of the change), and the
//!   proposal takes a log index past everything the leader had applied, so
//!   a pin already past the planned version then can never be at it when
//!   the entry applies;
//! - a re-allocation changes allocations only, so right after it applied
//!   the pin holds its allocations under the options it was planned with,
//!   unless a later write replaced the pin meanwhile: a client's pin that
//!   still holds the allocations that client wrote (or a subset: a peer
//!   removed since) explains the state without the re-allocation.

use cluster_core::pinset::PinVersion;
use cluster_core::repair::Reallocation;
use cluster_core::PeerId;

use super::Violation;

/// The pin as the proposing leader's pinset held it when it proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// Its version (`None`: the pin was gone).
    pub version: Option<PinVersion>,
    /// The name of its options (each client write names its pin uniquely).
    pub name: Option<String>,
}

/// The pin as the leader's pinset held it right after the re-allocation
/// was reported applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// The name of its options.
    pub name: String,
    /// Its allocations.
    pub allocations: Vec<PeerId>,
    /// The allocations the client write of that name carried, if a client
    /// wrote it (pins made by updates and drivers are not judged).
    pub written: Option<Vec<PeerId>>,
}

/// Checks an applied re-allocation against its pin when it was proposed
/// (`base`) and right after it applied (`landed`, `None`: gone since).
pub fn check_reallocation_base(
    step: &Reallocation,
    base: &Base,
    landed: Option<&Landed>,
) -> Result<(), Violation> {
    let fail = |what: String| Violation {
        checker: "stale_reallocation",
        detail: format!(
            "re-allocation of {} ({:?}) to {:?}, computed from version {}, was applied: {what}",
            step.cid, step.reason, step.allocations, step.version.0,
        ),
    };
    if base.version != Some(step.version) {
        return Err(fail(format!(
            "the pin was at {} when it was proposed (a version it was not computed from)",
            base.version
                .map_or("no version (unpinned)".to_string(), |v| format!(
                    "version {}",
                    v.0
                )),
        )));
    }
    let Some(landed) = landed else {
        return Ok(());
    };
    if landed.allocations != step.allocations || base.name.as_deref() == Some(&landed.name) {
        return Ok(());
    }
    let Some(written) = &landed.written else {
        return Ok(());
    };
    if landed.allocations.iter().all(|p| written.contains(p)) {
        // The client's write (or what a removal left of it) replaced the
        // re-allocated pin afterwards.
        return Ok(());
    }
    Err(fail(format!(
        "it landed under the options of write {:?} (planned with {:?}), which carried {:?}",
        landed.name, base.name, written
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_core::repair::RepairReason;
    use cluster_core::Cid;

    fn step(version: u64, allocations: &[u64]) -> Reallocation {
        Reallocation {
            cid: Cid::from_bytes(&[&[0x01, 0x55, 0x12, 0x20][..], &[7; 32]].concat())
                .expect("valid cid"),
            allocations: allocations.iter().map(|n| PeerId::synthetic(*n)).collect(),
            version: PinVersion(version),
            reason: RepairReason::Departed,
            dropped: Vec::new(),
        }
    }

    fn base(version: u64, name: &str) -> Base {
        Base {
            version: Some(PinVersion(version)),
            name: Some(name.to_string()),
        }
    }

    fn landed(name: &str, allocations: &[u64], written: Option<&[u64]>) -> Landed {
        let peers = |ns: &[u64]| ns.iter().map(|n| PeerId::synthetic(*n)).collect();
        Landed {
            name: name.to_string(),
            allocations: peers(allocations),
            written: written.map(peers),
        }
    }

    #[test]
    fn a_reallocation_on_its_own_version_passes() {
        let l = landed("c1-1", &[1, 2], Some(&[3]));
        assert!(check_reallocation_base(&step(7, &[1, 2]), &base(7, "c1-1"), Some(&l)).is_ok());
        assert!(check_reallocation_base(&step(7, &[1, 2]), &base(7, "c1-1"), None).is_ok());
    }

    #[test]
    fn a_reallocation_proposed_on_a_newer_version_or_a_gone_pin_fails() {
        let v = check_reallocation_base(&step(7, &[1]), &base(9, "c1-2"), None).unwrap_err();
        assert_eq!(v.checker, "stale_reallocation");
        let gone = Base {
            version: None,
            name: None,
        };
        assert!(check_reallocation_base(&step(7, &[1]), &gone, None).is_err());
    }

    #[test]
    fn a_reallocation_landing_under_newer_options_fails() {
        // Planned under c1-1; right after it applied, the pin holds its
        // allocations under c2-5, whose client wrote peer 4.
        let l = landed("c2-5", &[1, 2], Some(&[4]));
        assert!(check_reallocation_base(&step(7, &[1, 2]), &base(7, "c1-1"), Some(&l)).is_err());
    }

    #[test]
    fn a_later_client_write_that_explains_the_pin_passes() {
        // The client wrote the same peers (or more, one removed since).
        let same = landed("c2-5", &[1, 2], Some(&[1, 2]));
        assert!(check_reallocation_base(&step(7, &[1, 2]), &base(7, "c1-1"), Some(&same)).is_ok());
        let more = landed("c2-5", &[1, 2], Some(&[1, 2, 3]));
        assert!(check_reallocation_base(&step(7, &[1, 2]), &base(7, "c1-1"), Some(&more)).is_ok());
        // An update's copy or a driver's pin is not judged.
        let update = landed("upd1-3", &[1, 2], None);
        assert!(
            check_reallocation_base(&step(7, &[1, 2]), &base(7, "c1-1"), Some(&update)).is_ok()
        );
    }
}

//! A hand-over never leaves a pin without a copy: when the leader's
//! re-allocation drops a peer that is still a member (the surplus of a
//! hand-over, or any other move), at least one peer it keeps already holds
//! the pin in its IPFS daemon, checked against the daemons themselves the
//! moment the re-allocation is applied. Drops of peers being removed from
//! the cluster are exempt (their copy leaves with them), as are CIDs a user
//! unpinned by hand behind the cluster's back (its trackers may still
//! believe them pinned).

use std::collections::{BTreeMap, BTreeSet};

use cluster_core::repair::Reallocation;
use cluster_core::{Cid, PeerId};

use super::Violation;

/// Checks one applied re-allocation against which daemons hold its CID.
/// Returns whether it was a hand-over that dropped a member (for coverage).
pub fn check_handover(
    step: &Reallocation,
    holders: &BTreeSet<PeerId>,
    leaving: &BTreeSet<PeerId>,
    unpinned_by_hand: &BTreeSet<Cid>,
) -> Result<bool, Violation> {
    let dropped_members: Vec<&PeerId> = step
        .dropped
        .iter()
        .filter(|p| !leaving.contains(*p))
        .collect();
    if dropped_members.is_empty() {
        return Ok(false);
    }
    if unpinned_by_hand.contains(&step.cid) || step.allocations.iter().any(|p| holders.contains(p))
    {
        return Ok(true);
    }
    Err(Violation {
        checker: "handover",
        detail: format!(
            "{} re-allocated ({:?}) to {:?}, dropping {dropped_members:?}, while none of the kept peers' daemons holds it (holders {holders:?})",
            step.cid, step.reason, step.allocations
        ),
    })
}

/// After the heal, every pin has at least its minimum of live peers (or
/// every live peer, if fewer) whose tracker reports it pinned; an
/// everywhere pin, every live peer.
pub fn check_replicas_pinned(
    pins: &BTreeMap<Cid, cluster_core::Pin>,
    statuses: &BTreeMap<PeerId, BTreeMap<Cid, cluster_core::TrackerStatus>>,
    live: usize,
) -> Result<(), Violation> {
    for pin in pins.values() {
        if pin.pin_type == cluster_core::PinType::Meta {
            continue;
        }
        let want = if pin.is_everywhere() {
            live
        } else {
            (pin.options.replication_factor_min as usize).min(live)
        };
        let got = statuses
            .values()
            .filter(|s| s.get(&pin.cid) == Some(&cluster_core::TrackerStatus::Pinned))
            .count();
        if got < want {
            return Err(Violation {
                checker: "replicas_pinned",
                detail: format!(
                    "{} reported pinned by {got} live peers, wants {want} (allocations {:?})",
                    pin.cid, pin.allocations
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_core::pinset::PinVersion;
    use cluster_core::repair::RepairReason;

    fn peer(n: u64) -> PeerId {
        PeerId::synthetic(n)
    }

    fn cid() -> Cid {
        let mut bytes = vec![0x12, 0x20];
        bytes.extend_from_slice(&[7; 32]);
        Cid::from_bytes(&bytes).expect("valid cid")
    }

    fn step(allocations: &[u64], dropped: &[u64]) -> Reallocation {
        Reallocation {
            cid: cid(),
            allocations: allocations.iter().map(|n| peer(*n)).collect(),
            version: PinVersion(1),
            reason: RepairReason::Handover,
            dropped: dropped.iter().map(|n| peer(*n)).collect(),
        }
    }

    #[test]
    fn dropping_a_member_needs_a_kept_holder() {
        let (none, by_hand) = (BTreeSet::new(), BTreeSet::new());
        let holders: BTreeSet<PeerId> = [peer(1)].into();
        assert!(check_handover(&step(&[2], &[1]), &holders, &none, &by_hand).is_err());
        assert_eq!(
            check_handover(&step(&[2], &[1]), &[peer(2)].into(), &none, &by_hand),
            Ok(true)
        );
        // Growing drops nobody; a leaving peer's copy leaves with it.
        assert_eq!(
            check_handover(&step(&[1, 2], &[]), &holders, &none, &by_hand),
            Ok(false)
        );
        assert_eq!(
            check_handover(&step(&[2], &[1]), &holders, &[peer(1)].into(), &by_hand),
            Ok(false)
        );
        // A CID unpinned by hand is not judged (trackers may still believe it).
        assert_eq!(
            check_handover(&step(&[2], &[1]), &holders, &none, &[cid()].into()),
            Ok(true)
        );
    }

    #[test]
    fn replicas_pinned_wants_the_minimum_of_live_peers() {
        let mut pin = cluster_core::Pin::new(
            cid(),
            cluster_core::PinOptions {
                replication_factor_min: 2,
                replication_factor_max: 3,
                ..Default::default()
            },
            cluster_core::Millis(0),
        );
        pin.allocations = vec![peer(1), peer(2)];
        let pins: BTreeMap<Cid, cluster_core::Pin> = [(cid(), pin)].into();
        let status = |s| -> BTreeMap<Cid, cluster_core::TrackerStatus> { [(cid(), s)].into() };
        let mut statuses = BTreeMap::new();
        statuses.insert(peer(1), status(cluster_core::TrackerStatus::Pinned));
        statuses.insert(peer(2), status(cluster_core::TrackerStatus::Pinning));
        assert!(check_replicas_pinned(&pins, &statuses, 2).is_err());
        assert!(check_replicas_pinned(&pins, &statuses, 1).is_ok());
        statuses.insert(peer(2), status(cluster_core::TrackerStatus::Pinned));
        assert!(check_replicas_pinned(&pins, &statuses, 2).is_ok());
    }
}

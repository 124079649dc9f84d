//! Which pins the leader re-allocates, and where.
//!
//! A pin needs repair when an allocation names a peer that is no longer a
//! member, or when it holds fewer allocations than its minimum (a peer
//! removal left it short). The leader's repair driver feeds the pinset, the
//! membership and its metrics here and proposes each answer as a
//! [`Command::Reallocate`](crate::pinset::Command::Reallocate) carrying the
//! version it was computed from, so a pin changed in between is left alone
//! by the state machine.

use std::collections::BTreeSet;

use crate::allocator::{allocate, AllocationRequest, AllocatorConfig, PeerMetrics};
use crate::pinset::PinVersion;
use crate::{Cid, Millis, PeerId, Pin};

/// One re-allocation to propose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reallocation {
    /// The pin to move.
    pub cid: Cid,
    /// Its new allocations.
    pub allocations: Vec<PeerId>,
    /// The version they were computed from.
    pub version: PinVersion,
}

/// True when `pin` names a departed peer or is short of its minimum.
pub fn needs_repair(pin: &Pin, members: &BTreeSet<PeerId>) -> bool {
    !pin.is_everywhere()
        && (pin.is_under_replicated() || pin.allocations.iter().any(|a| !members.contains(a)))
}

/// Up to `limit` re-allocations for the pins that need repair, in the order
/// given. A pin the allocator cannot place yet (too few usable peers) is
/// skipped, not counted: the next round tries it again, and pins after it
/// are not starved by it.
pub fn plan_reallocations(
    pins: impl IntoIterator<Item = (Pin, PinVersion)>,
    members: &BTreeSet<PeerId>,
    metrics: &[PeerMetrics],
    now: Millis,
    config: &AllocatorConfig,
    limit: usize,
) -> Vec<Reallocation> {
    let member_list: Vec<PeerId> = members.iter().cloned().collect();
    let member_metrics: Vec<PeerMetrics> = metrics
        .iter()
        .filter(|m| members.contains(&m.peer))
        .cloned()
        .collect();
    let mut plan = Vec::new();
    for (pin, version) in pins {
        if plan.len() >= limit {
            break;
        }
        if !needs_repair(&pin, members) {
            continue;
        }
        let (current, gone): (Vec<PeerId>, Vec<PeerId>) = pin
            .allocations
            .iter()
            .cloned()
            .partition(|a| members.contains(a));
        let request = AllocationRequest {
            replication_factor_min: pin.options.replication_factor_min,
            replication_factor_max: pin.options.replication_factor_max,
            current: &current,
            user_allocations: &[],
            blacklist: &gone,
            members: &member_list,
        };
        let Ok(allocations) = allocate(&request, &member_metrics, now, config) else {
            continue;
        };
        if allocations == pin.allocations && !pin.is_under_replicated() {
            continue;
        }
        plan.push(Reallocation {
            cid: pin.cid.clone(),
            allocations,
            version,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PinOptions;

    fn cid(n: u8) -> Cid {
        let mut bytes = vec![0x12, 0x20];
        bytes.extend_from_slice(&[n; 32]);
        Cid::from_bytes(&bytes).expect("valid cid")
    }

    fn peer(n: u64) -> PeerId {
        PeerId::synthetic(n)
    }

    fn metrics(n: u64, free: u64, now: Millis) -> PeerMetrics {
        PeerMetrics {
            peer: peer(n),
            free_space_bytes: free,
            pinned: 0,
            queue_len: 0,
            tags: Default::default(),
            last_seen: now,
        }
    }

    fn pin(n: u8, min: i32, max: i32, allocations: &[u64]) -> (Pin, PinVersion) {
        let options = PinOptions {
            replication_factor_min: min,
            replication_factor_max: max,
            ..PinOptions::default()
        };
        let mut pin = Pin::new(cid(n), options, Millis(0));
        pin.allocations = allocations.iter().map(|p| peer(*p)).collect();
        (pin, PinVersion(u64::from(n)))
    }

    fn config() -> AllocatorConfig {
        AllocatorConfig {
            allocate_by: vec![crate::allocator::AllocateBy::FreeSpace],
            metric_ttl_ms: 1_000,
        }
    }

    #[test]
    fn a_departed_peer_is_replaced_by_the_freest_member_and_the_rest_kept() {
        let now = Millis(10_000);
        let members: BTreeSet<PeerId> = [1, 2, 3].map(peer).into();
        let board = [
            metrics(1, 10, now),
            metrics(2, 50, now),
            metrics(3, 90, now),
        ];
        let plan = plan_reallocations(
            [pin(1, 2, 2, &[1, 9])],
            &members,
            &board,
            now,
            &config(),
            10,
        );
        assert_eq!(
            plan,
            vec![Reallocation {
                cid: cid(1),
                allocations: vec![peer(1), peer(3)],
                version: PinVersion(1),
            }]
        );
    }

    #[test]
    fn healthy_and_everywhere_pins_are_left_alone() {
        let now = Millis(10_000);
        let members: BTreeSet<PeerId> = [1, 2].map(peer).into();
        let board = [metrics(1, 10, now), metrics(2, 50, now)];
        let pins = [pin(1, 1, 2, &[1, 2]), pin(2, -1, -1, &[])];
        assert!(plan_reallocations(pins, &members, &board, now, &config(), 10).is_empty());
    }

    #[test]
    fn an_under_replicated_pin_is_topped_up_once_a_member_has_fresh_metrics() {
        let now = Millis(10_000);
        let members: BTreeSet<PeerId> = [1, 2].map(peer).into();
        // Peer 2's metrics are stale: nothing to add yet.
        let stale = [metrics(1, 10, now), metrics(2, 50, Millis(1_000))];
        let short = pin(1, 2, 2, &[1]);
        assert!(
            plan_reallocations([short.clone()], &members, &stale, now, &config(), 10).is_empty()
        );
        let fresh = [metrics(1, 10, now), metrics(2, 50, now)];
        let plan = plan_reallocations([short], &members, &fresh, now, &config(), 10);
        assert_eq!(plan[0].allocations, vec![peer(1), peer(2)]);
    }

    #[test]
    fn an_unplaceable_pin_does_not_starve_the_ones_after_it_and_the_limit_holds() {
        let now = Millis(10_000);
        let members: BTreeSet<PeerId> = [1, 2].map(peer).into();
        let board = [metrics(1, 10, now), metrics(2, 50, now)];
        let pins = [
            pin(1, 3, 3, &[1, 9]), // needs three members: never placeable here
            pin(2, 1, 1, &[9]),
            pin(3, 1, 1, &[8]),
            pin(4, 1, 1, &[7]),
        ];
        let plan = plan_reallocations(pins, &members, &board, now, &config(), 2);
        let cids: Vec<Cid> = plan.into_iter().map(|r| r.cid).collect();
        assert_eq!(cids, vec![cid(2), cid(3)]);
    }

    #[test]
    fn needs_repair_names_departed_peers_and_short_pins_only() {
        let members: BTreeSet<PeerId> = [1, 2].map(peer).into();
        assert!(needs_repair(&pin(1, 1, 1, &[3]).0, &members));
        assert!(needs_repair(&pin(1, 2, 2, &[1]).0, &members));
        assert!(!needs_repair(&pin(1, 1, 2, &[1]).0, &members));
        assert!(!needs_repair(&pin(1, -1, -1, &[]).0, &members));
    }
}

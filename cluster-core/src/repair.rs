//! Which pins the leader re-allocates, and where.
//!
//! Three reasons move a pin, all decided here from facts the leader's
//! repair driver feeds in (the pinset, the membership, the metrics it
//! received, what trackers report pinned, `now`):
//!
//! - **departure**: an allocation names a peer that is no longer a member.
//!   It is dropped at once (its copy left with it) and the pin topped up.
//! - **expiry** (re-pinning, IPFS Cluster's `disable_repinning: false`): a
//!   member whose metrics expired is presumed down. When a pin has fewer
//!   live allocations than its minimum, replacements are *added* (up to the
//!   maximum of live ones) while the expired peer stays allocated: if it
//!   is only cut off it keeps its copy, and nothing is unpinned yet.
//! - **hand-over**: a pin holding more allocations than its maximum (a
//!   replacement was added) sheds the surplus, expired peers first, then
//!   peers that do not report the pin pinned, then the newest; but only
//!   while at least `replication_factor_min` live peers that report it
//!   pinned remain. So a dropped peer unpins only once its replacements
//!   hold the content, and a peer that comes back before its replacement
//!   finished keeps the pin (the unfinished replacement is dropped):
//!   a recovering peer does not make pins move twice.
//!
//! A missing report counts as expiry only once the leader has been
//! watching for a whole TTL (a new leader's empty board is not a mass
//! outage). Each answer is proposed as a
//! [`Command::Reallocate`](crate::pinset::Command::Reallocate) carrying the
//! version it was computed from, so a pin changed in between is left alone
//! by the state machine.

use std::collections::{BTreeMap, BTreeSet};

use crate::allocator::{allocate, AllocationRequest, AllocatorConfig, PeerMetrics};
use crate::pin::handover_allocations_max;
use crate::pinset::PinVersion;
use crate::{Cid, Millis, PeerId, Pin, PinType};

/// Which live peers reported which CIDs pinned (their trackers' statuses,
/// as the repair driver asked for them this round).
pub type PinnedReports = BTreeMap<Cid, BTreeSet<PeerId>>;

/// Why a pin moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RepairReason {
    /// An allocated peer left the membership.
    Departed,
    /// Short of its minimum with every allocated peer live: topped up.
    Short,
    /// Too few live allocations: replacements added, expired peers kept.
    Expired,
    /// Over its maximum: surplus dropped, the replacements reporting pinned.
    Handover,
}

/// One re-allocation to propose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reallocation {
    /// The pin to move.
    pub cid: Cid,
    /// Its new allocations.
    pub allocations: Vec<PeerId>,
    /// The version they were computed from.
    pub version: PinVersion,
    /// Why.
    pub reason: RepairReason,
    /// The peers it no longer names (departed ones, or the surplus of a
    /// hand-over).
    pub dropped: Vec<PeerId>,
}

/// What the leader knows in one round.
#[derive(Debug, Clone, Copy)]
pub struct RepairFacts<'a> {
    /// The cluster's members.
    pub members: &'a BTreeSet<PeerId>,
    /// The metrics the leader holds (any peer, any age).
    pub metrics: &'a [PeerMetrics],
    /// The leader's clock.
    pub now: Millis,
    /// Since when the leader's board has been receiving metrics: before a
    /// whole TTL has passed, a missing report proves nothing.
    pub watching_since: Millis,
    /// What live peers report pinned, for pins in a hand-over.
    pub pinned: &'a PinnedReports,
}

/// Members whose newest metrics are older than the TTL (or who never
/// reported), once the leader has watched for a whole TTL; empty before.
pub fn expired_peers(facts: &RepairFacts<'_>, config: &AllocatorConfig) -> BTreeSet<PeerId> {
    if facts.now.since(facts.watching_since) < config.metric_ttl_ms {
        return BTreeSet::new();
    }
    let mut newest: BTreeMap<&PeerId, Millis> = BTreeMap::new();
    for m in facts.metrics {
        let seen = newest.entry(&m.peer).or_insert(m.last_seen);
        *seen = (*seen).max(m.last_seen);
    }
    facts
        .members
        .iter()
        .filter(|p| {
            newest
                .get(p)
                .is_none_or(|seen| facts.now.since(*seen) > config.metric_ttl_ms)
        })
        .cloned()
        .collect()
}

/// True when `pin` names a departed peer or is short of its minimum.
pub fn needs_repair(pin: &Pin, members: &BTreeSet<PeerId>) -> bool {
    !pin.is_everywhere()
        && (pin.is_under_replicated() || pin.allocations.iter().any(|a| !members.contains(a)))
}

/// True when `pin` holds more allocations than its maximum: a hand-over
/// waiting for its replacements to report pinned.
pub fn in_handover(pin: &Pin) -> bool {
    !pin.is_everywhere()
        && pin.pin_type != PinType::Meta
        && pin.allocations.len() > pin.options.replication_factor_max as usize
}

/// The trackers to ask, per live peer, about the pins in a hand-over (at
/// most `limit` pins): what [`RepairFacts::pinned`] must tell.
pub fn pinned_queries(
    pins: impl IntoIterator<Item = Pin>,
    members: &BTreeSet<PeerId>,
    expired: &BTreeSet<PeerId>,
    limit: usize,
) -> BTreeMap<PeerId, Vec<Cid>> {
    let mut queries: BTreeMap<PeerId, Vec<Cid>> = BTreeMap::new();
    for pin in pins.into_iter().filter(in_handover).take(limit) {
        for peer in &pin.allocations {
            if members.contains(peer) && !expired.contains(peer) {
                queries
                    .entry(peer.clone())
                    .or_default()
                    .push(pin.cid.clone());
            }
        }
    }
    queries
}

/// Up to `limit` re-allocations for the pins that need one, in the order
/// given. A pin the allocator cannot place yet (too few usable peers) is
/// skipped, not counted: the next round tries it again, and pins after it
/// are not starved by it.
pub fn plan_reallocations(
    pins: impl IntoIterator<Item = (Pin, PinVersion)>,
    facts: &RepairFacts<'_>,
    config: &AllocatorConfig,
    limit: usize,
) -> Vec<Reallocation> {
    let round = Round::new(facts, config);
    let mut plan = Vec::new();
    for (pin, version) in pins {
        if plan.len() >= limit {
            break;
        }
        if let Some((allocations, reason)) = round.plan_pin(&pin) {
            let dropped = pin
                .allocations
                .iter()
                .filter(|p| !allocations.contains(p))
                .cloned()
                .collect();
            plan.push(Reallocation {
                cid: pin.cid.clone(),
                allocations,
                version,
                reason,
                dropped,
            });
        }
    }
    plan
}

/// One round's facts, prepared once for every pin.
struct Round<'a> {
    facts: &'a RepairFacts<'a>,
    config: &'a AllocatorConfig,
    expired: BTreeSet<PeerId>,
    member_list: Vec<PeerId>,
    member_metrics: Vec<PeerMetrics>,
}

impl<'a> Round<'a> {
    fn new(facts: &'a RepairFacts<'a>, config: &'a AllocatorConfig) -> Round<'a> {
        Round {
            expired: expired_peers(facts, config),
            member_list: facts.members.iter().cloned().collect(),
            member_metrics: facts
                .metrics
                .iter()
                .filter(|m| facts.members.contains(&m.peer))
                .cloned()
                .collect(),
            facts,
            config,
        }
    }

    fn is_live(&self, peer: &PeerId) -> bool {
        self.facts.members.contains(peer) && !self.expired.contains(peer)
    }

    fn reports_pinned(&self, cid: &Cid, peer: &PeerId) -> bool {
        self.is_live(peer)
            && self
                .facts
                .pinned
                .get(cid)
                .is_some_and(|peers| peers.contains(peer))
    }

    /// The new allocations of `pin` and why, or `None` to leave it.
    fn plan_pin(&self, pin: &Pin) -> Option<(Vec<PeerId>, RepairReason)> {
        // Everywhere pins follow the membership; meta pins name no peers.
        if pin.is_everywhere() || pin.pin_type == PinType::Meta {
            return None;
        }
        let min = pin.options.replication_factor_min as usize;
        let max = pin.options.replication_factor_max as usize;
        // A departed peer's copy left with it: drop it at once.
        let kept: Vec<PeerId> = pin
            .allocations
            .iter()
            .filter(|p| self.facts.members.contains(p))
            .cloned()
            .collect();
        let departed = kept.len() != pin.allocations.len();
        let live: Vec<PeerId> = kept.iter().filter(|p| self.is_live(p)).cloned().collect();
        let (allocations, reason) = if live.len() < min {
            let reason = if live.len() < kept.len() {
                RepairReason::Expired
            } else if departed {
                RepairReason::Departed
            } else {
                RepairReason::Short
            };
            match self.grow(pin, &kept, &live) {
                Some(grown) => (grown, reason),
                None if departed => (kept, RepairReason::Departed),
                None => return None,
            }
        } else if kept.len() > max {
            (self.shrink(pin, kept, min, max), RepairReason::Handover)
        } else {
            (kept, RepairReason::Departed)
        };
        (allocations != pin.allocations).then_some((allocations, reason))
    }

    /// `kept` plus replacements for the expired peers among them, chosen by
    /// the allocator among live members; `None` when it has none to give.
    fn grow(&self, pin: &Pin, kept: &[PeerId], live: &[PeerId]) -> Option<Vec<PeerId>> {
        let blacklist: Vec<PeerId> = pin
            .allocations
            .iter()
            .filter(|p| !live.contains(p))
            .cloned()
            .collect();
        let request = AllocationRequest {
            replication_factor_min: pin.options.replication_factor_min,
            replication_factor_max: pin.options.replication_factor_max,
            current: live,
            user_allocations: &[],
            blacklist: &blacklist,
            members: &self.member_list,
        };
        let chosen = allocate(&request, &self.member_metrics, self.facts.now, self.config).ok()?;
        let room =
            handover_allocations_max(pin.options.replication_factor_max).saturating_sub(kept.len());
        let added: Vec<PeerId> = chosen
            .into_iter()
            .filter(|p| !kept.contains(p))
            .take(room)
            .collect();
        if added.is_empty() {
            return None;
        }
        Some(kept.iter().cloned().chain(added).collect())
    }

    /// Drops the surplus of an over-allocated pin, as long as `min` live
    /// peers reporting it pinned remain: expired peers first, then peers not
    /// reporting it pinned, then the newest; each class from the end.
    fn shrink(&self, pin: &Pin, mut kept: Vec<PeerId>, min: usize, max: usize) -> Vec<PeerId> {
        let pinned = |p: &PeerId| self.reports_pinned(&pin.cid, p);
        let mut holders = kept.iter().filter(|p| pinned(p)).count();
        let class = |p: &PeerId| {
            if !self.is_live(p) {
                0u8
            } else if !pinned(p) {
                1
            } else {
                2
            }
        };
        let mut order: Vec<(u8, usize, PeerId)> = kept
            .iter()
            .enumerate()
            .map(|(i, p)| (class(p), usize::MAX - i, p.clone()))
            .collect();
        order.sort();
        for (_, _, peer) in order {
            if kept.len() <= max {
                break;
            }
            let left = holders - usize::from(pinned(&peer));
            if left < min {
                continue;
            }
            holders = left;
            kept.retain(|p| *p != peer);
        }
        kept
    }
}

#[cfg(test)]
mod tests;

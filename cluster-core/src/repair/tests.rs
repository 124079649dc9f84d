use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::allocator::AllocateBy;
use crate::PinOptions;

const NOW: Millis = Millis(100_000);
const TTL: u64 = 1_000;

fn cid(n: u8) -> Cid {
    let mut bytes = vec![0x12, 0x20];
    bytes.extend_from_slice(&[n; 32]);
    Cid::from_bytes(&bytes).expect("valid cid")
}

fn peer(n: u64) -> PeerId {
    PeerId::synthetic(n)
}

fn peers(ns: &[u64]) -> Vec<PeerId> {
    ns.iter().map(|n| peer(*n)).collect()
}

fn metrics(n: u64, free: u64, seen: Millis) -> PeerMetrics {
    PeerMetrics {
        peer: peer(n),
        free_space_bytes: free,
        pinned: 0,
        queue_len: 0,
        tags: Default::default(),
        last_seen: seen,
    }
}

fn pin(n: u8, min: i32, max: i32, allocations: &[u64]) -> (Pin, PinVersion) {
    let options = PinOptions {
        replication_factor_min: min,
        replication_factor_max: max,
        ..PinOptions::default()
    };
    let mut pin = Pin::new(cid(n), options, Millis(0));
    pin.allocations = peers(allocations);
    (pin, PinVersion(u64::from(n)))
}

fn config() -> AllocatorConfig {
    AllocatorConfig {
        allocate_by: vec![AllocateBy::FreeSpace],
        metric_ttl_ms: TTL,
    }
}

/// A round's facts: `members` with fresh metrics unless listed `expired`
/// (free space grows with the peer number), the leader watching for long.
struct World {
    members: BTreeSet<PeerId>,
    board: Vec<PeerMetrics>,
    pinned: PinnedReports,
    watching_since: Millis,
}

impl World {
    fn new(members: &[u64], expired: &[u64]) -> World {
        let board = members
            .iter()
            .map(|n| {
                let seen = if expired.contains(n) {
                    Millis(NOW.0 - TTL - 1)
                } else {
                    NOW
                };
                metrics(*n, 10 * n, seen)
            })
            .collect();
        World {
            members: peers(members).into_iter().collect(),
            board,
            pinned: PinnedReports::new(),
            watching_since: Millis(0),
        }
    }

    fn pinned(mut self, n: u8, holders: &[u64]) -> World {
        self.pinned
            .insert(cid(n), peers(holders).into_iter().collect());
        self
    }

    fn plan(&self, pins: impl IntoIterator<Item = (Pin, PinVersion)>) -> Vec<Reallocation> {
        let facts = RepairFacts {
            members: &self.members,
            metrics: &self.board,
            now: NOW,
            watching_since: self.watching_since,
            pinned: &self.pinned,
        };
        plan_reallocations(pins, &facts, &config(), 100)
    }
}

fn only(plan: Vec<Reallocation>) -> (Vec<PeerId>, RepairReason) {
    assert_eq!(plan.len(), 1, "{plan:?}");
    let step = plan.into_iter().next().expect("one step");
    (step.allocations, step.reason)
}

#[test]
fn a_departed_peer_is_replaced_by_the_freest_member_and_the_rest_kept() {
    let world = World::new(&[1, 2, 3], &[]);
    let plan = world.plan([pin(1, 2, 2, &[1, 9])]);
    assert_eq!(
        plan,
        vec![Reallocation {
            cid: cid(1),
            allocations: peers(&[1, 3]),
            version: PinVersion(1),
            reason: RepairReason::Departed,
            dropped: peers(&[9]),
        }]
    );
}

#[test]
fn healthy_everywhere_and_meta_pins_are_left_alone() {
    let world = World::new(&[1, 2], &[]);
    let (mut meta, v) = pin(3, 1, 1, &[]);
    meta.pin_type = crate::PinType::Meta;
    assert!(world
        .plan([pin(1, 1, 2, &[1, 2]), pin(2, -1, -1, &[]), (meta, v)])
        .is_empty());
}

#[test]
fn an_under_replicated_pin_is_topped_up_once_a_member_has_fresh_metrics() {
    // Peer 2's metrics are stale, but a leader that just started proves
    // nothing by a missing report: it neither adds peer 2 nor replaces it.
    let mut world = World::new(&[1, 2], &[2]);
    world.watching_since = Millis(NOW.0 - TTL / 2);
    assert!(world.plan([pin(1, 2, 2, &[1])]).is_empty());
    let world = World::new(&[1, 2], &[]);
    let (allocations, reason) = only(world.plan([pin(1, 2, 2, &[1])]));
    assert_eq!(allocations, peers(&[1, 2]));
    assert_eq!(reason, RepairReason::Short);
}

#[test]
fn an_unplaceable_pin_does_not_starve_the_ones_after_it_and_the_limit_holds() {
    let world = World::new(&[1, 2], &[]);
    let facts = RepairFacts {
        members: &world.members,
        metrics: &world.board,
        now: NOW,
        watching_since: world.watching_since,
        pinned: &world.pinned,
    };
    let pins = [
        pin(1, 3, 3, &[1]), // needs three members: never placeable here
        pin(2, 1, 1, &[9]),
        pin(3, 1, 1, &[8]),
        pin(4, 1, 1, &[7]),
    ];
    let plan = plan_reallocations(pins, &facts, &config(), 2);
    let cids: Vec<Cid> = plan.into_iter().map(|r| r.cid).collect();
    assert_eq!(cids, vec![cid(2), cid(3)]);
}

#[test]
fn an_expired_peer_changes_nothing_while_the_live_ones_meet_the_minimum() {
    let world = World::new(&[1, 2, 3, 4], &[3]);
    assert!(world.plan([pin(1, 2, 3, &[1, 2, 3])]).is_empty());
}

#[test]
fn below_the_minimum_replacements_are_added_and_the_expired_peer_kept() {
    let world = World::new(&[1, 2, 3, 4], &[2]);
    let (allocations, reason) = only(world.plan([pin(1, 2, 2, &[1, 2])]));
    assert_eq!(allocations, peers(&[1, 2, 4]));
    assert_eq!(reason, RepairReason::Expired);
    // Up to the maximum of live peers, the expired ones on top.
    let world = World::new(&[1, 2, 3, 4, 5], &[2]);
    let (allocations, _) = only(world.plan([pin(1, 2, 3, &[2])]));
    assert_eq!(allocations, peers(&[2, 5, 4, 3]));
}

#[test]
fn the_expired_peer_is_dropped_only_once_its_replacement_reports_pinned() {
    let handover = || pin(1, 2, 2, &[1, 2, 4]);
    // Peer 4 still pinning: nothing moves.
    let world = World::new(&[1, 2, 3, 4], &[2]).pinned(1, &[1]);
    assert!(world.plan([handover()]).is_empty());
    // Peer 4 reports pinned: peer 2 goes.
    let world = World::new(&[1, 2, 3, 4], &[2]).pinned(1, &[1, 4]);
    let (allocations, reason) = only(world.plan([handover()]));
    assert_eq!(allocations, peers(&[1, 4]));
    assert_eq!(reason, RepairReason::Handover);
}

#[test]
fn the_last_copy_is_never_dropped() {
    // Minimum 1, the only holder expired and its replacement not pinned.
    let world = World::new(&[1, 2], &[1]);
    assert!(world.plan([pin(1, 1, 1, &[1, 2])]).is_empty());
    let world = World::new(&[1, 2], &[1]).pinned(1, &[2]);
    assert_eq!(only(world.plan([pin(1, 1, 1, &[1, 2])])).0, peers(&[2]));
}

#[test]
fn a_peer_back_before_its_replacement_pinned_keeps_the_pin() {
    // Peer 2 came back and still holds the pin; peer 4 has not finished.
    let world = World::new(&[1, 2, 3, 4], &[]).pinned(1, &[1, 2]);
    let (allocations, _) = only(world.plan([pin(1, 2, 2, &[1, 2, 4])]));
    assert_eq!(allocations, peers(&[1, 2]));
    // Once settled, nothing moves again.
    let world = World::new(&[1, 2, 3, 4], &[]).pinned(1, &[1, 2]);
    assert!(world.plan([pin(1, 2, 2, &[1, 2])]).is_empty());
}

#[test]
fn a_replacement_that_finished_is_kept_over_the_peer_that_came_back_empty() {
    // Peer 2 came back without the content; peer 4 pinned it.
    let world = World::new(&[1, 2, 3, 4], &[]).pinned(1, &[1, 4]);
    let (allocations, _) = only(world.plan([pin(1, 2, 2, &[1, 2, 4])]));
    assert_eq!(allocations, peers(&[1, 4]));
    // Neither holds it yet: wait rather than leave one holder.
    let world = World::new(&[1, 2, 3, 4], &[]).pinned(1, &[1]);
    assert!(world.plan([pin(1, 2, 2, &[1, 2, 4])]).is_empty());
}

#[test]
fn a_grown_pin_stays_within_twice_its_maximum() {
    // Peers 1 and 2 expired one after the other; 3 was added, then expired.
    let world = World::new(&[1, 2, 3, 4, 5], &[1, 3]);
    assert!(world.plan([pin(1, 1, 1, &[1, 3])]).is_empty());
    let world = World::new(&[1, 2, 3, 4, 5], &[1]);
    assert!(world.plan([pin(1, 1, 1, &[1, 3])]).is_empty());
}

#[test]
fn pinned_queries_ask_the_live_peers_of_pins_in_a_handover() {
    let (p1, _) = pin(1, 2, 2, &[1, 2, 4]);
    let (p2, _) = pin(2, 2, 2, &[1, 2]);
    let members: BTreeSet<PeerId> = peers(&[1, 2, 3, 4]).into_iter().collect();
    let expired: BTreeSet<PeerId> = [peer(2)].into();
    let queries = pinned_queries([p1, p2], &members, &expired, 10);
    let expected: BTreeMap<PeerId, Vec<Cid>> =
        [(peer(1), vec![cid(1)]), (peer(4), vec![cid(1)])].into();
    assert_eq!(queries, expected);
}

#[test]
fn needs_repair_names_departed_peers_and_short_pins_only() {
    let members: BTreeSet<PeerId> = peers(&[1, 2]).into_iter().collect();
    assert!(needs_repair(&pin(1, 1, 1, &[3]).0, &members));
    assert!(needs_repair(&pin(1, 2, 2, &[1]).0, &members));
    assert!(!needs_repair(&pin(1, 1, 2, &[1]).0, &members));
    assert!(!needs_repair(&pin(1, -1, -1, &[]).0, &members));
}

/// The model the planner runs against: peers that go down (their metrics
/// expire, their daemon keeps its pins and does nothing) and come back;
/// a live peer's tracker fetches what it is allocated from a live holder
/// and unpins what it is no longer allocated; trackers report exactly what
/// they hold.
#[derive(Debug, Clone)]
struct Model {
    pins: Vec<Pin>,
    /// Per pin, the peers whose daemon holds it.
    holders: Vec<BTreeSet<u64>>,
    up: Vec<bool>,
}

const PEERS: u64 = 6;

impl Model {
    fn facts_world(&self) -> World {
        let all: Vec<u64> = (0..PEERS).collect();
        let down: Vec<u64> = all
            .iter()
            .copied()
            .filter(|n| !self.up[*n as usize])
            .collect();
        let mut world = World::new(&all, &down);
        // Free space must be positive for every peer to be a candidate.
        for m in &mut world.board {
            m.free_space_bytes += 1;
        }
        for (i, pin) in self.pins.iter().enumerate() {
            let live: Vec<u64> = self.holders[i]
                .iter()
                .copied()
                .filter(|n| self.up[*n as usize])
                .collect();
            world = world.pinned_cid(&pin.cid, &live);
        }
        world
    }

    /// One round: the leader plans and its answers apply, then every live
    /// tracker acts. Returns the plan.
    fn round(&mut self) -> Vec<Reallocation> {
        let world = self.facts_world();
        let versioned: Vec<(Pin, PinVersion)> = self
            .pins
            .iter()
            .map(|p| (p.clone(), PinVersion(0)))
            .collect();
        let plan = world.plan(versioned);
        for step in &plan {
            let i = self
                .pins
                .iter()
                .position(|p| p.cid == step.cid)
                .expect("planned pin exists");
            self.pins[i].allocations = step.allocations.clone();
        }
        for (i, pin) in self.pins.iter().enumerate() {
            let holders = &mut self.holders[i];
            let live_holder = holders.iter().any(|n| self.up[*n as usize]);
            for n in 0..PEERS {
                if !self.up[n as usize] {
                    continue;
                }
                if pin.allocations.contains(&peer(n)) {
                    if live_holder {
                        holders.insert(n);
                    }
                } else {
                    holders.remove(&n);
                }
            }
        }
        plan
    }
}

impl World {
    fn pinned_cid(mut self, cid: &Cid, holders: &[u64]) -> World {
        self.pinned
            .insert(cid.clone(), peers(holders).into_iter().collect());
        self
    }
}

fn arb_model() -> impl Strategy<Value = Model> {
    let factors = prop::sample::select(vec![(1, 1), (1, 2), (2, 2), (2, 3), (3, 3)]);
    let one = (
        factors,
        prop::sample::subsequence((0..PEERS).collect::<Vec<_>>(), 3),
    );
    prop::collection::vec(one, 1..6).prop_map(|pins| {
        let mut model = Model {
            pins: Vec::new(),
            holders: Vec::new(),
            up: vec![true; PEERS as usize],
        };
        for (i, ((min, max), chosen)) in pins.into_iter().enumerate() {
            let (mut p, _) = pin(i as u8, min, max, &[]);
            p.allocations = chosen.iter().take(max as usize).map(|n| peer(*n)).collect();
            model
                .holders
                .push(chosen.iter().take(max as usize).copied().collect());
            model.pins.push(p);
        }
        model
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever goes down and comes back: a pin held somewhere is never
    /// unpinned everywhere, proposals name no peer twice, add no expired
    /// peer and stay within the hand-over bound; once every peer is back,
    /// every pin settles within its factors, held by all its allocations,
    /// and then nothing moves any more.
    #[test]
    fn handover_never_loses_the_last_copy_and_settles(
        model in arb_model(),
        outages in prop::collection::vec(prop::collection::vec(any::<bool>(), PEERS as usize), 1..12),
    ) {
        let mut model = model;
        for up in outages {
            // At least one peer stays up (a cluster with none is not run).
            model.up = up;
            if model.up.iter().all(|u| !u) {
                model.up[0] = true;
            }
            let before: Vec<bool> = model.holders.iter().map(|h| !h.is_empty()).collect();
            let old: Vec<Pin> = model.pins.clone();
            let plan = model.round();
            for step in &plan {
                let i = old.iter().position(|p| p.cid == step.cid).unwrap();
                let gone: Vec<PeerId> = old[i].allocations.iter()
                    .filter(|p| !step.allocations.contains(p)).cloned().collect();
                prop_assert_eq!(&step.dropped, &gone);
                let unique: BTreeSet<&PeerId> = step.allocations.iter().collect();
                prop_assert_eq!(unique.len(), step.allocations.len());
                prop_assert!(step.allocations.len()
                    <= handover_allocations_max(old[i].options.replication_factor_max));
                for p in &step.allocations {
                    let n = (0..PEERS).find(|n| peer(*n) == *p).unwrap();
                    prop_assert!(model.up[n as usize] || old[i].allocations.contains(p),
                        "expired peer {} added", n);
                }
            }
            for (i, held) in before.iter().enumerate() {
                prop_assert!(!held || !model.holders[i].is_empty(),
                    "last copy of pin {} lost: {:?}", i, model.pins[i].allocations);
            }
        }
        model.up = vec![true; PEERS as usize];
        for _ in 0..6 {
            model.round();
        }
        for (i, pin) in model.pins.iter().enumerate() {
            let n = pin.allocations.len() as i32;
            prop_assert!(n >= pin.options.replication_factor_min
                && n <= pin.options.replication_factor_max, "{:?}", pin);
            if !model.holders[i].is_empty() {
                for p in &pin.allocations {
                    let k = (0..PEERS).find(|k| peer(*k) == *p).unwrap();
                    prop_assert!(model.holders[i].contains(&k));
                }
            }
        }
        prop_assert!(model.round().is_empty(), "settled pins keep moving");
    }
}

/// The facts of `world` as `expired_peers` reads them, the leader watching
/// since `watching_since`.
fn expired_in(world: &World, watching_since: Millis) -> BTreeSet<PeerId> {
    let facts = RepairFacts {
        members: &world.members,
        metrics: &world.board,
        now: NOW,
        watching_since,
        pinned: &world.pinned,
    };
    expired_peers(&facts, &config())
}

#[test]
fn a_missing_report_counts_from_a_whole_ttl_of_watching_exactly() {
    let mut world = World::new(&[1, 2], &[]);
    world.board.retain(|m| m.peer != peer(2));
    assert!(
        expired_in(&world, Millis(NOW.0 - TTL + 1)).is_empty(),
        "one ms short of a TTL proves nothing"
    );
    assert_eq!(
        expired_in(&world, Millis(NOW.0 - TTL)),
        BTreeSet::from([peer(2)]),
        "a whole TTL without a report: expired"
    );
}

#[test]
fn a_report_exactly_one_ttl_old_is_still_fresh() {
    let mut world = World::new(&[1, 2], &[]);
    world.board[1].last_seen = Millis(NOW.0 - TTL);
    assert!(expired_in(&world, Millis(0)).is_empty());
    world.board[1].last_seen = Millis(NOW.0 - TTL - 1);
    assert_eq!(expired_in(&world, Millis(0)), BTreeSet::from([peer(2)]));
}

#[test]
fn a_departed_peer_is_dropped_even_when_no_replacement_can_be_placed() {
    // Peer 3 left; the only other member already holds the pin, so the
    // allocator has nobody to add: the departed allocation still goes.
    let world = World::new(&[1], &[]);
    let (allocations, reason) = only(world.plan([pin(1, 2, 2, &[1, 3])]));
    assert_eq!(allocations, peers(&[1]));
    assert_eq!(reason, RepairReason::Departed);
}

#[test]
fn a_handover_drops_the_expired_peer_before_live_holders() {
    // 1 expired; 2 and 3 (its replacement) both report pinned.
    let world = World::new(&[1, 2, 3], &[1]).pinned(1, &[2, 3]);
    let (allocations, reason) = only(world.plan([pin(1, 1, 2, &[1, 2, 3])]));
    assert_eq!(allocations, peers(&[2, 3]));
    assert_eq!(reason, RepairReason::Handover);
}

#[test]
fn a_handover_drops_a_live_peer_not_reporting_pinned_before_holders() {
    // All live; 3 does not report pinned yet: it is the surplus.
    let world = World::new(&[1, 2, 3], &[]).pinned(1, &[1, 2]);
    let (allocations, reason) = only(world.plan([pin(1, 1, 2, &[1, 2, 3])]));
    assert_eq!(allocations, peers(&[1, 2]));
    assert_eq!(reason, RepairReason::Handover);
}

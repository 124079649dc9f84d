use proptest::prelude::*;

use std::cmp::Reverse;
use std::collections::BTreeMap;

use super::*;

const NOW: Millis = Millis(1_000_000);

fn peer(n: u64) -> PeerId {
    PeerId::synthetic(n)
}

fn metrics(n: u64, free_gb: u64, group: &str) -> PeerMetrics {
    PeerMetrics {
        peer: peer(n),
        free_space_bytes: free_gb << 30,
        pinned: 0,
        queue_len: 0,
        tags: [("group".to_string(), group.to_string())].into(),
        last_seen: NOW,
    }
}

/// Peers 0..=12 are members (peer 99 never is).
static MEMBERS: std::sync::LazyLock<Vec<PeerId>> =
    std::sync::LazyLock::new(|| (0..=12).map(peer).collect());

fn request<'a>(
    min: i32,
    max: i32,
    current: &'a [PeerId],
    user: &'a [PeerId],
) -> AllocationRequest<'a> {
    AllocationRequest {
        replication_factor_min: min,
        replication_factor_max: max,
        current,
        user_allocations: user,
        blacklist: &[],
        members: &MEMBERS,
    }
}

fn by_free_space() -> AllocatorConfig {
    AllocatorConfig {
        allocate_by: vec![AllocateBy::FreeSpace],
        metric_ttl_ms: 30_000,
    }
}

#[test]
fn prefers_free_space() {
    let m = vec![
        metrics(1, 10, "a"),
        metrics(2, 30, "a"),
        metrics(3, 20, "a"),
    ];
    let got = allocate(&request(2, 2, &[], &[]), &m, NOW, &by_free_space()).unwrap();
    assert_eq!(got, vec![peer(2), peer(3)]);
}

#[test]
fn everywhere_is_empty_and_bad_factors_are_errors() {
    let m = vec![metrics(1, 10, "a")];
    assert_eq!(
        allocate(&request(-1, -1, &[], &[]), &m, NOW, &by_free_space()),
        Ok(vec![])
    );
    assert!(matches!(
        allocate(&request(3, 2, &[], &[]), &m, NOW, &by_free_space()),
        Err(AllocationError::Replication(_))
    ));
}

#[test]
fn too_few_usable_peers_is_a_typed_error() {
    let mut stale = metrics(2, 50, "a");
    stale.last_seen = Millis(NOW.0 - 31_000);
    let mut full = metrics(3, 0, "a");
    full.free_space_bytes = 0;
    let m = vec![metrics(1, 10, "a"), stale, full];
    let err = allocate(&request(2, 3, &[], &[]), &m, NOW, &by_free_space()).unwrap_err();
    assert_eq!(
        err,
        AllocationError::NotEnoughPeers {
            needed: 2,
            wanted: 3,
            available: 1
        }
    );
    assert!(err
        .to_string()
        .starts_with("not enough peers to allocate CID"));
    // Between min and max: accepted with what there is.
    assert_eq!(
        allocate(&request(1, 3, &[], &[]), &m, NOW, &by_free_space()).unwrap(),
        vec![peer(1)]
    );
}

#[test]
fn user_allocations_come_first() {
    let m = vec![
        metrics(1, 10, "a"),
        metrics(2, 30, "a"),
        metrics(3, 20, "a"),
    ];
    let user = [peer(1)];
    let got = allocate(&request(2, 2, &[], &user), &m, NOW, &by_free_space()).unwrap();
    assert_eq!(got, vec![peer(1), peer(2)]);
}

#[test]
fn keeps_healthy_current_and_replaces_dead_ones() {
    let m = vec![
        metrics(1, 10, "a"),
        metrics(2, 30, "a"),
        metrics(3, 20, "a"),
    ];
    let current = [peer(1), peer(99)];
    let got = allocate(&request(2, 2, &current, &[]), &m, NOW, &by_free_space()).unwrap();
    assert_eq!(
        got,
        vec![peer(1), peer(2)],
        "departed peer 99 replaced, healthy 1 kept"
    );
    let blacklist = [peer(2)];
    let req = AllocationRequest {
        blacklist: &blacklist,
        ..request(2, 2, &current, &[])
    };
    assert_eq!(
        allocate(&req, &m, NOW, &by_free_space()).unwrap(),
        vec![peer(1), peer(3)]
    );
}

#[test]
fn over_allocated_pins_are_trimmed() {
    let m = vec![
        metrics(1, 10, "a"),
        metrics(2, 30, "a"),
        metrics(3, 20, "a"),
    ];
    let current = [peer(1), peer(2), peer(3)];
    let got = allocate(&request(1, 2, &current, &[]), &m, NOW, &by_free_space()).unwrap();
    assert_eq!(got, vec![peer(1), peer(2)]);
}

#[test]
fn tags_spread_replicas_across_groups() {
    let m = vec![
        metrics(1, 100, "eu"),
        metrics(2, 90, "eu"),
        metrics(3, 10, "us"),
        metrics(4, 5, "asia"),
    ];
    let cfg = AllocatorConfig::default();
    let got = allocate(&request(3, 3, &[], &[]), &m, NOW, &cfg).unwrap();
    assert_eq!(got.len(), 3);
    let groups: std::collections::BTreeSet<_> = got
        .iter()
        .map(|p| m.iter().find(|x| x.peer == *p).unwrap().tags["group"].clone())
        .collect();
    assert_eq!(groups.len(), 3, "one replica per group: {got:?}");
    // Topping up avoids the group that already has a replica.
    let current = [peer(1)];
    let got = allocate(&request(2, 2, &current, &[]), &m, NOW, &cfg).unwrap();
    assert_ne!(got[1], peer(2), "second replica must leave the eu group");
}

#[test]
fn parses_metric_names() {
    assert_eq!(
        AllocateBy::parse("tag:group"),
        Some(AllocateBy::Tag("group".into()))
    );
    assert_eq!(AllocateBy::parse("freespace"), Some(AllocateBy::FreeSpace));
    assert_eq!(AllocateBy::parse("pinqueue"), Some(AllocateBy::PinQueue));
    assert_eq!(AllocateBy::parse("numpin"), Some(AllocateBy::NumPin));
    assert_eq!(AllocateBy::parse("tag:"), None);
    assert_eq!(AllocateBy::parse("bogus"), None);
}

/// Issue 10 item 11: a new leader without metrics keeps healthy replicas.
#[test]
fn current_members_are_kept_without_fresh_metrics() {
    let current = [peer(1), peer(2)];
    // No metrics at all (a new leader): a re-pin (e.g. a rename) keeps them.
    assert_eq!(
        allocate(&request(2, 2, &current, &[]), &[], NOW, &by_free_space()),
        Ok(vec![peer(1), peer(2)])
    );
    // Metrics of other peers only: nothing moves either.
    let m = vec![metrics(3, 90, "a"), metrics(4, 80, "a")];
    assert_eq!(
        allocate(&request(2, 3, &current, &[]), &m, NOW, &by_free_space()),
        Ok(vec![peer(1), peer(2)])
    );
    // Topping up keeps them and adds from the usable peers.
    assert_eq!(
        allocate(&request(3, 3, &current, &[]), &m, NOW, &by_free_space()),
        Ok(vec![peer(1), peer(2), peer(3)])
    );
    // A peer that is no longer a member, or blacklisted, is not kept.
    let members = [peer(2), peer(3), peer(4)];
    let req = AllocationRequest {
        members: &members,
        ..request(2, 2, &current, &[])
    };
    assert_eq!(
        allocate(&req, &m, NOW, &by_free_space()),
        Ok(vec![peer(2), peer(3)])
    );
    let blacklist = [peer(2)];
    let req = AllocationRequest {
        blacklist: &blacklist,
        ..request(2, 2, &current, &[])
    };
    assert_eq!(
        allocate(&req, &m, NOW, &by_free_space()),
        Ok(vec![peer(1), peer(3)])
    );
    // Over the maximum, peers without fresh metrics go first.
    let current = [peer(1), peer(3), peer(2), peer(4)];
    assert_eq!(
        allocate(&request(1, 2, &current, &[]), &m, NOW, &by_free_space()),
        Ok(vec![peer(3), peer(4)])
    );
}

/// Kept peers count towards the minimum and the maximum; their order stays.
#[test]
fn kept_peers_count_towards_the_factors() {
    let m = vec![metrics(3, 90, "a")];
    let current = [peer(1)];
    assert_eq!(
        allocate(&request(3, 4, &current, &[]), &m, NOW, &by_free_space()),
        Err(AllocationError::NotEnoughPeers {
            needed: 2,
            wanted: 3,
            available: 1
        })
    );
    // Exactly at the maximum: nothing trimmed, nothing reordered.
    let current = [peer(1), peer(3)];
    assert_eq!(
        allocate(&request(1, 2, &current, &[]), &m, NOW, &by_free_space()),
        Ok(vec![peer(1), peer(3)])
    );
    // One short of the maximum but at the minimum: nothing added.
    assert_eq!(
        allocate(
            &request(1, 3, &current, &[]),
            &[metrics(3, 90, "a"), metrics(4, 90, "a")],
            NOW,
            &by_free_space()
        ),
        Ok(vec![peer(1), peer(3)])
    );
}

/// Issue 10 item 11: non-members are never allocated, whatever their metrics.
#[test]
fn only_members_are_allocated() {
    let m = vec![metrics(99, 500, "a"), metrics(1, 10, "a")];
    assert_eq!(
        allocate(&request(1, 2, &[], &[peer(99)]), &m, NOW, &by_free_space()),
        Ok(vec![peer(1)])
    );
}

/// Issue 10 item 11: free space matters only when it is a criterion.
#[test]
fn free_space_is_required_only_when_it_is_a_criterion() {
    let mut full = metrics(1, 0, "a");
    full.free_space_bytes = 0;
    let by_queue = AllocatorConfig {
        allocate_by: vec![AllocateBy::PinQueue],
        metric_ttl_ms: 30_000,
    };
    let r = request(1, 1, &[], &[]);
    assert_eq!(
        allocate(&r, &[full.clone()], NOW, &by_queue),
        Ok(vec![peer(1)])
    );
    assert!(allocate(&r, &[full], NOW, &by_free_space()).is_err());
}

/// Issue 10 item 11: a peer without the tag is no candidate (IPFS Cluster
/// requires every `allocate_by` metric), not a partition of its own.
#[test]
fn peers_without_the_tag_are_not_a_partition() {
    let mut untagged = metrics(3, 500, "x");
    untagged.tags.clear();
    let m = vec![metrics(1, 10, "a"), metrics(2, 10, "a"), untagged.clone()];
    let cfg = AllocatorConfig::default();
    let got = allocate(&request(2, 2, &[], &[]), &m, NOW, &cfg).unwrap();
    assert_eq!(got, vec![peer(1), peer(2)]);
    assert_eq!(
        allocate(&request(3, 3, &[], &[]), &m, NOW, &cfg),
        Err(AllocationError::NotEnoughPeers {
            needed: 3,
            wanted: 3,
            available: 2
        })
    );
    // Without tag criteria it is an ordinary peer; as a current allocation it is kept.
    assert_eq!(
        allocate(&request(1, 1, &[], &[]), &m, NOW, &by_free_space()),
        Ok(vec![peer(3)])
    );
    assert_eq!(
        allocate(&request(2, 2, &[peer(3)], &[]), &m, NOW, &cfg),
        Ok(vec![peer(3), peer(1)])
    );
}

/// Issue 10 item 11: equal `last_seen` reports are decided by content.
#[test]
fn equal_last_seen_reports_do_not_depend_on_input_order() {
    let r = request(1, 1, &[], &[]);
    let a = vec![
        metrics(1, 100, "a"),
        metrics(1, 1, "a"),
        metrics(2, 50, "a"),
    ];
    let b = vec![
        metrics(1, 1, "a"),
        metrics(1, 100, "a"),
        metrics(2, 50, "a"),
    ];
    let got = allocate(&r, &a, NOW, &by_free_space());
    assert_eq!(got, allocate(&r, &b, NOW, &by_free_space()));
    assert_eq!(
        got,
        Ok(vec![peer(2)]),
        "the conservative report (1 GB) wins"
    );
    // A newer report still wins over an older one whatever it says.
    let mut newer = metrics(1, 100, "a");
    newer.last_seen = Millis(NOW.0 + 1);
    let c = vec![newer, metrics(1, 1, "a"), metrics(2, 50, "a")];
    assert_eq!(
        allocate(&r, &c, Millis(NOW.0 + 1), &by_free_space()),
        Ok(vec![peer(1)])
    );
}

/// The sign of every numeric criterion: shorter queue, fewer pins, more space.
#[test]
fn numeric_criteria_prefer_the_least_loaded_peer() {
    let cfg = |by| AllocatorConfig {
        allocate_by: vec![by],
        metric_ttl_ms: 30_000,
    };
    let mut busy = metrics(1, 10, "a");
    busy.queue_len = 50;
    busy.pinned = 900;
    let mut idle = metrics(2, 10, "a");
    idle.queue_len = 3;
    idle.pinned = 10;
    for m in [
        vec![busy.clone(), idle.clone()],
        vec![idle.clone(), busy.clone()],
    ] {
        let r = request(1, 1, &[], &[]);
        assert_eq!(
            allocate(&r, &m, NOW, &cfg(AllocateBy::PinQueue)),
            Ok(vec![peer(2)])
        );
        assert_eq!(
            allocate(&r, &m, NOW, &cfg(AllocateBy::NumPin)),
            Ok(vec![peer(2)])
        );
    }
    // Ties on the first criterion fall to the next one, then to the peer id.
    idle.queue_len = 50;
    let both = AllocatorConfig {
        allocate_by: vec![AllocateBy::PinQueue, AllocateBy::NumPin],
        metric_ttl_ms: 30_000,
    };
    let r = request(1, 1, &[], &[]);
    assert_eq!(
        allocate(&r, &[busy.clone(), idle.clone()], NOW, &both),
        Ok(vec![peer(2)])
    );
    idle.pinned = 900;
    assert_eq!(allocate(&r, &[idle, busy], NOW, &both), Ok(vec![peer(1)]));
}

/// Partitions fill evenly even when the current replicas are uneven, and
/// heavier partitions win ties.
#[test]
fn replicas_go_to_the_emptiest_group_first() {
    let m = vec![
        metrics(1, 10, "a"),
        metrics(2, 10, "a"),
        metrics(3, 10, "a"),
        metrics(4, 10, "b"),
        metrics(5, 10, "b"),
        metrics(6, 50, "c"),
        metrics(7, 50, "c"),
    ];
    let cfg = AllocatorConfig::default();
    // Two replicas in "a" already: the next three go to b, c, then b or c, never a.
    let current = [peer(1), peer(2)];
    let got = allocate(&request(5, 5, &current, &[]), &m, NOW, &cfg).unwrap();
    assert!(!got[2..].contains(&peer(3)), "{got:?}");
    // Equal counts: the partition with more free space first.
    let got = allocate(&request(1, 1, &[], &[]), &m, NOW, &cfg).unwrap();
    assert!(got == vec![peer(6)] || got == vec![peer(7)], "{got:?}");
    // User choices count for the spread of the rest.
    let got = allocate(&request(2, 2, &[], &[peer(6)]), &m, NOW, &cfg).unwrap();
    assert_eq!(got[0], peer(6));
    assert_ne!(got[1], peer(7), "second replica must leave group c");
}

/// Peers 0..12, some without the group tag, some full, some stale; two
/// reports for some peers.
fn arb_metrics() -> impl Strategy<Value = Vec<PeerMetrics>> {
    prop::collection::vec(
        (0u64..12, 0u64..100, 0u64..4, 0u64..60_000, 0u64..3, 0u64..3),
        0..16,
    )
    .prop_map(|rows| {
        rows.into_iter()
            .map(|(n, free, group, age, queue, pinned)| {
                let mut m = PeerMetrics {
                    last_seen: Millis(NOW.0 - age / 1000 * 1000),
                    queue_len: queue,
                    pinned,
                    ..metrics(n, free, ["a", "b", "c", "-"][group as usize])
                };
                if group == 3 {
                    m.tags.clear();
                }
                m
            })
            .collect::<Vec<_>>()
    })
    .prop_flat_map(|m| Just(m).prop_shuffle())
}

/// The latest report of `p`, ties by the allocator's rule.
fn latest<'a>(m: &'a [PeerMetrics], p: &PeerId) -> Option<&'a PeerMetrics> {
    m.iter().filter(|x| x.peer == *p).max_by_key(|x| {
        (
            x.last_seen,
            Reverse(x.free_space_bytes),
            x.pinned,
            x.queue_len,
            x.tags.clone(),
        )
    })
}

fn is_usable(m: &[PeerMetrics], p: &PeerId, members: &[PeerId], blacklist: &[PeerId]) -> bool {
    members.contains(p)
        && !blacklist.contains(p)
        && latest(m, p).is_some_and(|x| {
            NOW.since(x.last_seen) <= 30_000
                && x.free_space_bytes > 0
                && x.tags.contains_key("group")
        })
}

fn group_of(m: &[PeerMetrics], p: &PeerId) -> String {
    latest(m, p).expect("usable").tags["group"].clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn allocations_are_valid_kept_preferred_spread_and_order_free(
        (m, shuffled) in arb_metrics().prop_flat_map(|m| (Just(m.clone()), Just(m).prop_shuffle())),
        min in 1i32..5,
        extra in 0i32..3,
        current in prop::collection::vec(0u64..13, 0..4),
        user in prop::collection::vec(0u64..12, 0..3),
        gone in prop::collection::vec(0u64..12, 0..3),
        black in prop::collection::vec(0u64..12, 0..2),
    ) {
        let max = min + extra;
        let current: Vec<PeerId> = current.into_iter().map(peer).collect();
        let user: Vec<PeerId> = user.into_iter().map(peer).collect();
        let members: Vec<PeerId> = (0..12).filter(|n| !gone.contains(n)).map(peer).collect();
        let blacklist: Vec<PeerId> = black.into_iter().map(peer).collect();
        let req = AllocationRequest {
            members: &members,
            blacklist: &blacklist,
            ..request(min, max, &current, &user)
        };
        let cfg = AllocatorConfig::default();
        let first = allocate(&req, &m, NOW, &cfg);
        prop_assert_eq!(&first, &allocate(&req, &shuffled, NOW, &cfg), "input order mattered");
        let usable = |p: &PeerId| is_usable(&m, p, &members, &blacklist);
        let mut kept: Vec<PeerId> = Vec::new();
        for p in &current {
            if members.contains(p) && !blacklist.contains(p) && !kept.contains(p) {
                kept.push(p.clone());
            }
        }
        let Ok(got) = first else {
            let possible = kept.len() + (0..12).map(peer).filter(|p| usable(p) && !kept.contains(p)).count();
            prop_assert!(possible < min as usize, "refused with {} possible peers", possible);
            return Ok(());
        };
        prop_assert!(got.len() <= max as usize && got.len() >= min as usize);
        let mut sorted = got.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(sorted.len(), got.len(), "duplicate peer");
        // Current members are kept (all of them up to max); others are usable.
        if kept.len() <= max as usize {
            prop_assert_eq!(&got[..kept.len()], &kept[..]);
        }
        let new: Vec<&PeerId> = got.iter().filter(|p| !kept.contains(p)).collect();
        for p in &new {
            prop_assert!(usable(p), "allocated unusable peer {:?}", p);
        }
        if kept.len() >= min as usize {
            prop_assert!(new.is_empty(), "added peers to a satisfied pin");
            return Ok(());
        }
        // As many as possible up to max.
        let left = (0..12).map(peer).filter(|p| usable(p) && !got.contains(p)).count();
        prop_assert!(got.len() == max as usize || left == 0, "stopped short of max");
        // User allocations come before everything else.
        let user_usable: Vec<&PeerId> = user.iter().filter(|p| usable(p) && !kept.contains(p)).collect();
        let other_new = new.iter().any(|p| !user.contains(p));
        if other_new {
            for p in &user_usable {
                prop_assert!(got.contains(p), "user allocation {:?} skipped", p);
            }
        }
        // Spread: a group got a new replica only while it held no more than any
        // group that still has a free candidate.
        if user.is_empty() {
            let mut count: BTreeMap<String, usize> = BTreeMap::new();
            for p in got.iter().filter(|p| usable(p)) {
                *count.entry(group_of(&m, p)).or_default() += 1;
            }
            let free_groups: Vec<String> = (0..12)
                .map(peer)
                .filter(|p| usable(p) && !got.contains(p))
                .map(|p| group_of(&m, &p))
                .collect();
            for p in &new {
                let h = group_of(&m, p);
                for g in &free_groups {
                    let (ch, cg) = (count[&h], count.get(g).copied().unwrap_or(0));
                    prop_assert!(ch <= cg + 1, "group {} has {} while {} has {} and a free peer: {:?}", h, ch, g, cg, got);
                }
            }
        }
    }
}

use proptest::prelude::*;

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
    let current = [peer(1), peer(9)];
    let got = allocate(&request(2, 2, &current, &[]), &m, NOW, &by_free_space()).unwrap();
    assert_eq!(
        got,
        vec![peer(1), peer(2)],
        "dead peer 9 replaced, healthy 1 kept"
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
    assert_eq!(AllocateBy::parse("tag:"), None);
    assert_eq!(AllocateBy::parse("bogus"), None);
}

fn arb_metrics() -> impl Strategy<Value = Vec<PeerMetrics>> {
    prop::collection::vec((0u64..12, 0u64..100, 0u64..3, 0u64..60_000), 0..16).prop_map(|rows| {
        rows.into_iter()
            .map(|(n, free, group, age)| PeerMetrics {
                last_seen: Millis(NOW.0 - age),
                ..metrics(n, free, ["a", "b", "c"][group as usize])
            })
            .collect()
    })
}

fn is_usable(m: &[PeerMetrics], p: &PeerId) -> bool {
    let latest = m
        .iter()
        .filter(|x| x.peer == *p)
        .max_by_key(|x| x.last_seen);
    latest.is_some_and(|x| NOW.since(x.last_seen) <= 30_000 && x.free_space_bytes > 0)
}

proptest! {
    #[test]
    fn never_a_down_peer_never_over_max_and_deterministic(
        m in arb_metrics(),
        min in 1i32..5,
        extra in 0i32..3,
        current in prop::collection::vec(0u64..12, 0..4),
        user in prop::collection::vec(0u64..12, 0..3),
    ) {
        let max = min + extra;
        let current: Vec<PeerId> = current.into_iter().map(peer).collect();
        let user: Vec<PeerId> = user.into_iter().map(peer).collect();
        let req = request(min, max, &current, &user);
        let cfg = AllocatorConfig::default();
        let first = allocate(&req, &m, NOW, &cfg);
        prop_assert_eq!(&first, &allocate(&req, &m, NOW, &cfg));
        if let Ok(got) = first {
            prop_assert!(got.len() <= max as usize);
            prop_assert!(got.len() >= min as usize);
            let mut sorted = got.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), got.len(), "duplicate peer");
            for p in &got {
                prop_assert!(is_usable(&m, p), "allocated down peer {:?}", p);
            }
            // Healthy current allocations are kept (up to max).
            let healthy: Vec<&PeerId> = current.iter().filter(|p| is_usable(&m, p)).collect();
            for p in healthy.iter().take(max as usize) {
                prop_assert!(got.contains(p));
            }
        }
    }
}

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::pin::{Allocated, PinOptions, PinValidationError};

pub(crate) fn cid(n: u64) -> Cid {
    let mut bytes = vec![0x12, 0x20];
    bytes.extend(n.to_be_bytes());
    bytes.extend([0xAB; 24]);
    Cid::from_bytes(&bytes).unwrap()
}

fn peer(n: u64) -> PeerId {
    PeerId::synthetic(n)
}

fn pin(n: u64, min: i32, max: i32, peers: &[u64], ts: u64) -> Pin {
    let options = PinOptions {
        replication_factor_min: min,
        replication_factor_max: max,
        name: format!("pin-{n}"),
        ..Default::default()
    };
    let mut p = Pin::new(cid(n), options, Millis(ts));
    p.allocations = peers.iter().copied().map(peer).collect();
    p
}

/// Applies at an index that grows (the tests' indices always do).
fn ap(s: &mut Pinset, index: u64, entry: &Entry) -> ApplyResult {
    s.apply(index, entry).expect("index grows")
}

fn pin_cmd(p: Pin) -> Entry {
    Entry::new(Command::Pin(p))
}

#[test]
fn pin_unpin_and_not_found() {
    let mut s = Pinset::new();
    let r = ap(&mut s, 1, &pin_cmd(pin(1, 1, 2, &[1], 10)));
    assert!(matches!(
        r,
        Ok(Applied::Pinned {
            change: PinChange::Created,
            ..
        })
    ));
    assert_eq!(s.len(), 1);
    assert!(matches!(
        ap(&mut s, 2, &Entry::new(Command::Unpin { cid: cid(1) })),
        Ok(Applied::Unpinned { .. })
    ));
    let r = ap(&mut s, 3, &Entry::new(Command::Unpin { cid: cid(1) }));
    assert_eq!(r, Err(ApplyError::NotFound(cid(1))));
    assert!(r
        .unwrap_err()
        .to_string()
        .starts_with("pin is not part of the pinset"));
    assert_eq!(s.applied_index(), 3);
    s.check_invariants().unwrap();
}

#[test]
fn equal_repin_is_a_noop_and_changed_options_update_in_place() {
    let mut s = Pinset::new();
    ap(&mut s, 1, &pin_cmd(pin(1, 1, 2, &[1], 10))).unwrap();
    let again = ap(&mut s, 2, &pin_cmd(pin(1, 1, 2, &[1], 99))).unwrap();
    match again {
        Applied::Pinned { change, .. } => {
            assert_eq!(change, PinChange::Unchanged);
            assert_eq!(
                s.get(&cid(1)).unwrap().timestamp,
                Millis(10),
                "no-op keeps the stored pin"
            );
        }
        other => panic!("{other:?}"),
    }
    let changed = ap(&mut s, 3, &pin_cmd(pin(1, 2, 3, &[1, 2], 100))).unwrap();
    assert!(matches!(
        changed,
        Applied::Pinned {
            change: PinChange::Updated,
            ..
        }
    ));
    assert_eq!(s.get(&cid(1)).unwrap().allocations, vec![peer(1), peer(2)]);
}

#[test]
fn invalid_commands_leave_the_state_untouched() {
    let mut s = Pinset::new();
    ap(&mut s, 1, &pin_cmd(pin(1, 1, 2, &[1], 10))).unwrap();
    let before = s.to_map();
    let bad = [
        pin(2, 3, 2, &[1], 10),
        pin(2, 2, 3, &[1], 10),
        pin(2, -1, -1, &[1], 10),
        {
            let mut p = pin(1, 1, 2, &[1], 10);
            p.options.mode = PinMode::Direct;
            p.max_depth = 0;
            p
        },
        {
            let mut p = pin(1, 1, 2, &[1], 10);
            p.pin_type = PinType::Shard;
            p.max_depth = 1;
            p.reference = Some(cid(9));
            p
        },
    ];
    for (i, p) in bad.into_iter().enumerate() {
        assert!(ap(&mut s, 2 + i as u64, &pin_cmd(p)).is_err());
        assert_eq!(s.to_map(), before);
    }
    s.check_invariants().unwrap();
}

#[test]
fn retried_request_gets_the_first_answer() {
    let mut s = Pinset::new();
    let id = RequestId {
        client: 7,
        serial: 1,
    };
    let unpin = Entry {
        request: Some(id),
        command: Command::Unpin { cid: cid(1) },
    };
    ap(&mut s, 1, &pin_cmd(pin(1, 1, 1, &[1], 10))).unwrap();
    let first = ap(&mut s, 2, &unpin);
    ap(&mut s, 3, &pin_cmd(pin(1, 1, 1, &[1], 11))).unwrap();
    // The retry of the unpin must not remove the newer pin.
    assert_eq!(ap(&mut s, 4, &unpin), first);
    assert!(s.contains(&cid(1)));
}

#[test]
fn update_copies_allocations_and_options() {
    let mut s = Pinset::new();
    let mut p = pin(1, 2, 3, &[1, 2], 10);
    p.options.metadata.insert("owner".into(), "alice".into());
    ap(&mut s, 1, &pin_cmd(p)).unwrap();
    let upd = Command::Update {
        from: cid(1),
        to: cid(2),
        name: "renamed".into(),
        expire_at: None,
        timestamp: Millis(20),
    };
    ap(&mut s, 2, &Entry::new(upd)).unwrap();
    let new = s.get(&cid(2)).unwrap();
    assert_eq!(new.allocations, vec![peer(1), peer(2)]);
    assert_eq!(new.options.name, "renamed");
    assert_eq!(new.options.metadata["owner"], "alice");
    assert_eq!(new.options.pin_update, Some(cid(1)));
    assert!(s.contains(&cid(1)), "from is not unpinned");
    let missing = Command::Update {
        from: cid(5),
        to: cid(6),
        name: String::new(),
        expire_at: None,
        timestamp: Millis(20),
    };
    assert_eq!(
        ap(&mut s, 3, &Entry::new(missing)),
        Err(ApplyError::NotFound(cid(5)))
    );
}

fn realloc(n: u64, peers: &[u64], version: u64) -> Entry {
    Entry::new(Command::Reallocate {
        cid: cid(n),
        allocations: peers.iter().copied().map(peer).collect(),
        version: PinVersion(version),
    })
}

fn pinned(change: PinChange, n: u64) -> ApplyResult {
    Ok(Applied::Pinned {
        cid: cid(n),
        change,
    })
}

#[test]
fn removing_a_peer_flags_under_replicated_pins() {
    let mut s = Pinset::new();
    ap(&mut s, 1, &pin_cmd(pin(1, 2, 2, &[1, 2], 10))).unwrap();
    ap(&mut s, 2, &pin_cmd(pin(2, 1, 2, &[1, 3], 10))).unwrap();
    ap(&mut s, 3, &pin_cmd(pin(3, -1, -1, &[], 10))).unwrap();
    let r = ap(
        &mut s,
        4,
        &Entry::new(Command::RemovePeer { peer: peer(1) }),
    )
    .unwrap();
    assert_eq!(
        r,
        Applied::PeerRemoved {
            peer: peer(1),
            pins_affected: 2,
            under_replicated: 1
        }
    );
    let under: Vec<Cid> = s.under_replicated().map(|p| p.cid).collect();
    assert_eq!(under, vec![cid(1)]);
    assert!(s.get(&cid(1)).unwrap().is_under_replicated());
    s.check_invariants().unwrap();
    // The removal changed both pins it touched: their version is its index.
    assert_eq!(s.version(&cid(1)), Some(PinVersion(4)));
    assert_eq!(s.version(&cid(2)), Some(PinVersion(4)));
    assert_eq!(s.version(&cid(3)), Some(PinVersion(3)));
    // Re-allocation clears the flag once the minimum is met again.
    assert_eq!(
        ap(&mut s, 5, &realloc(1, &[2], 4)),
        pinned(PinChange::Unchanged, 1)
    );
    assert_eq!(
        s.version(&cid(1)),
        Some(PinVersion(4)),
        "no change, no new version"
    );
    assert_eq!(
        ap(&mut s, 6, &realloc(1, &[2, 5], 4)),
        pinned(PinChange::Updated, 1)
    );
    assert_eq!(s.under_replicated().count(), 0);
    assert_eq!(
        ap(&mut s, 7, &realloc(1, &[5], 6)),
        pinned(PinChange::Updated, 1)
    );
    assert_eq!(
        s.under_replicated().count(),
        1,
        "a short re-allocation flags it"
    );
    assert_eq!(
        ap(&mut s, 8, &realloc(1, &[2, 3], 7)),
        pinned(PinChange::Updated, 1)
    );
    assert_eq!(s.under_replicated().count(), 0);
    assert_eq!(s.get(&cid(1)).unwrap().allocations, vec![peer(2), peer(3)]);
    // Invalid allocations are refused like a pin's: beyond the hand-over
    // bound (twice the maximum), or naming a peer twice.
    assert!(matches!(
        ap(&mut s, 9, &realloc(1, &[2, 3, 4, 5, 6], 8)),
        Err(ApplyError::Invalid(_))
    ));
    assert!(matches!(
        ap(&mut s, 10, &realloc(1, &[2, 3, 3], 8)),
        Err(ApplyError::Invalid(_))
    ));
    // It never resurrects a removed pin.
    ap(&mut s, 11, &Entry::new(Command::Unpin { cid: cid(1) })).unwrap();
    assert_eq!(
        ap(&mut s, 12, &realloc(1, &[2, 3], 8)),
        Err(ApplyError::NotFound(cid(1)))
    );
    assert!(!s.contains(&cid(1)));
    s.check_invariants().unwrap();
}

/// Issue 12: a hand-over keeps the peers being replaced next to their
/// replacements, so a stored pin may exceed its maximum, up to twice it.
#[test]
fn a_handover_may_hold_up_to_twice_the_maximum() {
    let mut s = Pinset::new();
    ap(&mut s, 1, &pin_cmd(pin(1, 2, 2, &[1, 2], 10))).unwrap();
    assert_eq!(
        ap(&mut s, 2, &realloc(1, &[1, 2, 3, 4], 1)),
        pinned(PinChange::Updated, 1)
    );
    s.check_invariants().unwrap();
    assert_eq!(s.under_replicated().count(), 0);
    // A client's own pin is still held to its maximum.
    assert!(ap(&mut s, 3, &pin_cmd(pin(1, 2, 2, &[1, 2, 3], 11))).is_err());
    // A snapshot of the hand-over restores.
    let restored = Pinset::restore(&s.snapshot()).unwrap();
    assert_eq!(restored.get(&cid(1)).unwrap().allocations.len(), 4);
}

/// Issue 10 item 7: the proposer cannot declare a pin under-replicated.
#[test]
fn a_pin_short_of_its_minimum_is_refused_whatever_the_proposer_says() {
    let mut s = Pinset::new();
    let err = ap(&mut s, 1, &pin_cmd(pin(1, 3, 3, &[], 10))).unwrap_err();
    assert_eq!(
        err,
        ApplyError::Invalid(PinValidationError::AllocationCount {
            got: 0,
            min: 3,
            max: 3
        })
    );
    assert!(ap(&mut s, 2, &pin_cmd(pin(1, 3, 3, &[1, 2], 10))).is_err());
    assert!(s.is_empty());
    // A re-pin of an under-replicated pin must bring it back to its minimum.
    ap(&mut s, 3, &pin_cmd(pin(1, 2, 2, &[1, 2], 10))).unwrap();
    ap(
        &mut s,
        4,
        &Entry::new(Command::RemovePeer { peer: peer(2) }),
    )
    .unwrap();
    assert!(ap(&mut s, 5, &pin_cmd(pin(1, 2, 2, &[1], 11))).is_err());
    assert_eq!(
        ap(&mut s, 6, &pin_cmd(pin(1, 2, 2, &[1, 3], 11))),
        pinned(PinChange::Updated, 1)
    );
    assert!(!s.get(&cid(1)).unwrap().is_under_replicated());
    assert_eq!(s.under_replicated().count(), 0);
    s.check_invariants().unwrap();
}

/// Issue 10 item 8: a re-allocation computed before the user re-pinned, or
/// removed and re-added, the CID is refused instead of replacing the new pin.
#[test]
fn stale_reallocation_is_refused() {
    let mut s = Pinset::new();
    ap(&mut s, 1, &pin_cmd(pin(1, 2, 2, &[1, 2], 10))).unwrap();
    let seen = s.version(&cid(1)).unwrap();
    assert_eq!(seen, PinVersion(1));
    // The user re-pins with other allocations before the re-allocation applies.
    ap(&mut s, 2, &pin_cmd(pin(1, 2, 2, &[3, 4], 11))).unwrap();
    assert_eq!(
        ap(&mut s, 3, &realloc(1, &[1, 5], seen.0)),
        Err(ApplyError::Stale {
            cid: cid(1),
            expected: seen,
            current: PinVersion(2)
        })
    );
    assert_eq!(s.get(&cid(1)).unwrap().allocations, vec![peer(3), peer(4)]);
    // Removed and re-added with the very same pin: still a new version.
    let seen = s.version(&cid(1)).unwrap();
    ap(&mut s, 4, &Entry::new(Command::Unpin { cid: cid(1) })).unwrap();
    ap(&mut s, 5, &pin_cmd(pin(1, 2, 2, &[3, 4], 11))).unwrap();
    assert!(matches!(
        ap(&mut s, 6, &realloc(1, &[1, 5], seen.0)),
        Err(ApplyError::Stale { .. })
    ));
    // A re-allocation from before a peer removal would bring the peer back.
    let seen = s.version(&cid(1)).unwrap();
    ap(
        &mut s,
        7,
        &Entry::new(Command::RemovePeer { peer: peer(4) }),
    )
    .unwrap();
    assert!(matches!(
        ap(&mut s, 8, &realloc(1, &[3, 4], seen.0)),
        Err(ApplyError::Stale { .. })
    ));
    assert_eq!(s.get(&cid(1)).unwrap().allocations, vec![peer(3)]);
    // An equal re-pin changes nothing, so it leaves the version (and a
    // re-allocation computed from it) valid; the current version applies.
    let seen = s.version(&cid(1)).unwrap();
    assert_eq!(
        ap(&mut s, 9, &realloc(1, &[3, 5], seen.0)),
        pinned(PinChange::Updated, 1)
    );
    ap(&mut s, 10, &pin_cmd(pin(1, 2, 2, &[3, 5], 99))).unwrap();
    assert_eq!(s.version(&cid(1)), Some(PinVersion(9)));
    assert_eq!(
        ap(&mut s, 11, &realloc(1, &[3, 6], 9)),
        pinned(PinChange::Updated, 1)
    );
    s.check_invariants().unwrap();
}

/// Issue 10 item 8: expiry removes the pin it judged expired, not a newer one.
#[test]
fn expiry_removes_only_the_version_it_saw() {
    let mut s = Pinset::new();
    let expiring = |ts: u64, at: u64| {
        let mut p = pin(1, 1, 1, &[1], ts);
        p.options.expire_at = Some(Millis(at));
        pin_cmd(p)
    };
    let expire = |version: u64| {
        Entry::new(Command::Expire {
            cid: cid(1),
            version: PinVersion(version),
        })
    };
    ap(&mut s, 1, &expiring(10, 20)).unwrap();
    // Re-pinned with a later expiry before the expiry applied.
    ap(&mut s, 2, &expiring(15, 90)).unwrap();
    assert!(matches!(
        ap(&mut s, 3, &expire(1)),
        Err(ApplyError::Stale { .. })
    ));
    assert!(s.contains(&cid(1)));
    assert_eq!(
        ap(&mut s, 4, &expire(2)),
        Ok(Applied::Unpinned { cid: cid(1) })
    );
    assert!(!s.contains(&cid(1)));
    assert_eq!(ap(&mut s, 5, &expire(2)), Err(ApplyError::NotFound(cid(1))));
    ap(&mut s, 6, &pin_cmd(pin(1, 1, 1, &[1], 10))).unwrap();
    assert_eq!(ap(&mut s, 7, &expire(6)), Err(ApplyError::NoExpiry(cid(1))));
    assert!(s.contains(&cid(1)));
}

#[test]
fn peers_are_interned() {
    let mut s = Pinset::new();
    ap(&mut s, 1, &pin_cmd(pin(1, 1, 1, &[1], 10))).unwrap();
    ap(&mut s, 2, &pin_cmd(pin(2, 1, 1, &[1], 10))).unwrap();
    let a = s.get(&cid(1)).unwrap().allocations[0].clone();
    let b = s.get(&cid(2)).unwrap().allocations[0].clone();
    assert!(a.ptr_eq(&b));
}

/// Issue 10 item 10: an index that does not grow is a typed error, not a panic.
#[test]
fn applied_index_never_goes_back() {
    let mut s = Pinset::new();
    ap(&mut s, 5, &pin_cmd(pin(1, 1, 1, &[1], 10))).unwrap();
    let before = s.clone();
    assert_eq!(
        s.apply(5, &pin_cmd(pin(2, 1, 1, &[1], 10))),
        Err(OutOfOrder {
            index: 5,
            applied: 5
        })
    );
    assert_eq!(
        s.apply_batch(4, &[pin_cmd(pin(2, 1, 1, &[1], 10))]),
        Err(OutOfOrder {
            index: 4,
            applied: 5
        })
    );
    let err = s.advance_to(3).unwrap_err();
    assert_eq!(err.to_string(), "applied index must grow: 3 after 5");
    assert!(s == before, "refused indices leave the state untouched");
    assert!(!s.contains(&cid(2)));
    assert_eq!(s.advance_to(6), Ok(()));
    assert_eq!(s.applied_index(), 6);
}

/// Issue 10 item 10: sharded pin types are refused until sharding exists.
#[test]
fn sharded_pin_types_are_refused() {
    let mut s = Pinset::new();
    let types = [
        (PinType::Meta, -1),
        (PinType::ClusterDag, 0),
        (PinType::Shard, 1),
    ];
    for (i, (pin_type, depth)) in types.into_iter().enumerate() {
        let mut p = pin(1, 1, 1, &[1], 10);
        p.pin_type = pin_type;
        p.max_depth = depth;
        p.reference = Some(cid(9));
        if pin_type == PinType::Meta {
            p.allocations.clear();
        }
        assert_eq!(
            ap(&mut s, 1 + i as u64, &pin_cmd(p)),
            Err(ApplyError::Unsupported(pin_type))
        );
    }
    assert!(s.is_empty());
}

/// The fuzz targets frame arbitrary bodies with `seal_snapshot_body`: it
/// must frame exactly as `snapshot` does.
#[test]
fn sealing_a_snapshot_body_gives_the_snapshot_back() {
    let mut s = Pinset::new();
    for n in 0..5 {
        ap(&mut s, n + 1, &pin_cmd(pin(n, 1, 2, &[n % 3], 10))).unwrap();
    }
    let bytes = s.snapshot();
    let body = &bytes[1..bytes.len() - 8];
    assert_eq!(seal_snapshot_body(body), bytes);
    assert!(matches!(
        Pinset::restore(&seal_snapshot_body(b"")),
        Err(SnapshotError::Decode(_))
    ));
}

#[test]
fn snapshot_refuses_damage() {
    let mut s = Pinset::new();
    for n in 0..50 {
        ap(&mut s, n + 1, &pin_cmd(pin(n, 1, 2, &[n % 3, 7], 10))).unwrap();
    }
    let bytes = s.snapshot();
    assert_eq!(Pinset::restore(&bytes).unwrap(), s);
    assert!(matches!(
        Pinset::restore(&bytes[..bytes.len() / 2]),
        Err(SnapshotError::Checksum)
    ));
    assert!(matches!(
        Pinset::restore(&bytes[..3]),
        Err(SnapshotError::Truncated(3))
    ));
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 1;
    assert!(matches!(
        Pinset::restore(&flipped),
        Err(SnapshotError::Checksum)
    ));
    let mut versioned = bytes;
    versioned[0] = 9;
    assert_eq!(
        Pinset::restore(&versioned).unwrap_err(),
        SnapshotError::UnknownVersion(9)
    );
}

// ---- model test -------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Pin {
        n: u64,
        rf: (i32, i32),
        peers: Vec<u64>,
        direct: bool,
        name: u8,
        expiry: u8,
    },
    Unpin(u64),
    Reallocate {
        n: u64,
        peers: Vec<u64>,
        stale: bool,
    },
    Expire {
        n: u64,
        stale: bool,
    },
    Update {
        from: u64,
        to: u64,
        name: u8,
    },
    RemovePeer(u64),
}

fn arb_op() -> impl Strategy<Value = Op> {
    let rf = prop::sample::select(vec![(-1, -1), (1, 1), (1, 2), (2, 3), (3, 2), (0, 1)]);
    prop_oneof![
        4 => (0u64..8, rf, prop::collection::vec(0u64..5, 0..4), any::<bool>(), 0u8..3, 0u8..10)
            .prop_map(|(n, rf, peers, direct, name, expiry)| Op::Pin { n, rf, peers, direct, name, expiry }),
        2 => (0u64..8).prop_map(Op::Unpin),
        1 => (0u64..8, 0u64..8, 0u8..3).prop_map(|(from, to, name)| Op::Update { from, to, name }),
        2 => (0u64..8, prop::collection::vec(0u64..5, 0..4), prop::bool::weighted(0.3))
            .prop_map(|(n, peers, stale)| Op::Reallocate { n, peers, stale }),
        1 => (0u64..8, prop::bool::weighted(0.3)).prop_map(|(n, stale)| Op::Expire { n, stale }),
        1 => (0u64..5).prop_map(Op::RemovePeer),
    ]
}

/// The command for `op`; versions come from `versions` (the model's view),
/// one behind when the op asks for a stale one.
fn to_command(op: &Op, ts: u64, versions: &BTreeMap<Cid, u64>) -> Command {
    let version = |n: u64, stale: bool| {
        let v = versions.get(&cid(n)).copied().unwrap_or(0);
        PinVersion(if stale { v.saturating_sub(1) } else { v })
    };
    match op {
        Op::Pin {
            n,
            rf,
            peers,
            direct,
            name,
            expiry,
        } => {
            let mut p = pin(*n, rf.0, rf.1, peers, ts);
            p.options.name = format!("name-{name}");
            if *direct {
                p.options.mode = PinMode::Direct;
                p.max_depth = 0;
            }
            match expiry {
                0 => p.options.expire_at = Some(Millis(ts)), // invalid: not after submission
                1..=3 => p.options.expire_at = Some(Millis(ts + 1)),
                _ => {}
            }
            Command::Pin(p)
        }
        Op::Unpin(n) => Command::Unpin { cid: cid(*n) },
        Op::Update { from, to, name } => Command::Update {
            from: cid(*from),
            to: cid(*to),
            name: if *name == 0 {
                String::new()
            } else {
                format!("name-{name}")
            },
            expire_at: None,
            timestamp: Millis(ts),
        },
        Op::Reallocate { n, peers, stale } => Command::Reallocate {
            cid: cid(*n),
            allocations: peers.iter().copied().map(peer).collect(),
            version: version(*n, *stale),
        },
        Op::Expire { n, stale } => Command::Expire {
            cid: cid(*n),
            version: version(*n, *stale),
        },
        Op::RemovePeer(n) => Command::RemovePeer { peer: peer(*n) },
    }
}

/// The obvious implementation: a map of pins and their versions, no
/// interning, no compaction, every answer of every request remembered.
#[derive(Default)]
struct Model {
    pins: BTreeMap<Cid, Pin>,
    versions: BTreeMap<Cid, u64>,
    seen: BTreeMap<RequestId, (Command, bool)>,
}

impl Model {
    /// Whether the entry is accepted (`None`: refused as a reused id).
    fn apply(&mut self, index: u64, request: Option<RequestId>, command: &Command) -> Option<bool> {
        if let Some((first, ok)) = request.and_then(|id| self.seen.get(&id)) {
            return (first == command).then_some(*ok);
        }
        let ok = self.apply_command(index, command);
        if let Some(id) = request {
            self.seen.insert(id, (command.clone(), ok));
        }
        Some(ok)
    }

    fn apply_command(&mut self, index: u64, command: &Command) -> bool {
        match command {
            Command::Pin(p) => {
                p.pin_type == PinType::Data && p.validate().is_ok() && self.pin(index, p.clone())
            }
            Command::Unpin { cid } => {
                self.versions.remove(cid);
                self.pins.remove(cid).is_some()
            }
            Command::Expire { cid, version } => {
                let expiring = self
                    .pins
                    .get(cid)
                    .is_some_and(|p| p.options.expire_at.is_some());
                if !expiring || self.versions.get(cid) != Some(&version.0) {
                    return false;
                }
                self.versions.remove(cid);
                self.pins.remove(cid).is_some()
            }
            Command::Update {
                from,
                to,
                name,
                timestamp,
                ..
            } => {
                let Some(mut p) = self.pins.get(from).cloned() else {
                    return false;
                };
                p.cid = to.clone();
                p.timestamp = *timestamp;
                p.options.pin_update = Some(from.clone());
                if !name.is_empty() {
                    p.options.name = name.clone();
                }
                p.validate_with(Allocated::Stored).is_ok() && self.pin(index, p)
            }
            Command::Reallocate {
                cid,
                allocations,
                version,
            } => {
                let Some(mut p) = self.pins.get(cid).cloned() else {
                    return false;
                };
                if self.versions.get(cid) != Some(&version.0) {
                    return false;
                }
                if p.allocations == *allocations {
                    return true;
                }
                p.allocations = allocations.clone();
                if p.validate_with(Allocated::Stored).is_err() {
                    return false;
                }
                self.pins.insert(cid.clone(), p);
                self.versions.insert(cid.clone(), index);
                true
            }
            Command::RemovePeer { peer } => {
                for (cid, p) in self.pins.iter_mut() {
                    if let Some(i) = p.allocations.iter().position(|x| x == peer) {
                        p.allocations.remove(i);
                        self.versions.insert(cid.clone(), index);
                    }
                }
                true
            }
        }
    }

    /// Stores an already validated pin.
    fn pin(&mut self, index: u64, p: Pin) -> bool {
        if let Some(old) = self.pins.get(&p.cid) {
            if old.max_depth != 0 && p.max_depth == 0 {
                return false;
            }
            if old.same_request(&p) {
                return true;
            }
        }
        let mut stored = p;
        stored.options.user_allocations.clear();
        self.versions.insert(stored.cid.clone(), index);
        self.pins.insert(stored.cid.clone(), stored);
        true
    }
}

fn arb_request() -> impl Strategy<Value = Option<RequestId>> {
    prop::option::weighted(
        0.3,
        (0u64..2, 0u64..4).prop_map(|(client, serial)| RequestId { client, serial }),
    )
}

/// Runs `ops` on a pinset and the model side by side, one entry per index or
/// (`batch`) several per index, checking answers, state and invariants.
fn run_against_model(
    ops: &[(Option<RequestId>, Op)],
    batch: usize,
) -> Result<Pinset, TestCaseError> {
    let (mut real, mut model) = (Pinset::new(), Model::default());
    let mut first: BTreeMap<RequestId, (Command, ApplyResult)> = BTreeMap::new();
    for (chunk_no, chunk) in ops.chunks(batch.max(1)).enumerate() {
        let index = chunk_no as u64 + 1;
        // Commands of one batch are built before it applies, from the state before it.
        let entries: Vec<Entry> = chunk
            .iter()
            .enumerate()
            .map(|(i, (request, op))| Entry {
                request: *request,
                command: to_command(op, 1000 * index + i as u64, &model.versions),
            })
            .collect();
        let got = real.apply_batch(index, &entries).expect("index grows");
        for (entry, got) in entries.iter().zip(got) {
            let want = model.apply(index, entry.request, &entry.command);
            match want {
                None => prop_assert_eq!(
                    &got,
                    &Err(ApplyError::RequestIdReused(entry.request.unwrap())),
                    "{:?}",
                    entry
                ),
                Some(ok) => prop_assert_eq!(got.is_ok(), ok, "{:?} gave {:?}", entry, got),
            }
            if let Some(id) = entry.request {
                match first.get(&id) {
                    // A retry gets exactly the first answer.
                    Some((command, answer)) if *command == entry.command => {
                        prop_assert_eq!(&got, answer, "retry of {:?}", id)
                    }
                    Some(_) => {}
                    None => {
                        first.insert(id, (entry.command.clone(), got.clone()));
                    }
                }
            }
        }
        prop_assert_eq!(&real.to_map(), &model.pins);
        let versions: BTreeMap<Cid, u64> = real
            .iter_with_versions()
            .map(|(p, v)| (p.cid, v.0))
            .collect();
        prop_assert_eq!(&versions, &model.versions);
        let under: Vec<Cid> = real.under_replicated().map(|p| p.cid).collect();
        let want_under: Vec<Cid> = model
            .pins
            .values()
            .filter(|p| p.is_under_replicated())
            .map(|p| p.cid.clone())
            .collect();
        prop_assert_eq!(under, want_under);
        if let Err(e) = real.check_invariants() {
            return Err(TestCaseError::fail(e));
        }
    }
    Ok(real)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn pinset_matches_model(ops in prop::collection::vec((arb_request(), arb_op()), 0..120)) {
        run_against_model(&ops, 1)?;
    }

    #[test]
    fn batches_match_model(ops in prop::collection::vec((arb_request(), arb_op()), 0..120), batch in 1usize..6) {
        run_against_model(&ops, batch)?;
    }

    #[test]
    fn snapshot_restore_round_trips_and_replays_identically(
        ops in prop::collection::vec((arb_request(), arb_op()), 0..80),
        more in prop::collection::vec((arb_request(), arb_op()), 0..40),
    ) {
        let mut real = run_against_model(&ops, 2)?;
        let mut restored = Pinset::restore(&real.snapshot()).expect("restore");
        prop_assert!(restored == real);
        prop_assert_eq!(restored.snapshot(), real.snapshot());
        prop_assert_eq!(restored.to_map(), real.to_map());
        // Same future on both, including de-duplicated retries.
        let base = real.applied_index() + 1;
        for (i, (request, op)) in more.iter().enumerate() {
            let versions: BTreeMap<Cid, u64> =
                real.iter_with_versions().map(|(p, v)| (p.cid, v.0)).collect();
            let entry = Entry { request: *request, command: to_command(op, 5000 + i as u64, &versions) };
            prop_assert_eq!(ap(&mut real, base + i as u64, &entry), ap(&mut restored, base + i as u64, &entry));
        }
        prop_assert!(restored == real);
    }
}

#[test]
fn invalid_factors_error_text_names_the_rule() {
    let mut s = Pinset::new();
    let err = ap(&mut s, 1, &pin_cmd(pin(1, 3, 2, &[1, 2], 10))).unwrap_err();
    assert!(matches!(
        err,
        ApplyError::Invalid(PinValidationError::ReplicationFactor { .. })
    ));
    assert!(err.to_string().contains("min is larger than max"), "{err}");
}

// ---- client sessions (issue 10 item 9) ----------------------------------------

fn req(client: u64, serial: u64, command: Command) -> Entry {
    Entry {
        request: Some(RequestId { client, serial }),
        command,
    }
}

#[test]
fn a_reused_request_id_with_another_command_is_refused() {
    let mut s = Pinset::new();
    let id = RequestId {
        client: 1,
        serial: 1,
    };
    let first = req(1, 1, Command::Pin(pin(1, 1, 1, &[1], 10)));
    assert_eq!(ap(&mut s, 1, &first), pinned(PinChange::Created, 1));
    let other = req(1, 1, Command::Unpin { cid: cid(1) });
    assert_eq!(ap(&mut s, 2, &other), Err(ApplyError::RequestIdReused(id)));
    assert!(s.contains(&cid(1)), "the other command was not applied");
    // Even a small difference in the command is another body.
    let close = req(1, 1, Command::Pin(pin(1, 1, 1, &[2], 10)));
    assert_eq!(ap(&mut s, 3, &close), Err(ApplyError::RequestIdReused(id)));
    assert_eq!(
        ap(&mut s, 4, &first),
        pinned(PinChange::Created, 1),
        "the retry still gets its answer"
    );
    s.check_invariants().unwrap();
}

#[test]
fn other_clients_volume_does_not_evict_a_session() {
    let mut s = Pinset::new();
    let first = req(1, 1, Command::Pin(pin(1, 1, 1, &[1], 10)));
    ap(&mut s, 1, &first).unwrap();
    ap(&mut s, 2, &Entry::new(Command::Unpin { cid: cid(1) })).unwrap();
    // 20,000 requests of other clients (more than the old global cache held).
    for n in 0..20_000u64 {
        let e = req(2 + n % 8, n, Command::Unpin { cid: cid(9) });
        assert_eq!(ap(&mut s, 3 + n, &e), Err(ApplyError::NotFound(cid(9))));
    }
    assert_eq!(ap(&mut s, 30_000, &first), pinned(PinChange::Created, 1));
    assert!(!s.contains(&cid(1)), "the retried pin was applied twice");
    s.check_invariants().unwrap();
}

#[test]
fn a_session_remembers_a_window_of_serials_and_refuses_older_ones() {
    let mut s = Pinset::new();
    let unpin = |serial: u64| req(1, serial, Command::Unpin { cid: cid(serial) });
    // Serials 10, 12, 14, ...: gaps are fine.
    let window = SESSION_WINDOW as u64;
    for k in 0..window {
        ap(&mut s, 1 + k, &unpin(10 + 2 * k)).unwrap_err();
    }
    // A serial never seen inside the window (arrived late) is applied.
    ap(&mut s, 100, &pin_cmd(pin(11, 1, 1, &[1], 10))).unwrap();
    assert_eq!(
        ap(&mut s, 101, &unpin(11)),
        Ok(Applied::Unpinned { cid: cid(11) })
    );
    // That pushed serial 10 out: it is now refused, never applied again.
    let id = RequestId {
        client: 1,
        serial: 10,
    };
    assert_eq!(
        ap(&mut s, 102, &unpin(10)),
        Err(ApplyError::RequestTooOld(id))
    );
    assert_eq!(
        ap(&mut s, 103, &unpin(5)),
        Err(ApplyError::RequestTooOld(RequestId {
            client: 1,
            serial: 5
        }))
    );
    // The rest of the window still answers retries, the new one too.
    assert_eq!(
        ap(&mut s, 104, &unpin(12)),
        Err(ApplyError::NotFound(cid(12)))
    );
    ap(&mut s, 105, &pin_cmd(pin(11, 1, 1, &[1], 10))).unwrap();
    assert_eq!(
        ap(&mut s, 106, &unpin(11)),
        Ok(Applied::Unpinned { cid: cid(11) })
    );
    assert!(s.contains(&cid(11)), "the retried unpin was applied twice");
    let session = &s.sessions.by_client[&1];
    assert_eq!(session.answers.len(), SESSION_WINDOW);
    assert_eq!(session.floor, 11);
    s.check_invariants().unwrap();
}

#[test]
fn sessions_are_bounded_and_the_least_recently_active_goes() {
    let mut s = Pinset::new();
    let mut index = 0;
    let mut next = || {
        index += 1;
        index
    };
    let e = |client: u64| req(client, 1, Command::Unpin { cid: cid(client) });
    ap(&mut s, next(), &pin_cmd(pin(0, 1, 1, &[1], 10))).unwrap();
    ap(&mut s, next(), &pin_cmd(pin(1, 1, 1, &[1], 10))).unwrap();
    ap(&mut s, next(), &e(0)).unwrap();
    ap(&mut s, next(), &e(1)).unwrap();
    for client in 2..SESSIONS_MAX as u64 {
        ap(&mut s, next(), &e(client)).unwrap_err();
    }
    // Client 0 becomes active again: client 1 is now the least recent.
    ap(&mut s, next(), &req(0, 2, Command::Unpin { cid: cid(99) })).unwrap_err();
    assert_eq!(s.sessions.by_client.len(), SESSIONS_MAX);
    ap(&mut s, next(), &e(SESSIONS_MAX as u64)).unwrap_err();
    assert_eq!(s.sessions.by_client.len(), SESSIONS_MAX);
    assert!(
        !s.sessions.by_client.contains_key(&1),
        "least recently active evicted"
    );
    assert!(s.sessions.by_client.contains_key(&0));
    assert!(s.sessions.by_client.contains_key(&2));
    s.check_invariants().unwrap();
    // Documented limit: a forgotten client is a new client.
    ap(&mut s, next(), &pin_cmd(pin(1, 1, 1, &[1], 10))).unwrap();
    ap(&mut s, next(), &pin_cmd(pin(0, 1, 1, &[1], 10))).unwrap();
    assert_eq!(
        ap(&mut s, next(), &e(1)),
        Ok(Applied::Unpinned { cid: cid(1) })
    );
    assert_eq!(
        ap(&mut s, next(), &e(0)),
        Ok(Applied::Unpinned { cid: cid(0) }),
        "client 0 remembers"
    );
    assert!(
        s.contains(&cid(0)),
        "client 0's retry was not applied again"
    );
}

#[test]
fn idle_sessions_expire_by_log_index() {
    let mut s = Pinset::new();
    let e = |client: u64| req(client, 1, Command::Unpin { cid: cid(1) });
    ap(&mut s, 1, &pin_cmd(pin(1, 1, 1, &[1], 10))).unwrap();
    ap(&mut s, 2, &e(1)).unwrap();
    ap(&mut s, 3, &e(2)).unwrap_err();
    ap(&mut s, 2 + SESSION_IDLE_ENTRIES, &e(3)).unwrap_err();
    assert!(
        s.sessions.by_client.contains_key(&1),
        "idle exactly the limit: kept"
    );
    ap(&mut s, 3 + SESSION_IDLE_ENTRIES, &e(4)).unwrap_err();
    assert!(
        !s.sessions.by_client.contains_key(&1),
        "idle past the limit: forgotten"
    );
    assert!(s.sessions.by_client.contains_key(&2));
    s.check_invariants().unwrap();
}

#[test]
fn remembered_answers_are_small_and_rebuilt_from_the_command() {
    assert!(
        std::mem::size_of::<sessions::Cached>() <= 32,
        "{}",
        std::mem::size_of::<sessions::Cached>()
    );
    let mut s = Pinset::new();
    ap(&mut s, 1, &pin_cmd(pin(1, 1, 1, &[1], 10))).unwrap();
    let remove = req(1, 1, Command::RemovePeer { peer: peer(1) });
    let first = ap(&mut s, 2, &remove);
    assert_eq!(
        first,
        Ok(Applied::PeerRemoved {
            peer: peer(1),
            pins_affected: 1,
            under_replicated: 1
        })
    );
    assert_eq!(ap(&mut s, 3, &remove), first);
    let update = req(
        1,
        2,
        Command::Update {
            from: cid(1),
            to: cid(2),
            name: String::new(),
            expire_at: None,
            timestamp: Millis(20),
        },
    );
    assert_eq!(ap(&mut s, 4, &update), pinned(PinChange::Created, 2));
    assert_eq!(ap(&mut s, 5, &update), pinned(PinChange::Created, 2));
    let version = s.version(&cid(2)).unwrap();
    let move_it = req(
        1,
        3,
        Command::Reallocate {
            cid: cid(2),
            allocations: vec![peer(3)],
            version,
        },
    );
    assert_eq!(ap(&mut s, 6, &move_it), pinned(PinChange::Updated, 2));
    assert_eq!(ap(&mut s, 7, &move_it), pinned(PinChange::Updated, 2));
    // A cached answer never fits another kind of command.
    let id = RequestId {
        client: 1,
        serial: 1,
    };
    let answer = sessions::Answer::Pinned(PinChange::Created);
    assert_eq!(
        answer.rebuild(id, &Command::Unpin { cid: cid(1) }),
        Err(ApplyError::RequestIdReused(id))
    );
    assert_eq!(
        sessions::Answer::Unpinned.rebuild(
            id,
            &Command::Expire {
                cid: cid(1),
                version
            }
        ),
        Ok(Applied::Unpinned { cid: cid(1) })
    );
}

// ---- restore validation, invariants, equality (issue 10 items 10, 17) ---------

fn sample() -> Pinset {
    let mut s = Pinset::new();
    for n in 0..6 {
        ap(
            &mut s,
            n + 1,
            &req(n % 2, n, Command::Pin(pin(n, 1, 2, &[n % 3, 7], 10))),
        )
        .unwrap();
    }
    s
}

/// Breaks `s` in one way, then checks both the invariants and restore see it.
fn assert_caught(what: &str, break_it: impl FnOnce(&mut Pinset)) {
    let mut s = sample();
    s.check_invariants().unwrap();
    break_it(&mut s);
    assert!(s.check_invariants().is_err(), "{what}: invariants passed");
    assert!(
        matches!(
            Pinset::restore(&s.snapshot()),
            Err(SnapshotError::Invalid(_))
        ),
        "{what}: restore accepted it"
    );
}

#[test]
fn invariants_and_restore_catch_every_broken_rule() {
    let first = cid(0);
    assert_caught("too many allocations", |s| {
        // Beyond twice the maximum: more than a hand-over holds.
        let extra = s.pins[&cid(1)].allocations[0].clone();
        let p = s.pins.get_mut(&first).unwrap();
        p.rmax = 1;
        p.rmin = 1;
        p.allocations.push(extra);
    });
    assert_caught("short without the flag", |s| {
        let p = s.pins.get_mut(&first).unwrap();
        p.allocations.truncate(1);
        p.rmin = 2;
    });
    assert_caught("flag without being short", |s| {
        s.pins.get_mut(&first).unwrap().under_replicated = true;
    });
    assert_caught("a sharded type", |s| {
        let p = s.pins.get_mut(&first).unwrap();
        p.pin_type = PinType::Shard;
        p.max_depth = 1;
        p.extra = Some(Box::new(stored::PinExtra {
            reference: Some(cid(9)),
            ..Default::default()
        }));
    });
    assert_caught("bad factors", |s| s.pins.get_mut(&first).unwrap().rmin = 0);
    assert_caught("expiry before submission", |s| {
        s.pins.get_mut(&first).unwrap().extra = Some(Box::new(stored::PinExtra {
            expire_at: Some(Millis(5)),
            ..Default::default()
        }));
    });
    assert_caught("version from the future", |s| {
        s.pins.get_mut(&first).unwrap().version = 99
    });
    assert_caught("duplicate allocation", |s| {
        let p = s.pins.get_mut(&first).unwrap();
        let a = p.allocations[0].clone();
        p.allocations[1] = a;
    });
    assert_caught("session from the future", |s| {
        let mut sessions = s.sessions.by_client.clone();
        sessions.get_mut(&0).unwrap().last_index = 99;
        s.sessions = Sessions::from_sessions(sessions);
    });
    assert_caught("serial below the floor", |s| {
        let mut sessions = s.sessions.by_client.clone();
        sessions.get_mut(&0).unwrap().floor = 3;
        s.sessions = Sessions::from_sessions(sessions);
    });
    assert_caught("session over its window", |s| {
        let mut sessions = s.sessions.by_client.clone();
        let session = sessions.get_mut(&0).unwrap();
        let cached = session.answers.values().next().unwrap().clone();
        for serial in 100..100 + SESSION_WINDOW as u64 {
            session.answers.insert(serial, cached.clone());
        }
        s.sessions = Sessions::from_sessions(sessions);
    });
    assert_caught("empty session", |s| {
        let mut sessions = s.sessions.by_client.clone();
        sessions.get_mut(&0).unwrap().answers.clear();
        s.sessions = Sessions::from_sessions(sessions);
    });
    let mut s = sample();
    s.pins.get_mut(&first).unwrap().allocations[0] = PeerId::synthetic(0);
    assert!(s.check_invariants().unwrap_err().contains("not interned"));
}

#[test]
fn equality_sees_every_part_of_the_state() {
    let base = sample();
    assert!(base == base.clone());
    let mut other = base.clone();
    other.advance_to(100).unwrap();
    assert!(other != base, "applied index");
    let mut other = base.clone();
    other.pins.get_mut(&cid(0)).unwrap().timestamp = Millis(11);
    assert!(other != base, "a pin");
    let mut other = base.clone();
    let mut sessions = other.sessions.by_client.clone();
    sessions.remove(&1);
    other.sessions = Sessions::from_sessions(sessions);
    assert!(other != base, "sessions");
    let mut other = base.clone();
    other.pool.intern(&peer(42));
    assert!(other != base, "peer table");
    // And a round trip keeps all of them.
    assert!(Pinset::restore(&base.snapshot()).unwrap() == base);
}

#[test]
fn version_1_snapshots_are_refused() {
    let mut bytes = sample().snapshot();
    bytes[0] = 1;
    assert_eq!(
        Pinset::restore(&bytes).unwrap_err(),
        SnapshotError::UnknownVersion(1)
    );
}

// ---- reads and small rules the model does not reach (issue 10 item 17) ------

#[test]
fn reads_page_count_and_report_emptiness() {
    let mut s = Pinset::new();
    assert!(s.is_empty());
    for n in 0..5 {
        ap(&mut s, n + 1, &pin_cmd(pin(n, 1, 1, &[1], 10))).unwrap();
    }
    assert!(!s.is_empty());
    assert_eq!(s.len(), 5);
    let all: Vec<Cid> = s.iter().map(|p| p.cid).collect();
    let first: Vec<Cid> = s.page(None, 2).into_iter().map(|p| p.cid).collect();
    assert_eq!(first, all[..2]);
    let next: Vec<Cid> = s
        .page(Some(&all[1]), 2)
        .into_iter()
        .map(|p| p.cid)
        .collect();
    assert_eq!(next, all[2..4]);
    assert_eq!(s.page(Some(&all[4]), 2), vec![]);
    assert_eq!(s.page(None, 9).len(), 5);
}

#[test]
fn index_zero_is_accepted_only_at_the_start() {
    let mut s = Pinset::new();
    assert_eq!(s.advance_to(0), Ok(()));
    assert_eq!(
        s.advance_to(0),
        Ok(()),
        "a fresh state may see index 0 (blank) again"
    );
    ap(&mut s, 0, &pin_cmd(pin(1, 1, 1, &[1], 10))).unwrap();
    assert_eq!(s.advance_to(1), Ok(()));
    assert_eq!(
        s.advance_to(0),
        Err(OutOfOrder {
            index: 0,
            applied: 1
        })
    );
    assert_eq!(s.applied_index(), 1);
}

#[test]
fn update_takes_a_later_expiry_only() {
    let mut s = Pinset::new();
    let mut p = pin(1, 1, 1, &[1], 10);
    p.options.expire_at = Some(Millis(500));
    ap(&mut s, 1, &pin_cmd(p)).unwrap();
    let update = |to: u64, expire_at: u64| {
        Entry::new(Command::Update {
            from: cid(1),
            to: cid(to),
            name: String::new(),
            expire_at: Some(Millis(expire_at)),
            timestamp: Millis(20),
        })
    };
    ap(&mut s, 2, &update(2, 900)).unwrap();
    assert_eq!(s.get(&cid(2)).unwrap().options.expire_at, Some(Millis(900)));
    // Not after the update's own time: ignored, the source's expiry stays.
    ap(&mut s, 3, &update(3, 20)).unwrap();
    assert_eq!(s.get(&cid(3)).unwrap().options.expire_at, Some(Millis(500)));
    ap(&mut s, 4, &update(4, 19)).unwrap();
    assert_eq!(s.get(&cid(4)).unwrap().options.expire_at, Some(Millis(500)));
    ap(&mut s, 5, &update(5, 21)).unwrap();
    assert_eq!(s.get(&cid(5)).unwrap().options.expire_at, Some(Millis(21)));
}

/// The debug post-condition is live: an apply that leaves the pin it touched
/// invalid panics (here the state was broken beforehand, which apply cannot do).
#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "invariant: apply stored an invalid pin")]
fn the_post_condition_catches_a_broken_pin() {
    let mut s = Pinset::new();
    ap(&mut s, 1, &pin_cmd(pin(1, 1, 2, &[1], 10))).unwrap();
    s.pins.get_mut(&cid(1)).unwrap().under_replicated = true;
    let _ = ap(&mut s, 2, &realloc(1, &[1], 1));
}

/// The fast stored-pin validation (snapshot restore) says exactly what the
/// full validation of the rebuilt pin says.
fn arb_stored() -> impl Strategy<Value = stored::StoredPin> {
    let types = prop::sample::select(vec![
        PinType::Data,
        PinType::Data,
        PinType::Meta,
        PinType::Shard,
        PinType::ClusterDag,
    ]);
    let depths = prop::sample::select(vec![-2, -1, 0, 1, 2, crate::pin::MAX_DEPTH_MAX + 1]);
    (
        (
            -2i32..4,
            -2i32..4,
            0usize..3,
            prop::collection::vec(0u64..4, 0..5),
        ),
        (depths, types, any::<bool>(), 0u8..4, 0u64..30),
    )
        .prop_map(
            |(
                (rmin, rmax, name, peers),
                (max_depth, pin_type, under_replicated, extra, version),
            )| {
                let mut pool = stored::PeerPool::default();
                stored::StoredPin {
                    allocations: peers.iter().map(|n| pool.intern(&peer(*n))).collect(),
                    name: stored::Name::from_slice(
                        ["", "x", &"x".repeat(crate::pin::NAME_MAX_BYTES + 1)][name].as_bytes(),
                    ),
                    timestamp: Millis(10),
                    rmin,
                    rmax,
                    max_depth,
                    pin_type,
                    under_replicated,
                    extra: match extra {
                        0 | 1 => None,
                        2 => Some(Box::new(stored::PinExtra {
                            expire_at: Some(Millis(5)),
                            ..Default::default()
                        })),
                        _ => Some(Box::new(stored::PinExtra {
                            reference: Some(cid(3)),
                            ..Default::default()
                        })),
                    },
                    version,
                }
            },
        )
}

proptest! {
    #[test]
    fn stored_validation_matches_the_full_one(stored in arb_stored()) {
        let full = stored.to_pin(&cid(1)).validate_with(Allocated::Stored);
        prop_assert_eq!(stored.validate(&cid(1)), full);
    }
}

#[test]
fn digests_tell_commands_apart() {
    let a = Command::Unpin { cid: cid(1) };
    let b = Command::Unpin { cid: cid(2) };
    assert_eq!(sessions::digest(&a), sessions::digest(&a.clone()));
    assert_ne!(sessions::digest(&a), sessions::digest(&b));
    let mut p = pin(1, 1, 1, &[1], 10);
    let d = sessions::digest(&Command::Pin(p.clone()));
    p.options.name.push('x');
    assert_ne!(d, sessions::digest(&Command::Pin(p)));
    // Digests are kept in sessions, which snapshots carry: a peer restored
    // from a snapshot taken by another build must compute the same ones.
    assert_eq!(
        sessions::digest(&a),
        GOLDEN_UNPIN_DIGEST,
        "{:#x}",
        sessions::digest(&a)
    );
}

/// `sessions::digest(&Command::Unpin { cid: cid(1) })`, fixed for good.
const GOLDEN_UNPIN_DIGEST: u64 = 0xe0b1_16b3_9e19_e60f;

/// The expiry driver's plan: exactly the pins due at `now`, with the version
/// seen, bounded by the limit; a pin without expiry is never in it.
#[test]
fn expired_lists_the_due_pins_with_their_versions() {
    let mut s = Pinset::new();
    let with_expiry = |n: u64, at: Option<u64>| {
        let mut p = pin(n, -1, -1, &[], 10);
        p.options.expire_at = at.map(Millis);
        pin_cmd(p)
    };
    ap(&mut s, 1, &with_expiry(1, Some(100))).expect("pinned");
    ap(&mut s, 2, &with_expiry(2, Some(200))).expect("pinned");
    ap(&mut s, 3, &with_expiry(3, None)).expect("pinned");
    ap(&mut s, 4, &with_expiry(4, Some(100))).expect("pinned");
    assert_eq!(s.expired(Millis(99), 10), vec![]);
    assert_eq!(
        s.expired(Millis(100), 10),
        vec![(cid(1), PinVersion(1)), (cid(4), PinVersion(4))]
    );
    assert_eq!(s.expired(Millis(100), 1), vec![(cid(1), PinVersion(1))]);
    assert_eq!(s.expired(Millis(u64::MAX), 10).len(), 3);
    // Each planned removal applies; a second plan finds nothing left.
    for (i, (c, version)) in s.expired(Millis(200), 10).into_iter().enumerate() {
        let entry = Entry::new(Command::Expire { cid: c, version });
        assert!(ap(&mut s, 10 + i as u64, &entry).is_ok());
    }
    assert_eq!(s.expired(Millis(u64::MAX), 10), vec![]);
    assert_eq!(s.len(), 1);
}

proptest! {
    #[test]
    fn expired_matches_a_filter_over_every_pin(
        expiries in prop::collection::vec(prop::option::of(11u64..1_000), 0..40),
        now in 0u64..1_100,
        limit in 0usize..50,
    ) {
        let mut s = Pinset::new();
        for (n, at) in expiries.iter().enumerate() {
            let mut p = pin(n as u64, -1, -1, &[], 10);
            p.options.expire_at = at.map(Millis);
            ap(&mut s, n as u64 + 1, &pin_cmd(p)).expect("pinned");
        }
        let mut model: Vec<(Cid, PinVersion)> = expiries
            .iter()
            .enumerate()
            .filter(|(_, at)| at.is_some_and(|at| at <= now))
            .map(|(n, _)| (cid(n as u64), PinVersion(n as u64 + 1)))
            .collect();
        model.sort();
        model.truncate(limit);
        prop_assert_eq!(s.expired(Millis(now), limit), model);
    }
}

#[test]
fn a_removal_that_leaves_a_short_pin_unflagged_fails_its_post_condition() {
    let mut s = Pinset::new();
    ap(&mut s, 1, &pin_cmd(pin(1, 2, 3, &[1, 2], 10))).unwrap();
    ap(&mut s, 2, &pin_cmd(pin(2, 1, 3, &[2, 3], 10))).unwrap();
    ap(
        &mut s,
        3,
        &Entry::new(Command::RemovePeer { peer: peer(1) }),
    )
    .unwrap();
    s.assert_peer_removed(&peer(1), 1);
    // What a removal that forgot to flag would leave behind.
    s.pins.get_mut(&cid(1)).unwrap().under_replicated = false;
    let unflagged = std::panic::catch_unwind(|| s.assert_peer_removed(&peer(1), 0));
    assert!(
        unflagged.is_err(),
        "an unflagged short pin must fail the check"
    );
}

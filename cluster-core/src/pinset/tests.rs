use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::pin::{PinOptions, PinValidationError};

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

fn pin_cmd(p: Pin) -> Entry {
    Entry::new(Command::Pin(p))
}

#[test]
fn pin_unpin_and_not_found() {
    let mut s = Pinset::new();
    let r = s.apply(1, &pin_cmd(pin(1, 1, 2, &[1], 10)));
    assert!(matches!(
        r,
        Ok(Applied::Pinned {
            change: PinChange::Created,
            ..
        })
    ));
    assert_eq!(s.len(), 1);
    assert!(matches!(
        s.apply(2, &Entry::new(Command::Unpin { cid: cid(1) })),
        Ok(Applied::Unpinned { .. })
    ));
    let r = s.apply(3, &Entry::new(Command::Unpin { cid: cid(1) }));
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
    s.apply(1, &pin_cmd(pin(1, 1, 2, &[1], 10))).unwrap();
    let again = s.apply(2, &pin_cmd(pin(1, 1, 2, &[1], 99))).unwrap();
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
    let changed = s.apply(3, &pin_cmd(pin(1, 2, 3, &[1, 2], 100))).unwrap();
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
    s.apply(1, &pin_cmd(pin(1, 1, 2, &[1], 10))).unwrap();
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
        assert!(s.apply(2 + i as u64, &pin_cmd(p)).is_err());
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
    s.apply(1, &pin_cmd(pin(1, 1, 1, &[1], 10))).unwrap();
    let first = s.apply(2, &unpin);
    s.apply(3, &pin_cmd(pin(1, 1, 1, &[1], 11))).unwrap();
    // The retry of the unpin must not remove the newer pin.
    assert_eq!(s.apply(4, &unpin), first);
    assert!(s.contains(&cid(1)));
}

#[test]
fn update_copies_allocations_and_options() {
    let mut s = Pinset::new();
    let mut p = pin(1, 2, 3, &[1, 2], 10);
    p.options.metadata.insert("owner".into(), "alice".into());
    s.apply(1, &pin_cmd(p)).unwrap();
    let upd = Command::Update {
        from: cid(1),
        to: cid(2),
        name: "renamed".into(),
        expire_at: None,
        timestamp: Millis(20),
    };
    s.apply(2, &Entry::new(upd)).unwrap();
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
        s.apply(3, &Entry::new(missing)),
        Err(ApplyError::NotFound(cid(5)))
    );
}

#[test]
fn removing_a_peer_flags_under_replicated_pins() {
    let mut s = Pinset::new();
    s.apply(1, &pin_cmd(pin(1, 2, 2, &[1, 2], 10))).unwrap();
    s.apply(2, &pin_cmd(pin(2, 1, 2, &[1, 3], 10))).unwrap();
    s.apply(3, &pin_cmd(pin(3, -1, -1, &[], 10))).unwrap();
    let r = s
        .apply(4, &Entry::new(Command::RemovePeer { peer: peer(1) }))
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
    s.check_invariants().unwrap();
    // Re-allocation clears the flag once the minimum is met again.
    let realloc = |peers: &[u64]| {
        Entry::new(Command::Reallocate {
            cid: cid(1),
            allocations: peers.iter().copied().map(peer).collect(),
        })
    };
    s.apply(5, &realloc(&[2])).unwrap();
    assert_eq!(s.under_replicated().count(), 1, "still short of rf min");
    s.apply(6, &realloc(&[2, 3])).unwrap();
    assert_eq!(s.under_replicated().count(), 0);
    assert_eq!(s.get(&cid(1)).unwrap().allocations, vec![peer(2), peer(3)]);
    // It never resurrects a removed pin.
    s.apply(7, &Entry::new(Command::Unpin { cid: cid(1) }))
        .unwrap();
    assert_eq!(
        s.apply(8, &realloc(&[2, 3])),
        Err(ApplyError::NotFound(cid(1)))
    );
    assert!(!s.contains(&cid(1)));
}

#[test]
fn peers_are_interned() {
    let mut s = Pinset::new();
    s.apply(1, &pin_cmd(pin(1, 1, 1, &[1], 10))).unwrap();
    s.apply(2, &pin_cmd(pin(2, 1, 1, &[1], 10))).unwrap();
    let a = s.get(&cid(1)).unwrap().allocations[0].clone();
    let b = s.get(&cid(2)).unwrap().allocations[0].clone();
    assert!(a.ptr_eq(&b));
}

#[test]
#[should_panic(expected = "applied index must grow")]
fn applied_index_never_goes_back() {
    let mut s = Pinset::new();
    s.apply(5, &pin_cmd(pin(1, 1, 1, &[1], 10))).unwrap();
    let _ = s.apply(5, &pin_cmd(pin(2, 1, 1, &[1], 10)));
}

#[test]
fn snapshot_refuses_damage() {
    let mut s = Pinset::new();
    for n in 0..50 {
        s.apply(n + 1, &pin_cmd(pin(n, 1, 2, &[n % 3, 7], 10)))
            .unwrap();
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
        expired: bool,
    },
    Unpin(u64),
    Reallocate {
        n: u64,
        peers: Vec<u64>,
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
        4 => (0u64..8, rf, prop::collection::vec(0u64..5, 0..4), any::<bool>(), 0u8..3, prop::bool::weighted(0.1))
            .prop_map(|(n, rf, peers, direct, name, expired)| Op::Pin { n, rf, peers, direct, name, expired }),
        2 => (0u64..8).prop_map(Op::Unpin),
        1 => (0u64..8, 0u64..8, 0u8..3).prop_map(|(from, to, name)| Op::Update { from, to, name }),
        1 => (0u64..8, prop::collection::vec(0u64..5, 0..4)).prop_map(|(n, peers)| Op::Reallocate { n, peers }),
        1 => (0u64..5).prop_map(Op::RemovePeer),
    ]
}

fn to_command(op: &Op, ts: u64) -> Command {
    match op {
        Op::Pin {
            n,
            rf,
            peers,
            direct,
            name,
            expired,
        } => {
            let mut p = pin(*n, rf.0, rf.1, peers, ts);
            p.options.name = format!("name-{name}");
            if *direct {
                p.options.mode = PinMode::Direct;
                p.max_depth = 0;
            }
            if *expired {
                p.options.expire_at = Some(Millis(ts));
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
        Op::Reallocate { n, peers } => Command::Reallocate {
            cid: cid(*n),
            allocations: peers.iter().copied().map(peer).collect(),
        },
        Op::RemovePeer(n) => Command::RemovePeer { peer: peer(*n) },
    }
}

/// The obvious implementation: a map of pins, no interning, no compaction.
#[derive(Default)]
struct Model {
    pins: BTreeMap<Cid, Pin>,
    seen: BTreeMap<RequestId, bool>,
}

impl Model {
    fn apply(&mut self, request: Option<RequestId>, command: &Command) -> bool {
        if let Some(ok) = request.and_then(|id| self.seen.get(&id)) {
            return *ok;
        }
        let ok = self.apply_command(command);
        if let Some(id) = request {
            self.seen.insert(id, ok);
        }
        ok
    }

    fn apply_command(&mut self, command: &Command) -> bool {
        match command {
            Command::Pin(p) => self.pin(p.clone()),
            Command::Unpin { cid } => self.pins.remove(cid).is_some(),
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
                self.pin(p)
            }
            Command::Reallocate { cid, allocations } => {
                let Some(mut p) = self.pins.get(cid).cloned() else {
                    return false;
                };
                p.allocations = allocations.clone();
                p.under_replicated = !p.is_everywhere()
                    && allocations.len() < p.options.replication_factor_min as usize;
                if p.validate().is_err() {
                    return false;
                }
                self.pins.insert(cid.clone(), p);
                true
            }
            Command::RemovePeer { peer } => {
                for p in self.pins.values_mut() {
                    if let Some(i) = p.allocations.iter().position(|x| x == peer) {
                        p.allocations.remove(i);
                        if !p.is_everywhere()
                            && p.allocations.len() < p.options.replication_factor_min as usize
                        {
                            p.under_replicated = true;
                        }
                    }
                }
                true
            }
        }
    }

    fn pin(&mut self, p: Pin) -> bool {
        if p.validate().is_err() {
            return false;
        }
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn pinset_matches_model(ops in prop::collection::vec((arb_request(), arb_op()), 0..120)) {
        let (mut real, mut model) = (Pinset::new(), Model::default());
        for (i, (request, op)) in ops.iter().enumerate() {
            let entry = Entry { request: *request, command: to_command(op, 1000 + i as u64) };
            let got = real.apply(i as u64 + 1, &entry);
            let want = model.apply(*request, &entry.command);
            prop_assert_eq!(got.is_ok(), want, "op {} {:?} gave {:?}", i, op, got);
            prop_assert_eq!(&real.to_map(), &model.pins);
            if let Err(e) = real.check_invariants() {
                return Err(TestCaseError::fail(e));
            }
        }
    }

    #[test]
    fn snapshot_restore_round_trips_and_replays_identically(
        ops in prop::collection::vec((arb_request(), arb_op()), 0..80),
        more in prop::collection::vec((arb_request(), arb_op()), 0..40),
    ) {
        let mut real = Pinset::new();
        for (i, (request, op)) in ops.iter().enumerate() {
            let _ = real.apply(i as u64 + 1, &Entry { request: *request, command: to_command(op, 1000 + i as u64) });
        }
        let mut restored = Pinset::restore(&real.snapshot()).expect("restore");
        prop_assert!(restored == real);
        prop_assert_eq!(restored.snapshot(), real.snapshot());
        // Same future on both, including de-duplicated retries.
        let base = ops.len() as u64 + 1;
        for (i, (request, op)) in more.iter().enumerate() {
            let entry = Entry { request: *request, command: to_command(op, 5000 + i as u64) };
            prop_assert_eq!(real.apply(base + i as u64, &entry), restored.apply(base + i as u64, &entry));
        }
        prop_assert!(restored == real);
    }
}

#[test]
fn invalid_factors_error_text_names_the_rule() {
    let mut s = Pinset::new();
    let err = s.apply(1, &pin_cmd(pin(1, 3, 2, &[1, 2], 10))).unwrap_err();
    assert!(matches!(
        err,
        ApplyError::Invalid(PinValidationError::ReplicationFactor { .. })
    ));
    assert!(err.to_string().contains("min is larger than max"), "{err}");
}

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::transcript;

fn cid(n: u64) -> Cid {
    let mut bytes = vec![0x12, 0x20];
    bytes.extend(n.to_be_bytes());
    bytes.extend([0xCD; 24]);
    Cid::from_bytes(&bytes).unwrap()
}

fn config() -> TrackerConfig {
    TrackerConfig {
        concurrent_pins: 2,
        concurrent_unpins: 1,
        queue_max: 100,
        attempts_max: 3,
        backoff_base_ms: 100,
        backoff_max_ms: 1000,
        reconcile_interval_ms: 60_000,
        op_timeout_ms: 10_000,
    }
}

/// Drains every output, returning the commands and the wake-up time.
fn drain(t: &mut Tracker, now: Millis) -> (Vec<IpfsCommand>, Millis) {
    let mut cmds = Vec::new();
    loop {
        match t.poll_output(now) {
            Output::Command(c) => cmds.push(c),
            Output::Timeout(at) => return (cmds, at),
        }
    }
}

/// Parses a transcript's listed pin: `name[*][:type]`.
fn listed_pin(word: &str, cid_of: &dyn Fn(&str) -> Cid) -> ListedPin {
    let (name, kind) = word.split_once(':').unwrap_or((word, "recursive"));
    let pin_type = match kind.split_once('=') {
        None if kind == "recursive" => IpfsPinType::Recursive { max_depth: None },
        None if kind == "direct" => IpfsPinType::Direct,
        None if kind == "indirect" => IpfsPinType::Indirect,
        Some(("recursive", depth)) => IpfsPinType::Recursive {
            max_depth: Some(depth.parse().expect("depth")),
        },
        _ => panic!("bad pin type {kind}"),
    };
    ListedPin {
        cid: cid_of(name.trim_end_matches('*')),
        pin_type,
        by_cluster: name.ends_with('*'),
    }
}

// ---- transcripts ----------------------------------------------------------------

/// Runs one transcript script: inputs as lines, outputs rendered as `< …` lines.
///
/// Lines: `at MS` (time passes), `desire X pin|direct|depth=N|remote|sharded|none`,
/// `done OP ok|err MSG`, `list OP ok PINS…|err MSG` (pins as `X[*][:type]`,
/// see [`listed_pin`]), `tick`, `recover [X]`, `complete`
/// (`Input::DesiredComplete`), `restart EPOCH` (a new tracker instance),
/// and the queries `status X`, `items` (the CIDs the tracker keeps) and
/// `counts`. `OP` is a number of the current instance or `EPOCH.NUMBER`.
fn run_script(script: &str) -> String {
    let names: Vec<&str> = ["A", "B", "C", "D", "E", "F", "G", "H"].to_vec();
    let cid_of = |name: &str| {
        cid(names
            .iter()
            .position(|n| *n == name)
            .expect("unknown cid name") as u64)
    };
    let name_of = |c: &Cid| {
        names[(0..names.len())
            .find(|i| cid(*i as u64) == *c)
            .expect("cid")]
    };
    let mut now = Millis(0);
    let mut epoch = 0u16;
    let mut t = Tracker::new(config(), epoch, now).expect("valid config");
    let mut out = String::new();
    // `3` is op 3 of the current instance, `1.3` op 3 of the one with epoch 1.
    let op_of = |word: &str, epoch: u16| match word.split_once('.') {
        Some((e, seq)) => OpId::new(e.parse().expect("epoch"), seq.parse().expect("op")),
        None => OpId::new(epoch, word.parse().expect("op")),
    };
    for line in script.lines() {
        if line.starts_with("< ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        let words: Vec<&str> = line.split_whitespace().collect();
        let input = match words.as_slice() {
            [] | ["#", ..] => continue,
            ["at", ms] => {
                now = Millis(ms.parse().expect("ms"));
                Input::Tick
            }
            ["desire", name, what] => Input::Desired {
                cid: cid_of(name),
                desire: match *what {
                    "pin" => Some(Desire::Pin { max_depth: -1 }),
                    "direct" => Some(Desire::Pin { max_depth: 0 }),
                    depth if depth.starts_with("depth=") => Some(Desire::Pin {
                        max_depth: depth["depth=".len()..].parse().expect("depth"),
                    }),
                    "remote" => Some(Desire::Remote),
                    "sharded" => Some(Desire::Sharded),
                    "none" => None,
                    other => panic!("bad desire {other}"),
                },
            },
            ["done", op, "ok"] => Input::IpfsDone {
                op: op_of(op, epoch),
                result: Ok(()),
            },
            ["done", op, "err", msg @ ..] => Input::IpfsDone {
                op: op_of(op, epoch),
                result: Err(msg.join(" ")),
            },
            // `A*` is a pin that carries the cluster's mark; `A:direct`,
            // `A:indirect`, `A:recursive=3` give its type (default: recursive,
            // depth not reported).
            ["list", op, "ok", pins @ ..] => Input::IpfsPins {
                op: op_of(op, epoch),
                result: Ok(pins.iter().map(|p| listed_pin(p, &cid_of)).collect()),
            },
            ["list", op, "err", msg @ ..] => Input::IpfsPins {
                op: op_of(op, epoch),
                result: Err(msg.join(" ")),
            },
            ["tick"] => Input::Tick,
            ["complete"] => Input::DesiredComplete,
            // A new tracker instance (the peer restarted), with this epoch.
            ["restart", e] => {
                epoch = e.parse().expect("epoch");
                t = Tracker::new(config(), epoch, now).expect("valid config");
                Input::Tick
            }
            ["recover"] => Input::Recover { cid: None },
            ["recover", name] => Input::Recover {
                cid: Some(cid_of(name)),
            },
            ["status", name] => {
                let s = t.status(&cid_of(name));
                out.push_str(&format!(
                    "< {} attempts={} priority={} error={:?}\n",
                    s.status, s.attempts, s.priority, s.error
                ));
                continue;
            }
            ["counts"] => {
                let c = t.counts();
                out.push_str(&format!(
                    "< queued={} in_flight={} failed={} pinned={}\n",
                    c.queued, c.in_flight, c.failed, c.pinned
                ));
                continue;
            }
            ["items"] => {
                let known: Vec<&str> = t.statuses().map(|(c, _)| name_of(c)).collect();
                out.push_str(&format!("< items {}\n", known.join(" ")));
                continue;
            }
            other => panic!("bad transcript line {other:?}"),
        };
        t.handle_input(input, now);
        t.check_invariants().expect("invariants");
        let (cmds, wake) = drain(&mut t, now);
        for c in cmds {
            let line = match c {
                IpfsCommand::Pin { op, cid, max_depth } => {
                    format!("pin op={} {} depth={max_depth}", op.seq(), name_of(&cid))
                }
                IpfsCommand::Unpin { op, cid } => {
                    format!("unpin op={} {}", op.seq(), name_of(&cid))
                }
                IpfsCommand::ListPins { op } => format!("list op={}", op.seq()),
            };
            out.push_str(&format!("< {line}\n"));
        }
        out.push_str(&format!("< wake {}\n", wake.0));
        t.check_invariants().expect("invariants");
    }
    out
}

#[test]
fn transcripts() {
    transcript::check_dir(
        concat!(env!("CARGO_MANIFEST_DIR"), "/src/tracker/testdata"),
        run_script,
    );
}

// ---- unit tests -------------------------------------------------------------------

#[test]
fn first_command_lists_ipfs_and_nothing_is_decided_before_it() {
    let mut t = Tracker::new(config(), 0, Millis(0)).expect("valid config");
    t.handle_input(
        Input::Desired {
            cid: cid(1),
            desire: Some(Desire::Pin { max_depth: -1 }),
        },
        Millis(0),
    );
    let (cmds, _) = drain(&mut t, Millis(0));
    assert_eq!(cmds, vec![IpfsCommand::ListPins { op: OpId(1) }]);
    assert_eq!(t.status(&cid(1)).status, TrackerStatus::PinQueued);
}

#[test]
fn user_pins_outside_the_cluster_are_never_touched() {
    let mut t = Tracker::new(config(), 0, Millis(0)).expect("valid config");
    drain(&mut t, Millis(0));
    t.handle_input(
        Input::IpfsPins {
            op: OpId(1),
            result: Ok(vec![ListedPin {
                cid: cid(7),
                pin_type: IpfsPinType::Recursive { max_depth: None },
                by_cluster: false,
            }]),
        },
        Millis(1),
    );
    let (cmds, _) = drain(&mut t, Millis(1));
    assert!(cmds.is_empty(), "{cmds:?}");
    assert_eq!(t.status(&cid(7)).status, TrackerStatus::Unpinned);
}

#[test]
fn validate_refuses_settings_that_spin_or_stall() {
    assert_eq!(config().validate(), Ok(()));
    assert_eq!(TrackerConfig::default().validate(), Ok(()));
    type Setter = fn(&mut TrackerConfig);
    let zeroes: [(&str, Setter); 8] = [
        ("concurrent_pins", |c| c.concurrent_pins = 0),
        ("concurrent_unpins", |c| c.concurrent_unpins = 0),
        ("queue_max", |c| c.queue_max = 0),
        ("attempts_max", |c| c.attempts_max = 0),
        ("backoff_base_ms", |c| c.backoff_base_ms = 0),
        ("backoff_max_ms", |c| c.backoff_max_ms = 0),
        ("reconcile_interval_ms", |c| c.reconcile_interval_ms = 0),
        ("op_timeout_ms", |c| c.op_timeout_ms = 0),
    ];
    for (name, set) in zeroes {
        let mut c = config();
        set(&mut c);
        assert_eq!(
            c.validate(),
            Err(TrackerConfigError::Zero(name)),
            "{name} = 0 accepted"
        );
        assert!(Tracker::new(c, 0, Millis(0)).is_err());
    }
    let mut c = config();
    c.backoff_base_ms = c.backoff_max_ms + 1;
    assert_eq!(
        c.validate(),
        Err(TrackerConfigError::BackoffOrder {
            base: 1001,
            max: 1000
        })
    );
    c.backoff_base_ms = c.backoff_max_ms;
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn op_ids_carry_the_epoch() {
    let id = OpId::new(7, 42);
    assert_eq!((id.epoch(), id.seq()), (7, 42));
    assert_ne!(OpId::new(1, 1), OpId::new(2, 1));
    assert_eq!(
        OpId::new(3, u64::MAX).epoch(),
        3,
        "seq never spills into the epoch"
    );
}

#[test]
fn answers_meant_for_an_earlier_instance_never_match() {
    let mut old = Tracker::new(config(), 1, Millis(0)).expect("valid config");
    let (old_cmds, _) = drain(&mut old, Millis(0));
    let mut t = Tracker::new(config(), 2, Millis(0)).expect("valid config");
    let (cmds, _) = drain(&mut t, Millis(0));
    let [IpfsCommand::ListPins { op: old_op }] = old_cmds[..] else {
        panic!("{old_cmds:?}")
    };
    let [IpfsCommand::ListPins { op }] = cmds[..] else {
        panic!("{cmds:?}")
    };
    assert_ne!(old_op, op);
    // The earlier instance's listing (of a pin the new one wants) changes nothing.
    t.handle_input(
        Input::Desired {
            cid: cid(1),
            desire: Some(Desire::Pin { max_depth: -1 }),
        },
        Millis(1),
    );
    t.handle_input(
        Input::IpfsPins {
            op: old_op,
            result: Ok(vec![]),
        },
        Millis(1),
    );
    assert_eq!(drain(&mut t, Millis(1)).0, vec![]);
    t.handle_input(
        Input::IpfsPins {
            op,
            result: Ok(vec![]),
        },
        Millis(2),
    );
    let (cmds, _) = drain(&mut t, Millis(2));
    assert!(matches!(cmds[..], [IpfsCommand::Pin { op: pin_op, .. }] if pin_op.epoch() == 2));
}

/// A tracker with work in every state: queued, in flight, failed, timed out.
fn busy_tracker() -> Tracker {
    let mut t = Tracker::new(config(), 0, Millis(0)).expect("valid config");
    drain(&mut t, Millis(0));
    t.handle_input(
        Input::IpfsPins {
            op: OpId::new(0, 1),
            result: Ok(vec![ListedPin {
                cid: cid(20),
                pin_type: IpfsPinType::Recursive { max_depth: None },
                by_cluster: true,
            }]),
        },
        Millis(0),
    );
    for n in 0..5 {
        t.handle_input(
            Input::Desired {
                cid: cid(n),
                desire: Some(Desire::Pin { max_depth: -1 }),
            },
            Millis(0),
        );
    }
    let (cmds, _) = drain(&mut t, Millis(0));
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    // The first pin times out; the second fails.
    let IpfsCommand::Pin { op, .. } = cmds[1] else {
        panic!("{cmds:?}")
    };
    t.handle_input(
        Input::IpfsDone {
            op,
            result: Err("boom".into()),
        },
        Millis(1),
    );
    t.handle_input(Input::Tick, Millis(10_000));
    // Only now may the marked pin go: an unpin in flight too.
    t.handle_input(Input::DesiredComplete, Millis(10_000));
    drain(&mut t, Millis(10_000));
    t.check_invariants().expect("a consistent tracker");
    assert_eq!(t.unpins_in_flight, 1);
    let c = t.counts();
    assert!(c.queued > 0 && c.in_flight > 0 && c.failed > 0, "{c:?}");
    assert!(!t.timed_out.is_empty());
    t
}

#[test]
fn check_invariants_catches_each_broken_count() {
    type Break = fn(&mut Tracker);
    let breaks: [(&str, Break); 13] = [
        ("queued count", |t| t.queued += 1),
        ("pinned count", |t| t.pinned += 1),
        ("out of step with its view", |t| {
            let item = t.items.values_mut().next().expect("an item");
            item.counted_pinned = !item.counted_pinned;
        }),
        ("failed count", |t| t.failed += 1),
        ("pins in flight count", |t| t.pins_in_flight += 1),
        ("unpins in flight count", |t| t.unpins_in_flight += 1),
        ("in-flight map size", |t| {
            t.in_flight.insert(OpId::new(9, 9), cid(0));
        }),
        ("pin concurrency", |t| t.config.concurrent_pins = 1),
        ("unpin concurrency", |t| t.config.concurrent_unpins = 0),
        ("queue bound", |t| t.config.queue_max = 1),
        ("deadline per in-flight op", |t| {
            t.deadlines.insert((Millis(1), OpId::new(9, 9)));
        }),
        ("timed-out op still in flight", |t| {
            let (op, cid) = t.in_flight.first_key_value().expect("in flight");
            t.timed_out.insert(*op, (cid.clone(), OpKind::Unpin));
        }),
        ("late listings bound", |t| {
            t.late_listings.extend((0..5).map(|n| OpId::new(9, n)));
        }),
    ];
    for (what, corrupt) in breaks {
        let mut t = busy_tracker();
        corrupt(&mut t);
        let err = t.check_invariants().expect_err(what);
        assert!(err.contains(what), "{what}: got {err}");
    }
    let mut t = busy_tracker();
    let (op, c) = t.in_flight.pop_first().expect("in flight");
    t.in_flight.insert(op, cid(99));
    let err = t.check_invariants().expect_err("unregistered op");
    assert!(err.contains("not registered"), "{err} for {c}");
    let mut t = busy_tracker();
    let needy = Item {
        desire: Some(Desire::Pin { max_depth: -1 }),
        ipfs: IpfsView::NotPinned,
        ..Item::default()
    };
    t.items.insert(cid(51), needy);
    let err = t.check_invariants().expect_err("item without its op");
    assert!(err.contains("has no operation"), "{err}");
    let mut t = busy_tracker();
    t.items.insert(cid(50), Default::default());
    let err = t.check_invariants().expect_err("empty item");
    assert!(err.contains("empty item kept"), "{err}");
    let mut t = busy_tracker();
    for n in 0..=TIMED_OUT_REMEMBERED_MAX as u64 {
        t.timed_out.insert(OpId::new(9, n), (cid(0), OpKind::Unpin));
    }
    let err = t.check_invariants().expect_err("timed-out bound");
    assert!(err.contains("timed-out ops bound"), "{err}");
}

#[test]
fn a_full_queue_fails_operations_until_there_is_room() {
    let small = TrackerConfig {
        concurrent_pins: 1,
        queue_max: 1,
        ..config()
    };
    let mut t = Tracker::new(small, 0, Millis(0)).expect("valid config");
    drain(&mut t, Millis(0));
    t.handle_input(
        Input::IpfsPins {
            op: OpId::new(0, 1),
            result: Ok(vec![]),
        },
        Millis(0),
    );
    let want = |t: &mut Tracker, n| {
        t.handle_input(
            Input::Desired {
                cid: cid(n),
                desire: Some(Desire::Pin { max_depth: -1 }),
            },
            Millis(0),
        );
        t.check_invariants().expect("invariants");
    };
    want(&mut t, 1);
    let (first, _) = drain(&mut t, Millis(0));
    want(&mut t, 2);
    want(&mut t, 3);
    let full = t.status(&cid(3));
    assert_eq!(full.status, TrackerStatus::PinError);
    assert_eq!(full.error, QUEUE_FULL_ERROR);
    assert_eq!(t.counts().failed, 1);
    assert_eq!(t.counts().queued, 1);
    let [IpfsCommand::Pin { op, .. }] = first[..] else {
        panic!("{first:?}")
    };
    t.handle_input(Input::IpfsDone { op, result: Ok(()) }, Millis(1));
    let (cmds, wake) = drain(&mut t, Millis(1));
    assert!(matches!(&cmds[..], [IpfsCommand::Pin { cid: c, .. }] if *c == cid(2)));
    assert_eq!(
        wake,
        Millis(config().backoff_max_ms),
        "the full queue's retry"
    );
    t.handle_input(Input::Tick, wake);
    t.check_invariants().expect("invariants");
    assert_eq!(t.status(&cid(3)).status, TrackerStatus::PinQueued);
    assert_eq!(t.counts().failed, 0);
}

#[test]
fn cancelled_queue_entries_are_compacted() {
    let mut t = Tracker::new(
        TrackerConfig {
            queue_max: 10_000,
            ..config()
        },
        0,
        Millis(0),
    )
    .expect("valid config");
    drain(&mut t, Millis(0));
    t.handle_input(
        Input::IpfsPins {
            op: OpId::new(0, 1),
            result: Ok(vec![]),
        },
        Millis(0),
    );
    // Two pins fill the slots; the rest queue and are cancelled again.
    for n in 0..3000 {
        for desire in [Some(Desire::Pin { max_depth: -1 }), None] {
            t.handle_input(
                Input::Desired {
                    cid: cid(n),
                    desire,
                },
                Millis(0),
            );
            if n < 2 {
                break;
            }
        }
    }
    let entries = t.queue_new.len() + t.queue_retry.len() + t.queue_unpin.len();
    assert_eq!(t.counts().queued, 2);
    assert!(entries <= 2 * 2 + 1024 + 1, "{entries} queue entries kept");
    assert!(entries > 2, "compaction runs only past the slack");
    let (cmds, _) = drain(&mut t, Millis(0));
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    t.check_invariants().expect("invariants");
}

#[test]
fn desire_of_a_pin_for_a_peer() {
    use crate::pin::{PinMode, PinOptions};
    let (here, there) = (PeerId::synthetic(1), PeerId::synthetic(2));
    let options = PinOptions {
        replication_factor_min: 1,
        replication_factor_max: 1,
        mode: PinMode::Direct,
        ..PinOptions::default()
    };
    let mut pin = Pin::new(cid(1), options, Millis(0));
    pin.allocations = [here.clone()].into_iter().collect();
    assert_eq!(Desire::of(&pin, &here), Desire::Pin { max_depth: 0 });
    assert_eq!(Desire::of(&pin, &there), Desire::Remote);
    pin.pin_type = PinType::Meta;
    assert_eq!(Desire::of(&pin, &here), Desire::Sharded);
    assert_eq!(Desire::of(&pin, &there), Desire::Sharded);
}

#[test]
fn only_the_latest_late_listings_are_used() {
    let mut t = Tracker::new(config(), 0, Millis(0)).expect("valid config");
    t.handle_input(
        Input::Desired {
            cid: cid(1),
            desire: Some(Desire::Pin { max_depth: -1 }),
        },
        Millis(0),
    );
    let mut now = Millis(0);
    let mut listings = Vec::new();
    for _ in 0..=LATE_LISTINGS_MAX {
        let (cmds, wake) = drain(&mut t, now);
        let [IpfsCommand::ListPins { op }] = cmds[..] else {
            panic!("{cmds:?}")
        };
        listings.push(op);
        // Times out, then the next one goes out after the back-off.
        t.handle_input(Input::Tick, wake);
        now = wake.plus(config().backoff_base_ms);
        t.handle_input(Input::Tick, now);
    }
    let answer = |op| Input::IpfsPins {
        op,
        result: Ok(vec![]),
    };
    // The oldest was forgotten: its answer changes nothing.
    t.handle_input(answer(listings[0]), now);
    assert_eq!(t.status(&cid(1)).status, TrackerStatus::ClusterError);
    t.handle_input(answer(listings[1]), now);
    let (cmds, _) = drain(&mut t, now);
    assert!(
        cmds.iter().any(|c| matches!(c, IpfsCommand::Pin { .. })),
        "{cmds:?}"
    );
}

#[test]
fn timed_out_ops_are_remembered_up_to_a_bound() {
    let wide = TrackerConfig {
        concurrent_pins: 1000,
        queue_max: 10_000,
        attempts_max: 100,
        ..config()
    };
    let mut t = Tracker::new(wide, 0, Millis(0)).expect("valid config");
    drain(&mut t, Millis(0));
    t.handle_input(
        Input::IpfsPins {
            op: OpId::new(0, 1),
            result: Ok(vec![]),
        },
        Millis(0),
    );
    for n in 0..1000 {
        t.handle_input(
            Input::Desired {
                cid: cid(n),
                desire: Some(Desire::Pin { max_depth: -1 }),
            },
            Millis(0),
        );
    }
    // Nothing is ever answered: every pin times out, again and again.
    let mut sent = Vec::new();
    let mut now = Millis(0);
    for _ in 0..1000 {
        if sent.len() > TIMED_OUT_REMEMBERED_MAX + 1000 {
            break;
        }
        let (cmds, wake) = drain(&mut t, now);
        sent.extend(cmds.into_iter().filter_map(|c| match c {
            IpfsCommand::Pin { op, cid, .. } => Some((op, cid)),
            _ => None,
        }));
        now = wake;
        t.handle_input(Input::Tick, now);
        t.check_invariants().expect("invariants");
    }
    assert_eq!(t.timed_out.len(), TIMED_OUT_REMEMBERED_MAX);
    // The oldest answer is no longer used; a recent late one is.
    let (first_op, first_cid) = sent[0].clone();
    let before = t.items[&first_cid].ipfs;
    assert_eq!(before, IpfsView::Unsure);
    t.handle_input(
        Input::IpfsDone {
            op: first_op,
            result: Ok(()),
        },
        now,
    );
    assert_eq!(t.items[&first_cid].ipfs, before);
    let (late_op, late_cid) = t
        .timed_out
        .iter()
        .next_back()
        .map(|(op, (c, _))| (*op, c.clone()))
        .expect("timed out");
    t.handle_input(
        Input::IpfsDone {
            op: late_op,
            result: Ok(()),
        },
        now,
    );
    let item = &t.items[&late_cid];
    assert!(matches!(item.ipfs, IpfsView::Pinned(_)), "{item:?}");
}

// ---- properties --------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    Desire(u64, Option<Desire>),
    Advance(u64),
    Recover,
    /// IPFS stops failing.
    Heal,
    /// The peer restarts: a new tracker instance is fed the pinset as it was
    /// this many changes ago (a snapshot), and is not told it is complete.
    Restart(usize),
    /// The pinset caught up: every current desire is fed, then `DesiredComplete`.
    CatchUp,
}

fn arb_desire() -> impl Strategy<Value = Option<Desire>> {
    prop_oneof![
        3 => Just(Some(Desire::Pin { max_depth: -1 })),
        1 => Just(Some(Desire::Pin { max_depth: 0 })),
        1 => Just(Some(Desire::Pin { max_depth: 2 })),
        1 => Just(Some(Desire::Remote)),
        1 => Just(Some(Desire::Sharded)),
        2 => Just(None),
    ]
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => (0u64..12, arb_desire()).prop_map(|(n, d)| Step::Desire(n, d)),
        4 => (0u64..3000).prop_map(Step::Advance),
        2 => Just(Step::Recover),
        1 => (0usize..6).prop_map(Step::Restart),
        1 => Just(Step::CatchUp),
    ]
}

/// Whether a pin of `depth` (0 direct, -1 full) holds what `want` asks.
fn covers(depth: i32, want: i32) -> bool {
    match depth {
        -1 => true,
        0 => want == 0,
        k => (0..=k).contains(&want),
    }
}

/// A fake daemon: answers every command at once, failing on the given
/// schedule. Like Kubo it holds one pin per CID: pinning what a pin already
/// covers changes nothing, pinning more widens the pin (keeping whose it is),
/// an unpin removes it whoever made it.
struct FakeIpfs {
    /// Depth of each pin (0 direct, -1 full) and whether it bears the cluster's mark.
    held: BTreeMap<Cid, (i32, bool)>,
    /// Users' own pins at the start.
    user_pins: BTreeMap<Cid, i32>,
    /// User pins a cluster pin widened (the cluster may remove them).
    replaced: BTreeSet<Cid>,
    /// Listed as indirect (inside some other DAG) when not pinned themselves.
    indirect: BTreeSet<Cid>,
    fail: Vec<bool>,
    calls: usize,
}

impl FakeIpfs {
    fn new(user: &BTreeMap<u64, bool>, leftover: &BTreeSet<u64>, indirect: &BTreeSet<u64>) -> Self {
        let user_pins: BTreeMap<Cid, i32> = user
            .iter()
            .map(|(n, recursive)| (cid(*n), if *recursive { -1 } else { 0 }))
            .collect();
        let mut held: BTreeMap<Cid, (i32, bool)> =
            leftover.iter().map(|n| (cid(*n), (-1, true))).collect();
        held.extend(user_pins.iter().map(|(c, d)| (c.clone(), (*d, false))));
        FakeIpfs {
            held,
            user_pins,
            replaced: BTreeSet::new(),
            indirect: indirect.iter().map(|n| cid(*n)).collect(),
            fail: vec![],
            calls: 0,
        }
    }

    /// A user's own pin, which the cluster must never remove.
    fn is_users(&self, cid: &Cid) -> bool {
        self.held.get(cid).is_some_and(|(_, marked)| !marked) && !self.replaced.contains(cid)
    }

    fn answer(&mut self, cmd: &IpfsCommand) -> Input {
        let fail = self.fail.get(self.calls).copied().unwrap_or(false);
        self.calls += 1;
        let done = |op: &OpId| Input::IpfsDone {
            op: *op,
            result: if fail { Err("boom".into()) } else { Ok(()) },
        };
        match cmd {
            IpfsCommand::Pin { op, cid, max_depth } => {
                if !fail {
                    let want = (*max_depth).max(-1);
                    match self.held.get_mut(cid) {
                        None => {
                            self.held.insert(cid.clone(), (want, true));
                        }
                        Some((depth, _)) if covers(*depth, want) => {}
                        Some((depth, marked)) => {
                            if !*marked {
                                self.replaced.insert(cid.clone());
                            }
                            *depth = want;
                        }
                    }
                }
                done(op)
            }
            IpfsCommand::Unpin { op, cid } => {
                if !fail {
                    self.held.remove(cid);
                }
                done(op)
            }
            IpfsCommand::ListPins { op } => Input::IpfsPins {
                op: *op,
                result: if fail {
                    Err("down".into())
                } else {
                    let pins = self.held.iter().map(|(c, (depth, marked))| ListedPin {
                        cid: c.clone(),
                        // A daemon that reports depths (Kubo does not: the
                        // transcripts cover that).
                        pin_type: if *depth == 0 {
                            IpfsPinType::Direct
                        } else {
                            IpfsPinType::Recursive {
                                max_depth: Some(*depth),
                            }
                        },
                        by_cluster: *marked,
                    });
                    let indirect = self
                        .indirect
                        .iter()
                        .filter(|c| !self.held.contains_key(*c))
                        .map(|c| ListedPin {
                            cid: c.clone(),
                            pin_type: IpfsPinType::Indirect,
                            by_cluster: false,
                        });
                    Ok(pins.chain(indirect).collect())
                },
            },
        }
    }
}

type Desired = BTreeMap<Cid, Option<Desire>>;

/// One tracker instance and what the model knows it was told.
struct Instance {
    t: Tracker,
    /// Desires fed to this instance.
    fed: Desired,
    /// Told `DesiredComplete`.
    complete: bool,
    /// CIDs whose pin this instance's own operation made.
    made: BTreeSet<Cid>,
}

impl Instance {
    fn start(epoch: u16, now: Millis, snapshot: &Desired) -> Instance {
        let mut t = Tracker::new(config(), epoch, now).expect("valid config");
        for (c, d) in snapshot {
            if d.is_some() {
                t.handle_input(
                    Input::Desired {
                        cid: c.clone(),
                        desire: *d,
                    },
                    now,
                );
            }
        }
        let fed = snapshot
            .iter()
            .filter(|(_, d)| d.is_some())
            .map(|(c, d)| (c.clone(), *d))
            .collect();
        Instance {
            t,
            fed,
            complete: false,
            made: BTreeSet::new(),
        }
    }

    fn feed(&mut self, c: &Cid, desire: Option<Desire>, now: Millis) {
        self.fed.insert(c.clone(), desire);
        self.t.handle_input(
            Input::Desired {
                cid: c.clone(),
                desire,
            },
            now,
        );
    }

    /// Answers commands until the tracker is idle; checks each command is
    /// one the model allows when issued.
    fn settle(&mut self, ipfs: &mut FakeIpfs, now: Millis) -> Result<(), TestCaseError> {
        for _ in 0..10_000 {
            let cmd = match self.t.poll_output(now) {
                Output::Timeout(_) => return Ok(()),
                Output::Command(cmd) => cmd,
            };
            let fed = |c: &Cid| self.fed.get(c).copied().flatten();
            match &cmd {
                IpfsCommand::Pin { cid, max_depth, .. } => prop_assert_eq!(
                    fed(cid),
                    Some(Desire::Pin {
                        max_depth: *max_depth
                    }),
                    "pin of {:?} not wanted so",
                    cid
                ),
                IpfsCommand::Unpin { cid, .. } => {
                    prop_assert!(
                        !matches!(fed(cid), Some(Desire::Pin { .. })),
                        "unpin of wanted {:?}",
                        cid
                    );
                    // Only a pin the cluster made may go, never a user's own.
                    prop_assert!(!ipfs.is_users(cid), "unpin of user pin {:?}", cid);
                    // Before the desired set is complete, only what this
                    // instance pinned itself may go.
                    prop_assert!(
                        self.complete || self.made.contains(cid),
                        "unpin of {:?} before the desired set is complete",
                        cid
                    );
                }
                IpfsCommand::ListPins { .. } => {}
            }
            let answer = ipfs.answer(&cmd);
            if let (IpfsCommand::Pin { cid, .. }, Input::IpfsDone { result: Ok(()), .. }) =
                (&cmd, &answer)
            {
                self.made.insert(cid.clone());
            }
            self.t.handle_input(answer, now);
            self.t.check_invariants().map_err(TestCaseError::fail)?;
        }
        Err(TestCaseError::fail("tracker never went idle"))
    }
}

/// Runs steps, answering commands at once; ends with a catch-up so the
/// final state can be compared with the desires.
fn run(steps: &[Step], ipfs: &mut FakeIpfs) -> Result<(Tracker, Desired, Millis), TestCaseError> {
    let mut now = Millis(0);
    let mut epoch = 0u16;
    let mut truth: Desired = BTreeMap::new();
    let mut history: Vec<Desired> = vec![truth.clone()];
    let mut inst = Instance::start(epoch, now, &truth);
    for step in steps.iter().chain([&Step::CatchUp]) {
        match step {
            Step::Desire(n, d) => {
                truth.insert(cid(*n), *d);
                history.push(truth.clone());
                inst.feed(&cid(*n), *d, now);
            }
            Step::Advance(ms) => {
                now = now.plus(*ms);
                inst.t.handle_input(Input::Tick, now);
            }
            Step::Recover => inst.t.handle_input(Input::Recover { cid: None }, now),
            Step::Heal => ipfs.fail.clear(),
            Step::Restart(ago) => {
                epoch += 1;
                let snapshot = &history[history.len() - 1 - (*ago).min(history.len() - 1)];
                inst = Instance::start(epoch, now, snapshot);
            }
            Step::CatchUp => {
                let cids: BTreeSet<Cid> = truth.keys().chain(inst.fed.keys()).cloned().collect();
                for c in cids {
                    let want = truth.get(&c).copied().flatten();
                    if inst.fed.get(&c).copied().flatten() != want {
                        inst.feed(&c, want, now);
                    }
                }
                inst.complete = true;
                inst.t.handle_input(Input::DesiredComplete, now);
            }
        }
        inst.t.check_invariants().map_err(TestCaseError::fail)?;
        inst.settle(ipfs, now)?;
    }
    Ok((inst.t, truth, now))
}

/// Whether IPFS holds at least what `max_depth` asks.
fn holds(ipfs: &FakeIpfs, c: &Cid, max_depth: i32) -> bool {
    ipfs.held
        .get(c)
        .is_some_and(|(depth, _)| covers(*depth, max_depth.max(-1)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_desired_pin_is_pinned_when_ipfs_always_succeeds(
        steps in prop::collection::vec(arb_step(), 0..80),
        user in prop::collection::btree_map(0u64..16, any::<bool>(), 0..4),
        leftover in prop::collection::btree_set(0u64..16, 0..4),
        indirect in prop::collection::btree_set(0u64..16, 0..3),
    ) {
        let mut ipfs = FakeIpfs::new(&user, &leftover, &indirect);
        let (t, desired, _) = run(&steps, &mut ipfs)?;
        for (c, d) in &desired {
            let status = t.status(c).status;
            let marked = ipfs.held.get(c).is_some_and(|(_, m)| *m);
            match d {
                Some(Desire::Pin { max_depth }) => {
                    prop_assert!(holds(&ipfs, c, *max_depth), "{:?} not held as {}", c, max_depth);
                    prop_assert_eq!(status, TrackerStatus::Pinned);
                }
                Some(Desire::Remote) => {
                    prop_assert!(!marked, "cluster pin of remote {:?} left", c);
                    prop_assert_eq!(status, TrackerStatus::Remote);
                }
                Some(Desire::Sharded) => {
                    prop_assert!(!marked, "cluster pin of sharded {:?} left", c);
                    prop_assert_eq!(status, TrackerStatus::Sharded);
                }
                None => {
                    prop_assert!(!marked, "stray cluster pin {:?} left", c);
                    prop_assert_eq!(status, TrackerStatus::Unpinned);
                }
            }
        }
        // Leftover cluster pins nobody wants are gone.
        for (c, (_, marked)) in &ipfs.held {
            if *marked {
                prop_assert!(
                    matches!(desired.get(c), Some(Some(Desire::Pin { .. }))),
                    "stray cluster pin {:?} left", c
                );
            }
        }
        // Users' pins stay, unless a cluster pin widened them.
        for (c, depth) in &ipfs.user_pins {
            if !ipfs.replaced.contains(c) {
                prop_assert_eq!(ipfs.held.get(c), Some(&(*depth, false)), "user pin {:?} lost", c);
            }
        }
        // The tracker forgets CIDs it has nothing to do with.
        let known: Vec<&Cid> = t.statuses().map(|(c, _)| c).collect();
        let wanted: Vec<&Cid> = desired.iter().filter(|(_, d)| d.is_some()).map(|(c, _)| c).collect();
        prop_assert_eq!(known, wanted);
        prop_assert_eq!(t.counts().queued + t.counts().in_flight + t.counts().failed, 0);
    }

    #[test]
    fn converges_after_failures_stop(
        steps in prop::collection::vec(arb_step(), 0..60),
        fail in prop::collection::vec(prop::bool::weighted(0.3), 0..60),
        leftover in prop::collection::btree_set(0u64..16, 0..3),
    ) {
        let mut all = steps;
        all.extend([Step::Heal, Step::CatchUp, Step::Recover, Step::Advance(120_000)]);
        let mut ipfs = FakeIpfs::new(&BTreeMap::new(), &leftover, &BTreeSet::new());
        ipfs.fail = fail;
        let (t, desired, _) = run(&all, &mut ipfs)?;
        for (c, d) in &desired {
            if let Some(Desire::Pin { max_depth }) = d {
                prop_assert_eq!(t.status(c).status, TrackerStatus::Pinned);
                prop_assert!(holds(&ipfs, c, *max_depth));
            }
        }
        for (c, (_, marked)) in &ipfs.held {
            prop_assert!(
                !*marked || matches!(desired.get(c), Some(Some(Desire::Pin { .. }))),
                "stray cluster pin {:?} left", c
            );
        }
    }
}

#[test]
fn desire_and_desired_report_what_the_driver_fed() {
    let mut t = Tracker::new(config(), 0, Millis(0)).expect("valid config");
    let pin = Desire::Pin { max_depth: 0 };
    for (n, desire) in [(1, Some(pin)), (2, Some(Desire::Remote)), (3, None)] {
        t.handle_input(
            Input::Desired {
                cid: cid(n),
                desire,
            },
            Millis(0),
        );
    }
    assert_eq!(t.desire(&cid(1)), Some(pin));
    assert_eq!(t.desire(&cid(2)), Some(Desire::Remote));
    assert_eq!(t.desire(&cid(3)), None);
    assert_eq!(t.desire(&cid(4)), None);
    let desired: Vec<Cid> = t.desired().cloned().collect();
    assert_eq!(desired, vec![cid(1), cid(2)]);
}

#[test]
fn statuses_of_many_cids_are_each_cids_status_in_any_order() {
    let mut t = Tracker::new(config(), 0, Millis(0)).expect("valid config");
    // Every third CID of 0..300 is known, in a mix of states.
    for n in (0..300).step_by(3) {
        let desire = match n % 4 {
            0 => Some(Desire::Remote),
            1 => Some(Desire::Sharded),
            _ => Some(Desire::Pin { max_depth: -1 }),
        };
        t.handle_input(
            Input::Desired {
                cid: cid(n),
                desire,
            },
            Millis(0),
        );
    }
    let (cmds, _) = drain(&mut t, Millis(0));
    assert!(!cmds.is_empty());
    let asks: Vec<Vec<u64>> = vec![
        (0..300).collect(),
        (0..300).step_by(3).collect(),
        vec![1, 2, 299, 300, 1000],
        vec![0, 297],
        (0..300).rev().collect(),
        vec![5, 5, 6],
        vec![],
    ];
    for ask in asks {
        let cids: Vec<Cid> = ask.into_iter().map(cid).collect();
        let one_by_one: Vec<PinStatus> = cids.iter().map(|c| t.status(c)).collect();
        assert_eq!(t.statuses_of(&cids), one_by_one);
    }
}

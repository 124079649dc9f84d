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
fn run_script(script: &str) -> String {
    let names: Vec<&str> = ["A", "B", "C", "D", "E", "F"].to_vec();
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

// ---- properties --------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    Desire(u64, Option<Desire>),
    Advance(u64),
    Recover,
    /// IPFS stops failing.
    Heal,
}

fn arb_step() -> impl Strategy<Value = Step> {
    let desire = prop_oneof![
        3 => Just(Some(Desire::Pin { max_depth: -1 })),
        1 => Just(Some(Desire::Pin { max_depth: 0 })),
        1 => Just(Some(Desire::Remote)),
        1 => Just(Some(Desire::Sharded)),
        2 => Just(None),
    ];
    prop_oneof![
        6 => (0u64..12, desire).prop_map(|(n, d)| Step::Desire(n, d)),
        2 => (0u64..3000).prop_map(Step::Advance),
        1 => Just(Step::Recover),
    ]
}

/// A fake daemon: answers every command at once, failing on the given schedule.
struct FakeIpfs {
    pins: BTreeSet<Cid>,
    user_pins: BTreeSet<Cid>,
    fail: Vec<bool>,
    calls: usize,
}

impl FakeIpfs {
    fn answer(&mut self, cmd: &IpfsCommand) -> Input {
        let fail = self.fail.get(self.calls).copied().unwrap_or(false);
        self.calls += 1;
        match cmd {
            IpfsCommand::Pin { op, cid, .. } => {
                if !fail {
                    self.pins.insert(cid.clone());
                }
                Input::IpfsDone {
                    op: *op,
                    result: if fail { Err("boom".into()) } else { Ok(()) },
                }
            }
            IpfsCommand::Unpin { op, cid } => {
                if !fail {
                    self.pins.remove(cid);
                }
                Input::IpfsDone {
                    op: *op,
                    result: if fail { Err("boom".into()) } else { Ok(()) },
                }
            }
            IpfsCommand::ListPins { op } => Input::IpfsPins {
                op: *op,
                result: if fail {
                    Err("down".into())
                } else {
                    let ours = self.pins.iter().map(|c| ListedPin {
                        cid: c.clone(),
                        pin_type: IpfsPinType::Recursive { max_depth: None },
                        by_cluster: true,
                    });
                    let users = self
                        .user_pins
                        .iter()
                        .filter(|c| !self.pins.contains(*c))
                        .map(|c| ListedPin {
                            cid: c.clone(),
                            pin_type: IpfsPinType::Recursive { max_depth: None },
                            by_cluster: false,
                        });
                    Ok(ours.chain(users).collect())
                },
            },
        }
    }
}

type Desired = BTreeMap<Cid, Option<Desire>>;

/// Runs steps, answering commands at once; checks each command is wanted when issued.
fn run(steps: &[Step], ipfs: &mut FakeIpfs) -> Result<(Tracker, Desired, Millis), TestCaseError> {
    let mut now = Millis(0);
    let mut t = Tracker::new(config(), 0, now).expect("valid config");
    let mut desired: BTreeMap<Cid, Option<Desire>> = BTreeMap::new();
    let settle = |t: &mut Tracker,
                  ipfs: &mut FakeIpfs,
                  now: Millis,
                  desired: &BTreeMap<Cid, Option<Desire>>| {
        for _ in 0..10_000 {
            match t.poll_output(now) {
                Output::Timeout(_) => return Ok(()),
                Output::Command(cmd) => {
                    let want = |c: &Cid| desired.get(c).copied().flatten();
                    match &cmd {
                        IpfsCommand::Pin { cid, .. } => {
                            prop_assert!(
                                matches!(want(cid), Some(Desire::Pin { .. })),
                                "pin of unwanted {:?}",
                                cid
                            )
                        }
                        IpfsCommand::Unpin { cid, .. } => {
                            prop_assert!(
                                !matches!(want(cid), Some(Desire::Pin { .. })),
                                "unpin of wanted {:?}",
                                cid
                            );
                            // Only a pin the cluster made may go, never a user's own.
                            prop_assert!(
                                !ipfs.user_pins.contains(cid) || ipfs.pins.contains(cid),
                                "unpin of user pin {:?}",
                                cid
                            );
                        }
                        IpfsCommand::ListPins { .. } => {}
                    }
                    let answer = ipfs.answer(&cmd);
                    t.handle_input(answer, now);
                    t.check_invariants().map_err(TestCaseError::fail)?;
                }
            }
        }
        Err(TestCaseError::fail("tracker never went idle"))
    };
    for step in steps {
        match step {
            Step::Desire(n, d) => {
                desired.insert(cid(*n), *d);
                t.handle_input(
                    Input::Desired {
                        cid: cid(*n),
                        desire: *d,
                    },
                    now,
                );
            }
            Step::Advance(ms) => {
                now = now.plus(*ms);
                t.handle_input(Input::Tick, now);
            }
            Step::Recover => t.handle_input(Input::Recover { cid: None }, now),
            Step::Heal => ipfs.fail.clear(),
        }
        t.check_invariants().map_err(TestCaseError::fail)?;
        settle(&mut t, ipfs, now, &desired)?;
    }
    Ok((t, desired, now))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_desired_pin_is_pinned_when_ipfs_always_succeeds(
        steps in prop::collection::vec(arb_step(), 0..80),
        user in prop::collection::btree_set(0u64..16, 0..4),
    ) {
        let user_pins: BTreeSet<Cid> = user.into_iter().map(cid).collect();
        let mut ipfs = FakeIpfs { pins: BTreeSet::new(), user_pins: user_pins.clone(), fail: vec![], calls: 0 };
        let (t, desired, _) = run(&steps, &mut ipfs)?;
        for (c, d) in &desired {
            let status = t.status(c).status;
            match d {
                Some(Desire::Pin { .. }) => {
                    prop_assert!(ipfs.pins.contains(c) || user_pins.contains(c));
                    prop_assert_eq!(status, TrackerStatus::Pinned);
                }
                Some(Desire::Remote) => {
                    prop_assert!(!ipfs.pins.contains(c));
                    prop_assert_eq!(status, TrackerStatus::Remote);
                }
                Some(Desire::Sharded) => prop_assert_eq!(status, TrackerStatus::Sharded),
                None => {
                    prop_assert!(!ipfs.pins.contains(c), "stray cluster pin {:?} left", c);
                    prop_assert_eq!(status, TrackerStatus::Unpinned);
                }
            }
        }
    }

    #[test]
    fn converges_after_failures_stop(
        steps in prop::collection::vec(arb_step(), 0..60),
        fail in prop::collection::vec(prop::bool::weighted(0.3), 0..60),
    ) {
        let mut all = steps;
        all.extend([Step::Heal, Step::Recover, Step::Advance(120_000)]);
        let mut ipfs = FakeIpfs { pins: BTreeSet::new(), user_pins: BTreeSet::new(), fail, calls: 0 };
        let (t, desired, _) = run(&all, &mut ipfs)?;
        for (c, d) in &desired {
            if let Some(Desire::Pin { .. }) = d {
                prop_assert_eq!(t.status(c).status, TrackerStatus::Pinned);
                prop_assert!(ipfs.pins.contains(c));
            }
        }
    }
}

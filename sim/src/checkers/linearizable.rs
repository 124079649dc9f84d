//! No acknowledged pin is lost, no removed pin comes back, and every answer a
//! client got is one the cluster could give: each CID's history, including
//! the final read of the pinset, must be linearizable against a one-CID model
//! (a Wing & Gong search with memoisation, as Porcupine does).
//!
//! Every answer is evidence: `Created` says the CID was absent, `Updated` that
//! it was present, `Unpinned` returns the pin as it was (its name identifies
//! the write that made it), `NotFound` says it was absent. Unknown outcomes
//! may take effect at any point after they were sent, or never. An update
//! (`from` → `to`) is split into a read of `from` and a write of `to`. The
//! final read compares presence, options and, where every allocated peer is
//! still a member and no leader re-allocated the pin (so nothing had a
//! reason to move it), the allocations.

use std::collections::{BTreeMap, BTreeSet};

use cluster_core::pinset::PinChange;
use cluster_core::{Cid, PeerId, Pin};

use super::Violation;
use crate::history::{Answer, History, Refusal, Request, Written};

/// Search steps allowed per CID before the checker gives up on it (counted, not failed).
const STEPS_MAX: usize = 2_000_000;

/// What the model holds for one CID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum State {
    Absent,
    Present {
        name: String,
        /// `None` when the write copied options the oracle does not know (an update).
        written: Option<Written>,
        allocations: Option<Vec<PeerId>>,
    },
}

/// One step of one CID's history.
#[derive(Debug, Clone)]
enum Step {
    Pin {
        written: Written,
        allocations: Vec<PeerId>,
    },
    Unpin,
    /// The `to` side of an update.
    UpdateTo {
        name: String,
    },
    /// The `from` side of an update: only its answer says something.
    UpdateFrom,
    /// The pinset read after the clients stopped.
    FinalRead {
        pin: Option<Box<Pin>>,
        members: BTreeSet<PeerId>,
    },
}

#[derive(Debug, Clone)]
struct SubOp {
    step: Step,
    answer: Answer,
    invoked: u64,
    /// `u64::MAX` for unknown outcomes: they never bound other operations.
    returned: u64,
    label: String,
}

/// What the checker did, for the coverage table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OracleStats {
    /// CIDs checked.
    pub cids: usize,
    /// Operations checked (update halves count separately).
    pub ops: usize,
    /// CIDs whose search ran out of steps (not judged).
    pub undecided: usize,
}

/// Checks every CID of `history` against the final pinset read after the
/// clients stopped (`final_pins`) with the final members; allocations are
/// not compared for the `moved` CIDs (a leader re-allocated them).
pub fn check_linearizable(
    history: &History,
    final_pins: &BTreeMap<Cid, Pin>,
    members: &BTreeSet<PeerId>,
    moved: &BTreeSet<Cid>,
    end_ms: u64,
) -> Result<OracleStats, Violation> {
    let mut per_cid: BTreeMap<Cid, Vec<SubOp>> = BTreeMap::new();
    for op in history.ops() {
        let returned = match op.answer {
            Answer::Unknown => u64::MAX,
            _ => op.completed_ms,
        };
        let label = format!(
            "c{}/{} [{}..{}] {:?} -> {:?}",
            op.client, op.serial, op.invoked_ms, op.completed_ms, op.request, op.answer
        );
        let mut push = |cid: &Cid, step: Step| {
            per_cid.entry(cid.clone()).or_default().push(SubOp {
                step,
                answer: op.answer.clone(),
                invoked: op.invoked_ms,
                returned,
                label: label.clone(),
            })
        };
        match &op.request {
            Request::Pin {
                cid,
                written,
                allocations,
            } => push(
                cid,
                Step::Pin {
                    written: written.clone(),
                    allocations: allocations.clone(),
                },
            ),
            Request::Unpin { cid } => push(cid, Step::Unpin),
            Request::Update { from, to, name } => {
                if from != to {
                    push(from, Step::UpdateFrom);
                }
                push(to, Step::UpdateTo { name: name.clone() });
            }
        }
    }
    let mut stats = OracleStats::default();
    for (cid, mut ops) in per_cid {
        ops.push(SubOp {
            step: Step::FinalRead {
                pin: final_pins.get(&cid).cloned().map(Box::new),
                // A re-allocated pin's peers are the leader's choice: with no
                // member to compare against, only presence and options are.
                members: if moved.contains(&cid) {
                    BTreeSet::new()
                } else {
                    members.clone()
                },
            },
            answer: Answer::Pinned(PinChange::Unchanged),
            invoked: end_ms,
            returned: end_ms,
            label: format!("final read at {end_ms}: {:?}", final_pins.get(&cid)),
        });
        ops.sort_by_key(|o| o.invoked);
        stats.cids += 1;
        stats.ops += ops.len();
        match search(&ops) {
            Verdict::Linearizable => {}
            Verdict::Undecided => stats.undecided += 1,
            Verdict::Not => {
                let lines: Vec<String> = ops.iter().map(|o| format!("    {}", o.label)).collect();
                return Err(Violation {
                    checker: "linearizable",
                    detail: format!(
                        "{cid}: no order of its requests explains every answer and the final state:\n{}",
                        lines.join("\n")
                    ),
                });
            }
        }
    }
    Ok(stats)
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Linearizable,
    Not,
    Undecided,
}

/// The model: the state after `op` took effect with its answer, or `None`
/// when the answer is impossible from `state`. Unknown answers take the
/// effect a success would have.
fn step(state: &State, op: &SubOp) -> Option<State> {
    let present = matches!(state, State::Present { .. });
    let recursive = matches!(state, State::Present { written: Some(w), .. } if !w.direct);
    match (&op.step, &op.answer) {
        (_, Answer::Refused(Refusal::Other(_))) => Some(state.clone()),
        (Step::Pin { written, .. }, Answer::Refused(Refusal::RecursiveToDirect)) => {
            let maybe_recursive =
                present && !matches!(state, State::Present { written: Some(w), .. } if w.direct);
            (maybe_recursive && written.direct).then(|| state.clone())
        }
        (
            Step::Pin {
                written,
                allocations,
            },
            answer,
        ) => {
            let next = State::Present {
                name: written.name.clone(),
                written: Some(written.clone()),
                allocations: Some(allocations.clone()),
            };
            match answer {
                Answer::Pinned(PinChange::Created) => (!present).then_some(next),
                Answer::Pinned(PinChange::Updated) => {
                    (present && !(recursive && written.direct)).then_some(next)
                }
                Answer::Pinned(PinChange::Unchanged) => match state {
                    State::Present { name, .. } if *name == written.name => Some(state.clone()),
                    _ => None,
                },
                Answer::Unknown if recursive && written.direct => Some(state.clone()),
                Answer::Unknown => Some(next),
                _ => None,
            }
        }
        (Step::Unpin, Answer::Unpinned(was)) => match state {
            State::Present { name, written, .. }
                if was.as_ref().is_none_or(|was| {
                    *name == was.name && written.as_ref().is_none_or(|w| w == was)
                }) =>
            {
                Some(State::Absent)
            }
            _ => None,
        },
        (Step::Unpin, Answer::Refused(Refusal::NotFound(_))) => (!present).then_some(State::Absent),
        (Step::Unpin, Answer::Unknown) => Some(State::Absent),
        (Step::Unpin, _) => None,
        (Step::UpdateTo { name }, answer) => {
            let next = State::Present {
                name: name.clone(),
                written: None,
                allocations: None,
            };
            match answer {
                Answer::Pinned(PinChange::Created) => (!present).then_some(next),
                Answer::Pinned(PinChange::Updated) => present.then_some(next),
                Answer::Pinned(PinChange::Unchanged) => match state {
                    State::Present { name: n, .. } if n == name => Some(state.clone()),
                    _ => None,
                },
                // The source was missing: nothing is said about `to`.
                Answer::Refused(Refusal::NotFound(_)) => Some(state.clone()),
                Answer::Refused(Refusal::RecursiveToDirect) => present.then(|| state.clone()),
                // An unknown update may have failed on a missing source, so it
                // may leave `to` as it was: that is the same as never happening.
                Answer::Unknown => Some(next),
                _ => None,
            }
        }
        (Step::UpdateFrom, answer) => {
            let ok = match answer {
                Answer::Refused(Refusal::NotFound(_)) => !present,
                Answer::Unknown => true,
                _ => present,
            };
            ok.then(|| state.clone())
        }
        (Step::FinalRead { pin, members }, _) => {
            let ok = match (state, pin) {
                (State::Absent, None) => true,
                (
                    State::Present {
                        name,
                        written,
                        allocations,
                    },
                    Some(pin),
                ) => {
                    let seen = Written::of(pin);
                    let allocations_ok = match allocations {
                        Some(a) if a.iter().all(|p| members.contains(p)) => {
                            let mut a = a.clone();
                            a.sort();
                            let mut got = pin.allocations.clone();
                            got.sort();
                            a == got
                        }
                        _ => true,
                    };
                    *name == seen.name
                        && written.as_ref().is_none_or(|w| *w == seen)
                        && allocations_ok
                }
                _ => false,
            };
            ok.then(|| state.clone())
        }
    }
}

/// Wing & Gong: repeatedly pick an operation that may go first (no pending
/// definite operation returned before it was invoked), apply it, backtrack on
/// a contradiction; memoise (done set, state) pairs already explored.
fn search(ops: &[SubOp]) -> Verdict {
    let n = ops.len();
    let definite: Vec<usize> = (0..n)
        .filter(|i| ops[*i].answer != Answer::Unknown)
        .collect();
    let mut done = vec![false; n];
    let mut seen: BTreeSet<(Vec<u64>, State)> = BTreeSet::new();
    let mut steps = 0usize;
    match dfs(
        ops,
        &definite,
        &mut done,
        State::Absent,
        &mut seen,
        &mut steps,
    ) {
        Some(true) => Verdict::Linearizable,
        Some(false) => Verdict::Not,
        None => Verdict::Undecided,
    }
}

fn bits(done: &[bool]) -> Vec<u64> {
    let mut out = vec![0u64; done.len().div_ceil(64)];
    for (i, d) in done.iter().enumerate() {
        if *d {
            out[i / 64] |= 1 << (i % 64);
        }
    }
    out
}

/// `Some(found)`, or `None` when the step budget ran out.
fn dfs(
    ops: &[SubOp],
    definite: &[usize],
    done: &mut [bool],
    state: State,
    seen: &mut BTreeSet<(Vec<u64>, State)>,
    steps: &mut usize,
) -> Option<bool> {
    if definite.iter().all(|i| done[*i]) {
        return Some(true); // Unknown operations left over never happened.
    }
    *steps += 1;
    if *steps > STEPS_MAX {
        return None;
    }
    if !seen.insert((bits(done), state.clone())) {
        return Some(false);
    }
    let bound = definite
        .iter()
        .filter(|i| !done[**i])
        .map(|i| ops[*i].returned)
        .min()
        .unwrap_or(u64::MAX);
    for i in 0..ops.len() {
        if ops[i].invoked > bound {
            break; // Sorted by invocation: nothing later may go first.
        }
        if done[i] {
            continue;
        }
        let Some(next) = step(&state, &ops[i]) else {
            continue;
        };
        done[i] = true;
        let found = dfs(ops, definite, done, next, seen, steps);
        done[i] = false;
        match found {
            Some(true) => return Some(true),
            None => return None,
            Some(false) => {}
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;
    use cluster_core::{Millis, PinOptions};

    fn cid() -> Cid {
        Cid::parse("QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq").unwrap()
    }

    fn written(name: &str) -> Written {
        Written {
            name: name.into(),
            direct: false,
            rf: (-1, -1),
            metadata: BTreeMap::new(),
            expire_at: None,
        }
    }

    fn pin_req(name: &str) -> Request {
        Request::Pin {
            cid: cid(),
            written: written(name),
            allocations: vec![],
        }
    }

    fn op(serial: u64, request: Request, at: (u64, u64), answer: Answer) -> Op {
        Op {
            client: 0,
            serial,
            request,
            invoked_ms: at.0,
            completed_ms: at.1,
            answer,
        }
    }

    fn history(ops: Vec<Op>) -> History {
        let mut h = History::default();
        ops.into_iter().for_each(|o| h.record(o));
        h
    }

    fn stored(name: &str) -> BTreeMap<Cid, Pin> {
        let options = PinOptions {
            name: name.into(),
            replication_factor_min: -1,
            replication_factor_max: -1,
            ..PinOptions::default()
        };
        [(cid(), Pin::new(cid(), options, Millis(0)))].into()
    }

    fn check(h: &History, pins: &BTreeMap<Cid, Pin>) -> bool {
        check_linearizable(h, pins, &BTreeSet::new(), &BTreeSet::new(), 1_000).is_ok()
    }

    #[test]
    fn a_lost_acked_pin_is_caught() {
        let h = history(vec![op(
            1,
            pin_req("a"),
            (0, 10),
            Answer::Pinned(PinChange::Created),
        )]);
        assert!(check(&h, &stored("a")));
        assert!(!check(&h, &BTreeMap::new()));
        assert!(!check(&h, &stored("b")), "another write's options");
    }

    #[test]
    fn a_pin_back_after_an_acked_unpin_is_caught() {
        let h = history(vec![
            op(1, pin_req("a"), (0, 10), Answer::Pinned(PinChange::Created)),
            op(
                2,
                Request::Unpin { cid: cid() },
                (20, 30),
                Answer::Unpinned(Some(written("a"))),
            ),
        ]);
        assert!(check(&h, &BTreeMap::new()));
        assert!(!check(&h, &stored("a")));
    }

    #[test]
    fn a_not_found_after_an_acked_pin_is_caught_even_if_later_traffic_hides_it() {
        // The pin was lost in the middle and re-created later: the final state
        // looks fine, but `NotFound` and the second `Created` give it away.
        let h = history(vec![
            op(1, pin_req("a"), (0, 10), Answer::Pinned(PinChange::Created)),
            op(
                2,
                Request::Unpin { cid: cid() },
                (20, 30),
                Answer::Refused(Refusal::NotFound(cid())),
            ),
            op(
                3,
                pin_req("b"),
                (40, 50),
                Answer::Pinned(PinChange::Created),
            ),
        ]);
        assert!(!check(&h, &stored("b")));
        let fine = history(vec![
            op(1, pin_req("a"), (0, 10), Answer::Pinned(PinChange::Created)),
            op(
                3,
                pin_req("b"),
                (40, 50),
                Answer::Pinned(PinChange::Updated),
            ),
        ]);
        assert!(check(&fine, &stored("b")));
    }

    #[test]
    fn unpin_answers_must_name_the_write_they_removed() {
        let h = history(vec![
            op(1, pin_req("a"), (0, 10), Answer::Pinned(PinChange::Created)),
            op(
                2,
                pin_req("b"),
                (20, 30),
                Answer::Pinned(PinChange::Updated),
            ),
            op(
                3,
                Request::Unpin { cid: cid() },
                (40, 50),
                Answer::Unpinned(Some(written("a"))),
            ),
        ]);
        assert!(!check(&h, &BTreeMap::new()));
    }

    #[test]
    fn concurrent_and_unknown_requests_allow_either_order() {
        let concurrent = history(vec![
            op(1, pin_req("a"), (0, 30), Answer::Pinned(PinChange::Created)),
            op(
                2,
                Request::Unpin { cid: cid() },
                (10, 20),
                Answer::Unpinned(Some(written("a"))),
            ),
        ]);
        assert!(check(&concurrent, &BTreeMap::new()));
        let unknown_after = history(vec![
            op(
                1,
                Request::Unpin { cid: cid() },
                (0, 10),
                Answer::Refused(Refusal::NotFound(cid())),
            ),
            op(2, pin_req("a"), (20, 25), Answer::Unknown),
        ]);
        assert!(check(&unknown_after, &stored("a")));
        assert!(check(&unknown_after, &BTreeMap::new()));
        let failed_after = history(vec![
            op(
                1,
                Request::Unpin { cid: cid() },
                (0, 10),
                Answer::Refused(Refusal::NotFound(cid())),
            ),
            op(
                2,
                pin_req("a"),
                (20, 25),
                Answer::Refused(Refusal::Other("x".into())),
            ),
        ]);
        assert!(!check(&failed_after, &stored("a")));
    }

    #[test]
    fn updates_read_their_source_and_write_their_target() {
        let other =
            Cid::parse("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy").unwrap();
        let h = history(vec![op(
            1,
            Request::Update {
                from: other.clone(),
                to: cid(),
                name: "u".into(),
            },
            (0, 10),
            Answer::Pinned(PinChange::Created),
        )]);
        // The source was never pinned, yet the update succeeded.
        assert!(!check(&h, &stored("u")));
        let h = history(vec![
            op(
                1,
                Request::Pin {
                    cid: other.clone(),
                    written: written("s"),
                    allocations: vec![],
                },
                (0, 5),
                Answer::Pinned(PinChange::Created),
            ),
            op(
                2,
                Request::Update {
                    from: other.clone(),
                    to: cid(),
                    name: "u".into(),
                },
                (10, 20),
                Answer::Pinned(PinChange::Created),
            ),
        ]);
        let mut pins = stored("u");
        let mut source = Pin::new(other.clone(), PinOptions::default(), Millis(0));
        source.options.name = "s".into();
        source.options.replication_factor_min = -1;
        source.options.replication_factor_max = -1;
        pins.insert(other.clone(), source);
        assert!(check(&h, &pins));
    }

    #[test]
    fn allocations_must_stay_while_every_allocated_peer_is_a_member() {
        let a = PeerId::synthetic(1);
        let b = PeerId::synthetic(2);
        let h = history(vec![op(
            1,
            Request::Pin {
                cid: cid(),
                written: written("a"),
                allocations: vec![a.clone()],
            },
            (0, 10),
            Answer::Pinned(PinChange::Created),
        )]);
        let mut pins = stored("a");
        pins.get_mut(&cid()).unwrap().allocations = vec![b.clone()];
        let members: BTreeSet<PeerId> = [a.clone(), b.clone()].into();
        assert!(check_linearizable(&h, &pins, &members, &BTreeSet::new(), 100).is_err());
        // Nor when a leader re-allocated it (re-pinning, a hand-over).
        let moved: BTreeSet<Cid> = [cid()].into();
        assert!(check_linearizable(&h, &pins, &members, &moved, 100).is_ok());
        // Once the allocated peer left, moving the pin is expected.
        let members: BTreeSet<PeerId> = [b].into();
        assert!(check_linearizable(&h, &pins, &members, &BTreeSet::new(), 100).is_ok());
    }
}

//! No acknowledged pin is lost, and no pin comes back after an acknowledged
//! removal: per CID, the final state must be the effect of a request that can
//! be last in some linearisation of the history.

use std::collections::BTreeSet;

use cluster_core::Cid;

use super::Violation;
use crate::history::{Effect, History, Op, Outcome};

/// Checks the final pinset against the history.
///
/// A request can be last when no acknowledged request started after it ended.
/// An unknown request may take effect at any time after it was sent, so it can
/// always be last; failed requests changed nothing. With no acknowledged
/// request, "never pinned" is also possible.
pub fn check_acked_pins(history: &History, final_pins: &BTreeSet<Cid>) -> Result<(), Violation> {
    for (cid, ops) in history.by_cid() {
        let present = final_pins.contains(cid);
        let acked: Vec<&&Op> = ops.iter().filter(|o| o.outcome == Outcome::Acked).collect();
        let can_be_last = |op: &Op| match op.outcome {
            Outcome::Failed => false,
            Outcome::Unknown => true,
            Outcome::Acked => !acked.iter().any(|later| op.completed_ms < later.invoked_ms),
        };
        let mut possible: BTreeSet<bool> = ops
            .iter()
            .filter(|o| can_be_last(o))
            .map(|o| o.effect == Effect::Present)
            .collect();
        if acked.is_empty() {
            possible.insert(false);
        }
        if !possible.contains(&present) {
            let last_acked = acked.iter().max_by_key(|o| o.completed_ms);
            return Err(Violation {
                checker: "acked_pins",
                detail: format!(
                    "{cid} is {} but the history allows only {}; last acknowledged request: {:?}",
                    if present { "pinned" } else { "not pinned" },
                    if possible.contains(&true) {
                        "pinned"
                    } else {
                        "not pinned"
                    },
                    last_acked
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid() -> Cid {
        Cid::parse("QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq").unwrap()
    }

    fn op(effect: Effect, invoked_ms: u64, completed_ms: u64, outcome: Outcome) -> Op {
        Op {
            cid: cid(),
            effect,
            invoked_ms,
            completed_ms,
            outcome,
        }
    }

    fn history(ops: Vec<Op>) -> History {
        let mut h = History::default();
        ops.into_iter().for_each(|o| h.record(o));
        h
    }

    fn pinned() -> BTreeSet<Cid> {
        [cid()].into()
    }

    #[test]
    fn a_lost_acked_pin_is_caught() {
        let h = history(vec![op(Effect::Present, 0, 10, Outcome::Acked)]);
        assert!(check_acked_pins(&h, &pinned()).is_ok());
        assert!(check_acked_pins(&h, &BTreeSet::new()).is_err());
    }

    #[test]
    fn a_pin_back_after_an_acked_unpin_is_caught() {
        let h = history(vec![
            op(Effect::Present, 0, 10, Outcome::Acked),
            op(Effect::Absent, 20, 30, Outcome::Acked),
        ]);
        assert!(check_acked_pins(&h, &BTreeSet::new()).is_ok());
        assert!(check_acked_pins(&h, &pinned()).is_err());
    }

    #[test]
    fn concurrent_and_unknown_requests_allow_either() {
        let concurrent = history(vec![
            op(Effect::Present, 0, 30, Outcome::Acked),
            op(Effect::Absent, 10, 20, Outcome::Acked),
        ]);
        assert!(check_acked_pins(&concurrent, &pinned()).is_ok());
        assert!(check_acked_pins(&concurrent, &BTreeSet::new()).is_ok());
        let unknown_after = history(vec![
            op(Effect::Absent, 0, 10, Outcome::Acked),
            op(Effect::Present, 20, 25, Outcome::Unknown),
        ]);
        assert!(check_acked_pins(&unknown_after, &pinned()).is_ok());
        let failed_after = history(vec![
            op(Effect::Absent, 0, 10, Outcome::Acked),
            op(Effect::Present, 20, 25, Outcome::Failed),
        ]);
        assert!(check_acked_pins(&failed_after, &pinned()).is_err());
        let only_unknown = history(vec![op(Effect::Present, 0, 5, Outcome::Unknown)]);
        assert!(check_acked_pins(&only_unknown, &BTreeSet::new()).is_ok());
        assert!(check_acked_pins(&only_unknown, &pinned()).is_ok());
    }
}

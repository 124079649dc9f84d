//! The client history: every request with when it was sent, when it ended
//! and how (Jepsen's invoke / ok / fail / info).

use std::collections::BTreeMap;

use cluster_core::Cid;

/// What a request does to its CID when it takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The CID is pinned afterwards (pin, re-pin, update target).
    Present,
    /// The CID is not pinned afterwards (unpin).
    Absent,
}

/// How a request ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The cluster said it was applied.
    Acked,
    /// The cluster said it was refused; it changed nothing.
    Failed,
    /// Timeout, lost connection, crashed peer: it may or may not have happened,
    /// at any time after it was sent.
    Unknown,
}

/// One client request on one CID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The CID it affects.
    pub cid: Cid,
    /// Its effect when applied.
    pub effect: Effect,
    /// Simulated ms when it was sent.
    pub invoked_ms: u64,
    /// Simulated ms when the client got its answer (or gave up).
    pub completed_ms: u64,
    /// The answer.
    pub outcome: Outcome,
}

/// Every request of a run.
#[derive(Debug, Clone, Default)]
pub struct History {
    ops: Vec<Op>,
}

impl History {
    /// Records a finished request.
    pub fn record(&mut self, op: Op) {
        debug_assert!(op.invoked_ms <= op.completed_ms);
        self.ops.push(op);
    }

    /// The requests per CID, in recording order.
    pub fn by_cid(&self) -> BTreeMap<&Cid, Vec<&Op>> {
        let mut out: BTreeMap<&Cid, Vec<&Op>> = BTreeMap::new();
        for op in &self.ops {
            out.entry(&op.cid).or_default().push(op);
        }
        out
    }

    /// Counts of (acked, failed, unknown).
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |o| self.ops.iter().filter(|op| op.outcome == o).count();
        (
            count(Outcome::Acked),
            count(Outcome::Failed),
            count(Outcome::Unknown),
        )
    }

    /// Every request.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}

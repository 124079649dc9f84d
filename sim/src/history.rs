//! The client history: every request with what it asked, when it was sent,
//! when it ended and the answer it got (Jepsen's invoke / ok / fail / info,
//! keeping the answer's content, which is evidence too).

use std::collections::BTreeMap;

use cluster_core::pinset::{Applied, ApplyError, ApplyResult, PinChange};
use cluster_core::{Cid, PeerId, Pin, PinMode};

/// The options of a pin the oracle compares (what a client wrote and can read back).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Written {
    /// The name (unique per request in the workload, so it identifies the write).
    pub name: String,
    /// Direct (depth 0) rather than recursive.
    pub direct: bool,
    /// Replication factors.
    pub rf: (i32, i32),
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Expiry, in ms.
    pub expire_at: Option<u64>,
}

impl Written {
    /// What `pin` holds, as the oracle compares it.
    pub fn of(pin: &Pin) -> Written {
        Written {
            name: pin.options.name.clone(),
            direct: pin.mode() == PinMode::Direct,
            rf: (
                pin.options.replication_factor_min,
                pin.options.replication_factor_max,
            ),
            metadata: pin.options.metadata.clone(),
            expire_at: pin.options.expire_at.map(|m| m.0),
        }
    }
}

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Pin (or re-pin) `cid` with these options and allocations.
    Pin {
        /// The CID.
        cid: Cid,
        /// Its options.
        written: Written,
        /// The allocations the proposer chose.
        allocations: Vec<PeerId>,
    },
    /// Remove the pin of `cid`.
    Unpin {
        /// The CID.
        cid: Cid,
    },
    /// Pin `to` as a copy of `from`, named `name`.
    Update {
        /// The existing pin.
        from: Cid,
        /// The new CID.
        to: Cid,
        /// The new name.
        name: String,
    },
}

/// Why a request was refused, as far as the oracle cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The CID named was not pinned.
    NotFound(Cid),
    /// A direct re-pin over a recursive pin.
    RecursiveToDirect,
    /// Any other refusal (the state is untouched, nothing is implied about it).
    Other(String),
}

/// The answer a client got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Applied: the pin is stored.
    Pinned(PinChange),
    /// Applied: the pin was removed; what it held when known (the core's
    /// answer names only the CID: answers stay small to be remembered for
    /// retries, issue 10 item 9).
    Unpinned(Option<Written>),
    /// Refused; it changed nothing.
    Refused(Refusal),
    /// Timeout, lost connection, crashed peer: it may or may not have taken
    /// effect, at any time after it was sent.
    Unknown,
}

impl Answer {
    /// The answer an applied (or refused) entry gave.
    pub fn of(result: &ApplyResult) -> Answer {
        match result {
            Ok(Applied::Pinned { change, .. }) => Answer::Pinned(*change),
            Ok(Applied::Unpinned { .. }) => Answer::Unpinned(None),
            Ok(other) => Answer::Refused(Refusal::Other(format!("unexpected answer {other:?}"))),
            Err(ApplyError::NotFound(cid)) => Answer::Refused(Refusal::NotFound(cid.clone())),
            Err(ApplyError::RecursiveToDirect) => Answer::Refused(Refusal::RecursiveToDirect),
            Err(e) => Answer::Refused(Refusal::Other(e.to_string())),
        }
    }

    /// The Jepsen-style outcome.
    pub fn outcome(&self) -> Outcome {
        match self {
            Answer::Pinned(_) | Answer::Unpinned(_) => Outcome::Acked,
            Answer::Refused(_) => Outcome::Failed,
            Answer::Unknown => Outcome::Unknown,
        }
    }
}

/// How a request ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The cluster said it was applied.
    Acked,
    /// The cluster said it was refused; it changed nothing.
    Failed,
    /// It may or may not have happened.
    Unknown,
}

/// One client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The client.
    pub client: u64,
    /// Its serial (the request id is `(client, serial)`).
    pub serial: u64,
    /// What it asked.
    pub request: Request,
    /// Simulated ms when it was sent.
    pub invoked_ms: u64,
    /// Simulated ms when the client got its answer (or gave up).
    pub completed_ms: u64,
    /// The answer.
    pub answer: Answer,
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

    /// Counts of (acked, failed, unknown).
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |o| {
            self.ops
                .iter()
                .filter(|op| op.answer.outcome() == o)
                .count()
        };
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

    /// Every CID a request named.
    pub fn touched(&self) -> std::collections::BTreeSet<Cid> {
        let mut out = std::collections::BTreeSet::new();
        for op in &self.ops {
            match &op.request {
                Request::Pin { cid, .. } | Request::Unpin { cid } => {
                    out.insert(cid.clone());
                }
                Request::Update { from, to, .. } => {
                    out.insert(from.clone());
                    out.insert(to.clone());
                }
            }
        }
        out
    }
}

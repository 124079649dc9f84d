//! Checkers: each takes what a run produced and says whether a promise held.
//! One promise per file.

mod acked_pins;
mod allocations;
mod converged;
mod ipfs_matches;
mod liveness;
mod replica_safety;

pub use acked_pins::check_acked_pins;
pub use allocations::check_allocations;
pub use converged::check_replicas_converged;
pub use ipfs_matches::check_ipfs_matches_allocations;
pub use liveness::check_liveness;
pub use replica_safety::{check_replica_safety, ReplicaSample};

/// A broken promise, with enough detail to debug it from the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which checker.
    pub checker: &'static str,
    /// What it saw.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.checker, self.detail)
    }
}

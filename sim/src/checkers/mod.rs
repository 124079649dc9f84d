//! Checkers: each takes what a run produced and says whether a promise held.
//! One promise per file.

mod allocations;
mod converged;
mod durable_acks;
mod election_safety;
mod expiry;
mod handover;
mod ipfs_matches;
mod linearizable;
mod liveness;
mod metrics_reach;
mod pin_modes;
mod replica_safety;
mod stale_reallocation;
mod tag_spread;
mod tracker_status;
mod user_pins;

pub use allocations::check_allocations;
pub use converged::check_replicas_converged;
pub use durable_acks::check_durable_acknowledgements;
pub use election_safety::Leaders;
pub use expiry::{check_expired_removed, ExpiringPin};
pub use handover::{check_handover, check_replicas_pinned};
pub use ipfs_matches::check_ipfs_matches_allocations;
pub use linearizable::{check_linearizable, OracleStats};
pub use liveness::check_liveness;
pub use metrics_reach::check_metrics_reach;
pub use pin_modes::check_pin_modes;
pub use replica_safety::{check_replica_safety, ReplicaSample};
pub use stale_reallocation::{check_reallocation_base, Base, Landed};
pub use tag_spread::check_tag_spread;
pub use tracker_status::{check_tracker_status, StatusCounts};
pub use user_pins::check_user_pins;

use cluster_core::PinMode;

/// One pin as an IPFS daemon holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonPin {
    /// Recursive or direct.
    pub mode: PinMode,
    /// Made by the cluster (its name carries the cluster's mark).
    pub by_cluster: bool,
}

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

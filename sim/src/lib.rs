//! # sim
//!
//! Deterministic simulation of the cluster. The real `cluster-core` and the
//! real openraft glue of `cluster-net` run under madsim with a simulated
//! network, simulated disks that lose unsynced writes on crash, and a fake IPFS
//! daemon per peer; faults are chosen from the seed, clients record a history,
//! and checkers decide whether the cluster kept its promises. One seed
//! reproduces one run exactly.
//!
//! Pure parts (history, checkers, simulated disk) build everywhere; the parts
//! that need madsim build only with `--cfg madsim`, which the launcher test in
//! `tests/simulate.rs` sets for a nested `cargo test` (see the README).

#![warn(missing_docs)]

pub mod checkers;
pub mod digest;
pub mod history;
pub mod probes;
pub mod store;

#[cfg(madsim)]
pub mod ipfs;
#[cfg(madsim)]
pub mod net;
#[cfg(madsim)]
pub mod peer;
#[cfg(madsim)]
pub mod scenario;

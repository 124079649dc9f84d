//! # cluster-node
//!
//! The IPFS Cluster peer around the core and the consensus: the driver
//! loops (pin tracker, metrics, re-allocation), the IPFS connector seam and
//! the node's peer RPCs, shared by the binaries and the simulator; and the
//! binaries `ipfscluster-server` (a cluster peer: [`config`] and [`server`],
//! feature `server`) and `ipfscluster` (the command-line client over the
//! REST API: `cli`, feature `cli`). [`not_yet`] remains for binaries whose
//! issue has not landed.
//!
//! The library builds without default features and under `--cfg madsim`:
//! it takes time, tasks and timers from [`cluster_net::rt`], `now` from a
//! [`clock::Clock`], and reaches IPFS and other peers only through seams.

#![deny(missing_docs)]

#[cfg(any(feature = "rest", feature = "client"))]
pub mod api;
#[cfg(feature = "cli")]
pub mod cli;
pub mod clock;
#[cfg(feature = "server")]
pub mod config;
pub mod context;
pub mod drivers;
pub mod ipfs;
pub mod rpc;
#[cfg(feature = "server")]
pub mod server;

pub use clock::{Clock, SystemClock};
pub use context::PeerContext;
pub use drivers::{start_drivers, DriverSettings, Drivers};

/// Exit code of a binary whose issue has not landed yet.
pub const NOT_YET_EXIT_CODE: i32 = 2;

/// Prints the "not yet" notice for `binary` and returns the exit code to use.
pub fn not_yet(binary: &str, what: &str) -> i32 {
    eprintln!(
        "{binary}: not yet: {what} lands with a later issue. Today the project ships the \
         sans-IO core (cargo test -p cluster-core), consensus (cargo test -p cluster-net) \
         and the simulator (cargo test -p sim)."
    );
    NOT_YET_EXIT_CODE
}

//! # cluster-node
//!
//! The IPFS Cluster peer around the core and the consensus: the driver
//! loops (pin tracker, metrics, re-allocation, expiry), the IPFS connector
//! seam and the node's peer RPCs, shared by the binaries and the simulator;
//! and the binaries `ipfscluster-server` (a cluster peer: [`config`] and
//! [`server`], feature `server`, serving the REST API of `api`) and
//! `ipfscluster` (the command-line client over the REST API: `cli`, feature
//! `cli`).
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

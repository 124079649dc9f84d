//! IPFS Cluster's REST API (v1.1 wire format): the server ([`rest`],
//! feature `rest`) a running peer serves, the typed async [`client`]
//! (feature `client`) the `ipfscluster` CLI uses, and the JSON shapes and
//! time format both speak ([`types`], [`time`]).
//!
//! See `/work/shared/reference/rest-api.md` for the contract; deviations
//! from upstream are listed in the server module's documentation.

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "pinsvc")]
pub mod pinsvc;
#[cfg(feature = "proxy")]
pub mod proxy;
#[cfg(feature = "rest")]
pub mod rest;
pub mod time;
pub mod types;
#[cfg(feature = "client")]
pub mod upload;

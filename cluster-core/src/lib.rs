//! # cluster-core
//!
//! The sans-IO heart of the cluster. Everything here is a pure step function:
//! state + input + `now` → new state + outputs. No sockets, files, clocks,
//! threads or randomness; time ([`Millis`]) and seeds come in as arguments.
//!
//! - [`pinset`]: the Raft-replicated pinset state machine and its snapshot codec.
//! - [`allocator`]: which peers should pin a CID, from their metrics.
//! - [`tracker`]: one peer's reconciler between the desired pins and its IPFS daemon.
//! - [`Cid`], [`PeerId`], [`Pin`], [`PinOptions`], [`TrackerStatus`]: the shared vocabulary.

#![warn(missing_docs)]

pub mod allocator;
mod cid;
mod cid_text;
mod peer;
pub mod pin;
pub mod pinset;
pub mod repair;
mod status;
mod time;
pub mod tracker;
#[cfg(test)]
mod transcript;

pub use crate::cid::{Cid, CidError};
pub use crate::cid_text::{CidText, CID_TEXT_MAX_BYTES};
pub use peer::{PeerId, PeerIdError};
pub use pin::{Pin, PinMode, PinOptions, PinType};
pub use pinset::Pinset;
pub use status::TrackerStatus;
pub use time::Millis;

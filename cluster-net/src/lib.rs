//! Consensus for IPFS Cluster: the openraft glue, its storage and transport
//! seams, and the client write path over the shared pinset.
//!
//! See the crate README for the seams (runtime, transport, storage backend)
//! and the features.

pub mod store;

#[allow(dead_code)] // the Raft node handle that uses every item lands next
mod raft_glue;

pub use raft_glue::{node_id_of, NodeInfo};

//! Consensus for IPFS Cluster: the openraft glue, its storage and transport
//! seams, and the client write path over the shared pinset.
//!
//! See the crate README for the seams (runtime, transport, storage backend)
//! and the features.

#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod inproc;
#[cfg(all(feature = "libp2p", not(madsim)))]
pub mod p2p;
mod raft_glue;
pub mod store;
pub mod transport;

pub use config::{ConfigError, RaftConfig};
pub use error::{FatalError, MembershipError, StartError, WriteError};
#[cfg(madsim)]
pub use raft_glue::sim_hooks;

/// The runtime seam for code around the consensus (the node's drivers):
/// tokio normally, madsim's simulator under `--cfg madsim`, with the timer
/// drift the simulator injects. Drivers take time from here, never from
/// `std::time` or tokio directly, so the simulator runs them unchanged.
pub mod rt {
    pub use crate::raft_glue::{sleep, spawn, timeout};
}
/// Hooks for the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub use raft_glue::fuzzing;
pub use raft_glue::{
    node_id_of, Boot, Changed, ClusterRaft, CodecError, NodeInfo, PinsetChanges, RaftWatch,
    RpcRequest, RpcResponse, PENDING_CIDS_MAX,
};
pub use transport::{
    NodeRpc, NodeRpcError, NodeRpcHandler, RaftTransport, RpcHandler, Traffic, TransportError,
};

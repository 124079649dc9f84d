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
pub use raft_glue::{
    node_id_of, Boot, ClusterRaft, CodecError, NodeInfo, RaftWatch, RpcRequest, RpcResponse,
};
pub use transport::{
    NodeRpc, NodeRpcError, NodeRpcHandler, RaftTransport, RpcHandler, TransportError,
};

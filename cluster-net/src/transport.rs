//! The Raft transport seam: how one peer's RPCs reach another.
//!
//! The glue sends [`RpcRequest`]s through a [`RaftTransport`] and serves the
//! ones it receives through [`RpcHandler`] (implemented by
//! [`ClusterRaft`](crate::ClusterRaft)). Messages are opaque to transports
//! and serialisable (`to_bytes` / `from_bytes`), so a network transport only
//! moves bytes.

use std::future::Future;
use std::pin::Pin;

use crate::raft_glue::{NodeInfo, RpcRequest, RpcResponse};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why an RPC got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The request was not delivered (peer down, partitioned, no route); it
    /// is safe to retry. Transports should fail fast with this error.
    #[error("peer {peer} is unreachable")]
    Unreachable {
        /// The target peer id.
        peer: String,
    },
    /// No answer in time; the request may or may not have been processed.
    #[error("rpc to peer {peer} timed out")]
    Timeout {
        /// The target peer id.
        peer: String,
    },
    /// The exchange failed part way; the request may have been processed.
    #[error("rpc to peer {peer} failed: {reason}")]
    Failed {
        /// The target peer id.
        peer: String,
        /// What went wrong.
        reason: String,
    },
}

impl TransportError {
    /// True when the request certainly did not reach the target.
    pub fn not_delivered(&self) -> bool {
        matches!(self, TransportError::Unreachable { .. })
    }
}

/// Sends one RPC to a peer and waits for its answer.
pub trait RaftTransport: Send + Sync + 'static {
    /// Delivers `request` to `target` and returns its response.
    fn call(
        &self,
        target: &NodeInfo,
        request: RpcRequest,
    ) -> BoxFuture<Result<RpcResponse, TransportError>>;
}

/// Serves the RPCs a transport receives for one peer.
pub trait RpcHandler: Send + Sync + 'static {
    /// Handles one request whose sender the transport did not authenticate
    /// (a trusted in-process or simulated network) and produces its
    /// response. No check on who is asking is made.
    fn handle(&self, request: RpcRequest) -> BoxFuture<RpcResponse>;

    /// Handles one request from `from`, the peer id (string form) the
    /// transport authenticated the sender as. [`ClusterRaft`](crate::ClusterRaft)
    /// accepts Raft traffic only from members of its cluster (or while it
    /// is being joined) and a join only from the peer it names.
    ///
    /// The default ignores `from` and calls [`handle`](RpcHandler::handle):
    /// a handler that wraps another must forward this method too, or the
    /// checks are lost.
    fn handle_from(&self, from: &str, request: RpcRequest) -> BoxFuture<RpcResponse> {
        let _ = from;
        self.handle(request)
    }
}

/// Most bytes of a node RPC method name.
pub const NODE_RPC_METHOD_MAX_BYTES: usize = 64;

/// Why a node RPC got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeRpcError {
    /// The transport failed (same meaning as for Raft calls).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The other peer answered with an error (no handler, unknown method,
    /// a failure of the handler).
    #[error("peer {peer} answered with an error: {reason}")]
    Remote {
        /// The target peer id.
        peer: String,
        /// Its reason.
        reason: String,
    },
}

/// Calls of the node layer between peers (a peer's tracker status for
/// CIDs, its metrics): a method name and opaque bytes, whose format the
/// node owns. Carried apart from Raft traffic and the consensus peer RPCs.
pub trait NodeRpc: Send + Sync + 'static {
    /// Sends `body` to `method` of `target` and returns the answer.
    fn node_call(
        &self,
        target: &NodeInfo,
        method: &str,
        body: Vec<u8>,
    ) -> BoxFuture<Result<Vec<u8>, NodeRpcError>>;

    /// This peer's traffic with the other peers, by protocol id (the REST
    /// API's `GET /health/bandwidth`). A transport that does not measure
    /// its traffic (the in-process ones) has none to show.
    fn traffic(&self) -> std::collections::BTreeMap<String, Traffic> {
        std::collections::BTreeMap::new()
    }
}

/// The traffic of one protocol, as IPFS Cluster's `BandwidthByProtocol`
/// shows it: bytes since start, and bytes per second lately.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Traffic {
    /// Bytes received.
    pub total_in: u64,
    /// Bytes sent.
    pub total_out: u64,
    /// Bytes received per second, lately.
    pub rate_in: f64,
    /// Bytes sent per second, lately.
    pub rate_out: f64,
}

/// Serves the node RPCs a transport receives.
pub trait NodeRpcHandler: Send + Sync + 'static {
    /// Handles `method` with `body` from `from` (the authenticated peer
    /// id); an `Err` reaches the caller as [`NodeRpcError::Remote`].
    fn handle(&self, from: &str, method: &str, body: Vec<u8>)
        -> BoxFuture<Result<Vec<u8>, String>>;
}

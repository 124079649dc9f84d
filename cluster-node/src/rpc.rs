//! The node layer's peer RPCs: method names, message shapes (postcard on
//! the wire) and the router that serves them.
//!
//! Carried by the transport's node-RPC seam ([`NodeRpc`] /
//! [`NodeRpcHandler`]): libp2p between real peers, the simulated network in
//! the simulator. The transport caps message sizes; decoding a message
//! never trusts a length beyond the bytes received.

use std::sync::Arc;
use std::time::Duration;

use cluster_core::tracker::PinStatus;
use cluster_core::{Cid, PeerId};
use cluster_net::transport::BoxFuture;
use cluster_net::{ClusterRaft, NodeInfo, NodeRpc, NodeRpcError, NodeRpcHandler};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::drivers::metrics::MetricsBoard;
use crate::drivers::tracker::TrackerHandle;
use crate::ipfs::IpfsConnector;

/// A peer pushes its metrics (body: [`MetricsPush`], answer: empty).
pub const METRICS_PUSH: &str = "metrics/push/v1";
/// Asks a peer's tracker for CIDs' statuses (body: [`StatusQuery`],
/// answer: [`StatusAnswer`]).
pub const TRACKER_STATUS: &str = "tracker/status/v1";
/// Asks a peer's tracker to retry failed operations now, of one CID or all
/// (body: [`RecoverQuery`], answer: `bool`, false when its tracker is stopped).
pub const TRACKER_RECOVER: &str = "tracker/recover/v1";
/// Asks a peer (the leader) for its applied index (body: empty, answer: `u64`).
pub const CONSENSUS_APPLIED: &str = "consensus/applied/v1";
/// Asks a peer for its IPFS daemon's repo figures (body: empty, answer:
/// [`RepoStatAnswer`]); the IPFS proxy's `repo/stat` sums them.
pub const IPFS_REPO_STAT: &str = "ipfs/repo_stat/v1";
/// Asks a peer to garbage-collect its IPFS daemon's repo (body: empty,
/// answer: `Vec<GcEntry>`); the IPFS proxy's `repo/gc` runs it everywhere.
pub const IPFS_REPO_GC: &str = "ipfs/repo_gc/v1";

/// A peer's IPFS repo figures, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoStatAnswer {
    /// Bytes stored.
    pub repo_size: u64,
    /// The repo's limit.
    pub storage_max: u64,
}

/// One peer's metrics as it sends them. The receiver stamps them with its
/// own clock when they arrive, so clocks of different peers are never compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsPush {
    /// The sending peer.
    pub peer: PeerId,
    /// Free space in its IPFS repo, in bytes.
    pub free_space_bytes: u64,
    /// CIDs its tracker has pinned for the cluster.
    pub pinned: u64,
    /// Pin operations waiting in its tracker.
    pub queue_len: u64,
    /// Its tags (`tag:<key>` metrics).
    pub tags: std::collections::BTreeMap<String, String>,
    /// Its IPFS daemon's peer id.
    pub ipfs_peer_id: String,
    /// Its IPFS daemon's swarm addresses, for bitswap between peers.
    pub ipfs_addresses: Vec<String>,
    /// How long these figures stay valid after they arrive, in ms.
    pub ttl_ms: u64,
}

/// Which statuses a [`TRACKER_STATUS`] call asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusQuery {
    /// These CIDs, or every CID the tracker knows when `None`.
    pub cids: Option<Vec<Cid>>,
}

/// What a [`TRACKER_RECOVER`] call asks to retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverQuery {
    /// This CID, or every failed operation when `None`.
    pub cid: Option<Cid>,
}

/// A tracker's statuses, by CID.
pub type StatusAnswer = Vec<(Cid, PinStatus)>;

/// Why a call to another peer's node layer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerCallError {
    /// The transport or the other peer failed.
    #[error(transparent)]
    Rpc(#[from] NodeRpcError),
    /// No answer within the caller's deadline.
    #[error("peer {peer} did not answer {method} within {after_ms} ms")]
    Timeout {
        /// The target peer id.
        peer: String,
        /// The method called.
        method: &'static str,
        /// How long the caller waited.
        after_ms: u64,
    },
    /// The answer could not be decoded.
    #[error("peer {peer} answered {method} with bytes that do not decode: {reason}")]
    BadAnswer {
        /// The target peer id.
        peer: String,
        /// The method called.
        method: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
}

/// Calls `method` of `target` with `body` and decodes its answer, giving up
/// after `limit`.
pub async fn call<Q: Serialize, A: DeserializeOwned>(
    rpc: &dyn NodeRpc,
    target: &NodeInfo,
    method: &'static str,
    body: &Q,
    limit: Duration,
) -> Result<A, PeerCallError> {
    let bytes = postcard::to_allocvec(body).map_err(|e| PeerCallError::BadAnswer {
        peer: target.peer_id.clone(),
        method,
        reason: format!("request does not encode: {e}"),
    })?;
    let answer = cluster_net::rt::timeout(limit, rpc.node_call(target, method, bytes))
        .await
        .ok_or_else(|| PeerCallError::Timeout {
            peer: target.peer_id.clone(),
            method,
            after_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        })??;
    postcard::from_bytes(&answer).map_err(|e| PeerCallError::BadAnswer {
        peer: target.peer_id.clone(),
        method,
        reason: e.to_string(),
    })
}

/// Serves the node layer's methods for one peer.
pub struct NodeRouter {
    raft: ClusterRaft,
    board: Arc<MetricsBoard>,
    tracker: TrackerHandle,
    clock: Arc<dyn Clock>,
    ipfs: Arc<dyn IpfsConnector>,
}

impl NodeRouter {
    /// A router over this peer's consensus, metrics board, tracker and
    /// IPFS daemon.
    pub fn new(
        raft: ClusterRaft,
        board: Arc<MetricsBoard>,
        tracker: TrackerHandle,
        clock: Arc<dyn Clock>,
        ipfs: Arc<dyn IpfsConnector>,
    ) -> NodeRouter {
        NodeRouter {
            raft,
            board,
            tracker,
            clock,
            ipfs,
        }
    }
}

/// Decodes a request body as the router does (public for the fuzz
/// targets in `fuzz/`; not an API).
#[doc(hidden)]
pub fn decode<T: DeserializeOwned>(method: &str, body: &[u8]) -> Result<T, String> {
    postcard::from_bytes(body).map_err(|e| format!("{method}: request does not decode: {e}"))
}

fn encode<T: Serialize>(method: &str, answer: &T) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(answer).map_err(|e| format!("{method}: answer does not encode: {e}"))
}

impl NodeRpcHandler for NodeRouter {
    fn handle(
        &self,
        from: &str,
        method: &str,
        body: Vec<u8>,
    ) -> BoxFuture<Result<Vec<u8>, String>> {
        match method {
            METRICS_PUSH => {
                let answer = decode::<MetricsPush>(method, &body).and_then(|push| {
                    // A peer speaks only for itself.
                    if push.peer.as_str() != from {
                        return Err(format!(
                            "{method}: peer {from} sent metrics in the name of {}",
                            push.peer
                        ));
                    }
                    self.board.record(push, self.clock.now());
                    encode(method, &())
                });
                Box::pin(async move { answer })
            }
            CONSENSUS_APPLIED => {
                let answer = encode(method, &self.raft.applied_index());
                Box::pin(async move { answer })
            }
            TRACKER_STATUS => {
                let query = decode::<StatusQuery>(method, &body);
                let tracker = self.tracker.clone();
                Box::pin(async move {
                    let query = query?;
                    let statuses = tracker
                        .statuses(query.cids)
                        .await
                        .ok_or_else(|| format!("{TRACKER_STATUS}: the tracker is stopped"))?;
                    encode(TRACKER_STATUS, &statuses)
                })
            }
            TRACKER_RECOVER => {
                let answer = decode::<RecoverQuery>(method, &body)
                    .and_then(|query| encode(method, &self.tracker.recover(query.cid)));
                Box::pin(async move { answer })
            }
            IPFS_REPO_STAT => {
                let ipfs = Arc::clone(&self.ipfs);
                Box::pin(async move {
                    let stat = ipfs.repo_stat().await.map_err(|e| e.to_string())?;
                    let answer = RepoStatAnswer {
                        repo_size: stat.repo_size,
                        storage_max: stat.storage_max,
                    };
                    encode(IPFS_REPO_STAT, &answer)
                })
            }
            IPFS_REPO_GC => {
                let ipfs = Arc::clone(&self.ipfs);
                Box::pin(async move {
                    let entries = ipfs.repo_gc().await.map_err(|e| e.to_string())?;
                    encode(IPFS_REPO_GC, &entries)
                })
            }
            other => {
                let reason = format!("unknown node method {other:?}");
                Box::pin(async move { Err(reason) })
            }
        }
    }
}

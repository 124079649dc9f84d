//! openraft's `RaftNetworkFactory` / `RaftNetwork` over our [`RaftTransport`].

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::cluster_id::ClusterIdCell;
use super::removal::Refusals;
use super::rpc::{RefusedReason, RequestBody, ResponseBody, RpcRequest};
use super::runtime;
use super::types::{NodeId, NodeInfo, TypeConfig};
use crate::transport::{RaftTransport, TransportError};

/// Why a Raft RPC got no usable answer.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("peer {peer} refused the rpc: {reason}")]
    Refused { peer: String, reason: String },
    #[error("peer {peer} sent an unexpected response")]
    Unexpected { peer: String },
}

/// Creates one [`NetworkClient`] per target peer.
pub(crate) struct NetworkFactory {
    pub(crate) transport: Arc<dyn RaftTransport>,
    pub(crate) cluster_id: ClusterIdCell,
    /// Peers refusing this one as a non-member (see [`Refusals`]).
    pub(crate) refusals: Refusals,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = NetworkClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> NetworkClient {
        NetworkClient {
            target,
            node: node.clone(),
            transport: Arc::clone(&self.transport),
            cluster_id: self.cluster_id.clone(),
            refusals: self.refusals.clone(),
        }
    }
}

/// Sends Raft RPCs to one peer.
pub(crate) struct NetworkClient {
    target: NodeId,
    node: NodeInfo,
    transport: Arc<dyn RaftTransport>,
    cluster_id: ClusterIdCell,
    refusals: Refusals,
}

fn rpc_error<E: std::error::Error>(e: SendError) -> RPCError<NodeId, NodeInfo, E> {
    match &e {
        SendError::Transport(t) if t.not_delivered() => RPCError::Unreachable(Unreachable::new(&e)),
        // A peer of another cluster will keep refusing: back off like for an
        // unreachable one.
        SendError::Refused { .. } => RPCError::Unreachable(Unreachable::new(&e)),
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

impl NetworkClient {
    async fn send(&self, body: RequestBody, ttl: Duration) -> Result<ResponseBody, SendError> {
        let request = RpcRequest {
            cluster_id: self.cluster_id.get(),
            target_incarnation: self.node.incarnation,
            body,
        };
        let call = self.transport.call(&self.node, request);
        let response =
            runtime::timeout(ttl, call)
                .await
                .ok_or_else(|| TransportError::Timeout {
                    peer: self.node.peer_id.clone(),
                })??;
        match response.body {
            ResponseBody::ClusterMismatch { ours, theirs } => Err(SendError::Refused {
                peer: self.node.peer_id.clone(),
                reason: format!("it belongs to cluster {ours:032x}, not {theirs:032x}"),
            }),
            ResponseBody::Refused(reason) => {
                if matches!(reason, RefusedReason::NotFromMember { .. }) {
                    self.refusals.refused(self.target);
                }
                Err(SendError::Refused {
                    peer: self.node.peer_id.clone(),
                    reason: format!("{reason:?}"),
                })
            }
            ResponseBody::Failed(reason) => Err(SendError::Refused {
                peer: self.node.peer_id.clone(),
                reason,
            }),
            other => {
                self.refusals.answered(self.target);
                Ok(other)
            }
        }
    }

    fn unexpected(&self) -> SendError {
        SendError::Unexpected {
            peer: self.node.peer_id.clone(),
        }
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RPCError<NodeId, NodeInfo, E> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            self.node.clone(),
            e,
        ))
    }
}

impl RaftNetwork<TypeConfig> for NetworkClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        match self
            .send(RequestBody::AppendEntries(rpc), option.hard_ttl())
            .await
            .map_err(rpc_error)?
        {
            ResponseBody::AppendEntries(r) => r.map_err(|e| self.remote(e)),
            _ => Err(rpc_error(self.unexpected())),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .send(RequestBody::InstallSnapshot(rpc), option.hard_ttl())
            .await
            .map_err(rpc_error)?
        {
            ResponseBody::InstallSnapshot(r) => r.map_err(|e| self.remote(e)),
            _ => Err(rpc_error(self.unexpected())),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        match self
            .send(RequestBody::Vote(rpc), option.hard_ttl())
            .await
            .map_err(rpc_error)?
        {
            ResponseBody::Vote(r) => r.map_err(|e| self.remote(e)),
            _ => Err(rpc_error(self.unexpected())),
        }
    }
}

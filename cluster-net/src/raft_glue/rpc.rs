//! The wire messages between peers. Their contents are openraft types, kept
//! private: transports see opaque, serialisable envelopes.

use cluster_core::pinset::{ApplyResult, Entry};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::types::{NodeId, NodeInfo, TypeConfig};

/// Error encoding or decoding a wire message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("raft rpc message codec: {0}")]
pub struct CodecError(String);

/// A request from one peer to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcRequest {
    /// Cluster of the sender, `None` for a peer that has not joined yet.
    pub(crate) cluster_id: Option<u128>,
    /// The incarnation of the target as the sender knows it (from the
    /// membership); Raft messages for another incarnation are refused.
    pub(crate) target_incarnation: u128,
    pub(crate) body: RequestBody,
}

/// A response to an [`RpcRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub struct RpcResponse {
    pub(crate) body: ResponseBody,
}

macro_rules! wire_codec {
    ($t:ty) => {
        impl $t {
            /// Serialises the message for a byte transport (postcard).
            pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
                postcard::to_allocvec(self).map_err(|e| CodecError(e.to_string()))
            }

            /// Parses a message produced by `to_bytes`.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
                postcard::from_bytes(bytes).map_err(|e| CodecError(e.to_string()))
            }
        }
    };
}

wire_codec!(RpcRequest);
wire_codec!(RpcResponse);

impl RpcRequest {
    /// True for Raft protocol traffic (AppendEntries, Vote, InstallSnapshot);
    /// false for peer RPCs (forwarded writes, join, remove). A network
    /// transport carries the two on separate protocols.
    pub fn is_raft_protocol(&self) -> bool {
        self.body.is_raft_protocol()
    }

    /// Short name of the request kind, for logs and fault injection.
    pub fn kind(&self) -> &'static str {
        match self.body {
            RequestBody::AppendEntries(_) => "append_entries",
            RequestBody::Vote(_) => "vote",
            RequestBody::InstallSnapshot(_) => "install_snapshot",
            RequestBody::Forward(_) => "forward",
            RequestBody::Join(_) => "join",
            RequestBody::Remove(_) => "remove",
            RequestBody::Identify => "identify",
            RequestBody::Add(_) => "add",
        }
    }
}

impl RpcResponse {
    /// An answer saying the request failed at the receiver (for transports
    /// that refuse a request before it reaches the handler).
    #[cfg(all(feature = "libp2p", not(madsim)))]
    pub(crate) fn failed(reason: impl Into<String>) -> RpcResponse {
        RpcResponse {
            body: ResponseBody::Failed(reason.into()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum RequestBody {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Client writes forwarded to the leader.
    Forward(Vec<Entry>),
    /// Add this peer to the cluster (sent to any member).
    Join(NodeInfo),
    /// Remove a peer (its peer id string) from the cluster.
    Remove(String),
    /// Who are you: the receiver's record and its cluster (answered by any
    /// peer, member or not). What a member asks before adding a peer.
    Identify,
    /// Add this (running, identified) peer to the cluster, sent by a member
    /// on behalf of it (IPFS Cluster's `POST /peers`).
    Add(NodeInfo),
}

impl RequestBody {
    /// Raft protocol messages only come from members of a cluster.
    pub(crate) fn is_raft_protocol(&self) -> bool {
        matches!(
            self,
            RequestBody::AppendEntries(_) | RequestBody::Vote(_) | RequestBody::InstallSnapshot(_)
        )
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ResponseBody {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// Results of forwarded writes, one per entry, and the log index of
    /// the entry that carried them.
    Applied {
        index: u64,
        results: Vec<ApplyResult>,
    },
    /// A membership change completed; the cluster's id.
    MembershipDone {
        cluster_id: u128,
    },
    /// This peer is not the leader and did not propose anything; retry at
    /// the hinted one.
    NotLeader {
        leader: Option<NodeInfo>,
    },
    /// The leader proposed the request, then lost leadership or stopped
    /// before it was committed: it may still be applied.
    OutcomeUnknown {
        leader: Option<NodeInfo>,
        reason: String,
    },
    /// The request came from a different cluster.
    ClusterMismatch {
        ours: u128,
        theirs: u128,
    },
    /// The request cannot be served (reason for the caller).
    Refused(RefusedReason),
    /// The request failed at the receiver.
    Failed(String),
    /// The answer to `Identify`: the receiver's record, its cluster if it
    /// has one, and whether it asked to join one. (Variants are appended:
    /// postcard numbers them, and older peers read the others unchanged.)
    Identity {
        node: NodeInfo,
        cluster_id: Option<u128>,
        joining: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RefusedReason {
    /// The receiver belongs to no cluster and the request carries no id.
    NoCluster,
    /// The sender belongs to no cluster but sent a Raft message.
    SenderNotInCluster,
    /// The joining peer's node id collides with a member's.
    NodeIdCollision { node_id: u64, existing: String },
    /// The peer to remove is not a member.
    NotMember(String),
    /// The removal would leave no voter.
    LastPeer,
    /// The receiver is shut down and did not propose anything.
    Shutdown,
    /// A Raft message addressed to another incarnation of the receiver's
    /// store: the receiver lost its data since it joined (or the sender's
    /// membership is stale) and must not act as that member.
    WrongIncarnation { ours: u128, addressed: u128 },
    /// The joining peer is a member under another incarnation: it must be
    /// removed before it joins again.
    StaleMember(String),
    /// Raft traffic from a peer that is not a member of the receiver's
    /// cluster (as the receiver knows it), or that speaks for another
    /// member's node id.
    NotFromMember { sender: String },
    /// A join naming another peer than the one that sent it.
    JoinForAnotherPeer { sender: String, named: String },
}

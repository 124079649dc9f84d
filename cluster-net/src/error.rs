//! Errors of the public API.

use crate::config::ConfigError;
use crate::store::StoreError;
use crate::transport::TransportError;

/// A peer could not start its consensus layer.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The storage backend failed or holds corrupt data.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The settings contradict each other.
    #[error("invalid raft configuration: {0}")]
    InvalidConfig(#[from] ConfigError),
    /// openraft refused the configuration derived from the settings.
    #[error("invalid raft configuration: {0}")]
    Config(String),
    /// The Raft engine refused to start.
    #[error("raft failed to start: {0}")]
    Raft(String),
    /// The Raft engine could not read or write its state while starting
    /// (a failing or full disk). Nothing was lost: start again once the
    /// disk is healthy.
    #[error("raft failed to start on a storage error (start again once the disk is healthy): {0}")]
    RaftStorage(String),
    /// The node is configured as a member but its store holds no state
    /// (missing, wiped or replaced disk). It must not come back as the old
    /// member: it remembers no vote and no log.
    #[error(
        "peer {peer} is configured as a cluster member but its raft store holds no state \
         (missing, wiped or replaced disk); it cannot come back as the member it was. \
         Remove it from the cluster (remove_peer from a live member), then start it with \
         an empty store as a new peer and join again"
    )]
    NoState {
        /// This peer.
        peer: String,
    },
    /// The store belongs to another peer.
    #[error("the raft store belongs to peer {stored}, not to {given}")]
    WrongPeer {
        /// The peer id recorded in the store.
        stored: String,
        /// The peer id given to `start`.
        given: String,
    },
}

/// Why a running peer's consensus stopped by itself.
///
/// openraft stops a peer for good on any storage error (a read or a write
/// that failed: an I/O error, a full disk): it cannot tell what reached the
/// disk, so it serves nothing more rather than guess. The node should exit
/// and be restarted (by its supervisor) once the disk is healthy; the peer
/// then rebuilds its state from what is durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FatalError {
    /// A read or write of the Raft store failed.
    #[error("raft stopped on a storage error (restart the node once the disk is healthy): {0}")]
    Storage(String),
    /// A Raft task panicked.
    #[error("raft stopped: a raft task panicked")]
    Panicked,
}

/// A write was not applied, or its outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// No answer within the time limit; the write may still be applied.
    #[error("write not confirmed within {ms} ms (it may still be applied)")]
    Timeout {
        /// The limit.
        ms: u64,
    },
    /// No leader could be reached after the bounded retries.
    #[error("no raft leader available")]
    NoLeader,
    /// The transport failed after the request may have been delivered.
    #[error("write outcome unknown: {0}")]
    Transport(TransportError),
    /// The leader accepted the write but could not confirm it (it shut
    /// down or lost leadership): it may still be applied.
    #[error("write outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// One write is larger than a whole batch may be (`batch_bytes_max`).
    #[error("write of {bytes} bytes exceeds the batch limit of {max} bytes")]
    TooLarge {
        /// Encoded size of the write.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The peer belongs to no cluster yet (bootstrap or join first).
    #[error("this peer is not part of a cluster")]
    NotInCluster,
    /// The consensus layer is shutting down.
    #[error("consensus is shut down")]
    Shutdown,
    /// The leader failed to commit the entry.
    #[error("raft error: {0}")]
    Raft(String),
}

impl WriteError {
    /// True when the write may have been applied although it failed: retry
    /// it only if its entry has a `RequestId` (applied once however often
    /// it is delivered).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            WriteError::Timeout { .. } | WriteError::Transport(_) | WriteError::OutcomeUnknown(_)
        )
    }
}

/// A membership change (bootstrap, join, remove, leave) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The other side belongs to a different cluster.
    #[error(
        "cluster mismatch: this peer belongs to cluster {ours:032x}, the other to {theirs:032x}"
    )]
    ClusterMismatch {
        /// Cluster id of the refusing peer.
        ours: u128,
        /// Cluster id that was presented.
        theirs: u128,
    },
    /// The peer's Raft node id equals that of a different member.
    #[error("peer {peer} hashes to raft node id {node_id:#x}, already used by member {existing}")]
    NodeIdCollision {
        /// The peer being added.
        peer: String,
        /// Its node id.
        node_id: u64,
        /// The member already using the id.
        existing: String,
    },
    /// The peer is not a member.
    #[error("peer {0} is not a member of the cluster")]
    NotMember(String),
    /// `bootstrap` was given an initial peer list without this peer.
    #[error("peer {0} is not in the initial peer list it was given")]
    NotInInitialPeers(String),
    /// `bootstrap` was given a peer record without its store's incarnation.
    #[error(
        "peer {0} is listed in the initial peers without the incarnation of its store; \
         ask each peer for its node info before bootstrapping"
    )]
    UnknownIncarnation(String),
    /// `bootstrap` was given a list naming this peer with another store.
    #[error(
        "the initial peer list names peer {0} with another store (an earlier incarnation): \
         this peer's data was lost or replaced since the list was made"
    )]
    ListedWithAnotherStore(String),
    /// The peer asked belongs to no cluster yet (it may be bootstrapping).
    #[error("the peer asked belongs to no cluster yet")]
    NoCluster,
    /// The peer is a member under an earlier incarnation (it lost its store).
    #[error(
        "peer {peer} is a member of the cluster with another store (an earlier incarnation: \
         its data was lost or replaced); remove it first (remove_peer), then join again"
    )]
    StaleMember {
        /// The peer.
        peer: String,
    },
    /// The peer to add belongs to no cluster and is not joining one: it
    /// would refuse the cluster's traffic.
    #[error(
        "peer {0} belongs to no cluster and is not waiting to join one; start it with a member \
         of this cluster in its cluster_peers (or --bootstrap) to join"
    )]
    NotJoining(String),
    /// The peer to add answered as another peer (its key changed).
    #[error("peer {asked} answered as {answered}")]
    WrongPeer {
        /// The peer asked for.
        asked: String,
        /// The peer that answered.
        answered: String,
    },
    /// The peer to add could not be asked who it is.
    #[error(
        "cannot reach peer {peer} to add it: {reason} (it must be running, with an address this \
         peer knows: connected to it, or in its peerstore)"
    )]
    Unreachable {
        /// The peer.
        peer: String,
        /// What the transport said.
        reason: String,
    },
    /// Removing the peer would leave the cluster without voters.
    #[error("cannot remove the last peer of a cluster")]
    LastPeer,
    /// No leader could be reached after the bounded retries.
    #[error("no raft leader available")]
    NoLeader,
    /// The change did not complete in time.
    #[error("membership change not confirmed within {ms} ms")]
    Timeout {
        /// The limit.
        ms: u64,
    },
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Storage failed.
    #[error("storage: {0}")]
    Store(String),
    /// The Raft engine refused the change.
    #[error("raft error: {0}")]
    Raft(String),
    /// The consensus layer is shutting down.
    #[error("consensus is shut down")]
    Shutdown,
}

//! The openraft type configuration and node identity.

use std::io::Cursor;

use cluster_core::pinset::{ApplyResult, Entry};
use cluster_core::PeerId;
use serde::{Deserialize, Serialize};

use super::runtime::Runtime;

openraft::declare_raft_types!(
    /// The openraft types of IPFS Cluster: a log entry carries a batch of
    /// pinset entries; its response is one result per entry.
    pub(crate) TypeConfig:
        D = Vec<Entry>,
        R = Vec<ApplyResult>,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = Runtime,
);

/// The openraft node id type.
pub(crate) type NodeId = u64;
/// A log id.
pub(crate) type LogId = openraft::LogId<NodeId>;
/// A log entry.
pub(crate) type RaftEntry = openraft::Entry<TypeConfig>;
/// A storage error.
pub(crate) type StorageError = openraft::StorageError<NodeId>;
/// Membership as stored with the state machine.
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;
/// Snapshot metadata.
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;
/// The Raft handle.
pub(crate) type Raft = openraft::Raft<TypeConfig>;

/// What the Raft membership records about a peer: its libp2p peer id, an
/// address the transport can use to reach it, and the incarnation of its
/// store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The peer id, as its string form.
    pub peer_id: String,
    /// Transport address (a multiaddr for libp2p, any name in-process).
    pub addr: String,
    /// The random id of the peer's store when it joined; 0 when unknown (a
    /// contact address given to `join`). Raft messages are addressed to it:
    /// a peer whose store was replaced has another one and refuses them.
    pub incarnation: u128,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.peer_id, self.addr)
    }
}

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The Raft node id of one store of a peer: FNV-1a (64 bit) of its peer id
/// string followed by the store's incarnation (16 bytes, big-endian).
///
/// Deterministic on every peer that knows the member's [`NodeInfo`], so no
/// id assignment has to be agreed on. The incarnation is part of it because
/// Raft must see a peer back on a wiped disk as a new node: the log still
/// holds membership entries naming the old store (the founding entry names
/// it as the only voter), and a new store with the old id would read them as
/// naming itself, vote and elect itself with no memory of what the old one
/// promised. Two distinct (peer, incarnation) pairs may collide (probability
/// about n^2 / 2^65); a membership change that would add a peer whose node
/// id is already used by another member is refused with
/// `MembershipError::NodeIdCollision`.
pub fn node_id_of(peer: &PeerId, incarnation: u128) -> u64 {
    node_id_of_str(peer.as_str(), incarnation)
}

/// [`node_id_of`] for a peer id in string form.
pub(crate) fn node_id_of_str(peer: &str, incarnation: u128) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    for byte in peer.as_bytes().iter().chain(&incarnation.to_be_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The Raft node id a membership record stands for.
pub(crate) fn node_id_of_info(node: &NodeInfo) -> u64 {
    node_id_of_str(&node.peer_id, node.incarnation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_deterministic_and_distinct() {
        let a = PeerId::synthetic(1);
        let b = PeerId::synthetic(2);
        assert_eq!(node_id_of(&a, 1), node_id_of(&a.clone(), 1));
        assert_ne!(node_id_of(&a, 1), node_id_of(&b, 1));
        // Another store of the same peer is another Raft node.
        assert_ne!(node_id_of(&a, 1), node_id_of(&a, 2));
    }
}

//! What every driver of one peer works with: its consensus, its IPFS
//! daemon, its clock and the peer-RPC seam to the other peers.

use std::sync::Arc;

use cluster_core::PeerId;
use cluster_net::{ClusterRaft, NodeRpc};

use crate::clock::Clock;
use crate::ipfs::IpfsConnector;

/// The seams one peer's drivers share. The binary fills it with tokio,
/// libp2p and a real connector; the simulator with its network, disk and
/// fake IPFS.
#[derive(Clone)]
pub struct PeerContext {
    /// This peer.
    pub id: PeerId,
    /// Its consensus.
    pub raft: ClusterRaft,
    /// Its IPFS daemon.
    pub ipfs: Arc<dyn IpfsConnector>,
    /// Where `now` comes from.
    pub clock: Arc<dyn Clock>,
    /// Calls to other peers' node layers.
    pub rpc: Arc<dyn NodeRpc>,
}

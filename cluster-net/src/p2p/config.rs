//! Settings of the libp2p transport.

use std::path::PathBuf;

use super::secret::ClusterSecret;

/// How a peer's libp2p host runs.
#[derive(Debug, Clone)]
pub struct Libp2pConfig {
    /// Directory of the identity key and the peerstore file.
    pub config_dir: PathBuf,
    /// Listen multiaddrs (e.g. `/ip4/0.0.0.0/tcp/9096`; port 0 picks one).
    pub listen: Vec<String>,
    /// The cluster secret; `None` runs without a private network (any
    /// libp2p peer may connect: a warning is logged).
    pub secret: Option<ClusterSecret>,
    /// Largest message accepted or sent, either way, in bytes. Must hold
    /// the largest AppendEntries (`RaftConfig::append_entries_bytes_max`),
    /// snapshot chunk and forwarded batch, plus framing.
    pub message_bytes_max: usize,
    /// Longest a Raft request waits for its answer on the wire (openraft
    /// gives each call a shorter limit of its own).
    pub raft_request_timeout_ms: u64,
    /// Longest a peer RPC (forwarded write, join, remove) waits for its
    /// answer; covers `RaftConfig::membership_attempt_timeout_ms`.
    pub peer_rpc_timeout_ms: u64,
    /// Time to set up a connection (TCP, private network, noise, yamux).
    pub connect_timeout_ms: u64,
    /// A connection without traffic is closed after this long.
    pub idle_connection_timeout_ms: u64,
    /// First wait before dialling a peer again after a failed dial.
    pub redial_backoff_min_ms: u64,
    /// Longest wait between dials of a peer (the wait doubles up to it).
    pub redial_backoff_max_ms: u64,
    /// Period of the loop that redials disconnected peers.
    pub redial_interval_ms: u64,
    /// A peer called within this long is kept connected (redialled).
    pub keep_connected_ms: u64,
    /// Peers of the peerstore dialled at start.
    pub bootstrap_dials_max: usize,
    /// Most inbound Raft requests served at once (beyond: refused).
    pub raft_handlers_max: usize,
    /// Most inbound peer RPCs served at once (beyond: refused). Kept apart
    /// from Raft's so forwarded writes never starve heartbeats.
    pub peer_rpc_handlers_max: usize,
    /// Capacity of the queue of calls to the swarm task (callers wait
    /// when it is full).
    pub command_queue_max: usize,
    /// Most outbound requests awaiting an answer (beyond: refused as
    /// unreachable, safe to retry).
    pub outbound_pending_max: usize,
    /// Most concurrent streams per connection and protocol.
    pub streams_per_connection_max: usize,
}

impl Libp2pConfig {
    /// Defaults for a peer with its config in `config_dir`, listening on
    /// `listen`.
    pub fn new(config_dir: impl Into<PathBuf>, listen: Vec<String>) -> Libp2pConfig {
        Libp2pConfig {
            config_dir: config_dir.into(),
            listen,
            secret: None,
            message_bytes_max: 8 * 1024 * 1024,
            raft_request_timeout_ms: 10_000,
            peer_rpc_timeout_ms: 130_000,
            connect_timeout_ms: 5_000,
            idle_connection_timeout_ms: 60_000,
            redial_backoff_min_ms: 500,
            redial_backoff_max_ms: 30_000,
            redial_interval_ms: 500,
            keep_connected_ms: 60_000,
            bootstrap_dials_max: 3,
            raft_handlers_max: 64,
            peer_rpc_handlers_max: 256,
            command_queue_max: 1_024,
            outbound_pending_max: 4_096,
            streams_per_connection_max: 256,
        }
    }

    /// Short back-off and timeouts for tests on loopback.
    pub fn fast_for_tests(config_dir: impl Into<PathBuf>) -> Libp2pConfig {
        Libp2pConfig {
            connect_timeout_ms: 2_000,
            redial_backoff_min_ms: 50,
            redial_backoff_max_ms: 500,
            redial_interval_ms: 50,
            ..Libp2pConfig::new(config_dir, vec!["/ip4/127.0.0.1/tcp/0".to_string()])
        }
    }
}

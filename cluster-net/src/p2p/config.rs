//! Settings of the libp2p transport.

use std::path::PathBuf;

use super::secret::ClusterSecret;
use crate::config::RaftConfig;

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
    /// Most inbound node RPCs (status, metrics) served at once.
    pub node_rpc_handlers_max: usize,
    /// Longest a node RPC waits for its answer on the wire.
    pub node_rpc_timeout_ms: u64,
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
            node_rpc_handlers_max: 64,
            node_rpc_timeout_ms: 30_000,
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

/// Room for the envelope and the encoding around the payload of one
/// message (ids, votes, log ids, lengths).
pub const ENVELOPE_OVERHEAD_BYTES: usize = 64 * 1024;

/// A [`Libp2pConfig`] that does not fit the [`RaftConfig`] it carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Libp2pConfigError {
    /// A setting that must be positive is zero.
    #[error("{name} must be positive")]
    Zero {
        /// The setting.
        name: &'static str,
    },
    /// A setting is below what the Raft settings need.
    #[error("{name} ({value}) must be at least {needed} ({why})")]
    TooSmall {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: u64,
        /// The least value that works.
        needed: u64,
        /// Why.
        why: &'static str,
    },
}

impl Libp2pConfig {
    /// Checks the settings against the Raft settings the transport will
    /// carry: a message cap below the largest AppendEntries, snapshot chunk
    /// or forwarded batch would refuse them on every try, and a wire
    /// timeout below the caller's own would cut its calls short.
    pub fn validate(&self, raft: &RaftConfig) -> Result<(), Libp2pConfigError> {
        let positive = [
            ("raft_handlers_max", self.raft_handlers_max),
            ("peer_rpc_handlers_max", self.peer_rpc_handlers_max),
            ("node_rpc_handlers_max", self.node_rpc_handlers_max),
            ("node_rpc_timeout_ms", self.node_rpc_timeout_ms as usize),
            ("command_queue_max", self.command_queue_max),
            ("outbound_pending_max", self.outbound_pending_max),
            (
                "streams_per_connection_max",
                self.streams_per_connection_max,
            ),
            ("redial_interval_ms", self.redial_interval_ms as usize),
            ("connect_timeout_ms", self.connect_timeout_ms as usize),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Libp2pConfigError::Zero { name });
            }
        }
        let at_least = |name, value: u64, needed: u64, why| {
            if value >= needed {
                Ok(())
            } else {
                Err(Libp2pConfigError::TooSmall {
                    name,
                    value,
                    needed,
                    why,
                })
            }
        };
        let payload = raft
            .append_entries_bytes_max
            .max(raft.batch_bytes_max)
            .max(usize::try_from(raft.snapshot_chunk_bytes).unwrap_or(usize::MAX));
        at_least(
            "message_bytes_max",
            self.message_bytes_max as u64,
            payload.saturating_add(ENVELOPE_OVERHEAD_BYTES) as u64,
            "the largest AppendEntries, snapshot chunk or forwarded batch plus its envelope",
        )?;
        at_least(
            "raft_request_timeout_ms",
            self.raft_request_timeout_ms,
            raft.rpc_timeout_ms.max(raft.heartbeat_interval_ms),
            "openraft's own limit on one Raft call",
        )?;
        at_least(
            "peer_rpc_timeout_ms",
            self.peer_rpc_timeout_ms,
            raft.membership_attempt_timeout_ms.max(raft.rpc_timeout_ms),
            "one membership attempt or forwarded write",
        )?;
        at_least(
            "redial_backoff_max_ms",
            self.redial_backoff_max_ms,
            self.redial_backoff_min_ms,
            "the back-off doubles from its minimum up to it",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_the_default_raft_settings() {
        let config = Libp2pConfig::new("/tmp/x", vec![]);
        assert_eq!(config.validate(&RaftConfig::default()), Ok(()));
        let fast = Libp2pConfig::fast_for_tests("/tmp/x");
        assert_eq!(fast.validate(&RaftConfig::fast_for_tests()), Ok(()));
    }

    #[test]
    fn a_cap_below_the_append_entries_budget_is_refused() {
        let config = Libp2pConfig {
            message_bytes_max: 1024 * 1024,
            ..Libp2pConfig::new("/tmp/x", vec![])
        };
        assert!(matches!(
            config.validate(&RaftConfig::default()),
            Err(Libp2pConfigError::TooSmall {
                name: "message_bytes_max",
                ..
            })
        ));
        let config = Libp2pConfig {
            peer_rpc_timeout_ms: 1_000,
            ..Libp2pConfig::new("/tmp/x", vec![])
        };
        assert!(matches!(
            config.validate(&RaftConfig::default()),
            Err(Libp2pConfigError::TooSmall {
                name: "peer_rpc_timeout_ms",
                ..
            })
        ));
        let config = Libp2pConfig {
            raft_handlers_max: 0,
            ..Libp2pConfig::new("/tmp/x", vec![])
        };
        assert_eq!(
            config.validate(&RaftConfig::default()),
            Err(Libp2pConfigError::Zero {
                name: "raft_handlers_max"
            })
        );
    }
}

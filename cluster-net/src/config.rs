//! Consensus settings of one peer.

/// Timing, batching and log compaction policy of the Raft layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    /// Name of the cluster in logs and metrics.
    pub cluster_name: String,
    /// Leader heartbeat period.
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomised election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomised election timeout.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one (an
    /// upper bound; one entry carries up to `batch_entries_max` writes).
    pub snapshot_every_logs: u64,
    /// Build a snapshot after this many client writes applied since the last
    /// one (0: no limit): bounds what a restart replays, in pins.
    pub snapshot_every_writes: u64,
    /// Build a snapshot after this many bytes of log appended since the last
    /// one (0: no limit): bounds the log kept on disk.
    pub snapshot_every_log_bytes: u64,
    /// Log entries kept behind a snapshot (lets slightly lagging peers catch
    /// up from the log instead of a snapshot).
    pub logs_to_keep: u64,
    /// Largest snapshot chunk sent in one install-snapshot RPC.
    pub snapshot_chunk_bytes: u64,
    /// Time allowed for one snapshot chunk (and other RPCs) to be answered.
    pub rpc_timeout_ms: u64,
    /// Time allowed for a client write, forwarding and retries included.
    pub write_timeout_ms: u64,
    /// Time allowed for a membership change (join waits for catch-up).
    pub membership_timeout_ms: u64,
    /// Pause before retrying a request when there is no leader or it moved.
    pub leader_retry_delay_ms: u64,
    /// Most client writes proposed together in one log entry.
    pub batch_entries_max: usize,
    /// Most batches in flight at once from one peer.
    pub proposals_in_flight_max: usize,
}

impl Default for RaftConfig {
    fn default() -> RaftConfig {
        RaftConfig {
            cluster_name: "ipfs-cluster".to_string(),
            heartbeat_interval_ms: 250,
            election_timeout_min_ms: 1_000,
            election_timeout_max_ms: 2_000,
            snapshot_every_logs: 5_000,
            snapshot_every_writes: 50_000,
            snapshot_every_log_bytes: 64 * 1024 * 1024,
            logs_to_keep: 1_000,
            snapshot_chunk_bytes: 1024 * 1024,
            rpc_timeout_ms: 10_000,
            write_timeout_ms: 60_000,
            membership_timeout_ms: 120_000,
            leader_retry_delay_ms: 100,
            batch_entries_max: 1_024,
            proposals_in_flight_max: 2,
        }
    }
}

impl RaftConfig {
    /// Short timeouts for in-process tests.
    pub fn fast_for_tests() -> RaftConfig {
        RaftConfig {
            heartbeat_interval_ms: 30,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            rpc_timeout_ms: 1_000,
            write_timeout_ms: 10_000,
            membership_timeout_ms: 10_000,
            leader_retry_delay_ms: 20,
            ..RaftConfig::default()
        }
    }
}

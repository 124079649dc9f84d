//! Consensus settings of one peer, and the rules that tie them together.

/// Timing, batching and log compaction policy of the Raft layer.
///
/// The settings depend on each other (see [`RaftConfig::validate`], which
/// `ClusterRaft::start` runs): a timeout that cuts an operation shorter than
/// the operation is allowed to take turns every slow case into a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    /// Name of the cluster in logs and metrics.
    pub cluster_name: String,
    /// Leader heartbeat period. openraft also uses it as the time limit of
    /// one AppendEntries exchange, so one message (see
    /// `append_entries_bytes_max`) must travel and be stored within it.
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
    /// Time allowed for one snapshot chunk and for one forwarded write
    /// attempt to be answered. Below the election timeout: while a chunk is
    /// in flight its follower hears nothing else from the leader.
    pub rpc_timeout_ms: u64,
    /// Time allowed for a client write, forwarding and retries included.
    pub write_timeout_ms: u64,
    /// Time allowed for a join or removal on the calling peer, every
    /// attempt and back-off included.
    pub membership_timeout_ms: u64,
    /// Time the leader gives one membership change: a joiner's catch-up,
    /// waiting out a change already in progress, and the commit.
    pub membership_leader_wait_ms: u64,
    /// Time the calling peer waits for the answer to one forwarded
    /// membership attempt; covers the leader-side wait plus a round trip.
    pub membership_attempt_timeout_ms: u64,
    /// Pause before retrying a request when there is no leader or it moved;
    /// the first back-off step of membership retries.
    pub leader_retry_delay_ms: u64,
    /// Longest pause between two membership attempts (the back-off doubles
    /// from `leader_retry_delay_ms` up to this).
    pub membership_retry_delay_max_ms: u64,
    /// Most client writes proposed together in one log entry.
    pub batch_entries_max: usize,
    /// Most encoded bytes of client writes in one log entry; a single write
    /// larger than this is refused (`WriteError::TooLarge`).
    pub batch_bytes_max: usize,
    /// Most bytes of log entries in one AppendEntries message. openraft
    /// bounds messages by entry count only, so the count is derived:
    /// `append_entries_bytes_max / batch_bytes_max` log entries, each at
    /// most `batch_bytes_max` (see [`RaftConfig::append_entries_max`]).
    pub append_entries_bytes_max: usize,
    /// Most batches in flight at once from one peer (proposed, or waiting
    /// for this peer to apply them before answering).
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
            rpc_timeout_ms: 750,
            write_timeout_ms: 60_000,
            membership_timeout_ms: 300_000,
            membership_leader_wait_ms: 120_000,
            membership_attempt_timeout_ms: 125_000,
            leader_retry_delay_ms: 100,
            membership_retry_delay_max_ms: 5_000,
            batch_entries_max: 1_024,
            // Holds any pin the core accepts (about 1.4 MiB at its limits).
            batch_bytes_max: 2 * 1024 * 1024,
            // Two full batches: 4 MiB takes 34 ms at 1 Gbit/s, well inside
            // the 250 ms heartbeat that bounds one AppendEntries exchange.
            append_entries_bytes_max: 4 * 1024 * 1024,
            proposals_in_flight_max: 2,
        }
    }
}

/// A [`RaftConfig`] whose settings contradict each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A setting that must be positive is zero.
    #[error("{name} must be positive")]
    Zero {
        /// The setting.
        name: &'static str,
    },
    /// A setting must be at least (or above) another one.
    #[error("{name} ({value}) must be {relation} {other} ({other_value}): {why}")]
    Order {
        /// The setting that is too small.
        name: &'static str,
        /// Its value.
        value: u64,
        /// `"at least"` or `"above"`.
        relation: &'static str,
        /// What it is compared with (a setting or an expression of them).
        other: &'static str,
        /// The value of that.
        other_value: u64,
        /// Why the two are related.
        why: &'static str,
    },
}

impl RaftConfig {
    /// Short timeouts for in-process tests.
    pub fn fast_for_tests() -> RaftConfig {
        RaftConfig {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            rpc_timeout_ms: 250,
            write_timeout_ms: 10_000,
            membership_timeout_ms: 20_000,
            membership_leader_wait_ms: 5_000,
            membership_attempt_timeout_ms: 6_000,
            leader_retry_delay_ms: 20,
            membership_retry_delay_max_ms: 500,
            ..RaftConfig::default()
        }
    }

    /// Log entries in one AppendEntries message (openraft's
    /// `max_payload_entries`): as many full batches as fit the byte budget,
    /// at least one.
    pub fn append_entries_max(&self) -> u64 {
        (self.append_entries_bytes_max / self.batch_bytes_max.max(1)).max(1) as u64
    }

    /// Checks every setting and how they relate.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("snapshot_every_logs", self.snapshot_every_logs),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            ("rpc_timeout_ms", self.rpc_timeout_ms),
            ("leader_retry_delay_ms", self.leader_retry_delay_ms),
            ("batch_entries_max", self.batch_entries_max as u64),
            ("batch_bytes_max", self.batch_bytes_max as u64),
            (
                "proposals_in_flight_max",
                self.proposals_in_flight_max as u64,
            ),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError::Zero { name });
            }
        }
        let at_least = |name, value, other, other_value, why| {
            if value >= other_value {
                Ok(())
            } else {
                Err(ConfigError::Order {
                    name,
                    value,
                    relation: "at least",
                    other,
                    other_value,
                    why,
                })
            }
        };
        let above = |name, value, other, other_value, why| {
            if value > other_value {
                Ok(())
            } else {
                Err(ConfigError::Order {
                    name,
                    value,
                    relation: "above",
                    other,
                    other_value,
                    why,
                })
            }
        };
        at_least(
            "election_timeout_min_ms",
            self.election_timeout_min_ms,
            "2 * heartbeat_interval_ms",
            self.heartbeat_interval_ms.saturating_mul(2),
            "one lost heartbeat must not start an election",
        )?;
        above(
            "election_timeout_max_ms",
            self.election_timeout_max_ms,
            "election_timeout_min_ms",
            self.election_timeout_min_ms,
            "the election timeout is drawn from a non-empty range",
        )?;
        above(
            "election_timeout_min_ms",
            self.election_timeout_min_ms,
            "rpc_timeout_ms",
            self.rpc_timeout_ms,
            "a follower receiving a snapshot chunk hears no heartbeat until it is answered",
        )?;
        at_least(
            "write_timeout_ms",
            self.write_timeout_ms,
            "rpc_timeout_ms",
            self.rpc_timeout_ms,
            "a write gets at least one full forwarded attempt",
        )?;
        at_least(
            "membership_attempt_timeout_ms",
            self.membership_attempt_timeout_ms,
            "membership_leader_wait_ms + rpc_timeout_ms",
            self.membership_leader_wait_ms
                .saturating_add(self.rpc_timeout_ms),
            "the caller must not give up on an attempt the leader is still working on",
        )?;
        at_least(
            "membership_timeout_ms",
            self.membership_timeout_ms,
            "membership_attempt_timeout_ms",
            self.membership_attempt_timeout_ms,
            "a join or removal gets at least one full attempt",
        )?;
        at_least(
            "membership_retry_delay_max_ms",
            self.membership_retry_delay_max_ms,
            "leader_retry_delay_ms",
            self.leader_retry_delay_ms,
            "the back-off starts at leader_retry_delay_ms",
        )?;
        at_least(
            "append_entries_bytes_max",
            self.append_entries_bytes_max as u64,
            "batch_bytes_max",
            self.batch_bytes_max as u64,
            "one AppendEntries message must hold one full batch",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_are_consistent() {
        assert_eq!(RaftConfig::default().validate(), Ok(()));
        assert_eq!(RaftConfig::fast_for_tests().validate(), Ok(()));
    }

    /// Item 15: a forwarded join attempt was cut at the rpc timeout (10 s)
    /// while the leader waited up to 120 s for the joiner to catch up.
    #[test]
    fn membership_attempt_shorter_than_the_leader_wait_is_refused() {
        let config = RaftConfig {
            membership_leader_wait_ms: 120_000,
            membership_attempt_timeout_ms: 10_000,
            ..RaftConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Order {
                name: "membership_attempt_timeout_ms",
                ..
            })
        ));
        let overall_too_short = RaftConfig {
            membership_timeout_ms: 1_000,
            ..RaftConfig::default()
        };
        assert!(matches!(
            overall_too_short.validate(),
            Err(ConfigError::Order {
                name: "membership_timeout_ms",
                ..
            })
        ));
    }

    #[test]
    fn timing_relations_are_checked() {
        let cases = [
            (
                RaftConfig {
                    election_timeout_min_ms: 300,
                    heartbeat_interval_ms: 200,
                    ..RaftConfig::default()
                },
                "election_timeout_min_ms",
            ),
            (
                RaftConfig {
                    election_timeout_max_ms: 1_000,
                    ..RaftConfig::default()
                },
                "election_timeout_max_ms",
            ),
            (
                RaftConfig {
                    rpc_timeout_ms: 1_000,
                    ..RaftConfig::default()
                },
                "election_timeout_min_ms",
            ),
            (
                RaftConfig {
                    write_timeout_ms: 100,
                    ..RaftConfig::default()
                },
                "write_timeout_ms",
            ),
            (
                RaftConfig {
                    membership_retry_delay_max_ms: 10,
                    ..RaftConfig::default()
                },
                "membership_retry_delay_max_ms",
            ),
            (
                RaftConfig {
                    append_entries_bytes_max: 1024,
                    ..RaftConfig::default()
                },
                "append_entries_bytes_max",
            ),
        ];
        for (config, expected) in cases {
            match config.validate() {
                Err(ConfigError::Order { name, .. }) => assert_eq!(name, expected),
                other => panic!("{expected}: {other:?}"),
            }
        }
        let zero = RaftConfig {
            batch_bytes_max: 0,
            ..RaftConfig::default()
        };
        assert_eq!(
            zero.validate(),
            Err(ConfigError::Zero {
                name: "batch_bytes_max"
            })
        );
    }

    #[test]
    fn append_entries_count_follows_the_byte_budget() {
        let config = RaftConfig {
            batch_bytes_max: 1024,
            append_entries_bytes_max: 4096 + 1000,
            ..RaftConfig::default()
        };
        assert_eq!(config.append_entries_max(), 4);
        assert_eq!(RaftConfig::default().append_entries_max(), 2);
    }
}

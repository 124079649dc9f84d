//! Tracker statuses, with the strings IPFS Cluster uses on the wire.

use serde::{Deserialize, Serialize};

/// The state of one CID on one peer, as `ipfs-cluster-ctl status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackerStatus {
    /// Should not appear; as a filter it means "all".
    Undefined,
    /// The peer could not be reached or could not compute the status.
    ClusterError,
    /// The last IPFS pin attempt failed.
    PinError,
    /// The last IPFS unpin attempt failed.
    UnpinError,
    /// Filter alias for the three error statuses.
    Error,
    /// IPFS has it pinned.
    Pinned,
    /// An IPFS pin request is in flight.
    Pinning,
    /// An IPFS unpin request is in flight.
    Unpinning,
    /// Not pinned here and not in the cluster state.
    Unpinned,
    /// In the state, allocated to other peers.
    Remote,
    /// Waiting in the pin queue.
    PinQueued,
    /// Waiting in the unpin queue.
    UnpinQueued,
    /// Filter alias for the two queued statuses.
    Queued,
    /// A meta pin (sharded DAG root); never pinned directly.
    Sharded,
    /// Allocated here, no operation pending, but IPFS does not have it.
    UnexpectedlyUnpinned,
}

impl TrackerStatus {
    /// Every value, in declaration order.
    pub const ALL: [TrackerStatus; 15] = [
        TrackerStatus::Undefined,
        TrackerStatus::ClusterError,
        TrackerStatus::PinError,
        TrackerStatus::UnpinError,
        TrackerStatus::Error,
        TrackerStatus::Pinned,
        TrackerStatus::Pinning,
        TrackerStatus::Unpinning,
        TrackerStatus::Unpinned,
        TrackerStatus::Remote,
        TrackerStatus::PinQueued,
        TrackerStatus::UnpinQueued,
        TrackerStatus::Queued,
        TrackerStatus::Sharded,
        TrackerStatus::UnexpectedlyUnpinned,
    ];

    /// The wire string (`pin_queued`, `unexpectedly_unpinned` …).
    pub fn as_str(self) -> &'static str {
        match self {
            TrackerStatus::Undefined => "undefined",
            TrackerStatus::ClusterError => "cluster_error",
            TrackerStatus::PinError => "pin_error",
            TrackerStatus::UnpinError => "unpin_error",
            TrackerStatus::Error => "error",
            TrackerStatus::Pinned => "pinned",
            TrackerStatus::Pinning => "pinning",
            TrackerStatus::Unpinning => "unpinning",
            TrackerStatus::Unpinned => "unpinned",
            TrackerStatus::Remote => "remote",
            TrackerStatus::PinQueued => "pin_queued",
            TrackerStatus::UnpinQueued => "unpin_queued",
            TrackerStatus::Queued => "queued",
            TrackerStatus::Sharded => "sharded",
            TrackerStatus::UnexpectedlyUnpinned => "unexpectedly_unpinned",
        }
    }

    /// Parses a wire string.
    pub fn parse(text: &str) -> Option<TrackerStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text.trim())
    }

    /// Whether a peer in status `self` passes the filter `filter` (aliases expand).
    pub fn matches(self, filter: TrackerStatus) -> bool {
        match filter {
            TrackerStatus::Undefined => true,
            TrackerStatus::Error => matches!(
                self,
                TrackerStatus::ClusterError | TrackerStatus::PinError | TrackerStatus::UnpinError
            ),
            TrackerStatus::Queued => {
                matches!(self, TrackerStatus::PinQueued | TrackerStatus::UnpinQueued)
            }
            other => self == other,
        }
    }
}

impl std::fmt::Display for TrackerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_and_as_str_agree_for_every_value() {
        for s in TrackerStatus::ALL {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
            assert_eq!(TrackerStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(TrackerStatus::parse("nope"), None);
    }

    #[test]
    fn aliases_expand() {
        assert!(TrackerStatus::PinError.matches(TrackerStatus::Error));
        assert!(TrackerStatus::UnpinQueued.matches(TrackerStatus::Queued));
        assert!(!TrackerStatus::Pinned.matches(TrackerStatus::Queued));
        assert!(TrackerStatus::Pinned.matches(TrackerStatus::Undefined));
        assert!(TrackerStatus::Pinned.matches(TrackerStatus::Pinned));
        assert!(!TrackerStatus::Pinning.matches(TrackerStatus::Pinned));
        assert!(!TrackerStatus::Pinned.matches(TrackerStatus::Remote));
    }
}

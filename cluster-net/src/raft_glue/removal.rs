//! Noticing that this peer was removed from the cluster while it was away.
//!
//! A peer removed while partitioned (or removed and left running) never
//! learns of its removal from the log: it keeps its old membership and
//! keeps campaigning. Members refuse its Raft traffic, but a member whose
//! own log is behind still counts it as a voter and votes for it, and in
//! openraft's default mode a candidate that sees a greater vote for the same
//! term in a vote response stands down: a removed peer with a greater node
//! id can then stall every election of the real cluster (simulator seed 97:
//! no leader for 30 s after the heal). So once a majority of the voters it
//! knows refuse it as a non-member, the peer stops starting elections until
//! its membership changes (it was joined again, say).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::node::Inner;
use super::runtime;
use super::types::NodeId;

/// How often a peer looks at who refuses it.
const CHECK_MS: u64 = 500;

/// Which peers refused this peer's Raft traffic as coming from a non-member,
/// since each last answered it normally.
#[derive(Clone, Default)]
pub(crate) struct Refusals {
    refused_by: Arc<Mutex<BTreeSet<NodeId>>>,
}

impl Refusals {
    fn lock(&self) -> MutexGuard<'_, BTreeSet<NodeId>> {
        self.refused_by.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `peer` refused this peer as a non-member.
    pub(crate) fn refused(&self, peer: NodeId) {
        self.lock().insert(peer);
    }

    /// `peer` answered normally.
    pub(crate) fn answered(&self, peer: NodeId) {
        self.lock().remove(&peer);
    }

    /// Forgets every refusal (the membership changed).
    pub(crate) fn forget(&self) {
        self.lock().clear();
    }

    /// True when the voters refusing this peer are a majority of `voters`.
    pub(crate) fn removed(&self, voters: &BTreeSet<NodeId>) -> bool {
        refused_by_majority(&self.lock(), voters)
    }
}

/// True when the peers in `refused_by` are a majority of `voters`: no
/// quorum can elect or keep a leader that counts this peer in.
pub(crate) fn refused_by_majority(
    refused_by: &BTreeSet<NodeId>,
    voters: &BTreeSet<NodeId>,
) -> bool {
    let refusing = voters.intersection(refused_by).count();
    !voters.is_empty() && refusing * 2 > voters.len()
}

/// Runs on every peer for its lifetime: stops this peer's elections while a
/// majority of the voters it knows refuse it as a non-member, and allows
/// them again once its membership changes.
pub(crate) async fn stand_down_when_removed(inner: Weak<Inner>) {
    let mut standing_down: Option<Option<u64>> = None;
    loop {
        runtime::sleep(Duration::from_millis(CHECK_MS)).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.raft.metrics().borrow().running_state.is_err() {
            return;
        }
        let (config_index, voters) = {
            let metrics = inner.raft.metrics();
            let m = metrics.borrow();
            let config = &m.membership_config;
            (
                config.log_id().map(|l| l.index),
                config.membership().voter_ids().collect::<BTreeSet<_>>(),
            )
        };
        match standing_down {
            Some(at) if at != config_index => {
                tracing::info!(peer = %inner.me, "membership changed: this peer may stand for election again");
                inner.refusals.forget();
                inner.raft.runtime_config().elect(true);
                standing_down = None;
            }
            None if inner.refusals.removed(&voters) => {
                tracing::error!(peer = %inner.me, "a majority of the members refuse this peer as a non-member: it was removed from the cluster; it stops standing for election (re-join it, or stop it and remove its data)");
                inner.raft.runtime_config().elect(false);
                standing_down = Some(config_index);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_of_refusing_voters_means_removed() {
        let voters: BTreeSet<NodeId> = [1, 2, 3, 4, 5].into();
        let r = Refusals::default();
        r.refused(2);
        r.refused(3);
        r.refused(9); // not a voter: does not count
        assert!(!r.removed(&voters));
        r.refused(4);
        assert!(r.removed(&voters));
        r.answered(4);
        assert!(!r.removed(&voters));
        r.refused(4);
        r.forget();
        assert!(!r.removed(&voters));
        assert!(!refused_by_majority(&[1].into(), &BTreeSet::new()));
        // Half is not a majority.
        assert!(!refused_by_majority(&[1, 2].into(), &[1, 2, 3, 4].into()));
    }
}

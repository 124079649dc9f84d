//! A watch over one peer's Raft role and term.

use openraft::ServerState;

use super::types::{NodeId, NodeInfo};

/// Follows one peer's Raft role and term as they change (see [`ClusterRaft::watch`]).
pub struct RaftWatch {
    pub(super) metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, NodeInfo>>,
}

impl RaftWatch {
    /// This peer's current term, leader or not (for monitoring).
    pub fn current_term(&self) -> u64 {
        self.metrics.borrow().current_term
    }

    /// The term this peer leads in, if it is the leader now.
    pub fn leading_term(&self) -> Option<u64> {
        let m = self.metrics.borrow();
        (m.state == ServerState::Leader).then_some(m.current_term)
    }

    /// Waits for the next change; `false` once Raft has stopped. Changes in
    /// quick succession may be seen as one.
    pub async fn changed(&mut self) -> bool {
        self.metrics.changed().await.is_ok()
    }
}

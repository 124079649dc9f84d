//! Membership: bootstrap, join (learner, catch-up, promotion), removal and
//! leave.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cluster_core::PeerId;
use openraft::error::{InitializeError, RaftError};
use openraft::ChangeMembers;

use super::node::{ClusterRaft, Inner};
use super::rpc::{RefusedReason, RequestBody, ResponseBody};
use super::runtime;
use super::types::{node_id_of_str, NodeInfo};
use super::write_path::LeaderCallError;
use crate::error::MembershipError;

impl ClusterRaft {
    /// Records `cluster_id` as this peer's cluster, or refuses if the store
    /// already belongs to another one.
    fn adopt_cluster_id(&self, cluster_id: u128) -> Result<(), MembershipError> {
        let inner = &self.inner;
        let id = inner
            .cluster_id
            .adopt(&*inner.store, cluster_id)
            .map_err(|e| MembershipError::Store(e.to_string()))?;
        if id != cluster_id {
            return Err(MembershipError::ClusterMismatch {
                ours: id,
                theirs: cluster_id,
            });
        }
        Ok(())
    }

    /// Bootstraps a new single-peer cluster with id `cluster_id` (random,
    /// chosen by the caller). Does nothing if this peer already has Raft
    /// state for that cluster; refuses if its store belongs to another one.
    pub async fn initialize(&self, cluster_id: u128) -> Result<(), MembershipError> {
        let inner = &self.inner;
        self.adopt_cluster_id(cluster_id)?;
        let members = BTreeMap::from([(inner.my_id, inner.me.clone())]);
        match inner.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Already initialised: the stored state wins (like init_peerset).
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(e)) => Err(MembershipError::Raft(e.to_string())),
            Err(RaftError::Fatal(_)) => Err(MembershipError::Shutdown),
        }
    }

    /// Joins the cluster that `via` (any member) belongs to: the leader adds
    /// this peer as a learner, waits until it caught up, then promotes it to
    /// voter. Returns once this peer is a voter.
    ///
    /// Until the answer arrives this peer is "joining" (persisted): only
    /// then does it adopt the cluster id of the Raft messages it receives.
    /// A peer that is a member under an earlier incarnation of its store is
    /// refused ([`MembershipError::StaleMember`]): remove it first.
    pub async fn join(&self, via: &NodeInfo) -> Result<(), MembershipError> {
        let inner = &self.inner;
        inner
            .cluster_id
            .begin_joining(&*inner.store)
            .map_err(|e| MembershipError::Store(e.to_string()))?;
        let limit_ms = inner.config.membership_timeout_ms;
        let body = RequestBody::Join(inner.me.clone());
        let call = inner.call_leader(Some(via.clone()), body, true);
        let response = runtime::timeout(Duration::from_millis(limit_ms), call)
            .await
            .ok_or(MembershipError::Timeout { ms: limit_ms })?;
        let cluster_id = membership_result(response).map_err(|e| match e {
            MembershipError::NodeIdCollision {
                node_id, existing, ..
            } => MembershipError::NodeIdCollision {
                peer: inner.me.peer_id.clone(),
                node_id,
                existing,
            },
            other => other,
        })?;
        self.adopt_cluster_id(cluster_id)
    }

    /// Removes `peer` (alive or dead) from the cluster. Works on any member.
    pub async fn remove_peer(&self, peer: &PeerId) -> Result<(), MembershipError> {
        let inner = &self.inner;
        if inner.cluster_id.get().is_none() {
            return Err(MembershipError::NotMember(inner.me.peer_id.clone()));
        }
        let limit_ms = inner.config.membership_timeout_ms;
        let call = inner.call_leader(None, RequestBody::Remove(peer.to_string()), true);
        let response = runtime::timeout(Duration::from_millis(limit_ms), call)
            .await
            .ok_or(MembershipError::Timeout { ms: limit_ms })?;
        membership_result(response).map(|_| ())
    }

    /// Leaves the cluster (removes this peer) and shuts down.
    pub async fn leave(&self) -> Result<(), MembershipError> {
        let me = PeerId::parse(&self.inner.me.peer_id)
            .map_err(|e| MembershipError::Raft(e.to_string()))?;
        self.remove_peer(&me).await?;
        self.shutdown().await;
        Ok(())
    }
}

fn membership_result(
    response: Result<ResponseBody, LeaderCallError>,
) -> Result<u128, MembershipError> {
    match response {
        Err(LeaderCallError::NoLeader) => Err(MembershipError::NoLeader),
        Err(LeaderCallError::Transport(e)) => Err(MembershipError::Transport(e)),
        Ok(ResponseBody::MembershipDone { cluster_id }) => Ok(cluster_id),
        Ok(ResponseBody::ClusterMismatch { ours, theirs }) => {
            // `ours` is the answering member's cluster; from the caller's
            // point of view it is "theirs".
            Err(MembershipError::ClusterMismatch {
                ours: theirs,
                theirs: ours,
            })
        }
        Ok(ResponseBody::Refused(RefusedReason::NodeIdCollision { node_id, existing })) => {
            Err(MembershipError::NodeIdCollision {
                peer: String::new(),
                node_id,
                existing,
            })
        }
        Ok(ResponseBody::Refused(RefusedReason::NotMember(peer))) => {
            Err(MembershipError::NotMember(peer))
        }
        Ok(ResponseBody::Refused(RefusedReason::LastPeer)) => Err(MembershipError::LastPeer),
        Ok(ResponseBody::Refused(RefusedReason::StaleMember(peer))) => {
            Err(MembershipError::StaleMember { peer })
        }
        Ok(ResponseBody::Refused(RefusedReason::Shutdown)) => Err(MembershipError::Shutdown),
        Ok(ResponseBody::Refused(r)) => Err(MembershipError::Raft(format!("refused: {r:?}"))),
        Ok(ResponseBody::Failed(reason)) => Err(MembershipError::Raft(reason)),
        Ok(other) => Err(MembershipError::Raft(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

fn not_leader_or_failed(inner: &Inner, e: impl std::fmt::Display) -> ResponseBody {
    if inner.leader_node().map(|n| n.peer_id) != Some(inner.me.peer_id.clone()) {
        return ResponseBody::NotLeader {
            leader: inner.leader_node(),
        };
    }
    ResponseBody::Failed(e.to_string())
}

fn done(inner: &Inner) -> ResponseBody {
    match inner.cluster_id.get() {
        Some(cluster_id) => ResponseBody::MembershipDone { cluster_id },
        None => ResponseBody::Refused(RefusedReason::NoCluster),
    }
}

/// Leader side of a join: collision check, learner, catch-up, promotion.
pub(crate) async fn serve_join(inner: &Arc<Inner>, node: NodeInfo) -> ResponseBody {
    let node_id = node_id_of_str(&node.peer_id);
    let (nodes, voters) = inner.membership();
    if let Some(existing) = nodes.get(&node_id) {
        if existing.peer_id != node.peer_id {
            return ResponseBody::Refused(RefusedReason::NodeIdCollision {
                node_id,
                existing: existing.peer_id.clone(),
            });
        }
        // Same peer, another store: the member it was lost its data, and
        // re-adding it would keep the old record (Raft traffic would go to
        // the old incarnation). It must be removed first.
        if existing.incarnation != node.incarnation {
            return ResponseBody::Refused(RefusedReason::StaleMember(node.peer_id));
        }
    }
    if voters.contains(&node_id) {
        return done(inner);
    }
    // Blocking: returns once the learner's log caught up with the leader;
    // bounded, so a joiner that dies half way does not pin this task.
    let limit_ms = inner.config.membership_timeout_ms;
    let catch_up = inner.raft.add_learner(node_id, node, true);
    let Some(added) = runtime::timeout(Duration::from_millis(limit_ms), catch_up).await else {
        return ResponseBody::Failed(format!(
            "the new peer did not catch up within {limit_ms} ms"
        ));
    };
    if let Err(e) = added {
        return match e {
            RaftError::APIError(api) => match inner.client_write_error(RaftError::APIError(api)) {
                ResponseBody::Failed(reason) => not_leader_or_failed(inner, reason),
                other => other,
            },
            RaftError::Fatal(_) => ResponseBody::Refused(RefusedReason::Shutdown),
        };
    }
    let promote = ChangeMembers::AddVoterIds(BTreeSet::from([node_id]));
    match inner.raft.change_membership(promote, false).await {
        Ok(_) => done(inner),
        Err(e) => match inner.client_write_error(e) {
            ResponseBody::Failed(reason) => not_leader_or_failed(inner, reason),
            other => other,
        },
    }
}

/// Leader side of a removal.
pub(crate) async fn serve_remove(inner: &Arc<Inner>, peer: &str) -> ResponseBody {
    let node_id = node_id_of_str(peer);
    let (nodes, voters) = inner.membership();
    match nodes.get(&node_id) {
        Some(n) if n.peer_id == peer => {}
        _ => return ResponseBody::Refused(RefusedReason::NotMember(peer.to_string())),
    }
    let change = if voters.contains(&node_id) {
        if voters.len() == 1 {
            return ResponseBody::Refused(RefusedReason::LastPeer);
        }
        ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
    };
    match inner.raft.change_membership(change, false).await {
        Ok(_) => done(inner),
        Err(e) => match inner.client_write_error(e) {
            ResponseBody::Failed(reason) => not_leader_or_failed(inner, reason),
            other => other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inproc::InProcRouter;
    use crate::store::MemStore;
    use crate::RaftConfig;

    #[tokio::test]
    async fn join_with_colliding_node_id_is_refused() {
        let router = InProcRouter::new();
        let peer = PeerId::synthetic(1);
        let raft = ClusterRaft::start(
            &peer,
            "inproc/1",
            RaftConfig::fast_for_tests(),
            crate::Boot::CreateIfEmpty { incarnation: 1 },
            MemStore::new(),
            router.transport(peer.as_str()),
        )
        .await
        .expect("start");
        raft.initialize(7).await.expect("initialize");
        raft.wait_for_leader(Duration::from_secs(5))
            .await
            .expect("leader");
        // A member whose node id equals the joiner's, under another peer id:
        // what a hash collision looks like.
        let joiner = PeerId::synthetic(2);
        let colliding_id = node_id_of_str(joiner.as_str());
        let impostor = NodeInfo {
            peer_id: PeerId::synthetic(3).to_string(),
            addr: "inproc/3".to_string(),
            incarnation: 3,
        };
        raft.inner
            .raft
            .add_learner(colliding_id, impostor.clone(), false)
            .await
            .expect("add learner");
        let node = NodeInfo {
            peer_id: joiner.to_string(),
            addr: "inproc/2".to_string(),
            incarnation: 2,
        };
        match serve_join(&raft.inner, node).await {
            ResponseBody::Refused(RefusedReason::NodeIdCollision { node_id, existing }) => {
                assert_eq!(node_id, colliding_id);
                assert_eq!(existing, impostor.peer_id);
            }
            other => panic!("expected a collision refusal, got {other:?}"),
        }
        raft.shutdown().await;
    }
}

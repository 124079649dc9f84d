//! Membership: bootstrap (alone or together with the initial peers), join
//! (learner, catch-up, promotion), removal and leave.
//!
//! Joins and removals are idempotent: the leader looks at the current
//! membership and does only the steps still missing, and answers "done" for
//! a change that is already in place once that membership is committed. So
//! the caller retries every attempt whose outcome it does not know, with
//! back-off, within `membership_timeout_ms`; each forwarded attempt gets
//! `membership_attempt_timeout_ms`, which covers the leader-side wait
//! (`membership_leader_wait_ms`). A change that meets another one in
//! progress waits for it on the leader instead of failing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cluster_core::PeerId;
use openraft::error::{ChangeMembershipError, ClientWriteError, InitializeError, RaftError};
use openraft::{AsyncRuntime, ChangeMembers};

use super::node::{ClusterRaft, Inner};
use super::rpc::{RefusedReason, RequestBody, ResponseBody};
use super::runtime::{self, Runtime};
use super::types::{node_id_of_info, NodeId, NodeInfo};
use super::write_path::LeaderCallError;
use crate::error::MembershipError;

type Instant = <Runtime as AsyncRuntime>::Instant;

fn now() -> Instant {
    <Instant as openraft::Instant>::now()
}

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
        let me = self.inner.me.clone();
        self.initialize_with(cluster_id, BTreeMap::from([(self.inner.my_id, me)]))
            .await
    }

    /// Bootstraps cluster `cluster_id` together with the other peers of
    /// `initial` (which must list this peer), all of them voters, and
    /// returns once this peer sees a leader of it (within
    /// `membership_timeout_ms`).
    ///
    /// Meant for peers started together, each given the same list and id
    /// (like IPFS Cluster's `init_peerset`): every one of them writes the
    /// same initial membership, which openraft documents as safe, and the
    /// first election among them decides the leader. No peer is special, so
    /// the cluster forms as soon as a majority of the list is up, whichever
    /// peers those are. Lists that differ between peers would form
    /// different clusters: the caller must hand out one list. A peer that
    /// already has Raft state (a restart) keeps it and only waits for a
    /// leader.
    pub async fn bootstrap(
        &self,
        cluster_id: u128,
        initial: &[NodeInfo],
    ) -> Result<(), MembershipError> {
        let inner = &self.inner;
        if !initial.iter().any(|n| n.peer_id == inner.me.peer_id) {
            return Err(MembershipError::NotInInitialPeers(inner.me.peer_id.clone()));
        }
        // Node ids cover the store's incarnation: a record without it, or
        // with another store's, names a Raft node that does not exist.
        if let Some(unknown) = initial.iter().find(|n| n.incarnation == 0) {
            return Err(MembershipError::UnknownIncarnation(unknown.peer_id.clone()));
        }
        if initial
            .iter()
            .any(|n| n.peer_id == inner.me.peer_id && n.incarnation != inner.me.incarnation)
        {
            return Err(MembershipError::ListedWithAnotherStore(
                inner.me.peer_id.clone(),
            ));
        }
        let mut members = BTreeMap::new();
        for node in initial {
            let node_id = node_id_of_info(node);
            match members.insert(node_id, node.clone()) {
                Some(other) if !same_store(&other, node) => {
                    return Err(MembershipError::NodeIdCollision {
                        peer: node.peer_id.clone(),
                        node_id,
                        existing: other.peer_id,
                    });
                }
                _ => {}
            }
        }
        self.initialize_with(cluster_id, members).await?;
        let limit_ms = inner.config.membership_timeout_ms;
        let my_id = inner.my_id;
        let formed = inner
            .raft
            .wait(Some(Duration::from_millis(limit_ms)))
            .metrics(
                |m| {
                    m.current_leader.is_some()
                        && m.membership_config
                            .membership()
                            .voter_ids()
                            .any(|v| v == my_id)
                },
                "bootstrapped cluster has a leader",
            )
            .await;
        match formed {
            Ok(_) => Ok(()),
            Err(openraft::metrics::WaitError::Timeout(..)) => {
                Err(MembershipError::Timeout { ms: limit_ms })
            }
            Err(openraft::metrics::WaitError::ShuttingDown) => Err(MembershipError::Shutdown),
        }
    }

    async fn initialize_with(
        &self,
        cluster_id: u128,
        members: BTreeMap<NodeId, NodeInfo>,
    ) -> Result<(), MembershipError> {
        self.adopt_cluster_id(cluster_id)?;
        match self.inner.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Already initialised (or already part of a cluster): the stored
            // state wins (like init_peerset).
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(e)) => Err(MembershipError::Raft(e.to_string())),
            Err(RaftError::Fatal(_)) => Err(MembershipError::Shutdown),
        }
    }

    /// Joins the cluster that `via` (any member) belongs to: the leader adds
    /// this peer as a learner, waits until it caught up, then promotes it to
    /// voter. Returns once this peer is a voter. Idempotent (joining again
    /// is a no-op) and retried with back-off within `membership_timeout_ms`.
    ///
    /// Until the answer arrives this peer is "joining" (persisted): only
    /// then does it adopt the cluster id of the Raft messages it receives.
    /// A peer that is a member under an earlier incarnation of its store is
    /// refused ([`MembershipError::StaleMember`]): remove it first.
    pub async fn join(&self, via: &NodeInfo) -> Result<(), MembershipError> {
        let limit = Duration::from_millis(self.inner.config.membership_timeout_ms);
        self.join_within(via, Attempts::Within(limit)).await
    }

    /// One attempt at [`join`](Self::join) through `via` (bounded by
    /// `membership_attempt_timeout_ms`), for a caller that polls several
    /// contacts in turn: a fresh peer started together with the peers it
    /// lists. [`MembershipError::NoCluster`] then says that `via` answered
    /// and belongs to no cluster yet. Like `join`, it marks this peer as
    /// joining; a later [`initialize`](Self::initialize) still works.
    pub async fn join_once(&self, via: &NodeInfo) -> Result<(), MembershipError> {
        self.join_within(via, Attempts::Once).await
    }

    async fn join_within(&self, via: &NodeInfo, limit: Attempts) -> Result<(), MembershipError> {
        let inner = &self.inner;
        inner
            .cluster_id
            .begin_joining(&*inner.store)
            .map_err(|e| MembershipError::Store(e.to_string()))?;
        let body = RequestBody::Join(inner.me.clone());
        let cluster_id = inner
            .membership_call(Some(via.clone()), body, limit)
            .await
            .map_err(|e| match e {
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

    /// Adds the running peer `peer` to the cluster as a voter, on its behalf
    /// (IPFS Cluster's `POST /peers`): asks it who it is (its store's
    /// incarnation names its Raft node), then has the leader add it as a
    /// learner and promote it once it caught up, as for a join. Returns its
    /// record. Works on any member; idempotent.
    ///
    /// The transport finds the peer by its id alone (the libp2p one through
    /// its peerstore: connected peers and the addresses it learnt). The peer
    /// must accept the cluster's traffic: a member of this cluster (a
    /// removed one still running), or a peer waiting to join one; a peer of
    /// another cluster or of none is refused before the membership changes.
    pub async fn add_peer(&self, peer: &PeerId) -> Result<NodeInfo, MembershipError> {
        let inner = &self.inner;
        let Some(ours) = inner.cluster_id.get() else {
            return Err(MembershipError::NotMember(inner.me.peer_id.clone()));
        };
        let node = if peer.as_str() == inner.me.peer_id {
            inner.me.clone()
        } else {
            self.identify(peer, ours).await?
        };
        let limit = Duration::from_millis(inner.config.membership_timeout_ms);
        inner
            .membership_call(
                None,
                RequestBody::Add(node.clone()),
                Attempts::Within(limit),
            )
            .await
            .map_err(|e| match e {
                MembershipError::NodeIdCollision {
                    node_id, existing, ..
                } => MembershipError::NodeIdCollision {
                    peer: node.peer_id.clone(),
                    node_id,
                    existing,
                },
                other => other,
            })?;
        Ok(node)
    }

    /// Asks `peer` for its record, and checks it would take this cluster's
    /// (`ours`) traffic.
    async fn identify(&self, peer: &PeerId, ours: u128) -> Result<NodeInfo, MembershipError> {
        let inner = &self.inner;
        let unreachable = |reason: String| MembershipError::Unreachable {
            peer: peer.to_string(),
            reason,
        };
        // No address: the transport looks the peer up by its id.
        let target = NodeInfo {
            peer_id: peer.to_string(),
            addr: String::new(),
            incarnation: 0,
        };
        let request = super::rpc::RpcRequest {
            cluster_id: Some(ours),
            target_incarnation: 0,
            body: RequestBody::Identify,
        };
        let attempt = Duration::from_millis(inner.config.membership_attempt_timeout_ms);
        let answer = runtime::timeout(attempt, inner.transport.call(&target, request))
            .await
            .ok_or_else(|| unreachable(format!("no answer within {} ms", attempt.as_millis())))?
            .map_err(|e| unreachable(e.to_string()))?;
        let (node, theirs, joining) = match answer.body {
            ResponseBody::Identity {
                node,
                cluster_id,
                joining,
            } => (node, cluster_id, joining),
            ResponseBody::Failed(reason) => return Err(unreachable(reason)),
            other => {
                return Err(MembershipError::Raft(format!(
                    "unexpected answer {other:?}"
                )))
            }
        };
        if node.peer_id != peer.as_str() {
            return Err(MembershipError::WrongPeer {
                asked: peer.to_string(),
                answered: node.peer_id,
            });
        }
        match theirs {
            Some(theirs) if theirs != ours => {
                Err(MembershipError::ClusterMismatch { ours, theirs })
            }
            None if !joining => Err(MembershipError::NotJoining(peer.to_string())),
            _ => Ok(node),
        }
    }

    /// Removes `peer` (alive or dead) from the cluster. Works on any member.
    /// Idempotent: removing a peer that is no longer a member succeeds.
    pub async fn remove_peer(&self, peer: &PeerId) -> Result<(), MembershipError> {
        let inner = &self.inner;
        if inner.cluster_id.get().is_none() {
            return Err(MembershipError::NotMember(inner.me.peer_id.clone()));
        }
        inner
            .membership_call(
                None,
                RequestBody::Remove(peer.to_string()),
                Attempts::Within(Duration::from_millis(inner.config.membership_timeout_ms)),
            )
            .await
            .map(|_| ())
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

/// How long a membership request keeps trying.
#[derive(Debug, Clone, Copy)]
enum Attempts {
    /// One attempt, bounded by `membership_attempt_timeout_ms`.
    Once,
    /// Retried with back-off until this much time has passed.
    Within(Duration),
}

/// Errors after which another attempt may succeed.
fn retryable(e: &MembershipError) -> bool {
    matches!(
        e,
        MembershipError::NoLeader
            | MembershipError::Timeout { .. }
            | MembershipError::Transport(_)
            | MembershipError::Raft(_)
            | MembershipError::NoCluster
    )
}

impl Inner {
    /// Sends an idempotent membership request to the leader, as often as
    /// `attempts` says (failed attempts retried with doubling back-off).
    async fn membership_call(
        self: &Arc<Self>,
        first: Option<NodeInfo>,
        body: RequestBody,
        attempts: Attempts,
    ) -> Result<u128, MembershipError> {
        let attempt = Duration::from_millis(self.config.membership_attempt_timeout_ms);
        let limit = match attempts {
            Attempts::Once => attempt,
            Attempts::Within(limit) => limit,
        };
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let deadline = now() + limit;
        let mut delay = Duration::from_millis(self.config.leader_retry_delay_ms);
        let delay_max = Duration::from_millis(self.config.membership_retry_delay_max_ms);
        loop {
            let left = deadline.saturating_duration_since(now());
            // A member knows the leader; a joiner keeps asking `first`.
            let target = self.leader_node().or_else(|| first.clone());
            let call = self.call_leader(target, body.clone(), true, attempt);
            let result = match runtime::timeout(left, call).await {
                None => return Err(MembershipError::Timeout { ms: limit_ms }),
                Some(answer) => membership_result(answer.result),
            };
            match result {
                Err(e) if retryable(&e) && matches!(attempts, Attempts::Within(_)) => {
                    if now() + delay >= deadline {
                        return Err(e);
                    }
                    tracing::debug!(peer = %self.me, error = %e, ?delay, "membership change failed, retrying");
                    runtime::sleep(delay).await;
                    delay = (delay * 2).min(delay_max);
                }
                other => return other,
            }
        }
    }

    /// Waits until the membership this peer sees is committed (applied
    /// here), so that "already done" is only said of a durable change.
    async fn membership_settled(&self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(now());
        self.raft
            .wait(Some(left))
            .metrics(
                |m| {
                    m.membership_config.log_id().map(|l| l.index) <= m.last_applied.map(|l| l.index)
                        && m.membership_config.membership().get_joint_config().len() == 1
                },
                "membership committed and uniform",
            )
            .await
            .is_ok()
    }

    /// Waits until the leader's replication to learner `node_id` reached
    /// the leader's last log index as of now.
    async fn caught_up(&self, node_id: NodeId, deadline: Instant) -> bool {
        let target = self.raft.metrics().borrow().last_log_index;
        let left = deadline.saturating_duration_since(now());
        self.raft
            .wait(Some(left))
            .metrics(
                |m| {
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&node_id).cloned())
                        .flatten()
                        .map(|l| l.index);
                    // Not leading any more: the next step says so.
                    m.replication.is_none() || matched >= target
                },
                "learner caught up",
            )
            .await
            .is_ok()
    }

    /// Proposes one membership change. `Ok(true)`: proposed and committed;
    /// `Ok(false)`: another change is in progress (try again later);
    /// `Err`: the answer for the caller.
    async fn change(&self, change: ChangeMembers<NodeId, NodeInfo>) -> Result<bool, ResponseBody> {
        #[cfg(madsim)]
        runtime::sim_hooks::membership_change_starting();
        match self.raft.change_membership(change, false).await {
            Ok(_) => Ok(true),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            ))) => Ok(false),
            Err(e) => Err(match self.client_write_error(e) {
                ResponseBody::Failed(reason) => not_leader_or_failed(self, reason),
                other => other,
            }),
        }
    }

    /// Sleeps for the next back-off step, or says the leader-side wait is
    /// over.
    async fn pause(&self, delay: &mut Duration, deadline: Instant) -> bool {
        if now() + *delay >= deadline {
            return false;
        }
        runtime::sleep(*delay).await;
        *delay = (*delay * 2).min(Duration::from_millis(
            self.config.membership_retry_delay_max_ms,
        ));
        true
    }

    fn leader_wait_deadline(&self) -> Instant {
        now() + Duration::from_millis(self.config.membership_leader_wait_ms)
    }
}

fn membership_result(
    response: Result<ResponseBody, LeaderCallError>,
) -> Result<u128, MembershipError> {
    match response {
        Err(LeaderCallError::NoLeader) => Err(MembershipError::NoLeader),
        Err(LeaderCallError::Unknown(e)) => Err(MembershipError::Raft(e)),
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
        Ok(ResponseBody::Refused(RefusedReason::NoCluster)) => Err(MembershipError::NoCluster),
        Ok(ResponseBody::Refused(r)) => Err(MembershipError::Raft(format!("refused: {r:?}"))),
        Ok(ResponseBody::Failed(reason)) => Err(MembershipError::Raft(reason)),
        Ok(ResponseBody::OutcomeUnknown { reason, .. }) => Err(MembershipError::Raft(reason)),
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

/// Answer once the membership in place is committed.
async fn settled(inner: &Inner, deadline: Instant) -> ResponseBody {
    if inner.membership_settled(deadline).await {
        done(inner)
    } else {
        not_leader_or_failed(inner, "membership change not committed in time")
    }
}

/// True when two membership records name the same store of the same peer
/// (addresses may differ).
fn same_store(a: &NodeInfo, b: &NodeInfo) -> bool {
    a.peer_id == b.peer_id && a.incarnation == b.incarnation
}

/// Leader side of a join. Each round looks at the current membership and
/// takes the next missing step: add as learner, wait for catch-up, promote.
/// A learner already present (an earlier attempt) is not added again; a
/// voter is done; a change in progress is waited out with back-off.
pub(crate) async fn serve_join(inner: &Arc<Inner>, node: NodeInfo) -> ResponseBody {
    let node_id = node_id_of_info(&node);
    let deadline = inner.leader_wait_deadline();
    let mut delay = Duration::from_millis(inner.config.leader_retry_delay_ms);
    loop {
        let (nodes, voters) = inner.membership();
        match nodes.get(&node_id) {
            Some(existing) if !same_store(existing, &node) => {
                return ResponseBody::Refused(RefusedReason::NodeIdCollision {
                    node_id,
                    existing: existing.peer_id.clone(),
                });
            }
            _ => {}
        }
        // Same peer, another store: the member it was lost its data. Both
        // records would count towards quorums, the old one never answering
        // again: it must be removed first.
        if nodes
            .values()
            .any(|n| n.peer_id == node.peer_id && n.incarnation != node.incarnation)
        {
            return ResponseBody::Refused(RefusedReason::StaleMember(node.peer_id));
        }
        let step = if let Some(goal) = inner.joint_goal() {
            // An earlier change stopped half way: finish it first (a joint
            // config needs the old voters' quorum too, so losing one more
            // of them could stop the cluster for good).
            ChangeMembers::ReplaceAllVoters(goal)
        } else if voters.contains(&node_id) {
            return settled(inner, deadline).await;
        } else if nodes.contains_key(&node_id) {
            // Blocking for a while: a joiner that dies half way leaves a
            // learner behind, removable with `remove_peer`.
            if !inner.caught_up(node_id, deadline).await {
                return not_leader_or_failed(
                    inner,
                    format!(
                        "the new peer did not catch up within {} ms",
                        inner.config.membership_leader_wait_ms
                    ),
                );
            }
            ChangeMembers::AddVoterIds(BTreeSet::from([node_id]))
        } else {
            ChangeMembers::AddNodes(BTreeMap::from([(node_id, node.clone())]))
        };
        match inner.change(step).await {
            Ok(true) => {}
            Ok(false) if inner.pause(&mut delay, deadline).await => {}
            Ok(false) => {
                return ResponseBody::Failed(
                    "another membership change stayed in progress".to_string(),
                )
            }
            Err(answer) => return answer,
        }
    }
}

/// Leader side of a removal: done once the stores the peer had as members
/// when this leader took the request up are no longer members.
///
/// Those stores are fixed at the first look, not looked up by peer id on
/// every round: this loop outlives the caller's attempt (the caller stops
/// waiting after `membership_attempt_timeout_ms` and retries, while this
/// side may keep backing off behind a change in progress until
/// `membership_leader_wait_ms`). Meanwhile a retry may finish the removal
/// and the peer may join again on a new store (the way back from a wiped
/// disk); a later round that looked the peer id up again would remove that
/// new store, undoing a join already answered "done" (simulator seed 57:
/// the re-joined peer removed 70 ms after its join returned, the cluster
/// left with two voters, then stopped for good by a wiped disk).
pub(crate) async fn serve_remove(inner: &Arc<Inner>, peer: &str) -> ResponseBody {
    let deadline = inner.leader_wait_deadline();
    let mut delay = Duration::from_millis(inner.config.leader_retry_delay_ms);
    // Any store of the peer (normally one; an old one too if it came back
    // on a new disk before the old record was removed).
    let stores: BTreeSet<NodeId> = inner
        .membership()
        .0
        .into_iter()
        .filter(|(_, n)| n.peer_id == peer)
        .map(|(id, _)| id)
        .collect();
    loop {
        let (nodes, voters) = inner.membership();
        let member = nodes.keys().find(|id| stores.contains(id)).copied();
        let step = if let Some(goal) = inner.joint_goal() {
            // As in `serve_join`: a change left half way is finished first.
            ChangeMembers::ReplaceAllVoters(goal)
        } else if let Some(node_id) = member {
            if voters.contains(&node_id) {
                if voters.len() == 1 {
                    return ResponseBody::Refused(RefusedReason::LastPeer);
                }
                ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
            }
        } else {
            // Not (or no longer) a member: an earlier attempt succeeded, or
            // it never was one; either way it is not a member now.
            return settled(inner, deadline).await;
        };
        match inner.change(step).await {
            Ok(true) => {}
            Ok(false) if inner.pause(&mut delay, deadline).await => {}
            Ok(false) => {
                return ResponseBody::Failed(
                    "another membership change stayed in progress".to_string(),
                )
            }
            Err(answer) => return answer,
        }
    }
}

/// How often a peer looks for a membership change left half way.
const JOINT_CHECK_MS: u64 = 1_000;

/// Runs on every peer for its lifetime: while it leads and its committed
/// membership is a joint config (an earlier leader lost office between the
/// two steps of a change; openraft 0.9 leaves the cluster so), proposes the
/// config the change was going to. A joint config needs a quorum of the old
/// voters as well as of the new ones, so a lingering one turns the loss of
/// one more old voter (a wiped disk, say) into a cluster that can never
/// elect a leader again (simulator seed 212 of the 101..1100 soak).
pub(crate) async fn finish_joint_changes(inner: std::sync::Weak<Inner>) {
    loop {
        runtime::sleep(Duration::from_millis(JOINT_CHECK_MS)).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.raft.metrics().borrow().running_state.is_err() {
            return;
        }
        let committed = {
            let metrics = inner.raft.metrics();
            let m = metrics.borrow();
            m.current_leader == Some(inner.my_id)
                && m.membership_config.log_id().map(|l| l.index) <= m.last_applied.map(|l| l.index)
        };
        let Some(goal) = inner.joint_goal().filter(|_| committed) else {
            continue;
        };
        tracing::info!(peer = %inner.me, ?goal, "finishing a membership change an earlier leader left half way");
        let limit = Duration::from_millis(inner.config.membership_timeout_ms);
        let change = inner.change(ChangeMembers::ReplaceAllVoters(goal));
        if let Some(Err(answer)) = runtime::timeout(limit, change).await {
            tracing::warn!(peer = %inner.me, ?answer, "could not finish a membership change");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inproc::InProcRouter;
    use crate::raft_glue::log_store::LogStore;
    use crate::store::MemStore;
    use crate::transport::{BoxFuture, RaftTransport, TransportError};
    use crate::{RaftConfig, RpcRequest, RpcResponse};
    use openraft::RaftLogReader;

    /// Log indices of the membership entries after `after`.
    async fn membership_entries(store: &MemStore, after: Option<u64>) -> Vec<u64> {
        let log = LogStore::new(
            Arc::new(store.clone()),
            crate::raft_glue::snapshot_gate::SnapshotGate::new(None),
        )
        .try_get_log_entries(after.map_or(0, |i| i + 1)..)
        .await
        .expect("read log");
        log.iter()
            .filter(|e| matches!(e.payload, openraft::EntryPayload::Membership(_)))
            .map(|e| e.log_id.index)
            .collect()
    }

    /// openraft 0.9 leaves a joint config behind when a leader loses office
    /// between the two steps of a change, and no later leader finishes it:
    /// the cluster then needs a quorum of the old voters too, and losing one
    /// of two old voters stops it for good (simulator seed 212 of the
    /// 101..1100 soak: a wiped disk after a re-join that stopped half way).
    /// Here three stores start with such a config as their log's only
    /// membership entry; the leader they elect must make it uniform.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_joint_config_left_by_an_earlier_leader_is_finished() {
        use crate::store::{DurableStore, WriteBatch, WriteOp};
        let router = InProcRouter::new();
        let config = RaftConfig::fast_for_tests();
        let stores: Vec<MemStore> = (0..3).map(|_| MemStore::new()).collect();
        let peers: Vec<PeerId> = (1..=3).map(PeerId::synthetic).collect();
        let start = |i: usize| {
            let (peer, store, router, config) = (
                peers[i].clone(),
                stores[i].clone(),
                router.clone(),
                config.clone(),
            );
            async move {
                let raft = ClusterRaft::start(
                    &peer,
                    &format!("inproc/{i}"),
                    config,
                    crate::Boot::CreateIfEmpty {
                        incarnation: 100 + i as u128,
                    },
                    store,
                    router.transport(peer.as_str()),
                )
                .await
                .expect("start");
                router.register(peer.as_str(), raft.rpc_handler());
                raft
            }
        };
        let mut infos = Vec::new();
        for i in 0..3 {
            let raft = start(i).await;
            infos.push(raft.node_info().clone());
            raft.shutdown().await;
        }
        let ids: Vec<NodeId> = infos.iter().map(node_id_of_info).collect();
        let nodes: BTreeMap<NodeId, NodeInfo> = ids.iter().copied().zip(infos).collect();
        let joint = openraft::Membership::new(
            vec![
                BTreeSet::from([ids[0], ids[1]]),
                BTreeSet::from([ids[0], ids[1], ids[2]]),
            ],
            nodes,
        );
        let entry = openraft::Entry::<crate::raft_glue::types::TypeConfig> {
            // As openraft's initialize writes it: term 0, index 0.
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(0, 0), 0),
            payload: openraft::EntryPayload::Membership(joint),
        };
        for store in &stores {
            let mut batch = WriteBatch::durable();
            batch.push(WriteOp::PutLog(
                0,
                crate::raft_glue::codec::encode(&entry, "log entry").expect("encode"),
            ));
            store.commit(batch).expect("write");
            crate::raft_glue::cluster_id::ClusterIdCell::load(store)
                .expect("load")
                .adopt(store, 7)
                .expect("cluster id");
        }
        let mut rafts = Vec::new();
        for i in 0..3 {
            rafts.push(start(i).await);
        }
        let leader = rafts[0]
            .wait_for_leader(Duration::from_secs(10))
            .await
            .expect("a leader in the joint config");
        let leader = rafts
            .iter()
            .find(|r| r.node_info().peer_id == leader.as_str())
            .expect("leader is one of them");
        let uniform = leader
            .inner
            .raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(
                |m| m.membership_config.membership().get_joint_config().len() == 1,
                "uniform membership",
            )
            .await;
        assert!(uniform.is_ok(), "the joint config was never finished");
        assert_eq!(leader.members().len(), 3);
        for raft in rafts {
            raft.shutdown().await;
        }
    }

    /// A peer back on a wiped disk under the same peer id is re-added as a
    /// learner and replicated from the start of the log, whose first entry
    /// is the founding membership: {the old member} as the only voter. With
    /// Raft node ids derived from the peer id alone, the new store read that
    /// entry as naming itself, elected itself on its own and led a second
    /// cluster (simulator seed 68 with read-error faults: two leaders in one
    /// term, an openraft assertion). The node id now covers the incarnation,
    /// so the old member's entries never name the new store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wiped_founder_replicated_from_the_start_does_not_elect_itself() {
        let router = InProcRouter::new();
        let a = PeerId::synthetic(1);
        let store = MemStore::new();
        let config = RaftConfig::fast_for_tests();
        let founder = ClusterRaft::start(
            &a,
            "inproc/1",
            config.clone(),
            crate::Boot::CreateIfEmpty { incarnation: 101 },
            store.clone(),
            router.transport(a.as_str()),
        )
        .await
        .expect("start");
        router.register(a.as_str(), founder.rpc_handler());
        founder.initialize(7).await.expect("initialize");
        founder
            .wait_for_leader(Duration::from_secs(5))
            .await
            .expect("leader");
        let first = LogStore::new(
            Arc::new(store.clone()),
            crate::raft_glue::snapshot_gate::SnapshotGate::new(None),
        )
        .try_get_log_entries(0..2)
        .await
        .expect("read log");
        assert!(
            matches!(first[0].payload, openraft::EntryPayload::Membership(_)),
            "{:?}",
            first[0]
        );
        let vote = founder.inner.raft.metrics().borrow().vote;

        // The same peer on a wiped disk, being joined again: what a leader
        // replicating to it from the start sends first.
        let wiped = ClusterRaft::start(
            &a,
            "inproc/1",
            config.clone(),
            crate::Boot::CreateIfEmpty { incarnation: 202 },
            MemStore::new(),
            router.transport(a.as_str()),
        )
        .await
        .expect("start wiped");
        wiped
            .inner
            .cluster_id
            .begin_joining(&*wiped.inner.store)
            .expect("joining");
        let request = RpcRequest {
            cluster_id: Some(7),
            target_incarnation: 202,
            body: RequestBody::AppendEntries(openraft::raft::AppendEntriesRequest {
                vote,
                prev_log_id: None,
                entries: first,
                leader_commit: None,
            }),
        };
        let answer = wiped.rpc_handler().handle(request).await;
        assert!(
            matches!(answer.body, ResponseBody::AppendEntries(Ok(_))),
            "{answer:?}"
        );
        runtime::sleep(Duration::from_millis(3 * config.election_timeout_max_ms)).await;
        assert!(
            !wiped.is_leader(),
            "the wiped peer elected itself from the founding membership entry"
        );
        // The entry names the old member as voter; the new store is not it.
        assert!(!wiped.inner.membership().1.contains(&wiped.inner.my_id));
    }

    /// Item 15: a retried join of a peer that an earlier attempt already
    /// added as a learner added it again (openraft 0.9 writes a new
    /// membership entry for that). Now only the promotion is written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn join_of_an_existing_learner_does_not_add_it_again() {
        let router = InProcRouter::new();
        let (a, b) = (PeerId::synthetic(1), PeerId::synthetic(2));
        let store = MemStore::new();
        let config = RaftConfig::fast_for_tests();
        let leader = ClusterRaft::start(
            &a,
            "inproc/1",
            config.clone(),
            crate::Boot::CreateIfEmpty { incarnation: 101 },
            store.clone(),
            router.transport(a.as_str()),
        )
        .await
        .expect("start");
        router.register(a.as_str(), leader.rpc_handler());
        leader.initialize(7).await.expect("initialize");
        leader
            .wait_for_leader(Duration::from_secs(5))
            .await
            .expect("leader");
        let joiner = ClusterRaft::start(
            &b,
            "inproc/2",
            config,
            crate::Boot::CreateIfEmpty { incarnation: 102 },
            MemStore::new(),
            router.transport(b.as_str()),
        )
        .await
        .expect("start");
        router.register(b.as_str(), joiner.rpc_handler());
        // What the first attempt did before its answer was lost.
        joiner
            .inner
            .cluster_id
            .begin_joining(&*joiner.inner.store)
            .expect("joining");
        leader
            .inner
            .raft
            .add_learner(
                node_id_of_info(joiner.node_info()),
                joiner.node_info().clone(),
                true,
            )
            .await
            .expect("add learner");
        let before = leader.inner.raft.metrics().borrow().last_log_index;
        let answer = serve_join(&leader.inner, joiner.node_info().clone()).await;
        assert!(
            matches!(answer, ResponseBody::MembershipDone { .. }),
            "{answer:?}"
        );
        let changes = membership_entries(&store, before).await;
        assert_eq!(
            changes.len(),
            2,
            "membership entries at {changes:?} (joint, voters)"
        );
        leader.shutdown().await;
        joiner.shutdown().await;
    }

    /// Holds the first `stalls` AppendEntries its peer sends to `slow` past
    /// openraft's time limit for them (the heartbeat interval), so that the
    /// leader hears nothing from that peer for a while.
    struct SlowTo {
        inner: Arc<dyn RaftTransport>,
        slow: String,
        stalls: std::sync::atomic::AtomicU32,
        delay: Duration,
    }

    impl RaftTransport for SlowTo {
        fn call(
            &self,
            target: &NodeInfo,
            request: RpcRequest,
        ) -> BoxFuture<Result<RpcResponse, TransportError>> {
            let stall = target.peer_id == self.slow
                && request.kind() == "append_entries"
                && self
                    .stalls
                    .fetch_update(
                        std::sync::atomic::Ordering::SeqCst,
                        std::sync::atomic::Ordering::SeqCst,
                        |n| n.checked_sub(1),
                    )
                    .is_ok();
            let delay = self.delay;
            let call = self.inner.call(target, request);
            Box::pin(async move {
                if stall {
                    runtime::sleep(delay).await;
                }
                call.await
            })
        }
    }

    /// Item 15: a join whose leader-side work outlasts one forwarded attempt
    /// was cut at the rpc timeout and retried, and the retry, finding the
    /// joiner among the voters of the (uncommitted) joint configuration,
    /// answered "done" before the final membership was even written. Now one
    /// attempt covers the leader-side wait, and "done" waits for the
    /// membership to be committed: the join has written exactly its three
    /// membership entries (learner, joint, voters) when it returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_join_writes_each_membership_step_once() {
        let router = InProcRouter::new();
        let config = RaftConfig::fast_for_tests();
        let (a, b) = (PeerId::synthetic(1), PeerId::synthetic(2));
        let slow: Arc<dyn RaftTransport> = Arc::new(SlowTo {
            inner: router.transport(a.as_str()),
            slow: b.to_string(),
            // About ten forwarded-rpc timeouts of silence.
            stalls: std::sync::atomic::AtomicU32::new(25),
            delay: Duration::from_millis(100),
        });
        let store = MemStore::new();
        let leader = ClusterRaft::start(
            &a,
            "inproc/1",
            config.clone(),
            crate::Boot::CreateIfEmpty { incarnation: 103 },
            store.clone(),
            slow,
        )
        .await
        .expect("start");
        router.register(a.as_str(), leader.rpc_handler());
        leader.initialize(7).await.expect("initialize");
        leader
            .wait_for_leader(Duration::from_secs(5))
            .await
            .expect("leader");
        for n in 0..20u64 {
            let entry =
                cluster_core::pinset::Entry::new(cluster_core::pinset::Command::RemovePeer {
                    peer: PeerId::synthetic(100 + n),
                });
            let _applied = leader.write(entry).await.expect("write");
        }
        let before = leader.inner.raft.metrics().borrow().last_log_index;
        let joiner = ClusterRaft::start(
            &b,
            "inproc/2",
            config,
            crate::Boot::CreateIfEmpty { incarnation: 104 },
            MemStore::new(),
            router.transport(b.as_str()),
        )
        .await
        .expect("start");
        router.register(b.as_str(), joiner.rpc_handler());
        joiner.join(leader.node_info()).await.expect("join");
        let changes = membership_entries(&store, before).await;
        assert_eq!(changes.len(), 3, "membership entries at {changes:?}");
        assert_eq!(leader.members().len(), 2);
        leader.shutdown().await;
        joiner.shutdown().await;
    }

    /// Holds every call to `held` while `hold` is set (openraft then times
    /// them out itself), so that the leader cannot commit without that peer.
    struct HoldTo {
        inner: Arc<dyn RaftTransport>,
        held: String,
        hold: Arc<std::sync::atomic::AtomicBool>,
    }

    impl RaftTransport for HoldTo {
        fn call(
            &self,
            target: &NodeInfo,
            request: RpcRequest,
        ) -> BoxFuture<Result<RpcResponse, TransportError>> {
            let held = (target.peer_id == self.held).then(|| self.hold.clone());
            let call = self.inner.call(target, request);
            Box::pin(async move {
                if let Some(hold) = held {
                    while hold.load(std::sync::atomic::Ordering::SeqCst) {
                        runtime::sleep(Duration::from_millis(10)).await;
                    }
                }
                call.await
            })
        }
    }

    /// Simulator seed 57: the leader-side part of a removal outlives the
    /// caller's attempt (the caller gives up on it and retries). One such
    /// part, backing off behind a change in progress, woke up after the
    /// retry had removed the peer and the peer had joined again on a new
    /// store, and removed that new store by its peer id: a join answered
    /// "done" and undone 70 ms later, leaving a cluster of two voters that
    /// a wiped disk then stopped for good. A removal now only removes the
    /// stores of the peer that were members when the leader took it up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_removal_left_waiting_does_not_remove_the_store_that_joined_since() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let router = InProcRouter::new();
        let mut config = RaftConfig::fast_for_tests();
        // The waiting removal sleeps through the retry and the re-join.
        config.leader_retry_delay_ms = 2_000;
        config.membership_retry_delay_max_ms = 2_000;
        let (a, b, c) = (
            PeerId::synthetic(1),
            PeerId::synthetic(2),
            PeerId::synthetic(3),
        );
        let hold = Arc::new(AtomicBool::new(false));
        let held: Arc<dyn RaftTransport> = Arc::new(HoldTo {
            inner: router.transport(a.as_str()),
            held: c.to_string(),
            hold: hold.clone(),
        });
        let start = |peer: &PeerId, n: u32, incarnation: u128, transport| {
            let (peer, config, router) = (peer.clone(), config.clone(), router.clone());
            async move {
                let raft = ClusterRaft::start(
                    &peer,
                    &format!("inproc/{n}"),
                    config,
                    crate::Boot::CreateIfEmpty { incarnation },
                    MemStore::new(),
                    transport,
                )
                .await
                .expect("start");
                router.register(peer.as_str(), raft.rpc_handler());
                raft
            }
        };
        let leader = start(&a, 1, 101, held).await;
        leader.initialize(7).await.expect("initialize");
        leader
            .wait_for_leader(Duration::from_secs(5))
            .await
            .expect("leader");
        let third = start(&c, 3, 103, router.transport(c.as_str())).await;
        third.join(leader.node_info()).await.expect("join c");
        let old = start(&b, 2, 201, router.transport(b.as_str())).await;
        old.join(leader.node_info()).await.expect("join b");
        // b's disk is lost.
        old.shutdown().await;

        // The first attempt: stuck half way while c hears nothing.
        hold.store(true, Ordering::SeqCst);
        let first = {
            let inner = leader.inner.clone();
            let peer = b.to_string();
            tokio::spawn(async move { serve_remove(&inner, &peer).await })
        };
        let joint = leader
            .inner
            .raft
            .wait(Some(Duration::from_secs(5)))
            .metrics(
                |m| m.membership_config.membership().get_joint_config().len() > 1,
                "removal half way",
            )
            .await;
        assert!(joint.is_ok(), "the removal never started");
        // A retried attempt: meets the change in progress and backs off.
        let waiting = {
            let inner = leader.inner.clone();
            let peer = b.to_string();
            tokio::spawn(async move { serve_remove(&inner, &peer).await })
        };
        runtime::sleep(Duration::from_millis(200)).await;
        hold.store(false, Ordering::SeqCst);
        let answer = first.await.expect("first attempt");
        assert!(
            matches!(answer, ResponseBody::MembershipDone { .. }),
            "{answer:?}"
        );

        // b comes back on a new store and joins again while the retried
        // attempt still sleeps.
        let new = start(&b, 2, 202, router.transport(b.as_str())).await;
        new.join(leader.node_info()).await.expect("re-join b");
        let new_id = node_id_of_info(new.node_info());
        assert!(leader.inner.membership().1.contains(&new_id));
        assert!(!waiting.is_finished(), "the retried attempt ended early");

        let answer = waiting.await.expect("retried attempt");
        assert!(
            matches!(answer, ResponseBody::MembershipDone { .. }),
            "{answer:?}"
        );
        assert!(
            leader.inner.membership().1.contains(&new_id),
            "the waiting removal removed the store that joined after it: {:?}",
            leader.inner.membership().1
        );
        for raft in [leader, third, new] {
            raft.shutdown().await;
        }
    }

    /// Two fresh peers started together: one attempt through the other
    /// answers `NoCluster` at once (not after the whole membership timeout),
    /// the peer that asked can still start the cluster, and the other then
    /// joins it. What the daemon relies on when peers list each other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn join_once_through_a_fresh_peer_says_no_cluster_and_both_can_still_form_one() {
        let router = InProcRouter::new();
        let mut rafts = Vec::new();
        for n in 1..=2u64 {
            let peer = PeerId::synthetic(n);
            let raft = ClusterRaft::start(
                &peer,
                &format!("inproc/{n}"),
                RaftConfig::fast_for_tests(),
                crate::Boot::CreateIfEmpty {
                    incarnation: u128::from(n),
                },
                MemStore::new(),
                router.transport(peer.as_str()),
            )
            .await
            .expect("start");
            router.register(peer.as_str(), raft.rpc_handler());
            rafts.push(raft);
        }
        let (first, second) = (&rafts[0], &rafts[1]);
        let started = std::time::Instant::now();
        let answer = first.join_once(second.node_info()).await;
        assert!(
            matches!(answer, Err(MembershipError::NoCluster)),
            "{answer:?}"
        );
        let limit = Duration::from_millis(RaftConfig::fast_for_tests().membership_timeout_ms);
        assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
        first.initialize(11).await.expect("initialize after asking");
        first
            .wait_for_leader(Duration::from_secs(5))
            .await
            .expect("leader");
        second
            .join_once(first.node_info())
            .await
            .expect("join the cluster just started");
        assert_eq!(second.cluster_id(), Some(11));
        let mut members = first.members();
        members.sort();
        assert_eq!(members, vec![PeerId::synthetic(1), PeerId::synthetic(2)]);
        for raft in rafts {
            raft.shutdown().await;
        }
    }

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
        let colliding_id = crate::raft_glue::types::node_id_of_str(joiner.as_str(), 2);
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

    /// `add_peer` (IPFS Cluster's `POST /peers`): a removed member that is
    /// still running comes back, a peer waiting to join is added, and a
    /// peer of no cluster or one nobody can reach is refused with the
    /// membership untouched.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn add_peer_brings_back_a_removed_member_and_adds_a_joining_peer_only() {
        let router = InProcRouter::new();
        let start = |n: u64| {
            let router = router.clone();
            async move {
                let peer = PeerId::synthetic(n);
                let raft = ClusterRaft::start(
                    &peer,
                    format!("inproc/{n}"),
                    RaftConfig::fast_for_tests(),
                    crate::Boot::CreateIfEmpty {
                        incarnation: u128::from(n) + 100,
                    },
                    MemStore::new(),
                    router.transport(peer.as_str()),
                )
                .await
                .expect("start");
                router.register(peer.as_str(), raft.rpc_handler());
                raft
            }
        };
        let a = start(1).await;
        a.initialize(5).await.expect("initialize");
        a.wait_for_leader(Duration::from_secs(5))
            .await
            .expect("leader");
        let b = start(2).await;
        b.join(a.node_info()).await.expect("join b");
        let c = start(3).await;
        c.join(a.node_info()).await.expect("join c");
        let id = |r: &ClusterRaft| PeerId::parse(&r.node_info().peer_id).expect("id");

        // Removed, still running: added back through a follower.
        a.remove_peer(&id(&c)).await.expect("remove c");
        assert_eq!(a.members().len(), 2);
        let node = b.add_peer(&id(&c)).await.expect("add c back");
        assert_eq!(&node, c.node_info());
        let mut members = a.members();
        members.sort();
        let mut want = vec![id(&a), id(&b), id(&c)];
        want.sort();
        assert_eq!(members, want);
        // Again: nothing to do.
        a.add_peer(&id(&c)).await.expect("add c again");
        assert_eq!(a.members().len(), 3);

        // A fresh peer that never asked to join would refuse the cluster.
        let d = start(4).await;
        match a.add_peer(&id(&d)).await {
            Err(MembershipError::NotJoining(p)) => assert_eq!(p, d.node_info().peer_id),
            other => panic!("expected NotJoining, got {other:?}"),
        }
        assert_eq!(a.members().len(), 3);
        // Once it waits to join (its contact was unreachable), it is added.
        let nowhere = NodeInfo {
            peer_id: PeerId::synthetic(9).to_string(),
            addr: "inproc/9".into(),
            incarnation: 0,
        };
        assert!(d.join_once(&nowhere).await.is_err());
        a.add_peer(&id(&d)).await.expect("add d");
        assert_eq!(a.members().len(), 4);
        assert_eq!(d.cluster_id(), Some(5));

        // Another cluster's peer, and a peer nobody can reach.
        let e = start(5).await;
        e.initialize(6).await.expect("another cluster");
        assert!(matches!(
            a.add_peer(&id(&e)).await,
            Err(MembershipError::ClusterMismatch { ours: 5, theirs: 6 })
        ));
        let ghost = PeerId::synthetic(77);
        match a.add_peer(&ghost).await {
            Err(e @ MembershipError::Unreachable { .. }) => {
                assert!(e.to_string().contains(ghost.as_str()), "{e}")
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
        assert_eq!(a.members().len(), 4);
        for raft in [a, b, c, d, e] {
            raft.shutdown().await;
        }
    }
}

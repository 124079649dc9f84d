//! [`ClusterRaft`]: one peer's consensus handle (start, reads, RPC serving).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cluster_core::{PeerId, Pinset};
use openraft::error::{ClientWriteError, Fatal, RaftError};
use openraft::{ServerState, SnapshotPolicy};
use tokio::sync::mpsc;

use super::changes::PinsetChanges;
use super::cluster_id::{AdoptError, ClusterIdCell};
use super::identity::{self, Boot};
use super::log_store::LogStore;
use super::network::NetworkFactory;
use super::removal::Refusals;
use super::rpc::{RefusedReason, RequestBody, ResponseBody, RpcRequest, RpcResponse};
use super::runtime;
use super::snapshot_gate::SnapshotGate;
use super::state_machine::{read_pinset, SharedPinset, StateMachine};
use super::types::{node_id_of, NodeId, NodeInfo, Raft};
use super::watch::RaftWatch;
use super::write_path::{self, PendingWrite};
use crate::config::RaftConfig;
use crate::error::{FatalError, StartError};
use crate::store::DurableStore;
use crate::transport::{BoxFuture, RaftTransport, RpcHandler};

/// Capacity of the queue of client writes waiting to be batched.
pub(crate) const WRITE_QUEUE_CAPACITY: usize = 8_192;
/// Longest wait in `shutdown` for openraft's tasks to release the store.
const SHUTDOWN_RELEASE_WAIT_MS: u64 = 5_000;
/// Poll period of the `wait_for_*` helpers.
const WAIT_POLL_MS: u64 = 10;

/// Shared state behind a [`ClusterRaft`] handle.
pub(crate) struct Inner {
    pub(crate) me: NodeInfo,
    pub(crate) my_id: NodeId,
    pub(crate) raft: Raft,
    pub(crate) pinset: SharedPinset,
    pub(crate) transport: Arc<dyn RaftTransport>,
    pub(crate) store: Arc<dyn DurableStore>,
    pub(crate) cluster_id: ClusterIdCell,
    pub(crate) config: RaftConfig,
    pub(crate) writes: mpsc::Sender<PendingWrite>,
    /// Peers refusing this one as a non-member (see `removal`).
    pub(crate) refusals: Refusals,
    /// Pins changed by applied entries, for the tracker's driver.
    pub(crate) changes: Arc<PinsetChanges>,
    /// The commit point openraft reported and the log store has not written
    /// yet: written at a clean shutdown.
    pub(crate) unsaved_committed: super::log_store::UnsavedCommitted,
}

/// One peer's consensus layer: a Raft member replicating the shared pinset.
///
/// Cheap to clone; all clones drive the same peer. Writes work on any peer
/// (followers forward to the leader); reads see this peer's applied state.
#[derive(Clone)]
pub struct ClusterRaft {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ClusterRaft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRaft")
            .field("peer", &self.inner.me)
            .field("cluster_id", &self.inner.cluster_id.get())
            .finish()
    }
}

fn openraft_config(config: &RaftConfig) -> Result<openraft::Config, StartError> {
    openraft::Config {
        cluster_name: config.cluster_name.clone(),
        heartbeat_interval: config.heartbeat_interval_ms,
        election_timeout_min: config.election_timeout_min_ms,
        election_timeout_max: config.election_timeout_max_ms,
        install_snapshot_timeout: config.rpc_timeout_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every_logs),
        max_in_snapshot_log_to_keep: config.logs_to_keep,
        snapshot_max_chunk_size: config.snapshot_chunk_bytes,
        // openraft bounds AppendEntries by count; the count comes from the
        // byte budget (every log entry is one batch of bounded bytes).
        max_payload_entries: config.append_entries_max(),
        ..Default::default()
    }
    .validate()
    .map_err(|e| StartError::Config(e.to_string()))
}

impl ClusterRaft {
    /// Starts the consensus layer of peer `peer`, reachable at `addr`, over
    /// `store` (restoring its log, vote and last snapshot) and `transport`.
    ///
    /// `boot` says whether the store must already hold this peer's state
    /// ([`Boot::Existing`], for a node configured as a member: an empty store
    /// is refused with [`StartError::NoState`]) or may be empty
    /// ([`Boot::CreateIfEmpty`]: a new identity is written with the caller's
    /// random incarnation). A store of another peer is refused.
    ///
    /// A fresh store starts a peer that belongs to no cluster: call
    /// [`initialize`](ClusterRaft::initialize) or [`join`](ClusterRaft::join).
    /// A store with state rejoins its cluster without further action. The
    /// caller registers [`rpc_handler`](ClusterRaft::rpc_handler) with the
    /// transport so other peers reach this one.
    pub async fn start<S: DurableStore>(
        peer: &PeerId,
        addr: impl Into<String>,
        config: RaftConfig,
        boot: Boot,
        store: S,
        transport: Arc<dyn RaftTransport>,
    ) -> Result<ClusterRaft, StartError> {
        config.validate()?;
        let raft_config = Arc::new(openraft_config(&config)?);
        let store = Arc::new(store);
        super::codec::check_store_format(&*store)?;
        let identity = identity::load_or_create(&*store, peer.as_str(), boot)?;
        let cluster_id = ClusterIdCell::load(&*store)?;
        let pinset: SharedPinset = Arc::new(RwLock::new(Pinset::new()));
        let state_machine = StateMachine::open(Arc::clone(&store), Arc::clone(&pinset))?;
        let gate = state_machine.gate();
        let changes = state_machine.changes();
        gate.set_snapshot_policy(
            config.snapshot_every_writes,
            config.snapshot_every_log_bytes,
        );
        let log_store = LogStore::new(Arc::clone(&store), Arc::clone(&gate));
        let unsaved_committed = log_store.unsaved_committed();
        let refusals = Refusals::default();
        let network = NetworkFactory {
            transport: Arc::clone(&transport),
            cluster_id: cluster_id.clone(),
            refusals: refusals.clone(),
        };
        let my_id = node_id_of(peer, identity.incarnation);
        let raft = Raft::new(my_id, raft_config, network, log_store, state_machine)
            .await
            .map_err(|e| match e {
                Fatal::StorageError(e) => StartError::RaftStorage(e.to_string()),
                other => StartError::Raft(other.to_string()),
            })?;
        let (writes, queue) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let inner = Arc::new(Inner {
            me: NodeInfo {
                peer_id: peer.to_string(),
                addr: addr.into(),
                incarnation: identity.incarnation,
            },
            my_id,
            raft,
            pinset,
            transport,
            store,
            cluster_id,
            config,
            writes,
            refusals,
            changes,
            unsaved_committed,
        });
        runtime::spawn(super::removal::stand_down_when_removed(Arc::downgrade(
            &inner,
        )));
        runtime::spawn(write_path::run_batcher(Arc::downgrade(&inner), queue));
        runtime::spawn(trigger_snapshots(Arc::downgrade(&inner), gate));
        runtime::spawn(super::membership::finish_joint_changes(Arc::downgrade(
            &inner,
        )));
        Ok(ClusterRaft { inner })
    }

    /// The handler a transport calls with requests for this peer.
    pub fn rpc_handler(&self) -> Arc<dyn RpcHandler> {
        Arc::new(self.clone())
    }

    /// This peer's id and address, as recorded in the membership.
    pub fn node_info(&self) -> &NodeInfo {
        &self.inner.me
    }

    /// The cluster this peer belongs to, if any.
    pub fn cluster_id(&self) -> Option<u128> {
        self.inner.cluster_id.get()
    }

    /// Runs `f` on this peer's applied pinset (do not block inside).
    pub fn with_pinset<R>(&self, f: impl FnOnce(&Pinset) -> R) -> R {
        f(&read_pinset(&self.inner.pinset))
    }

    /// The feed of pins changed by applied entries (one reader: the pin
    /// tracker's driver), so it never rescans the pinset per entry.
    pub fn changes(&self) -> Arc<PinsetChanges> {
        Arc::clone(&self.inner.changes)
    }

    /// Log index of the last entry applied to the pinset on this peer.
    pub fn applied_index(&self) -> u64 {
        read_pinset(&self.inner.pinset).applied_index()
    }

    /// Index of the last entry in this peer's log, applied or not (0 when
    /// empty), as the Raft task last published it: just after
    /// [`start`](ClusterRaft::start) it may still read 0 for a short while.
    /// A lone member that restarted applies up to it once it leads again;
    /// an offline reader waits for that before reading the pinset.
    pub fn last_log_index(&self) -> u64 {
        self.inner
            .raft
            .metrics()
            .borrow()
            .last_log_index
            .unwrap_or(0)
    }

    /// The current leader as this peer knows it.
    pub fn leader(&self) -> Option<PeerId> {
        self.inner
            .leader_node()
            .and_then(|n| PeerId::parse(&n.peer_id).ok())
    }

    /// The current leader's membership record (id and address), to reach
    /// it over a transport.
    pub fn leader_info(&self) -> Option<NodeInfo> {
        self.inner.leader_node()
    }

    /// The membership records of every member, voters and learners, this
    /// one included: whom a node broadcasts to.
    pub fn member_infos(&self) -> Vec<NodeInfo> {
        let (nodes, _) = self.inner.membership();
        nodes.into_values().collect()
    }

    /// True when this peer is the leader.
    pub fn is_leader(&self) -> bool {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        m.state == ServerState::Leader
    }

    /// The term this peer leads in, if it is the leader now.
    pub fn leading_term(&self) -> Option<u64> {
        self.watch().leading_term()
    }

    /// This peer's Raft node id (derived from its peer id and its store's
    /// incarnation; leader ids in the log name it).
    pub fn node_id(&self) -> u64 {
        self.inner.my_id
    }

    /// A watch over this peer's Raft role and term, for a node that logs
    /// leadership changes (and the simulator's election-safety checker).
    pub fn watch(&self) -> RaftWatch {
        RaftWatch {
            metrics: self.inner.raft.metrics(),
        }
    }

    /// Why this peer's Raft stopped by itself, if it did (`None` while it
    /// runs, and after a [`shutdown`](ClusterRaft::shutdown)). A storage
    /// error is fatal to Raft: the peer serves nothing more, and the node
    /// should exit so that its supervisor restarts it once the disk is
    /// healthy. See [`FatalError`].
    pub fn fatal_error(&self) -> Option<FatalError> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        match &m.running_state {
            Ok(()) | Err(Fatal::Stopped) => None,
            Err(Fatal::StorageError(e)) => Some(FatalError::Storage(e.to_string())),
            Err(Fatal::Panicked) => Some(FatalError::Panicked),
        }
    }

    /// Waits until this peer's Raft stops by itself and says why; never
    /// returns while it runs (or after a normal shutdown). For a node's
    /// main loop: exit on it.
    pub async fn wait_fatal(&self) -> FatalError {
        let mut metrics = self.inner.raft.metrics();
        loop {
            if let Some(fatal) = self.fatal_error() {
                return fatal;
            }
            if metrics.changed().await.is_err() {
                // Raft's metrics end with its core task: read the last word,
                // then wait for good if it stopped normally.
                if let Some(fatal) = self.fatal_error() {
                    return fatal;
                }
                std::future::pending::<()>().await;
            }
        }
    }

    /// Voting members of the cluster, as this peer knows them.
    pub fn members(&self) -> Vec<PeerId> {
        self.inner.members(false)
    }

    /// True while this peer's membership is a joint config: a change
    /// between its two steps, or one a deposed leader left half way (the
    /// next leader finishes it).
    pub fn membership_is_joint(&self) -> bool {
        self.inner.joint_goal().is_some()
    }

    /// Non-voting members (peers catching up before promotion).
    pub fn learners(&self) -> Vec<PeerId> {
        self.inner.members(true)
    }

    /// True when this peer is in the cluster's membership (voter or
    /// learner). A peer that was removed sees `false` once the change
    /// reached it; the node may then shut it down and clean its data.
    pub fn is_member(&self) -> bool {
        let (nodes, _) = self.inner.membership();
        nodes.contains_key(&self.inner.my_id)
    }

    /// Waits until some leader is known, up to `limit`.
    pub async fn wait_for_leader(&self, limit: Duration) -> Option<PeerId> {
        let this = self.clone();
        runtime::timeout(limit, async move {
            loop {
                if let Some(leader) = this.leader() {
                    return leader;
                }
                runtime::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
            }
        })
        .await
    }

    /// Waits until this peer applied log index `index`, up to `limit`;
    /// returns whether it did.
    pub async fn wait_for_applied(&self, index: u64, limit: Duration) -> bool {
        let this = self.clone();
        runtime::timeout(limit, async move {
            while this.applied_index() < index {
                runtime::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
            }
        })
        .await
        .is_some()
    }

    /// Stops this peer's Raft tasks and waits (bounded) until they released
    /// the store, so that it can be reopened once every handle is dropped.
    /// Other clones become unusable.
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(peer = %self.inner.me, error = %e, "raft shutdown");
        }
        let released = runtime::timeout(Duration::from_millis(SHUTDOWN_RELEASE_WAIT_MS), async {
            // Only `Inner` itself still holds the store once openraft's
            // storage and state machine tasks are gone.
            while Arc::strong_count(&self.inner.store) > 1 {
                runtime::sleep(Duration::from_millis(WAIT_POLL_MS)).await;
            }
        })
        .await;
        if released.is_none() {
            tracing::warn!(peer = %self.inner.me, "raft tasks still hold the store after shutdown");
        }
        if let Err(e) =
            super::log_store::flush_committed(&self.inner.store, &self.inner.unsaved_committed)
                .await
        {
            tracing::warn!(peer = %self.inner.me, error = %e, "commit point not saved at shutdown");
        }
    }
}

/// How often the snapshot trigger checks that its peer still exists.
const TRIGGER_ALIVE_CHECK_MS: u64 = 1_000;

/// Asks openraft for a snapshot whenever the gate says one is due (by
/// writes or log bytes since the last one; openraft's own policy only counts
/// log entries). Ends with the peer.
async fn trigger_snapshots(inner: std::sync::Weak<Inner>, gate: Arc<SnapshotGate>) {
    loop {
        let due = runtime::timeout(
            Duration::from_millis(TRIGGER_ALIVE_CHECK_MS),
            gate.snapshot_due(),
        )
        .await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if due.is_some() && inner.raft.trigger().snapshot().await.is_err() {
            return; // Raft shut down.
        }
    }
}

impl RpcHandler for ClusterRaft {
    fn handle(&self, request: RpcRequest) -> BoxFuture<RpcResponse> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            RpcResponse {
                body: inner.serve(request).await,
            }
        })
    }

    fn handle_from(&self, from: &str, request: RpcRequest) -> BoxFuture<RpcResponse> {
        let inner = Arc::clone(&self.inner);
        let from = from.to_string();
        Box::pin(async move {
            let body = match inner.check_sender(&from, &request) {
                Ok(()) => inner.serve(request).await,
                Err(refusal) => refusal,
            };
            RpcResponse { body }
        })
    }
}

impl Inner {
    /// Log index of the last entry applied on this peer.
    pub(crate) fn applied_index(&self) -> u64 {
        read_pinset(&self.pinset).applied_index()
    }

    /// The leader's node record, from this peer's view.
    pub(crate) fn leader_node(&self) -> Option<NodeInfo> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader?;
        m.membership_config.membership().get_node(&leader).cloned()
    }

    /// Membership nodes (id -> record) and voter ids.
    pub(crate) fn membership(&self) -> (BTreeMap<NodeId, NodeInfo>, Vec<NodeId>) {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let nodes = membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
        (nodes, membership.voter_ids().collect())
    }

    /// The voters a membership change left half way is going to: `Some`
    /// while this peer's membership is a joint config (openraft leaves one
    /// behind when its leader loses office between the two steps), `None`
    /// for a uniform one.
    pub(crate) fn joint_goal(&self) -> Option<BTreeSet<NodeId>> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let configs = m.membership_config.membership().get_joint_config();
        (configs.len() > 1).then(|| configs.last().cloned().unwrap_or_default())
    }

    fn members(&self, learners: bool) -> Vec<PeerId> {
        let (nodes, voters) = self.membership();
        nodes
            .iter()
            .filter(|(id, _)| voters.contains(id) != learners)
            .filter_map(|(_, n)| PeerId::parse(&n.peer_id).ok())
            .collect()
    }

    /// Serves one incoming request.
    async fn serve(self: &Arc<Self>, request: RpcRequest) -> ResponseBody {
        if let Err(refusal) = self.check_incarnation(&request) {
            return refusal;
        }
        if matches!(request.body, RequestBody::Identify) {
            // Before the cluster check: a peer of no cluster answers too.
            return ResponseBody::Identity {
                node: self.me.clone(),
                cluster_id: self.cluster_id.get(),
                joining: self.cluster_id.is_joining(),
            };
        }
        if let Err(refusal) = self.check_cluster(&request) {
            return refusal;
        }
        match request.body {
            RequestBody::AppendEntries(r) => {
                ResponseBody::AppendEntries(self.raft.append_entries(r).await)
            }
            RequestBody::Vote(r) => ResponseBody::Vote(self.raft.vote(r).await),
            RequestBody::InstallSnapshot(r) => {
                ResponseBody::InstallSnapshot(self.raft.install_snapshot(r).await)
            }
            other => self.serve_at_leader(other).await,
        }
    }

    /// Checks who is asking (`from`: the peer id the transport
    /// authenticated). A join must come from the peer it names. Raft
    /// traffic must come from a member, as this peer's membership knows
    /// it, speaking for its own node id; a sender this peer does not know
    /// is let through only where this peer's membership may be behind:
    /// - this peer is not in its own membership (it is being joined: it
    ///   learns the members from the leader's first messages);
    /// - a vote from a candidate whose log is ahead of this peer's (a
    ///   member added while this one was away);
    /// - AppendEntries / InstallSnapshot from a leader elected (committed
    ///   vote) in this peer's current term or a later one, or whose commit
    ///   (snapshot) is past this peer's last log entry: Raft then refuses a
    ///   lower term itself, and its answer carries this peer's higher term.
    ///
    /// So a removed or foreign peer can neither start elections here nor
    /// act as a stale leader, and no peer speaks for another's node id.
    fn check_sender(&self, from: &str, request: &RpcRequest) -> Result<(), ResponseBody> {
        let refuse = |why: &str| {
            tracing::warn!(peer = %self.me, sender = %from, kind = request.kind(), "refusing raft traffic: {why}");
            Err(ResponseBody::Refused(RefusedReason::NotFromMember {
                sender: from.to_string(),
            }))
        };
        let (claimed, vote) = match &request.body {
            RequestBody::Join(node) if node.peer_id != from => {
                tracing::warn!(peer = %self.me, sender = %from, named = %node.peer_id, "refusing a join for another peer");
                return Err(ResponseBody::Refused(RefusedReason::JoinForAnotherPeer {
                    sender: from.to_string(),
                    named: node.peer_id.clone(),
                }));
            }
            RequestBody::Add(node) => {
                // Only a member adds peers on their behalf.
                if self.membership().0.values().any(|n| n.peer_id == from) {
                    return Ok(());
                }
                tracing::warn!(peer = %self.me, sender = %from, named = %node.peer_id, "refusing to add a peer on behalf of a non-member");
                return Err(ResponseBody::Refused(RefusedReason::NotFromMember {
                    sender: from.to_string(),
                }));
            }
            RequestBody::AppendEntries(r) => (r.vote.leader_id().voted_for(), r.vote),
            RequestBody::InstallSnapshot(r) => (r.vote.leader_id().voted_for(), r.vote),
            RequestBody::Vote(r) => (r.vote.leader_id().voted_for(), r.vote),
            _ => return Ok(()),
        };
        let (nodes, _) = self.membership();
        if let Some(node) = claimed.and_then(|id| nodes.get(&id)) {
            if node.peer_id == from {
                return Ok(());
            }
            return refuse(&format!("it speaks for member {}", node.peer_id));
        }
        if nodes.values().any(|n| n.peer_id == from) {
            // A member (under another incarnation or another node id than it
            // claims): Raft itself decides on the message.
            return Ok(());
        }
        if !nodes.contains_key(&self.my_id) {
            return Ok(());
        }
        let metrics = self.raft.metrics();
        let (our_term, our_last_index) = {
            let m = metrics.borrow();
            (m.current_term, m.last_log_index)
        };
        // Entries the sender holds that this peer lacks: it may be a leader
        // this peer has not heard of (it joined while this peer was away).
        let ahead_of_us = |theirs: Option<u64>| {
            theirs.is_some_and(|t| our_last_index.is_none_or(|ours| t > ours))
        };
        let behind = match &request.body {
            RequestBody::Vote(r) => r.last_log_id.is_some_and(|theirs| {
                theirs.leader_id.term > our_term
                    || our_last_index.is_none_or(|ours| theirs.index > ours)
            }),
            // A peer cut off for a while comes back with a term inflated by
            // its lonely elections; a leader elected meanwhile has a lower
            // one. Refused here, that leader would never learn of the higher
            // term and this peer would never catch up. Raft itself refuses a
            // lower term, and its answer makes the leader step down, so the
            // next one (in a higher term) brings this peer up to date.
            RequestBody::AppendEntries(r) => {
                vote.is_committed()
                    && (vote.leader_id().term >= our_term
                        || ahead_of_us(r.leader_commit.map(|c| c.index)))
            }
            RequestBody::InstallSnapshot(r) => {
                vote.is_committed()
                    && (vote.leader_id().term >= our_term
                        || ahead_of_us(r.meta.last_log_id.map(|c| c.index)))
            }
            _ => vote.is_committed() && vote.leader_id().term >= our_term,
        };
        if behind {
            tracing::info!(peer = %self.me, sender = %from, kind = request.kind(), "raft traffic from a peer not in this peer's membership (it may be behind)");
            return Ok(());
        }
        refuse("the sender is not a member of this cluster")
    }

    /// Refuses Raft messages addressed to another incarnation of this
    /// peer's store: they are meant for the member this peer was before its
    /// store was lost, and answering them would vote or acknowledge appends
    /// with no memory of what that member promised.
    fn check_incarnation(&self, request: &RpcRequest) -> Result<(), ResponseBody> {
        let ours = self.me.incarnation;
        if request.body.is_raft_protocol() && request.target_incarnation != ours {
            tracing::warn!(
                peer = %self.me,
                addressed = %format!("{:032x}", request.target_incarnation),
                "refusing raft traffic for another incarnation of this peer"
            );
            return Err(ResponseBody::Refused(RefusedReason::WrongIncarnation {
                ours,
                addressed: request.target_incarnation,
            }));
        }
        Ok(())
    }

    /// Refuses requests from another cluster; a peer that asked to join
    /// adopts the cluster id of the first Raft message it receives (it was
    /// just added by a leader), a peer that did not ask refuses them.
    fn check_cluster(&self, request: &RpcRequest) -> Result<(), ResponseBody> {
        let raft_protocol = request.body.is_raft_protocol();
        match (self.cluster_id.get(), request.cluster_id) {
            (Some(ours), Some(theirs)) if ours != theirs => {
                Err(ResponseBody::ClusterMismatch { ours, theirs })
            }
            (Some(_), None) if raft_protocol => {
                Err(ResponseBody::Refused(RefusedReason::SenderNotInCluster))
            }
            (Some(_), _) => Ok(()),
            (None, Some(theirs)) if raft_protocol => {
                match self.cluster_id.adopt_from_raft(&*self.store, theirs) {
                    Ok(_) => {
                        tracing::info!(peer = %self.me, cluster = %format!("{theirs:032x}"), "joined cluster");
                        Ok(())
                    }
                    Err(AdoptError::Mismatch(ours)) => {
                        Err(ResponseBody::ClusterMismatch { ours, theirs })
                    }
                    Err(AdoptError::NotJoining) => {
                        Err(ResponseBody::Refused(RefusedReason::NoCluster))
                    }
                    Err(AdoptError::Store(e)) => Err(ResponseBody::Failed(e.to_string())),
                }
            }
            (None, None) if raft_protocol => {
                Err(ResponseBody::Refused(RefusedReason::SenderNotInCluster))
            }
            (None, _) => Err(ResponseBody::Refused(RefusedReason::NoCluster)),
        }
    }

    /// Serves the requests only a leader can serve (forwarded writes and
    /// membership changes); answers `NotLeader` elsewhere.
    pub(crate) async fn serve_at_leader(self: &Arc<Self>, body: RequestBody) -> ResponseBody {
        match body {
            RequestBody::Forward(entries) => write_path::serve_forward(self, entries).await,
            RequestBody::Join(node) | RequestBody::Add(node) => {
                super::membership::serve_join(self, node).await
            }
            RequestBody::Remove(peer) => super::membership::serve_remove(self, &peer).await,
            _ => ResponseBody::Failed("not a leader request".to_string()),
        }
    }

    /// Maps a write error of the local Raft into a response.
    pub(crate) fn client_write_error(
        &self,
        e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>,
    ) -> ResponseBody {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ResponseBody::NotLeader {
                leader: f.leader_node,
            },
            RaftError::APIError(other) => ResponseBody::Failed(other.to_string()),
            RaftError::Fatal(_) => ResponseBody::Refused(RefusedReason::Shutdown),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::raft::VoteRequest;
    use openraft::Vote;

    use super::*;
    use crate::inproc::InProcRouter;
    use crate::store::MemStore;

    async fn fresh_peer(incarnation: u128) -> ClusterRaft {
        let router = InProcRouter::new();
        let peer = PeerId::synthetic(1);
        ClusterRaft::start(
            &peer,
            "inproc/1",
            RaftConfig::fast_for_tests(),
            Boot::CreateIfEmpty { incarnation },
            MemStore::new(),
            router.transport(peer.as_str()),
        )
        .await
        .expect("start")
    }

    fn vote(cluster_id: u128, target_incarnation: u128) -> RpcRequest {
        RpcRequest {
            cluster_id: Some(cluster_id),
            target_incarnation,
            body: RequestBody::Vote(VoteRequest::new(Vote::new(5, 42), None)),
        }
    }

    /// Item 13: a fresh store that never asked to join adopted the cluster
    /// id of any Raft message and answered it.
    #[tokio::test]
    async fn a_peer_that_is_not_joining_refuses_raft_traffic() {
        let raft = fresh_peer(7).await;
        let answer = raft.rpc_handler().handle(vote(9, 7)).await;
        assert!(
            matches!(answer.body, ResponseBody::Refused(RefusedReason::NoCluster)),
            "{answer:?}"
        );
        assert_eq!(raft.cluster_id(), None);
        raft.shutdown().await;
    }

    /// Item 13: Raft messages addressed to another incarnation are refused
    /// even while joining (they are meant for the member this peer was).
    #[tokio::test]
    async fn raft_traffic_for_another_incarnation_is_refused() {
        let raft = fresh_peer(7).await;
        raft.inner
            .cluster_id
            .begin_joining(&*raft.inner.store)
            .expect("joining");
        let answer = raft.rpc_handler().handle(vote(9, 6)).await;
        assert!(
            matches!(
                answer.body,
                ResponseBody::Refused(RefusedReason::WrongIncarnation {
                    ours: 7,
                    addressed: 6
                })
            ),
            "{answer:?}"
        );
        assert_eq!(raft.cluster_id(), None);
        // Addressed to this incarnation while joining: adopted and answered.
        let answer = raft.rpc_handler().handle(vote(9, 7)).await;
        assert!(
            matches!(answer.body, ResponseBody::Vote(Ok(_))),
            "{answer:?}"
        );
        assert_eq!(raft.cluster_id(), Some(9));
        raft.shutdown().await;
    }

    /// Raft traffic must come from a member speaking for itself; a join
    /// from the peer it names.
    #[tokio::test]
    async fn who_is_asking_is_checked() {
        let raft = fresh_peer(7).await;
        raft.initialize(9).await.expect("initialize");
        raft.wait_for_leader(Duration::from_secs(5))
            .await
            .expect("leader");
        let me = raft.node_info().peer_id.clone();
        let stranger = PeerId::synthetic(2).to_string();
        let handler = raft.rpc_handler();
        // A non-member's vote (its log is not ahead): refused.
        let answer = handler.handle_from(&stranger, vote(9, 7)).await;
        assert!(
            matches!(&answer.body, ResponseBody::Refused(RefusedReason::NotFromMember { sender }) if *sender == stranger),
            "{answer:?}"
        );
        // A vote speaking for this member's node id from another peer.
        let mut forged = vote(9, 7);
        forged.body = RequestBody::Vote(VoteRequest::new(Vote::new(5, raft.inner.my_id), None));
        let answer = handler.handle_from(&stranger, forged.clone()).await;
        assert!(
            matches!(
                answer.body,
                ResponseBody::Refused(RefusedReason::NotFromMember { .. })
            ),
            "{answer:?}"
        );
        // The same message from the member it names reaches Raft.
        let answer = handler.handle_from(&me, forged).await;
        assert!(matches!(answer.body, ResponseBody::Vote(_)), "{answer:?}");
        // A join naming another peer than its sender.
        let join = RpcRequest {
            cluster_id: Some(9),
            target_incarnation: 0,
            body: RequestBody::Join(NodeInfo {
                peer_id: PeerId::synthetic(3).to_string(),
                addr: "inproc/3".to_string(),
                incarnation: 3,
            }),
        };
        let answer = handler.handle_from(&stranger, join).await;
        assert!(
            matches!(
                answer.body,
                ResponseBody::Refused(RefusedReason::JoinForAnotherPeer { .. })
            ),
            "{answer:?}"
        );
        raft.shutdown().await;
    }
}

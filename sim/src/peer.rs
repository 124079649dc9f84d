//! One simulated cluster peer: the real consensus (`ClusterRaft`) plus the
//! drivers a node runs around the core: the pin tracker loop against its fake
//! IPFS, metrics publishing, and the leader's re-allocation of pins left
//! under-replicated. Runs as the init task of a madsim node, so a crash kills
//! all of it and a restart runs it again from the peer's disk.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cluster_core::allocator::{
    allocate, AllocateBy, AllocationRequest, AllocatorConfig, PeerMetrics,
};
use cluster_core::pinset::{Command, Entry, PinVersion};
use cluster_core::tracker::{Desire, Input, IpfsCommand, Output, Tracker, TrackerConfig};
use cluster_core::{Cid, Millis, PeerId, TrackerStatus};
use cluster_net::{Boot, ClusterRaft, RaftConfig};
use madsim::rand::Rng;
use tokio::sync::{mpsc, oneshot};

use crate::ipfs::FakeIpfs;
use crate::net::SimNet;
use crate::store::SimStore;

/// How often the tracker driver looks for pinset changes, in ms.
const PINSET_POLL_MS: u64 = 200;
/// How often metrics are published, in ms.
const METRICS_EVERY_MS: u64 = 1_000;
/// Metrics older than this (on the reader's clock) mark a peer unusable, in ms.
pub const METRIC_TTL_MS: u64 = 5_000;
/// How often the leader looks for pins to re-allocate, in ms.
const REPAIR_EVERY_MS: u64 = 2_000;
/// Re-allocations proposed per repair round at most.
const REPAIRS_PER_ROUND_MAX: usize = 64;

/// Milliseconds of simulated time since the simulation started.
pub fn now_ms() -> u64 {
    madsim::time::TimeHandle::current().elapsed().as_millis() as u64
}

/// The allocator settings every simulated peer uses.
pub fn allocator_config() -> AllocatorConfig {
    AllocatorConfig {
        allocate_by: vec![AllocateBy::Tag("group".into()), AllocateBy::FreeSpace],
        metric_ttl_ms: METRIC_TTL_MS,
    }
}

/// What a peer publishes about itself; readers see it through the network.
#[derive(Default)]
pub struct MetricsBoard {
    latest: Mutex<BTreeMap<PeerId, PeerMetrics>>,
}

impl MetricsBoard {
    fn latest(&self) -> MutexGuard<'_, BTreeMap<PeerId, PeerMetrics>> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The metrics `reader` has received: from peers whose messages reach it.
    pub fn view_from(&self, reader: &PeerId, net: &SimNet) -> Vec<PeerMetrics> {
        self.latest()
            .values()
            .filter(|m| m.peer == *reader || net.link_up(m.peer.as_str(), reader.as_str()))
            .cloned()
            .collect()
    }
}

/// Everything about one peer that outlives its crashes.
pub struct PeerCtx {
    /// Position in the simulation (also its madsim node's name).
    pub index: usize,
    /// Its identity.
    pub id: PeerId,
    /// Its address as recorded in the membership.
    pub addr: String,
    /// Its disk.
    pub store: SimStore,
    /// Its IPFS daemon.
    pub ipfs: Arc<FakeIpfs>,
    /// The network.
    pub net: Arc<SimNet>,
    /// Where the controller finds running peers.
    pub registry: Arc<Registry>,
    /// Published metrics of every peer.
    pub board: Arc<MetricsBoard>,
    /// Consensus settings.
    pub raft_config: RaftConfig,
    /// Tracker settings.
    pub tracker_config: TrackerConfig,
    /// Skew of this peer's clock as seen in its metrics, in ms.
    pub clock_skew_ms: AtomicI64,
    /// Its tag value for `tag:group`.
    pub group: String,
    /// Its free space, in bytes.
    pub free_space_bytes: u64,
    /// Tracker instances started so far: the next one's epoch.
    pub tracker_starts: AtomicU16,
    /// Where the peer asks its supervisor (systemd, say) for a restart: its
    /// Raft stopped on a storage error, or it could not start on a failing
    /// disk. Carries the peer's index and why.
    pub supervisor: mpsc::UnboundedSender<(usize, String)>,
}

/// Every status a tracker reports, by CID.
pub type Statuses = BTreeMap<Cid, TrackerStatus>;

/// A running peer as the controller sees it.
#[derive(Clone)]
pub struct Running {
    /// Its consensus handle.
    pub raft: ClusterRaft,
    /// Its tracker's input queue (for recover requests).
    pub tracker: mpsc::UnboundedSender<Input>,
    /// Asks its tracker for every status it reports.
    pub statuses: mpsc::UnboundedSender<oneshot::Sender<Statuses>>,
}

/// The running peers, by index.
#[derive(Default)]
pub struct Registry {
    running: Mutex<BTreeMap<usize, Running>>,
    start_errors: Mutex<Vec<String>>,
    invariant_errors: Mutex<Vec<String>>,
    leaders: Mutex<crate::checkers::Leaders>,
    election_errors: Mutex<Vec<crate::checkers::Violation>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// The running peer at `index`.
    pub fn get(&self, index: usize) -> Option<Running> {
        lock(&self.running).get(&index).cloned()
    }

    /// Every running peer.
    pub fn all(&self) -> Vec<(usize, Running)> {
        lock(&self.running)
            .iter()
            .map(|(i, r)| (*i, r.clone()))
            .collect()
    }

    /// Forgets a peer (it crashed or left).
    pub fn remove(&self, index: usize) {
        lock(&self.running).remove(&index);
    }

    /// Errors peers met while starting.
    pub fn start_errors(&self) -> Vec<String> {
        lock(&self.start_errors).clone()
    }

    /// Invariant violations found by peers' drivers.
    pub fn invariant_errors(&self) -> Vec<String> {
        lock(&self.invariant_errors).clone()
    }

    /// Two nodes seen leading under one leader id (see `checkers::Leaders`).
    pub fn election_errors(&self) -> Vec<crate::checkers::Violation> {
        lock(&self.election_errors).clone()
    }

    /// Leader ids seen.
    pub fn leaders_seen(&self) -> usize {
        lock(&self.leaders).leaders()
    }

    fn record_leader(&self, term: u64, node: u64, peer: &str, incarnation: u128, label: &str) {
        let result = lock(&self.leaders).record(term, node, peer, incarnation, label);
        if let Err(v) = result {
            lock(&self.election_errors).push(v);
        }
    }

    fn report_invariant(&self, what: String) {
        lock(&self.invariant_errors).push(what);
    }
}

/// Sleeps `ms` by this peer's timers (which may drift, see
/// `cluster_net::sim_hooks`).
fn local_sleep(ms: u64) -> madsim::time::Sleep {
    madsim::time::sleep(cluster_net::sim_hooks::drifted(Duration::from_millis(ms)))
}

/// The init task of a peer's node: start consensus from disk and run the drivers.
pub async fn run_peer(ctx: Arc<PeerCtx>) {
    let transport = ctx.net.transport_for(ctx.id.as_str());
    // Used only if the disk is empty; madsim's seeded rng keeps it
    // deterministic.
    let boot = Boot::CreateIfEmpty {
        incarnation: madsim::rand::thread_rng().gen_range(1..=u128::MAX),
    };
    let started = ClusterRaft::start(
        &ctx.id,
        &ctx.addr,
        ctx.raft_config.clone(),
        boot,
        ctx.store.clone(),
        transport,
    )
    .await;
    let raft = match started {
        Ok(raft) => raft,
        // A failing disk refuses the start; the node exits and its
        // supervisor tries again later. Any other refusal is a bug.
        Err(e) if ctx.store.failing() => {
            crate::probes::hit("restart: start refused by a failing disk");
            let _ = ctx
                .supervisor
                .send((ctx.index, format!("start refused: {e}")));
            return;
        }
        Err(e) => {
            lock(&ctx.registry.start_errors)
                .push(format!("peer {} failed to start: {e}", ctx.index));
            return;
        }
    };
    {
        // As the node's main loop does: exit when Raft stops on a storage
        // error, so the supervisor restarts the peer from its disk.
        let (raft, ctx) = (raft.clone(), Arc::clone(&ctx));
        madsim::task::spawn(async move {
            let fatal = raft.wait_fatal().await;
            crate::probes::hit("raft: fatal storage error, peer restarted");
            let _ = ctx
                .supervisor
                .send((ctx.index, format!("raft stopped: {fatal}")));
        });
    }
    {
        // Every leader id this node leads under, for the election-safety checker.
        let (mut watch, ctx) = (raft.watch(), Arc::clone(&ctx));
        let info = raft.node_info().clone();
        let node_id = raft.node_id();
        let label = format!("peer {} (incarnation {:x})", ctx.index, info.incarnation);
        madsim::task::spawn(async move {
            loop {
                if let Some(term) = watch.leading_term() {
                    let at = now_ms();
                    ctx.registry.record_leader(
                        term,
                        node_id,
                        &info.peer_id,
                        info.incarnation,
                        &format!("{label} at {at} ms"),
                    );
                }
                if !watch.changed().await {
                    return;
                }
            }
        });
    }
    let node = madsim::runtime::Handle::current()
        .get_node(format!("peer-{}", ctx.index))
        .map(|n| n.id());
    if let Some(node) = node {
        ctx.net.register(ctx.id.as_str(), node, raft.rpc_handler());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let (status_tx, status_rx) = mpsc::unbounded_channel();
    lock(&ctx.registry.running).insert(
        ctx.index,
        Running {
            raft: raft.clone(),
            tracker: tx.clone(),
            statuses: status_tx,
        },
    );
    madsim::task::spawn(publish_metrics(Arc::clone(&ctx)));
    madsim::task::spawn(repair_allocations(Arc::clone(&ctx), raft.clone()));
    drive_tracker(ctx, raft, tx, rx, status_rx).await;
}

/// The tracker driver: feeds pinset changes and IPFS answers, executes commands.
async fn drive_tracker(
    ctx: Arc<PeerCtx>,
    raft: ClusterRaft,
    tx: mpsc::UnboundedSender<Input>,
    mut rx: mpsc::UnboundedReceiver<Input>,
    mut status_rx: mpsc::UnboundedReceiver<oneshot::Sender<Statuses>>,
) {
    let epoch = ctx.tracker_starts.fetch_add(1, Ordering::Relaxed);
    let mut tracker = match Tracker::new(ctx.tracker_config.clone(), epoch, Millis(now_ms())) {
        Ok(tracker) => tracker,
        Err(e) => {
            lock(&ctx.registry.start_errors).push(format!("peer {} tracker: {e}", ctx.index));
            return;
        }
    };
    let mut known: BTreeMap<Cid, Desire> = BTreeMap::new();
    let mut seen_index = u64::MAX;
    // The leader's commit index seen at start-up; once the pinset fed to the
    // tracker reached it, every desire is known.
    let mut catch_up_to: Option<u64> = None;
    let mut desired_complete = false;
    loop {
        let index = raft.applied_index();
        if index != seen_index {
            seen_index = index;
            let wanted: BTreeMap<Cid, Desire> = raft.with_pinset(|p| {
                p.iter()
                    .map(|pin| (pin.cid.clone(), Desire::of(&pin, &ctx.id)))
                    .collect()
            });
            let now = Millis(now_ms());
            for (cid, desire) in &wanted {
                if known.get(cid) != Some(desire) {
                    tracker.handle_input(
                        Input::Desired {
                            cid: cid.clone(),
                            desire: Some(*desire),
                        },
                        now,
                    );
                }
            }
            for cid in known.keys().filter(|c| !wanted.contains_key(*c)) {
                tracker.handle_input(
                    Input::Desired {
                        cid: cid.clone(),
                        desire: None,
                    },
                    now,
                );
            }
            known = wanted;
        }
        if !desired_complete {
            catch_up_to = catch_up_to.or_else(|| leader_commit_index(&ctx, &raft));
            if catch_up_to.is_some_and(|target| seen_index >= target) {
                desired_complete = true;
                tracker.handle_input(Input::DesiredComplete, Millis(now_ms()));
            }
        }
        let wake = loop {
            match tracker.poll_output(Millis(now_ms())) {
                Output::Command(cmd) => {
                    madsim::task::spawn(execute(Arc::clone(&ctx.ipfs), cmd, tx.clone()));
                }
                Output::Timeout(at) => break at,
            }
        };
        if let Err(e) = tracker.check_invariants() {
            ctx.registry
                .report_invariant(format!("peer {} tracker: {e}", ctx.index));
        }
        while let Ok(reply) = status_rx.try_recv() {
            let _ = reply.send(
                tracker
                    .statuses()
                    .map(|(c, s)| (c.clone(), s.status))
                    .collect(),
            );
        }
        let wait_ms = wake.0.saturating_sub(now_ms()).clamp(1, PINSET_POLL_MS);
        let input = madsim::time::timeout(
            cluster_net::sim_hooks::drifted(Duration::from_millis(wait_ms)),
            rx.recv(),
        )
        .await;
        let input = match input {
            Ok(Some(input)) => input,
            Ok(None) => return,
            Err(_) => Input::Tick,
        };
        tracker.handle_input(input, Millis(now_ms()));
        while let Ok(more) = rx.try_recv() {
            tracker.handle_input(more, Millis(now_ms()));
        }
    }
}

/// The leader's commit index as this peer can learn it. `ClusterRaft` does
/// not expose one, so the leader's applied index stands in for it (a real node
/// would ask the leader); `None` while no leader is known.
fn leader_commit_index(ctx: &PeerCtx, raft: &ClusterRaft) -> Option<u64> {
    let leader = raft.leader()?;
    if leader == ctx.id {
        return Some(raft.applied_index());
    }
    ctx.registry
        .all()
        .into_iter()
        .find(|(_, r)| r.raft.node_info().peer_id == leader.as_str())
        .map(|(_, r)| r.raft.applied_index())
}

async fn execute(ipfs: Arc<FakeIpfs>, cmd: IpfsCommand, answers: mpsc::UnboundedSender<Input>) {
    let input = match cmd {
        IpfsCommand::Pin { op, cid, max_depth } => Input::IpfsDone {
            op,
            result: ipfs.pin(&cid, max_depth).await,
        },
        IpfsCommand::Unpin { op, cid } => Input::IpfsDone {
            op,
            result: ipfs.unpin(&cid).await,
        },
        IpfsCommand::ListPins { op } => Input::IpfsPins {
            op,
            result: ipfs.list().await,
        },
    };
    // The driver is gone only when the peer crashed; the answer dies with it.
    let _ = answers.send(input);
}

async fn publish_metrics(ctx: Arc<PeerCtx>) {
    loop {
        let skew = ctx.clock_skew_ms.load(Ordering::Relaxed);
        let seen = (now_ms() as i64 + skew).max(0) as u64;
        let pinned = ctx.ipfs.pins().values().filter(|p| p.by_cluster).count() as u64;
        let metrics = PeerMetrics {
            peer: ctx.id.clone(),
            free_space_bytes: ctx.free_space_bytes,
            pinned,
            queue_len: 0,
            tags: [("group".to_string(), ctx.group.clone())].into(),
            last_seen: Millis(seen),
        };
        ctx.board.latest().insert(ctx.id.clone(), metrics);
        local_sleep(METRICS_EVERY_MS).await;
    }
}

/// The leader moves pins away from departed peers and tops up pins left
/// under-replicated, as new proposals (never as a side effect of apply).
async fn repair_allocations(ctx: Arc<PeerCtx>, raft: ClusterRaft) {
    loop {
        local_sleep(REPAIR_EVERY_MS).await;
        if !raft.is_leader() {
            continue;
        }
        let members: BTreeSet<PeerId> = raft.members().into_iter().collect();
        let member_list: Vec<PeerId> = members.iter().cloned().collect();
        let metrics = ctx.board.view_from(&ctx.id, &ctx.net);
        let todo: Vec<(cluster_core::Pin, PinVersion)> = raft.with_pinset(|p| {
            p.iter_with_versions()
                .filter(|(pin, _)| {
                    !pin.is_everywhere()
                        && (pin.is_under_replicated()
                            || pin.allocations.iter().any(|a| !members.contains(a)))
                })
                .take(REPAIRS_PER_ROUND_MAX)
                .collect()
        });
        for (pin, version) in todo {
            let current: Vec<PeerId> = pin
                .allocations
                .iter()
                .filter(|a| members.contains(*a))
                .cloned()
                .collect();
            let gone: Vec<PeerId> = pin
                .allocations
                .iter()
                .filter(|a| !members.contains(*a))
                .cloned()
                .collect();
            let request = AllocationRequest {
                replication_factor_min: pin.options.replication_factor_min,
                replication_factor_max: pin.options.replication_factor_max,
                current: &current,
                user_allocations: &[],
                blacklist: &gone,
                members: &member_list,
            };
            let member_metrics: Vec<PeerMetrics> = metrics
                .iter()
                .filter(|m| members.contains(&m.peer))
                .cloned()
                .collect();
            let Ok(allocations) = allocate(
                &request,
                &member_metrics,
                Millis(now_ms()),
                &allocator_config(),
            ) else {
                continue; // Not enough healthy peers yet; try again next round.
            };
            if allocations == pin.allocations && !pin.is_under_replicated() {
                continue;
            }
            let entry = Entry::new(Command::Reallocate {
                cid: pin.cid.clone(),
                allocations,
                version,
            });
            // Failures are retried by the next round.
            let _ = raft.write(entry).await;
        }
    }
}

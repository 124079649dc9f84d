//! One simulated cluster peer: the real consensus (`ClusterRaft`) and the
//! product's own driver loops from `cluster-node` (tracker driver, metrics
//! publisher, leader's re-allocation, the node-RPC router), wired to the
//! simulated network, disk, clock and fake IPFS. This file is wiring only:
//! what the drivers decide and do is the code the binary runs. Runs as the
//! init task of a madsim node, so a crash kills all of it and a restart runs
//! it again from the peer's disk.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cluster_core::allocator::{AllocateBy, AllocatorConfig};
use cluster_core::pinset::PinVersion;
use cluster_core::repair::RepairReason;
use cluster_core::tracker::TrackerConfig;
use cluster_core::{Cid, Millis, PeerId, TrackerStatus};
use cluster_net::{Boot, ClusterRaft, RaftConfig};
use cluster_node::drivers::expiry::ExpiryConfig;
use cluster_node::drivers::metrics::{MetricsBoard, MetricsConfig};
use cluster_node::drivers::repair::{RepairConfig, RepairEvent};
use cluster_node::drivers::start_drivers_observed;
use cluster_node::drivers::tracker::{TrackerDriverConfig, TrackerHandle};
use cluster_node::{Clock, DriverSettings, PeerContext};
use madsim::rand::Rng;
use tokio::sync::mpsc;

use crate::ipfs::{FakeIpfs, SimIpfs};
use crate::net::SimNet;
use crate::store::SimStore;

/// How often metrics are published, in ms.
const METRICS_EVERY_MS: u64 = 1_000;
/// How long receivers keep a peer's metrics, and the allocator's TTL, in ms.
pub const METRIC_TTL_MS: u64 = 5_000;
/// Deadline of one metrics push or IPFS call of the publisher, in ms.
const METRICS_CALL_MS: u64 = 2_000;
/// How often the leader looks for pins to re-allocate, in ms.
const REPAIR_EVERY_MS: u64 = 2_000;
/// How often the leader looks for expired pins, in ms.
const EXPIRY_EVERY_MS: u64 = 2_000;
/// Re-allocations (and expiry removals) proposed per round at most.
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

/// One peer's wall clock: simulated time plus the skew a fault gives it,
/// never stepping back (as the binary's `SystemClock`).
pub struct SimClock {
    peer: Arc<PeerCtx>,
    latest: AtomicU64,
}

impl SimClock {
    /// The clock of `peer`.
    pub fn new(peer: Arc<PeerCtx>) -> SimClock {
        SimClock {
            peer,
            latest: AtomicU64::new(0),
        }
    }
}

impl Clock for SimClock {
    fn now(&self) -> Millis {
        let skew = self.peer.clock_skew_ms.load(Ordering::Relaxed);
        let reading = (now_ms() as i64 + skew).max(0) as u64;
        Millis(cluster_node::clock::monotonic(&self.latest, reading))
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
    /// Consensus settings.
    pub raft_config: RaftConfig,
    /// Tracker settings.
    pub tracker_config: TrackerConfig,
    /// Skew of this peer's wall clock, in ms.
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
    /// Its tracker driver (statuses, recover).
    pub tracker: TrackerHandle,
    /// The metrics it received from its peers (what it allocates by).
    pub board: Arc<MetricsBoard>,
    /// Its wall clock.
    pub clock: Arc<dyn Clock>,
}

impl Running {
    /// Every status its tracker reports, or `None` when it stopped.
    pub async fn statuses(&self) -> Option<Statuses> {
        let all = self.tracker.statuses(None).await?;
        Some(all.into_iter().map(|(c, s)| (c, s.status)).collect())
    }
}

/// The running peers, by index.
#[derive(Default)]
pub struct Registry {
    running: Mutex<BTreeMap<usize, Running>>,
    start_errors: Mutex<Vec<String>>,
    invariant_errors: Mutex<Vec<String>>,
    leaders: Mutex<crate::checkers::Leaders>,
    election_errors: Mutex<Vec<crate::checkers::Violation>>,
    repairs: Mutex<RepairLedger>,
    corrupt_refusals: Mutex<BTreeSet<usize>>,
}

/// A re-allocation being written, as its leader's pinset showed the pin
/// when it was proposed.
struct Proposal {
    cid: Cid,
    /// The pin's version then (`None`: gone).
    version: Option<PinVersion>,
    /// The name of its options then (each client write names its pin).
    name: Option<String>,
}

/// What the leaders' re-allocation drivers did, and what the hand-over
/// checker needs to judge it the moment it happens.
#[derive(Default)]
struct RepairLedger {
    /// Every peer's IPFS daemon (they outlive the peers).
    daemons: BTreeMap<PeerId, Arc<FakeIpfs>>,
    /// Peers being removed from the cluster, or ever removed.
    leaving: BTreeSet<PeerId>,
    /// CIDs a user unpinned by hand from some daemon.
    unpinned_by_hand: BTreeSet<Cid>,
    /// CIDs some re-allocation was proposed for.
    moved: BTreeSet<Cid>,
    /// Per proposing peer: the re-allocation it is writing, with the version
    /// its own pinset held for that pin when it proposed it.
    proposing: BTreeMap<usize, Proposal>,
    /// The allocations each client write carried, by the unique name it
    /// gave its pin.
    written: BTreeMap<String, Vec<PeerId>>,
    /// Applied re-allocations that dropped a member, checked.
    handovers: u64,
    violations: Vec<crate::checkers::Violation>,
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

    /// True once peer `index` refused to start from its corrupt disk with
    /// a clear error (forgotten by this call).
    pub fn take_corrupt_refusal(&self, index: usize) -> bool {
        lock(&self.corrupt_refusals).remove(&index)
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

    /// Registers a peer's IPFS daemon for the hand-over checker.
    pub fn register_daemon(&self, peer: PeerId, ipfs: Arc<FakeIpfs>) {
        lock(&self.repairs).daemons.insert(peer, ipfs);
    }

    /// `peer` is being removed: re-allocations may drop it without a holder.
    pub fn note_leaving(&self, peer: PeerId) {
        lock(&self.repairs).leaving.insert(peer);
    }

    /// A user unpinned `cid` by hand from some daemon.
    pub fn note_unpinned_by_hand(&self, cid: Cid) {
        lock(&self.repairs).unpinned_by_hand.insert(cid);
    }

    /// A client is about to write a pin named `name` (unique per write)
    /// with these allocations.
    pub fn note_client_write(&self, name: String, allocations: Vec<PeerId>) {
        lock(&self.repairs).written.insert(name, allocations);
    }

    /// CIDs some leader proposed to re-allocate.
    pub fn moved(&self) -> BTreeSet<Cid> {
        lock(&self.repairs).moved.clone()
    }

    /// Applied re-allocations that dropped a member, and the broken
    /// hand-overs among them.
    pub fn handovers(&self) -> (u64, Vec<crate::checkers::Violation>) {
        let r = lock(&self.repairs);
        (r.handovers, r.violations.clone())
    }

    fn on_repair(&self, index: usize, raft: &ClusterRaft, event: RepairEvent<'_>) {
        // Read before taking the ledger: the pinset has a lock of its own.
        let cid = match event {
            RepairEvent::Proposing(step) | RepairEvent::Applied(step) => &step.cid,
        };
        let (version, pin) = raft.with_pinset(|p| (p.version(cid), p.get(cid)));
        let mut r = lock(&self.repairs);
        match event {
            RepairEvent::Proposing(step) => {
                r.moved.insert(step.cid.clone());
                if version != Some(step.version) {
                    crate::probes::hit("repair: proposal already stale when sent");
                }
                let proposal = Proposal {
                    cid: step.cid.clone(),
                    version,
                    name: pin.map(|p| p.options.name),
                };
                r.proposing.insert(index, proposal);
            }
            RepairEvent::Applied(step) => {
                // The driver writes one proposal at a time: this peer's last
                // proposal is the one that applied.
                if let Some(proposal) = r.proposing.remove(&index) {
                    if proposal.cid == step.cid {
                        let landed = pin.map(|p| {
                            let written = r.written.get(&p.options.name).cloned();
                            crate::checkers::Landed {
                                name: p.options.name,
                                allocations: p.allocations,
                                written,
                            }
                        });
                        let base = crate::checkers::Base {
                            version: proposal.version,
                            name: proposal.name,
                        };
                        if let Err(v) =
                            crate::checkers::check_reallocation_base(step, &base, landed.as_ref())
                        {
                            r.violations.push(v);
                        }
                    }
                }
                match step.reason {
                    RepairReason::Expired => {
                        crate::probes::hit("repair: replacement added for an expired peer");
                        if crate::ipfs::is_large(&step.cid) {
                            crate::probes::hit("repair: replacement must fetch large content");
                        }
                    }
                    RepairReason::Handover => crate::probes::hit("repair: hand-over finished"),
                    RepairReason::Departed | RepairReason::Short => {}
                }
                let holders: BTreeSet<PeerId> = r
                    .daemons
                    .iter()
                    .filter(|(_, d)| d.pins().contains_key(&step.cid))
                    .map(|(p, _)| p.clone())
                    .collect();
                match crate::checkers::check_handover(
                    step,
                    &holders,
                    &r.leaving,
                    &r.unpinned_by_hand,
                ) {
                    Ok(checked) => r.handovers += u64::from(checked),
                    Err(v) => r.violations.push(v),
                }
            }
        }
    }

    fn report_invariant(&self, what: String) {
        lock(&self.invariant_errors).push(what);
    }
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
        // A damaged disk must refuse the start with an error that names
        // the damage, so the operator knows to wipe it and join again; the
        // node exits and waits for that.
        Err(e) if ctx.store.is_corrupt() => {
            let why = e.to_string();
            if why.contains("corrupt") {
                crate::probes::hit("restart: corrupt disk refused at start-up");
                lock(&ctx.registry.corrupt_refusals).insert(ctx.index);
            } else {
                lock(&ctx.registry.start_errors).push(format!(
                    "peer {} refused a corrupt disk with an unclear error: {why}",
                    ctx.index
                ));
            }
            return;
        }
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
    let epoch = ctx.tracker_starts.fetch_add(1, Ordering::Relaxed);
    let clock: Arc<dyn Clock> = Arc::new(SimClock::new(Arc::clone(&ctx)));
    let peer = PeerContext {
        id: ctx.id.clone(),
        raft: raft.clone(),
        ipfs: Arc::new(SimIpfs::new(
            Arc::clone(&ctx.ipfs),
            ctx.index,
            ctx.free_space_bytes,
        )),
        clock: Arc::clone(&clock),
        rpc: ctx.net.node_rpc_for(ctx.id.as_str()),
    };
    let settings = DriverSettings {
        tracker: TrackerDriverConfig {
            // Every step: a broken invariant is caught where it broke.
            full_pass_ms: 0,
            ..TrackerDriverConfig::new(ctx.tracker_config.clone(), epoch)
        },
        metrics: MetricsConfig {
            interval_ms: METRICS_EVERY_MS,
            ttl_ms: METRIC_TTL_MS,
            tags: [("group".to_string(), ctx.group.clone())].into(),
            call_ms: METRICS_CALL_MS,
        },
        repair: Some(RepairConfig {
            interval_ms: REPAIR_EVERY_MS,
            per_round_max: REPAIRS_PER_ROUND_MAX,
            allocator: allocator_config(),
            call_ms: METRICS_CALL_MS,
            ..RepairConfig::default()
        }),
        expiry: ExpiryConfig {
            interval_ms: EXPIRY_EVERY_MS,
            per_round_max: REPAIRS_PER_ROUND_MAX,
        },
    };
    let on_violation = {
        let (registry, index) = (Arc::clone(&ctx.registry), ctx.index);
        Arc::new(move |what: String| registry.report_invariant(format!("peer {index}: {what}")))
    };
    let on_repair = {
        let (registry, index, raft) = (Arc::clone(&ctx.registry), ctx.index, raft.clone());
        Arc::new(move |event: RepairEvent<'_>| registry.on_repair(index, &raft, event))
    };
    let drivers = match start_drivers_observed(&peer, settings, on_violation, on_repair) {
        Ok(drivers) => drivers,
        Err(e) => {
            lock(&ctx.registry.start_errors).push(format!("peer {} tracker: {e}", ctx.index));
            return;
        }
    };
    if let Some(node) = node {
        ctx.net
            .register_node(ctx.id.as_str(), node, drivers.router.clone());
    }
    lock(&ctx.registry.running).insert(
        ctx.index,
        Running {
            raft,
            tracker: drivers.tracker,
            board: drivers.board,
            clock,
        },
    );
    // madsim stops a node whose init task returns; the drivers run as tasks
    // of this node until a crash or restart kills them all, as a process's
    // do.
    std::future::pending::<()>().await;
}

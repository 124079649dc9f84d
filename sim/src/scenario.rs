//! The chaos scenario: start a cluster, run clients while faults chosen from
//! the seed hit it, heal, let it settle, then run every checker.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::allocator::{allocate, AllocationRequest};
use cluster_core::pinset::{Command, Entry, PinChange, RequestId};
use cluster_core::tracker::TrackerConfig;
use cluster_core::{Cid, Millis, PeerId, Pin, PinOptions};
use cluster_net::{MembershipError, NodeInfo, RaftConfig};
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;

use crate::checkers::{self, Violation};
use crate::digest::Digest;
use crate::history::{Answer, History, Op, Refusal, Request, Written};
use crate::ipfs::FakeIpfs;
use crate::net::SimNet;
use crate::peer::{self, now_ms, PeerCtx, Registry};
use crate::probes;
use crate::store::SimStore;

/// Simulated ms allowed for a write to be acknowledged once a quorum is connected again.
pub const LIVENESS_BOUND_MS: u64 = 30_000;
/// Simulated ms allowed for replicas and IPFS daemons to converge after the heal.
pub const SETTLE_BOUND_MS: u64 = 90_000;
/// How long a client waits for one request, in ms.
const CLIENT_TIMEOUT_MS: u64 = 8_000;
/// Retries of a request whose outcome is unknown, with the same request id.
const UNKNOWN_RETRIES: usize = 2;
/// First CID number of the pool only the expiring-pin writer uses.
const EXPIRING_POOL_BASE: u64 = 1 << 40;
/// How long past its expiry a pin may still be held at the final check, in
/// ms: the largest clock skew, an expiry round and the time to commit.
const EXPIRY_GRACE_MS: u64 = 30_000;
/// Attempts at joining or removing a peer before giving up.
const JOIN_ATTEMPTS_MAX: usize = 20;
/// Longest an operator takes to act on an alert, in ms.
const ALERT_REACTION_MAX_MS: u64 = 300;
/// Longest an operator's job re-pins the pins an alert left short, in ms.
const ALERT_JOB_MAX_MS: u64 = 8_000;
/// Chance, in thousandths, that a leader is crashed a few ms into a
/// membership change (on seeds that draw BUGGIFY crash points at all).
const MEMBERSHIP_CRASH_PER_MILLE: u32 = 300;

/// The clients' own pins `running` sees short of their minimum of live
/// peers (members with fresh metrics), or allocated to a peer that left:
/// what an alert about a peer tells an operator to look at, in the
/// pinset's order.
fn short_pins(running: &peer::Running) -> Vec<Cid> {
    let now = running.clock.now();
    let fresh: BTreeSet<PeerId> = running
        .board
        .current(now)
        .into_iter()
        .filter(|m| m.last_seen.0 + peer::METRIC_TTL_MS >= now.0)
        .map(|m| m.peer)
        .collect();
    let members: BTreeSet<PeerId> = running.raft.members().into_iter().collect();
    running.raft.with_pinset(|p| {
        p.iter()
            .filter(|pin| clients_own(pin) && !pin.is_everywhere())
            .filter(|pin| {
                let live = pin
                    .allocations
                    .iter()
                    .filter(|a| fresh.contains(*a) && members.contains(*a))
                    .count();
                live < pin.options.replication_factor_min.max(0) as usize
                    || pin.allocations.iter().any(|a| !members.contains(a))
            })
            .map(|pin| pin.cid)
            .collect()
    })
}

/// Whether `pin` is one of the clients' own CIDs (their writes name them
/// so): the expiring pins and the liveness probe have checkers of their own.
fn clients_own(pin: &Pin) -> bool {
    let name = &pin.options.name;
    name.starts_with("upd") || (name.starts_with('c') && pin.options.expire_at.is_none())
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Params {
    /// Peers at start; 0 lets the seed choose 3, 5 or 7.
    pub peers: usize,
    /// Length of the fault phase, in simulated seconds.
    pub chaos_secs: u64,
    /// Concurrent clients; 0 lets the seed choose.
    pub clients: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            peers: 0,
            chaos_secs: 60,
            clients: 0,
        }
    }
}

/// Every kind of fault the controller can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// Two sides that cannot talk.
    Partition,
    /// Two sides and one peer that talks to both (a non-transitive partition).
    Bridge,
    /// A peer hears nobody.
    Deaf,
    /// The leader is cut off.
    IsolateLeader,
    /// Packet loss and latency.
    Loss,
    /// Duplicated requests, requests delivered after the caller gave up.
    Misdelivery,
    /// A peer crashes and comes back seconds later.
    Crash,
    /// A peer crashes and comes back faster than an election timeout.
    QuickReboot,
    /// A member is down (crashed, or cut off from everyone) long enough
    /// for its metrics to expire, without being removed: the leader
    /// re-pins what falls below its minimum and hands it back.
    LongOutage,
    /// A majority loses power at once.
    PowerLoss,
    /// A peer's disk refuses writes; the supervisor restarts it after.
    DiskErrors,
    /// A peer's metrics clock is skewed.
    ClockSkew,
    /// Each peer's timers (Raft's and its drivers') run a few percent fast
    /// or slow; the fault re-draws one peer's drift.
    TimerDrift,
    /// A peer's IPFS daemon fails, slows down or restarts.
    IpfsFaults,
    /// A user pins and unpins by hand behind the tracker's back.
    IpfsByHand,
    /// A peer comes back with a wiped disk under the same identity.
    WipedDisk,
    /// A down peer's disk is damaged: its checksums refuse the start, and
    /// the operator wipes it and joins the peer again.
    CorruptDisk,
    /// Peers join, leave (crashed or still running), the leader is removed.
    Membership,
}

impl FaultKind {
    const ALL: [FaultKind; 18] = [
        FaultKind::Partition,
        FaultKind::Bridge,
        FaultKind::Deaf,
        FaultKind::IsolateLeader,
        FaultKind::Loss,
        FaultKind::Misdelivery,
        FaultKind::Crash,
        FaultKind::QuickReboot,
        FaultKind::LongOutage,
        FaultKind::PowerLoss,
        FaultKind::DiskErrors,
        FaultKind::ClockSkew,
        FaultKind::TimerDrift,
        FaultKind::IpfsFaults,
        FaultKind::IpfsByHand,
        FaultKind::WipedDisk,
        FaultKind::Membership,
        FaultKind::CorruptDisk,
    ];
}

/// What one seed draws for itself (swarm testing: each seed its own fault
/// mix, sizes and settings, so rare combinations get their turn).
#[derive(Debug, Clone)]
pub struct Swarm {
    /// Peers at start.
    pub peers: usize,
    /// Clients.
    pub clients: usize,
    /// Distinct CIDs the clients work on.
    pub cids: u64,
    /// Faults this seed may inject (empty: a fault-free run).
    pub faults: Vec<FaultKind>,
    /// Pause between faults, in ms.
    pub fault_gap_ms: (u64, u64),
    /// Longest simulated time a durable commit takes, in ms.
    pub commit_delay_max_ms: u64,
    /// Chance, in thousandths, of a crash right after a vote or append is persisted.
    pub buggify_per_mille: u32,
    /// Clients now and then re-pin a CID the leader is about to re-allocate
    /// (allocated to a peer that is down or gone, or short of its minimum),
    /// with new options: the race a re-allocation must lose.
    pub repin_moving: bool,
    /// Consensus settings.
    pub raft: RaftConfig,
    /// Tracker settings.
    pub tracker: TrackerConfig,
}

impl Swarm {
    /// Draws a swarm from the seed's random numbers (call inside the runtime).
    pub fn draw(params: &Params) -> Swarm {
        let mut rng = thread_rng();
        let peers = match params.peers {
            0 => [3, 5, 5, 7][rng.gen_range(0..4)],
            n => n,
        };
        let clients = match params.clients {
            0 => rng.gen_range(2..=6),
            n => n,
        };
        let cids = [4, 12, 24, 64, 500][rng.gen_range(0..5)];
        let faults = if rng.gen_range(0..10) == 0 {
            Vec::new()
        } else {
            let mut kinds: Vec<FaultKind> = FaultKind::ALL
                .iter()
                .copied()
                .filter(|_| rng.gen_bool(0.6))
                .collect();
            if kinds.is_empty() {
                kinds.push(FaultKind::ALL[rng.gen_range(0..FaultKind::ALL.len())]);
            }
            kinds
        };
        let gap_lo = rng.gen_range(300..2_000);
        let heartbeat = rng.gen_range(50..=150);
        let election_min = heartbeat * rng.gen_range(3..=6);
        let raft = RaftConfig {
            heartbeat_interval_ms: heartbeat,
            election_timeout_min_ms: election_min,
            election_timeout_max_ms: election_min * 2,
            // Small, so snapshots are built, installed and the log compacted
            // often; or the product's defaults (5,000 and 1,000: no snapshot
            // within a run, a peer back on a wiped disk replays the log from
            // the founding entry).
            snapshot_every_logs: [20, 50, 200, 5_000][rng.gen_range(0..4)],
            logs_to_keep: [5, 20, 100, 1_000][rng.gen_range(0..4)],
            snapshot_chunk_bytes: [256, 512, 4096][rng.gen_range(0..3)],
            // Below the election timeout (RaftConfig::validate).
            rpc_timeout_ms: election_min * 3 / 4,
            write_timeout_ms: 5_000,
            membership_timeout_ms: 10_000,
            membership_leader_wait_ms: 4_000,
            // Covers the leader-side wait plus one rpc (RaftConfig::validate).
            membership_attempt_timeout_ms: 4_000 + election_min * 3 / 4,
            membership_retry_delay_max_ms: 1_000,
            leader_retry_delay_ms: 50,
            ..RaftConfig::default()
        };
        let backoff_base_ms = rng.gen_range(50..=500);
        let tracker = TrackerConfig {
            concurrent_pins: rng.gen_range(1..=8),
            concurrent_unpins: rng.gen_range(1..=3),
            queue_max: 10_000,
            attempts_max: rng.gen_range(1..=5),
            backoff_base_ms,
            backoff_max_ms: backoff_base_ms * rng.gen_range(4..=20),
            reconcile_interval_ms: rng.gen_range(3_000..=15_000),
            op_timeout_ms: rng.gen_range(4_000..=10_000),
        };
        Swarm {
            peers,
            clients,
            cids,
            faults,
            fault_gap_ms: (gap_lo, gap_lo * 3),
            commit_delay_max_ms: [0, 2, 10, 40][rng.gen_range(0..4)],
            buggify_per_mille: [0, 0, 2, 10][rng.gen_range(0..4)],
            repin_moving: rng.gen_bool(0.75),
            raft,
            tracker,
        }
    }
}

/// What one run produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// Digest of every event; equal for equal runs.
    pub digest: u64,
    /// Broken promises (empty when the run passed).
    pub violations: Vec<Violation>,
    /// Requests acknowledged, failed and unknown.
    pub outcomes: (usize, usize, usize),
    /// Faults injected.
    pub faults: usize,
    /// Simulated seconds the run took.
    pub sim_secs: f64,
}

struct Sim {
    swarm: Swarm,
    /// Peers removed from the membership at some point (some joined again).
    ever_removed: Mutex<BTreeSet<PeerId>>,
    /// Peers whose disk was wiped while down.
    wiped: Mutex<BTreeSet<usize>>,
    /// Peers with a corrupt disk the operator has not wiped yet.
    corrupt_pending: Mutex<BTreeSet<usize>>,
    /// Pins with a near expiry the cluster acknowledged.
    expiring: Mutex<Vec<checkers::ExpiringPin>>,
    /// Crashes the persist hook may still cause.
    buggify_left: Mutex<u32>,
    /// Where the persist hooks ask for a crash: (peer, what was persisted).
    buggify_tx: tokio::sync::mpsc::UnboundedSender<(usize, &'static str)>,
    /// Where peers ask their supervisor for a restart (see [`PeerCtx::supervisor`]).
    supervisor_tx: tokio::sync::mpsc::UnboundedSender<(usize, String)>,
    net: Arc<SimNet>,
    registry: Arc<Registry>,
    peers: Mutex<Vec<Arc<PeerCtx>>>,
    /// The madsim node of each peer, by index.
    nodes: Mutex<Vec<madsim::task::NodeId>>,
    /// Peers removed from the cluster for good.
    removed: Mutex<BTreeSet<usize>>,
    /// Peers currently crashed (killed, waiting for restart).
    down: Mutex<BTreeSet<usize>>,
    digest: Mutex<Digest>,
    history: Mutex<History>,
    violations: Mutex<Vec<Violation>>,
    stop_clients: AtomicBool,
    membership_busy: AtomicBool,
    faults: Mutex<usize>,
}

/// How to take back a fault.
type Undo = Box<dyn FnOnce(&Sim) + Send>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sleep_ms(ms: u64) -> madsim::time::Sleep {
    madsim::time::sleep(Duration::from_millis(ms))
}

/// A CID of the workload's small pool.
pub fn pool_cid(n: u64) -> Cid {
    let mut bytes = vec![0x01, 0x55, 0x12, 0x20];
    bytes.extend(n.to_be_bytes());
    bytes.extend([0x5A; 24]);
    Cid::from_bytes(&bytes).expect("valid cid")
}

impl Sim {
    fn event(&self, what: String) {
        let line = format!("{} {what}", now_ms());
        if std::env::var_os("SIM_TRACE").is_some() {
            println!("event {line}");
        }
        lock(&self.digest).add(&line);
    }

    fn violation(&self, checker: &'static str, detail: String) {
        self.event(format!("violation {checker}: {detail}"));
        lock(&self.violations).push(Violation { checker, detail });
    }

    /// Peers ever created (a bound for loops that call [`Sim::peer`], which
    /// takes the same lock).
    fn peer_count(&self) -> usize {
        lock(&self.peers).len()
    }

    fn peer(&self, index: usize) -> Arc<PeerCtx> {
        Arc::clone(&lock(&self.peers)[index])
    }

    fn add_peer(self: &Arc<Self>) -> usize {
        let mut peers = lock(&self.peers);
        let index = peers.len();
        let mut rng = thread_rng();
        let store = SimStore::default();
        {
            let (tx, per_mille) = (self.buggify_tx.clone(), self.swarm.buggify_per_mille);
            store.set_persist_hook(Arc::new(move |what: &'static str| {
                // The product writes nothing relaxed that it relies on: a
                // relaxed vote or append is a durability bug, so crash on it
                // far more often.
                let chance = if what.starts_with("unsynced") {
                    per_mille.max(100)
                } else {
                    per_mille
                };
                if chance > 0 && thread_rng().gen_range(0..1000) < chance {
                    let _ = tx.send((index, what));
                }
            }));
        }
        let ctx = Arc::new(PeerCtx {
            index,
            id: PeerId::synthetic(index as u64 + 1),
            addr: format!("10.0.0.{}:9096", index + 1),
            store,
            ipfs: Arc::new(FakeIpfs::default()),
            net: Arc::clone(&self.net),
            registry: Arc::clone(&self.registry),
            raft_config: self.swarm.raft.clone(),
            tracker_config: self.swarm.tracker.clone(),
            clock_skew_ms: AtomicI64::new(0),
            group: ["a", "b", "c"][index % 3].to_string(),
            free_space_bytes: rng.gen_range(10..100u64) << 30,
            tracker_starts: Default::default(),
            supervisor: self.supervisor_tx.clone(),
        });
        self.registry
            .register_daemon(ctx.id.clone(), Arc::clone(&ctx.ipfs));
        peers.push(Arc::clone(&ctx));
        drop(peers);
        let node = Handle::current()
            .create_node()
            .name(format!("peer-{index}"))
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, index as u8 + 1)))
            .init(move || peer::run_peer(Arc::clone(&ctx)))
            .build();
        // Set before the node's init task first runs (it is only spawned).
        if self.swarm.faults.contains(&FaultKind::TimerDrift) {
            self.drift_timers(index, node.id());
        }
        lock(&self.nodes).push(node.id());
        self.event(format!("peer {index} created"));
        index
    }

    /// Draws new timer drift for a peer: up to ±5 % (its timers fire that
    /// much late or early, through the runtime seam of `cluster-net` and the
    /// simulator's own drivers).
    fn drift_timers(&self, index: usize, node: madsim::task::NodeId) {
        let per_mille = thread_rng().gen_range(-50..=50);
        probes::hit(if per_mille < 0 {
            "clock: peer timers run fast"
        } else {
            "clock: peer timers run slow"
        });
        cluster_net::sim_hooks::set_drift_per_mille(node, per_mille);
        self.event(format!("peer {index} timer drift {per_mille}/1000"));
    }

    fn info(&self, index: usize) -> NodeInfo {
        let p = self.peer(index);
        NodeInfo {
            peer_id: p.id.to_string(),
            addr: p.addr.clone(),
            incarnation: 0, // a contact address: its store is not known here
        }
    }

    /// Live members the controller can talk to, excluding crashed and removed peers.
    fn live(&self) -> Vec<usize> {
        let down = lock(&self.down).clone();
        let removed = lock(&self.removed).clone();
        self.registry
            .all()
            .into_iter()
            .map(|(i, _)| i)
            .filter(|i| !down.contains(i) && !removed.contains(i))
            .collect()
    }

    async fn wait_running(&self, index: usize) -> Option<peer::Running> {
        for _ in 0..100 {
            if let Some(r) = self.registry.get(index) {
                return Some(r);
            }
            sleep_ms(50).await;
        }
        None
    }

    async fn bootstrap(self: &Arc<Self>, cluster_id: u128) -> Result<(), String> {
        let first = self.wait_running(0).await.ok_or("peer 0 never started")?;
        first
            .raft
            .initialize(cluster_id)
            .await
            .map_err(|e| format!("initialize: {e}"))?;
        for i in 1..self.swarm.peers {
            self.join(i).await?;
        }
        Ok(())
    }

    async fn join(self: &Arc<Self>, index: usize) -> Result<(), String> {
        let joiner = self
            .wait_running(index)
            .await
            .ok_or(format!("peer {index} never started"))?;
        for attempt in 0..JOIN_ATTEMPTS_MAX {
            // Ask the leader if one is known, else any other live peer.
            let others: Vec<usize> = self.live().into_iter().filter(|i| *i != index).collect();
            let via = self
                .leader()
                .filter(|l| *l != index)
                .or_else(|| self.pick(&others))
                .unwrap_or(0);
            match joiner.raft.join(&self.info(via)).await {
                Ok(()) => {
                    self.event(format!("peer {index} joined via {via}"));
                    return Ok(());
                }
                Err(e) => {
                    self.event(format!(
                        "join of {index} via {via} attempt {attempt} failed: {e}"
                    ));
                    sleep_ms(500).await;
                }
            }
        }
        Err(format!("peer {index} could not join"))
    }

    /// Removes `index` from the cluster: Raft membership first, then its
    /// allocations (so the leader re-allocates its pins).
    async fn remove(self: &Arc<Self>, index: usize) -> Result<(), String> {
        let id = self.peer(index).id.clone();
        // Before the membership changes: the leader may drop its
        // allocations as soon as it is no member.
        self.registry.note_leaving(id.clone());
        for attempt in 0..JOIN_ATTEMPTS_MAX {
            // Asked of another peer: the one removed may not know it is a member.
            let live: Vec<usize> = self.live().into_iter().filter(|i| *i != index).collect();
            let Some(r) = self.pick(&live).and_then(|i| self.registry.get(i)) else {
                sleep_ms(500).await;
                continue;
            };
            let removed = match r.raft.remove_peer(&id).await {
                // Already gone (an earlier attempt went through, or this
                // peer's view of the membership was stale): removal is done.
                Err(MembershipError::NotMember(who)) if who == id.as_str() => Ok(()),
                other => other,
            };
            let result = match removed {
                Ok(()) => {
                    lock(&self.ever_removed).insert(id.clone());
                    r.raft
                        .write(Entry::new(Command::RemovePeer { peer: id.clone() }))
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(()) => {
                    self.event(format!("peer {index} removed"));
                    return Ok(());
                }
                Err(e) => {
                    self.event(format!("removal of {index} attempt {attempt} failed: {e}"));
                    sleep_ms(500).await;
                }
            }
        }
        Err(format!("peer {index} could not be removed"))
    }

    /// Removes a peer that came back on a wiped disk and joins it again as a
    /// new member, as its start-up error tells the operator to.
    /// The operator's path for a peer that refused its corrupt disk: read
    /// the start-up error, wipe the disk, start it empty, and remove and
    /// join it again as for any wiped disk.
    async fn heal_corrupt(self: &Arc<Self>, index: usize) {
        // Give the start attempt time to read the disk and give up.
        sleep_ms(1_000).await;
        if self.registry.get(index).is_some() {
            self.violation(
                "restart",
                format!("peer {index} started from a corrupt disk"),
            );
            lock(&self.corrupt_pending).remove(&index);
            return;
        }
        if !self.registry.take_corrupt_refusal(index) {
            // Not restarted (removed, or crashed again meanwhile): the
            // heal phase restarts it and the wipe still happens below.
            self.event(format!("peer {index}: no start-up refusal seen yet"));
        }
        self.event(format!("operator wipes the corrupt disk of {index}"));
        self.crash(index);
        self.peer(index).store.wipe();
        self.restart(index);
        probes::hit("restart: corrupt disk wiped by the operator");
        self.rejoin_wiped(index).await;
        lock(&self.corrupt_pending).remove(&index);
    }

    async fn rejoin_wiped(self: &Arc<Self>, index: usize) {
        if !lock(&self.wiped).contains(&index) || self.wait_running(index).await.is_none() {
            return;
        }
        match self.remove(index).await {
            Ok(()) => match self.join(index).await {
                Ok(()) => {
                    probes::hit("membership: wiped peer joined again");
                    lock(&self.wiped).remove(&index);
                }
                Err(e) => self.event(format!("re-join of wiped {index} failed: {e}")),
            },
            Err(e) => self.event(format!("removal of wiped {index} failed: {e}")),
        }
    }

    /// After the heal: peers that should be members are, and removed ones are not.
    async fn repair_membership(self: &Arc<Self>) {
        // The operator is still wiping a corrupt disk: let it finish first.
        for _ in 0..200 {
            if lock(&self.corrupt_pending).is_empty() {
                break;
            }
            sleep_ms(100).await;
        }
        // A peer back on a wiped disk refuses to act as the member it was
        // (issue 10, item 13): as its start-up error tells the operator, it is
        // removed and joins again as a new member.
        let wiped: Vec<usize> = std::mem::take(&mut *lock(&self.wiped))
            .into_iter()
            .collect();
        for i in wiped {
            if self.live().contains(&i) {
                if let Err(e) = self.remove(i).await {
                    self.violation("membership", e);
                } else if let Err(e) = self.join(i).await {
                    self.violation("membership", e);
                }
            }
        }
        let Some(members) = self
            .leader()
            .and_then(|l| self.registry.get(l))
            .map(|r| r.raft.members())
        else {
            return;
        };
        for i in self.live() {
            if !members.contains(&self.peer(i).id) {
                if let Err(e) = self.join(i).await {
                    self.violation("membership", e);
                }
            }
        }
        let removed: Vec<usize> = lock(&self.removed).iter().copied().collect();
        for i in removed {
            if members.contains(&self.peer(i).id) {
                if let Err(e) = self.remove(i).await {
                    self.violation("membership", e);
                }
            }
        }
    }

    // ---- clients ----------------------------------------------------------------

    async fn client(self: Arc<Self>, client: u64) {
        let mut serial = 0;
        while !self.stop_clients.load(Ordering::Relaxed) {
            serial += 1;
            sleep_ms(thread_rng().gen_range(10..300)).await;
            self.one_request(client, serial, None, false).await;
        }
    }

    /// An operator (client `client`) watching the cluster's alerts: when a
    /// member's metrics expire on the peer it asks, or a member leaves, a
    /// job of theirs renames the pins left short (same factors and mode;
    /// the REST API keeps their allocations), a few requests at a time in
    /// the pinset's order, pass after pass until none is short or its time
    /// is up. It acts on the very signal the leader's re-allocation acts
    /// on, so its writes race the repair round's proposals, each computed
    /// from the version the leader planned with: the state machine must
    /// refuse those as stale.
    async fn repin_on_alerts(self: Arc<Self>, client: u64) {
        let mut serial = 0;
        let mut alerted: BTreeSet<PeerId> = BTreeSet::new();
        let mut members_before: BTreeSet<PeerId> = BTreeSet::new();
        while !self.stop_clients.load(Ordering::Relaxed) {
            sleep_ms(thread_rng().gen_range(50..200)).await;
            let live = self.live();
            let Some(running) = self.pick(&live).and_then(|i| self.registry.get(i)) else {
                continue;
            };
            let now = running.clock.now();
            let fresh: BTreeSet<PeerId> = running
                .board
                .current(now)
                .into_iter()
                .filter(|m| m.last_seen.0 + peer::METRIC_TTL_MS >= now.0)
                .map(|m| m.peer)
                .collect();
            let members: BTreeSet<PeerId> = running.raft.members().into_iter().collect();
            let expired: BTreeSet<PeerId> = members.difference(&fresh).cloned().collect();
            // Alerts: a member's metrics expired, or a member left.
            let fired = expired.difference(&alerted).next().is_some()
                || members_before.difference(&members).next().is_some();
            alerted = expired;
            members_before = members;
            if !fired {
                continue;
            }
            probes::hit("client: operator acted on an alert");
            sleep_ms(thread_rng().gen_range(0..ALERT_REACTION_MAX_MS)).await;
            let (at_once, pause_ms, job_ms) = {
                let mut rng = thread_rng();
                (
                    rng.gen_range(4..=16),
                    rng.gen_range(0..30),
                    rng.gen_range(2_000..ALERT_JOB_MAX_MS),
                )
            };
            // The job passes over the pins the alert leaves short until they
            // are fixed (by the leader) or its time is up.
            let until = now_ms() + job_ms;
            while now_ms() < until && !self.stop_clients.load(Ordering::Relaxed) {
                let live = self.live();
                let Some(running) = self.pick(&live).and_then(|i| self.registry.get(i)) else {
                    break;
                };
                let cids = short_pins(&running);
                if cids.is_empty() {
                    break;
                }
                for batch in cids.chunks(at_once) {
                    probes::add("client: re-pin after an alert", batch.len() as u64);
                    let tasks: Vec<_> = batch
                        .iter()
                        .map(|cid| {
                            serial += 1;
                            let (sim, cid, serial) = (Arc::clone(&self), cid.clone(), serial);
                            madsim::task::spawn(async move {
                                sim.one_request(client, serial, Some(cid), true).await
                            })
                        })
                        .collect();
                    for task in tasks {
                        // Each ends once its request is recorded.
                        let _ = task.await;
                    }
                    sleep_ms(pause_ms).await;
                }
            }
        }
    }

    /// One request; `moving` names a CID waiting for a re-allocation the
    /// request must re-pin (or unpin), else the request draws its CID.
    /// `renaming`: a re-pin of `moving` under a new name with the pin's
    /// own factors and mode, nothing else.
    async fn one_request(&self, client: u64, serial: u64, moving: Option<Cid>, renaming: bool) {
        let live = self.live();
        if live.is_empty() {
            return;
        }
        let (target, roll, n, m, rf, flavour) = {
            let mut rng = thread_rng();
            let rf = [(-1, -1), (1, 1), (1, 2), (2, 2), (2, 3), (3, 3)][rng.gen_range(0..6)];
            (
                live[rng.gen_range(0..live.len())],
                rng.gen_range(0..100),
                rng.gen_range(0..self.swarm.cids),
                rng.gen_range(0..self.swarm.cids),
                rf,
                rng.gen_range(0..10u8),
            )
        };
        let Some(running) = self.registry.get(target) else {
            return;
        };
        let moving = moving.or_else(|| {
            if self.swarm.repin_moving && roll < 85 && flavour < 6 {
                self.moving_cid(&running)
            } else {
                None
            }
        });
        // Most re-pins of a moving CID keep its replication factors and
        // mode (a user renaming or re-tagging it): options a re-allocation
        // computed for the pin it replaced would still fit.
        let mut current: Vec<PeerId> = Vec::new();
        let (rf, flavour) = match moving.as_ref().and_then(|cid| {
            running
                .raft
                .with_pinset(|p| p.get(cid))
                .filter(|_| renaming || thread_rng().gen_range(0..4) != 0)
        }) {
            Some(pin) => {
                let factors = (
                    pin.options.replication_factor_min,
                    pin.options.replication_factor_max,
                );
                // The REST API keeps a re-pin's current allocations that are
                // still members (down or not) when they meet its minimum.
                current = pin.allocations.clone();
                let keep_mode = match (flavour, pin.options.mode) {
                    (1, cluster_core::PinMode::Recursive) => 0,
                    (2, _) if renaming => 0,
                    (f, cluster_core::PinMode::Direct) if f != 1 => 1,
                    (f, _) => f,
                };
                (factors, keep_mode)
            }
            None => (rf, flavour),
        };
        // A CID about to move is re-pinned with new options (most of the
        // time) or unpinned.
        let roll = match moving {
            Some(_) if renaming => roll % 55,
            Some(_) if roll < 75 => roll % 55,
            _ => roll,
        };
        if moving.is_some() {
            probes::hit("client: re-pin of a CID being re-allocated");
        }
        let cid = moving.unwrap_or_else(|| pool_cid(n));
        let invoked_ms = now_ms();
        let (command, request) = match roll {
            0..=54 => {
                let mut options = PinOptions {
                    replication_factor_min: rf.0,
                    replication_factor_max: rf.1,
                    name: format!("c{client}-{serial}"),
                    ..PinOptions::default()
                };
                // Random options beyond the factors: metadata, direct mode
                // (refused over a recursive pin), an expiry.
                match flavour {
                    0 => {
                        options
                            .metadata
                            .insert("owner".into(), format!("client-{client}"));
                    }
                    1 => options.mode = cluster_core::PinMode::Direct,
                    2 => options.expire_at = Some(Millis(invoked_ms + 3_600_000)),
                    _ => {}
                }
                let mut pin = Pin::new(cid.clone(), options, Millis(invoked_ms));
                // The peer that takes the request allocates, from the metrics
                // its own drivers received over the network, on its own clock.
                let peer_now = running.clock.now();
                let metrics = running.board.current(peer_now);
                let members: BTreeSet<PeerId> = running.raft.members().into_iter().collect();
                let member_list: Vec<PeerId> = members.iter().cloned().collect();
                let request = AllocationRequest {
                    replication_factor_min: rf.0,
                    replication_factor_max: rf.1,
                    current: &current,
                    user_allocations: &[],
                    blacklist: &[],
                    members: &member_list,
                };
                let metrics: Vec<_> = metrics
                    .into_iter()
                    .filter(|m| members.contains(&m.peer))
                    .collect();
                match allocate(&request, &metrics, peer_now, &peer::allocator_config()) {
                    Ok(allocations) => {
                        // Every fresh candidate's tag value, as the allocator saw it.
                        let tags: BTreeMap<PeerId, String> = metrics
                            .iter()
                            .filter(|m| m.last_seen.0 + peer::METRIC_TTL_MS >= peer_now.0)
                            .filter_map(|m| Some((m.peer.clone(), m.tags.get("group")?.clone())))
                            .collect();
                        // Kept allocations were spread when they were chosen,
                        // over the peers of that moment.
                        if current.is_empty() {
                            if let Err(v) = checkers::check_tag_spread(&allocations, &tags) {
                                self.violation(v.checker, v.detail);
                            }
                        }
                        pin.allocations = allocations;
                    }
                    Err(e) => {
                        probes::hit("allocator: not enough peers");
                        self.event(format!("client {client}/{serial} not allocated: {e}"));
                        return;
                    }
                }
                self.registry
                    .note_client_write(pin.options.name.clone(), pin.allocations.clone());
                let request = Request::Pin {
                    cid: pin.cid.clone(),
                    written: Written::of(&pin),
                    allocations: pin.allocations.clone(),
                };
                (Command::Pin(pin), request)
            }
            55..=84 => (Command::Unpin { cid: cid.clone() }, Request::Unpin { cid }),
            _ => {
                let name = format!("upd{client}-{serial}");
                (
                    Command::Update {
                        from: pool_cid(n),
                        to: pool_cid(m),
                        name: name.clone(),
                        expire_at: None,
                        timestamp: Millis(invoked_ms),
                    },
                    Request::Update {
                        from: pool_cid(n),
                        to: pool_cid(m),
                        name,
                    },
                )
            }
        };
        let entry = Entry {
            request: Some(RequestId { client, serial }),
            command,
        };
        // An unknown outcome is retried with the same request id, as a real
        // client would: the pinset's de-duplication must answer it with the
        // first outcome instead of applying it twice.
        let mut answer = Answer::Unknown;
        let mut via = running;
        for attempt in 0..=UNKNOWN_RETRIES {
            let got = madsim::time::timeout(
                Duration::from_millis(CLIENT_TIMEOUT_MS),
                via.raft.write(entry.clone()),
            )
            .await;
            answer = match got {
                Ok(Ok(result)) => Answer::of(&result),
                Ok(Err(_)) | Err(_) => Answer::Unknown,
            };
            if answer != Answer::Unknown || self.stop_clients.load(Ordering::Relaxed) {
                if attempt > 0 && answer != Answer::Unknown {
                    probes::hit("client: retry of an unknown request answered");
                }
                break;
            }
            let live = self.live();
            let Some(next) = self.pick(&live).and_then(|i| self.registry.get(i)) else {
                break;
            };
            via = next;
        }
        probes::hit(match &answer {
            Answer::Pinned(PinChange::Created) => "client: answer Created",
            Answer::Pinned(PinChange::Updated) => "client: answer Updated",
            Answer::Pinned(PinChange::Unchanged) => "client: answer Unchanged",
            Answer::Unpinned(_) => "client: answer Unpinned",
            Answer::Refused(Refusal::NotFound(_)) => "client: answer NotFound",
            Answer::Refused(Refusal::RecursiveToDirect) => "client: answer RecursiveToDirect",
            Answer::Refused(Refusal::Other(_)) => "client: answer other refusal",
            Answer::Unknown => "client: unknown outcome",
        });
        self.event(format!(
            "client {client}/{serial} -> peer {target}: {request:?} {answer:?}"
        ));
        lock(&self.history).record(Op {
            client,
            serial,
            request,
            invoked_ms,
            completed_ms: now_ms(),
            answer,
        });
    }

    /// A CID the leader has reason to re-allocate, as `running` sees the
    /// pinset: allocated to a peer that is down or no longer a member, or
    /// short of its minimum.
    fn moving_cid(&self, running: &peer::Running) -> Option<Cid> {
        let gone: BTreeSet<PeerId> = {
            let down = lock(&self.down);
            let removed = lock(&self.removed);
            down.iter()
                .chain(removed.iter())
                .map(|i| self.peer(*i).id.clone())
                .collect()
        };
        let members: BTreeSet<PeerId> = running.raft.members().into_iter().collect();
        let candidates: Vec<Cid> = running.raft.with_pinset(|p| {
            p.iter()
                .filter(|pin| {
                    pin.allocations
                        .iter()
                        .any(|a| gone.contains(a) || !members.contains(a))
                })
                .chain(p.under_replicated())
                .filter(clients_own)
                .map(|pin| pin.cid)
                .collect()
        });
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[thread_rng().gen_range(0..candidates.len())].clone())
    }

    /// Now and then pins a fresh CID everywhere with an expiry a few seconds
    /// ahead, so the leader's expiry driver (the product's) has work under
    /// the faults; the acknowledged ones must be gone by the final check.
    async fn write_expiring_pins(self: Arc<Self>) {
        let mut next = EXPIRING_POOL_BASE;
        while !self.stop_clients.load(Ordering::Relaxed) {
            sleep_ms(thread_rng().gen_range(2_000..8_000)).await;
            let live = self.live();
            let Some(running) = self.pick(&live).and_then(|i| self.registry.get(i)) else {
                continue;
            };
            let now = now_ms();
            let expire_at_ms = now + thread_rng().gen_range(2_000..30_000);
            let options = PinOptions {
                replication_factor_min: -1,
                replication_factor_max: -1,
                name: format!("expiring-{next}"),
                expire_at: Some(Millis(expire_at_ms)),
                ..PinOptions::default()
            };
            let cid = pool_cid(next);
            next += 1;
            let entry = Entry::new(Command::Pin(Pin::new(cid.clone(), options, Millis(now))));
            let got = madsim::time::timeout(
                Duration::from_millis(CLIENT_TIMEOUT_MS),
                running.raft.write(entry),
            )
            .await;
            if let Ok(Ok(result)) = got {
                if let Answer::Pinned(_) = Answer::of(&result) {
                    probes::hit("expiry: pin with a near expiry acknowledged");
                    self.event(format!(
                        "expiring pin {cid} acked, expires at {expire_at_ms}"
                    ));
                    lock(&self.expiring).push(checkers::ExpiringPin { cid, expire_at_ms });
                }
            }
        }
    }

    // ---- faults -----------------------------------------------------------------

    fn crash(&self, index: usize) {
        let tear = thread_rng().gen();
        self.crash_with_tear(index, tear);
    }

    /// A crash whose disk keeps `tear` of its unsynced commits (see
    /// [`SimStore::crash`]).
    fn crash_with_tear(&self, index: usize, tear: u64) {
        lock(&self.down).insert(index);
        self.registry.remove(index);
        self.net.set_down(self.peer(index).id.as_str());
        Handle::current().kill(format!("peer-{index}"));
        self.peer(index).store.crash(tear);
    }

    fn restart(&self, index: usize) {
        if lock(&self.removed).contains(&index) || !lock(&self.down).remove(&index) {
            return;
        }
        Handle::current().restart(format!("peer-{index}"));
    }

    fn pick(&self, from: &[usize]) -> Option<usize> {
        (!from.is_empty()).then(|| from[thread_rng().gen_range(0..from.len())])
    }

    fn leader(&self) -> Option<usize> {
        self.live()
            .into_iter()
            .find(|i| self.registry.get(*i).is_some_and(|r| r.raft.is_leader()))
    }

    fn ids(&self, indexes: &[usize]) -> Vec<String> {
        indexes
            .iter()
            .map(|i| self.peer(*i).id.to_string())
            .collect()
    }

    /// Two random non-empty sides of `members`.
    fn two_sides(&self, members: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let mut side: Vec<usize> = members
            .iter()
            .copied()
            .filter(|_| thread_rng().gen_bool(0.5))
            .collect();
        if side.is_empty() {
            side.push(members[0]);
        }
        let other = members
            .iter()
            .copied()
            .filter(|i| !side.contains(i))
            .collect();
        (side, other)
    }

    fn cut(&self, a: &[usize], b: &[usize]) {
        for x in self.ids(a) {
            for y in self.ids(b) {
                self.net.clog(&x, &y);
                self.net.clog(&y, &x);
            }
        }
    }

    /// Partitions fail fast or hang until the caller's timeout, per fault.
    fn choose_hang(&self) {
        self.net.set_hang(thread_rng().gen_bool(0.5));
    }

    /// Injects one fault of the seed's mix; returns how to undo it later.
    async fn inject(self: &Arc<Self>) -> Option<Undo> {
        if self.swarm.faults.is_empty() {
            return None;
        }
        let members: Vec<usize> = (0..lock(&self.peers).len())
            .filter(|i| !lock(&self.removed).contains(i))
            .collect();
        let live = self.live();
        let kind = self.swarm.faults[thread_rng().gen_range(0..self.swarm.faults.len())];
        *lock(&self.faults) += 1;
        let heal_net: Undo = Box::new(|s: &Sim| s.net.heal());
        match kind {
            FaultKind::Partition => {
                let (side, other) = self.two_sides(&members);
                self.choose_hang();
                self.event(format!("fault partition {side:?} | {other:?}"));
                self.cut(&side, &other);
                Some(heal_net)
            }
            FaultKind::Bridge => {
                // Both sides see the bridge, not each other.
                if members.len() < 3 {
                    return None;
                }
                let bridge = self.pick(&members)?;
                let rest: Vec<usize> = members.iter().copied().filter(|i| *i != bridge).collect();
                let (side, other) = self.two_sides(&rest);
                self.choose_hang();
                self.event(format!("fault bridge {side:?} | {bridge} | {other:?}"));
                self.cut(&side, &other);
                Some(heal_net)
            }
            FaultKind::Deaf => {
                let victim = self.pick(&members)?;
                self.choose_hang();
                self.event(format!("fault deaf {victim}"));
                let v = self.peer(victim).id.to_string();
                for other in self.ids(&members) {
                    self.net.clog(&other, &v);
                }
                Some(heal_net)
            }
            FaultKind::IsolateLeader => {
                let leader = self.leader()?;
                self.choose_hang();
                self.event(format!("fault isolate leader {leader}"));
                self.cut(&[leader], &members);
                Some(heal_net)
            }
            FaultKind::Loss => {
                let loss = thread_rng().gen_range(50..300);
                let latency = (
                    thread_rng().gen_range(1..50),
                    thread_rng().gen_range(50..400),
                );
                self.event(format!("fault loss {loss}/1000 latency {latency:?}"));
                self.net.set_conditions(loss, latency);
                Some(heal_net)
            }
            FaultKind::Misdelivery => {
                let dup = thread_rng().gen_range(10..200);
                let stale = thread_rng().gen_range(10..100);
                self.event(format!(
                    "fault misdelivery dup {dup}/1000 stale {stale}/1000"
                ));
                self.net.set_misdelivery(dup, stale);
                Some(heal_net)
            }
            FaultKind::Crash => {
                let victim = self.pick(&live)?;
                self.event(format!("fault crash {victim}"));
                self.crash(victim);
                Some(Box::new(move |s: &Sim| {
                    s.event(format!("restart {victim}"));
                    s.restart(victim)
                }))
            }
            FaultKind::QuickReboot => {
                let victim = self.pick(&live)?;
                let after = thread_rng().gen_range(20..self.swarm.raft.election_timeout_min_ms);
                self.event(format!("fault quick reboot {victim} after {after} ms"));
                probes::hit("fault: quick reboot");
                self.crash(victim);
                let sim = Arc::clone(self);
                madsim::task::spawn(async move {
                    sleep_ms(after).await;
                    sim.restart(victim);
                });
                None
            }
            FaultKind::LongOutage => {
                // Not a majority's worth: the rest must elect a leader to
                // re-pin. Several TTLs, so a few repair rounds see it gone.
                if live.len() < 3 {
                    return None;
                }
                let victim = self.pick(&live)?;
                let for_ms = thread_rng().gen_range(3..=6) * peer::METRIC_TTL_MS;
                let crashed = thread_rng().gen_bool(0.5);
                self.event(format!(
                    "fault long outage {victim} for {for_ms} ms (crashed {crashed})"
                ));
                probes::hit("fault: long outage of a member");
                let sim = Arc::clone(self);
                if crashed {
                    self.crash(victim);
                    madsim::task::spawn(async move {
                        sleep_ms(for_ms).await;
                        sim.event(format!("restart {victim} after its long outage"));
                        sim.restart(victim);
                    });
                } else {
                    let rest: Vec<usize> =
                        members.iter().copied().filter(|i| *i != victim).collect();
                    self.choose_hang();
                    self.cut(&[victim], &rest);
                    madsim::task::spawn(async move {
                        sleep_ms(for_ms).await;
                        sim.event(format!(
                            "peer {victim} reachable again after its long outage"
                        ));
                        sim.net.heal();
                    });
                }
                None
            }
            FaultKind::PowerLoss => {
                let mut victims = live.clone();
                while victims.len() > members.len() / 2 + 1 {
                    victims.remove(thread_rng().gen_range(0..victims.len()));
                }
                self.event(format!("fault power loss {victims:?}"));
                for v in &victims {
                    self.crash(*v);
                }
                Some(Box::new(move |s: &Sim| {
                    for v in &victims {
                        s.restart(*v);
                    }
                }))
            }
            FaultKind::DiskErrors => {
                let victim = self.pick(&live)?;
                // Writes (a full disk), reads, or both fail for a while.
                let (writes, reads) =
                    [(true, false), (false, true), (true, true)][thread_rng().gen_range(0..3)];
                self.event(format!(
                    "fault disk errors {victim} writes {writes} reads {reads}"
                ));
                let store = &self.peer(victim).store;
                store.set_fail_writes(writes);
                store.set_fail_reads(reads);
                Some(Box::new(move |s: &Sim| {
                    // The disk heals by itself (space freed, a flaky cable):
                    // a peer whose Raft met no error runs on, one that
                    // stopped was restarted by its supervisor.
                    let store = &s.peer(victim).store;
                    store.set_fail_writes(false);
                    store.set_fail_reads(false);
                    if s.registry
                        .get(victim)
                        .is_some_and(|r| r.raft.fatal_error().is_none())
                    {
                        probes::hit("disk: errors healed without a restart");
                    }
                }))
            }
            FaultKind::ClockSkew => {
                let victim = self.pick(&members)?;
                let skew = thread_rng().gen_range(-20_000i64..20_000);
                self.event(format!("fault clock skew {victim} {skew}ms"));
                self.peer(victim)
                    .clock_skew_ms
                    .store(skew, Ordering::Relaxed);
                Some(Box::new(move |s: &Sim| {
                    s.peer(victim).clock_skew_ms.store(0, Ordering::Relaxed)
                }))
            }
            FaultKind::TimerDrift => {
                let victim = self.pick(&members)?;
                let node = lock(&self.nodes)[victim];
                self.drift_timers(victim, node);
                None
            }
            FaultKind::IpfsFaults => {
                let victim = self.pick(&members)?;
                let ipfs = Arc::clone(&self.peer(victim).ipfs);
                // A third of the time the daemon is down outright (the most
                // common outage in practice): operations run out of attempts
                // and only the periodic reconcile brings them back.
                if thread_rng().gen_bool(0.35) {
                    self.event(format!("fault ipfs {victim} down"));
                    ipfs.set_down();
                } else if thread_rng().gen_bool(0.2) {
                    self.event(format!("fault ipfs {victim} stuck"));
                    ipfs.set_hung();
                } else {
                    let (errors, slow, restart) = (
                        thread_rng().gen_range(100..900),
                        thread_rng().gen_bool(0.5),
                        thread_rng().gen_bool(0.5),
                    );
                    self.event(format!(
                        "fault ipfs {victim} errors {errors} slow {slow} restart {restart}"
                    ));
                    ipfs.set_error_per_mille(errors);
                    ipfs.set_slow(slow);
                    if restart {
                        ipfs.restart();
                    }
                }
                Some(Box::new(move |_: &Sim| ipfs.heal()))
            }
            FaultKind::IpfsByHand => {
                let victim = self.pick(&members)?;
                let ipfs = Arc::clone(&self.peer(victim).ipfs);
                if thread_rng().gen_bool(0.5) {
                    // Later hand pins go to CIDs the clients never name: a hand
                    // pin racing the cluster's own `pin/add` of the same CID
                    // is one no connector can tell apart from its own pin
                    // (Kubo answers both alike). Hand pins of CIDs the cluster
                    // wants are made before the cluster starts (see `run`).
                    let n = self.swarm.cids + thread_rng().gen_range(0..8);
                    let mode = if thread_rng().gen_bool(0.3) {
                        cluster_core::PinMode::Direct
                    } else {
                        cluster_core::PinMode::Recursive
                    };
                    if ipfs.pin_by_hand(&pool_cid(n), mode) {
                        probes::hit("ipfs: pin made by hand");
                        self.event(format!("fault ipfs {victim} user pins {n} {mode:?}"));
                    }
                } else if let Some(cid) = ipfs.unpin_cluster_pin_by_hand(thread_rng().gen()) {
                    probes::hit("ipfs: cluster pin removed by hand");
                    self.registry.note_unpinned_by_hand(cid.clone());
                    self.event(format!(
                        "fault ipfs {victim} user removes cluster pin {cid}"
                    ));
                }
                None
            }
            FaultKind::CorruptDisk => {
                // As for a wiped disk: one at a time, never from a cluster
                // of two (the peer leaves and joins again).
                if !lock(&self.wiped).is_empty() || self.membership_busy.load(Ordering::Relaxed) {
                    return None;
                }
                let members = self.peer_count() - lock(&self.removed).len();
                if members < 3 {
                    return None;
                }
                let victim = self.pick(&live)?;
                self.event(format!("fault corrupt disk {victim}"));
                self.crash(victim);
                self.peer(victim).store.corrupt();
                lock(&self.wiped).insert(victim);
                lock(&self.corrupt_pending).insert(victim);
                let sim = Arc::clone(self);
                Some(Box::new(move |s: &Sim| {
                    s.event(format!("restart {victim} on a corrupt disk"));
                    s.restart(victim);
                    madsim::task::spawn(async move { sim.heal_corrupt(victim).await });
                }))
            }
            FaultKind::WipedDisk => {
                // One lost disk at a time, as an operator replaces disks: a
                // wiped peer no longer counts towards a quorum until it was
                // removed and joined again, so several at once could leave
                // the cluster without a majority for good.
                if !lock(&self.wiped).is_empty() || self.membership_busy.load(Ordering::Relaxed) {
                    return None;
                }
                // Nor from a cluster of two: the other voter alone is no
                // majority, so the lost member could never be removed (no
                // operator could recover that without forcing Raft; seed 57
                // once drew it after a removal left two members).
                let members = self.peer_count() - lock(&self.removed).len();
                if members < 3 {
                    return None;
                }
                let victim = self.pick(&live)?;
                self.event(format!("fault wiped disk {victim}"));
                self.crash(victim);
                self.peer(victim).store.wipe();
                lock(&self.wiped).insert(victim);
                let sim = Arc::clone(self);
                Some(Box::new(move |s: &Sim| {
                    s.event(format!("restart {victim} on an empty disk"));
                    s.restart(victim);
                    // The operator reads its start-up error: remove it, join it again.
                    madsim::task::spawn(async move { sim.rejoin_wiped(victim).await });
                }))
            }
            FaultKind::Membership => {
                // Runs beside the other faults; one membership change at a time.
                if !self.membership_busy.swap(true, Ordering::Relaxed) {
                    madsim::task::spawn(Arc::clone(self).membership_change());
                }
                None
            }
        }
    }

    /// Removes a peer for good (crashed, or left running; sometimes the
    /// leader), or adds a fresh one, during load.
    async fn membership_change(self: Arc<Self>) {
        let members = self.live();
        let grow = lock(&self.peers).len() < self.swarm.peers + 2
            && (members.len() < self.swarm.peers || thread_rng().gen_bool(0.5));
        if grow {
            let index = self.add_peer();
            self.event(format!("fault membership add {index}"));
            match self.join(index).await {
                Ok(()) => probes::hit("membership: join finished"),
                Err(e) => self.event(format!("join failed: {e}")),
            }
        } else if members.len() > 3 && lock(&self.wiped).is_empty() {
            // Not while a wiped peer waits to join again: it counts towards
            // no quorum, and one more voter gone could leave none.
            let leader = self.leader();
            let victim = if thread_rng().gen_bool(0.3) {
                leader
            } else {
                self.pick(&members)
            };
            let Some(victim) = victim else {
                self.membership_busy.store(false, Ordering::Relaxed);
                return;
            };
            let keep_running = thread_rng().gen_bool(0.4);
            self.event(format!(
                "fault membership remove {victim} (leader {leader:?}, keeps running {keep_running})"
            ));
            lock(&self.removed).insert(victim);
            if !keep_running {
                self.crash(victim);
            }
            match self.remove(victim).await {
                Ok(()) => {
                    probes::hit("membership: removal finished");
                    if Some(victim) == leader {
                        probes::hit("membership: leader removed");
                    }
                    if keep_running && self.registry.get(victim).is_some() {
                        probes::hit("membership: removed peer kept running");
                    }
                }
                Err(e) => self.event(format!("removal failed: {e}")),
            }
        }
        self.membership_busy.store(false, Ordering::Relaxed);
    }

    async fn chaos(self: &Arc<Self>, until_ms: u64) {
        let mut undo: Vec<(u64, Undo)> = Vec::new();
        while now_ms() < until_ms {
            sleep_ms(thread_rng().gen_range(self.swarm.fault_gap_ms.0..self.swarm.fault_gap_ms.1))
                .await;
            let now = now_ms();
            let (due, later): (Vec<_>, Vec<_>) = undo.into_iter().partition(|(at, _)| *at <= now);
            undo = later;
            for (_, f) in due {
                f(self);
            }
            if let Some(f) = self.inject().await {
                undo.push((now_ms() + thread_rng().gen_range(1_000..10_000), f));
            }
            self.check_safety();
        }
        for (_, f) in undo {
            f(self);
        }
    }

    /// During faults, safety only: invariants hold and replicas at the same
    /// index hold the same state.
    fn check_safety(&self) {
        let samples: Vec<checkers::ReplicaSample> = self
            .registry
            .all()
            .into_iter()
            .map(|(i, r)| {
                r.raft.with_pinset(|p| checkers::ReplicaSample {
                    name: format!("peer {i}"),
                    applied_index: p.applied_index(),
                    state: p.snapshot(),
                    invariants: p.check_invariants(),
                })
            })
            .collect();
        if let Err(v) = checkers::check_replica_safety(&samples) {
            self.violation(v.checker, v.detail);
        }
        for e in self.registry.invariant_errors() {
            self.violation("invariants", e);
        }
    }

    /// A leader starts a membership change (the product's hook): now and
    /// then it is crashed a few ms later, between the change's joint and
    /// uniform steps, where a deposed leader leaves a joint config.
    fn on_membership_change(&self, node: madsim::task::NodeId) {
        if self.swarm.buggify_per_mille == 0
            || thread_rng().gen_range(0..1000) >= MEMBERSHIP_CRASH_PER_MILLE
        {
            return;
        }
        if let Some(index) = lock(&self.nodes).iter().position(|n| *n == node) {
            let _ = self.buggify_tx.send((index, "membership change"));
        }
    }

    /// Crashes a peer right after its disk persisted a vote or an append
    /// (BUGGIFY): the moment a lost acknowledgement would hurt most; or a
    /// few ms into a membership change it leads.
    async fn buggify_crashes(
        self: Arc<Self>,
        mut requests: tokio::sync::mpsc::UnboundedReceiver<(usize, &'static str)>,
    ) {
        while let Some((index, what)) = requests.recv().await {
            let allowed = {
                let mut left = lock(&self.buggify_left);
                let ok = *left > 0
                    && self.registry.get(index).is_some()
                    && !lock(&self.removed).contains(&index);
                if ok {
                    *left -= 1;
                }
                ok
            };
            if !allowed {
                continue;
            }
            if what == "membership change" {
                // One replication round commits the joint step: land inside it
                // or just after it, before the uniform step commits.
                sleep_ms(thread_rng().gen_range(0..40)).await;
                if self.registry.get(index).is_none() {
                    continue;
                }
            }
            probes::hit(match what {
                "membership change" => "membership: leader crashed during a change",
                "vote" => "disk: crash right after a vote was persisted",
                "append" => "disk: crash right after an append was persisted",
                "unsynced vote" => "disk: crash between a vote's write and its fsync",
                _ => "disk: crash between an append's write and its fsync",
            });
            self.event(format!("fault crash {index} right after persisting {what}"));
            if what.starts_with("unsynced") {
                // Power lost before the write reached the platter.
                self.crash_with_tear(index, 0);
            } else {
                self.crash(index);
            }
            let sim = Arc::clone(&self);
            // Back within the election a lost vote was cast in, now and then:
            // the moment it could be cast again for another candidate.
            let after = if what.starts_with("unsynced") && thread_rng().gen_bool(0.5) {
                thread_rng().gen_range(5..150)
            } else {
                thread_rng().gen_range(50..3_000)
            };
            madsim::task::spawn(async move {
                sleep_ms(after).await;
                sim.restart(index);
            });
        }
    }

    /// The peers' supervisor (systemd, say): a peer whose node exited on a
    /// storage error is started again after a pause, from its disk.
    async fn supervise(
        self: Arc<Self>,
        mut requests: tokio::sync::mpsc::UnboundedReceiver<(usize, String)>,
    ) {
        while let Some((index, why)) = requests.recv().await {
            // Crashed or removed meanwhile: whoever did it restarts it (or not).
            if lock(&self.removed).contains(&index) || lock(&self.down).contains(&index) {
                continue;
            }
            self.event(format!("supervisor restarts {index}: {why}"));
            self.crash(index);
            let sim = Arc::clone(&self);
            let after = thread_rng().gen_range(500..3_000);
            madsim::task::spawn(async move {
                sleep_ms(after).await;
                sim.restart(index);
            });
        }
    }

    // ---- heal and check --------------------------------------------------------

    async fn heal(self: &Arc<Self>) {
        self.event("heal".into());
        *lock(&self.buggify_left) = 0;
        self.net.heal();
        let all = lock(&self.peers).len();
        for i in 0..all {
            let p = self.peer(i);
            p.store.set_fail_writes(false);
            p.store.set_fail_reads(false);
            p.ipfs.heal();
            p.clock_skew_ms.store(0, Ordering::Relaxed);
        }
        let down: Vec<usize> = lock(&self.down).iter().copied().collect();
        for i in down {
            self.restart(i);
        }
    }

    /// After the heal a write must be acknowledged within the liveness bound.
    async fn check_liveness(self: &Arc<Self>) {
        let heal_ms = now_ms();
        let probe = Pin::new(
            pool_cid(u64::MAX),
            PinOptions {
                replication_factor_min: -1,
                replication_factor_max: -1,
                ..PinOptions::default()
            },
            Millis(heal_ms),
        );
        let mut acked_at = None;
        let mut attempt = 0;
        while acked_at.is_none() && now_ms() <= heal_ms + LIVENESS_BOUND_MS {
            // Each attempt asks the next live peer: one of them may be a
            // wiped peer not yet a member again, which serves no writes.
            let live = self.live();
            attempt += 1;
            let target = (!live.is_empty())
                .then(|| live[attempt % live.len()])
                .and_then(|i| self.registry.get(i));
            if let Some(r) = target {
                let write = r.raft.write(Entry::new(Command::Pin(probe.clone())));
                if let Ok(Ok(Ok(_))) =
                    madsim::time::timeout(Duration::from_millis(2_000), write).await
                {
                    acked_at = Some(now_ms());
                    continue;
                }
            }
            sleep_ms(200).await;
        }
        self.event(format!(
            "liveness probe acknowledged at {acked_at:?}, heal at {heal_ms}"
        ));
        if let Err(v) = checkers::check_liveness(heal_ms, acked_at, LIVENESS_BOUND_MS) {
            self.violation(v.checker, v.detail);
        }
    }

    /// Some seeds with IPFS faults take one member's daemon down as the
    /// faults end, while the clients still write: the operations it gets
    /// then run out of attempts, and once the clients stop nothing but the
    /// tracker's periodic reconcile brings them back (a daemon that crashed
    /// at night and came back once the traffic was over).
    fn start_tail_outage(&self) -> Option<Arc<FakeIpfs>> {
        if !self.swarm.faults.contains(&FaultKind::IpfsFaults) || !thread_rng().gen_bool(0.5) {
            return None;
        }
        let members: Vec<usize> = self
            .live()
            .into_iter()
            .filter(|i| !lock(&self.wiped).contains(i))
            .collect();
        let victim = *members.get(thread_rng().gen_range(0..members.len().max(1)))?;
        self.event(format!("tail outage: ipfs {victim} down"));
        let ipfs = Arc::clone(&self.peer(victim).ipfs);
        ipfs.set_down();
        Some(ipfs)
    }

    /// Ends the tail outage once every operation refused in it has run out
    /// of its automatic attempts.
    async fn end_tail_outage(&self, ipfs: &FakeIpfs) {
        let t = &self.swarm.tracker;
        let exhausted_ms: u64 = (1..=t.attempts_max)
            .map(|a| cluster_core::tracker::backoff_ms(a, t.backoff_base_ms, t.backoff_max_ms))
            .sum();
        sleep_ms(exhausted_ms + 2_000).await;
        ipfs.heal();
        probes::hit("ipfs: daemon back after the client traffic ended");
        self.event("tail outage over".into());
    }

    /// Waits for convergence, then runs the end-of-run checkers.
    async fn settle_and_check(self: &Arc<Self>) {
        let start = now_ms();
        // No recover is asked for: the cluster must heal by itself (the
        // periodic reconcile retries what ran out of attempts).
        loop {
            let result = self.final_checks().await;
            if result.is_ok() {
                self.event("settled".into());
                return;
            }
            if now_ms() > start + SETTLE_BOUND_MS {
                if let Err(v) = result {
                    self.violation(
                        v.checker,
                        format!("not settled after {SETTLE_BOUND_MS} ms: {}", v.detail),
                    );
                }
                return;
            }
            sleep_ms(1_000).await;
        }
    }

    /// Folds the final pinset of every live replica and every IPFS pinset
    /// into the digest, so two runs with equal digests ended equal.
    fn digest_final_state(&self) {
        for (i, r) in self.registry.all() {
            let pins = r.raft.with_pinset(|p| p.to_map());
            for pin in pins.values() {
                self.event(format!("final peer {i} pin {pin:?}"));
            }
        }
        for i in 0..self.peer_count() {
            for (cid, held) in self.peer(i).ipfs.pins() {
                self.event(format!("final peer {i} ipfs {cid} {held:?}"));
            }
        }
    }

    /// Every live peer's tracker statuses (asked through its driver).
    async fn tracker_statuses(&self) -> BTreeMap<PeerId, peer::Statuses> {
        let mut out = BTreeMap::new();
        for i in self.live() {
            let Some(r) = self.registry.get(i) else {
                continue;
            };
            if let Ok(Some(s)) =
                madsim::time::timeout(Duration::from_millis(1_000), r.statuses()).await
            {
                out.insert(self.peer(i).id.clone(), s);
            }
        }
        out
    }

    async fn final_checks(&self) -> Result<(), Violation> {
        let live = self.live();
        let mut replicas = Vec::new();
        for i in &live {
            let r = self.registry.get(*i).ok_or_else(|| Violation {
                checker: "replicas_converged",
                detail: format!("peer {i} not running"),
            })?;
            let (index, pins) = r.raft.with_pinset(|p| (p.applied_index(), p.to_map()));
            replicas.push((format!("peer {i}"), index, pins));
        }
        checkers::check_replicas_converged(&replicas)?;
        let pins = &replicas[0].2;
        let members: Vec<PeerId> = live.iter().map(|i| self.peer(*i).id.clone()).collect();
        let raft_members: BTreeSet<PeerId> = self
            .registry
            .get(live[0])
            .map(|r| r.raft.members().into_iter().collect())
            .unwrap_or_default();
        if raft_members != members.iter().cloned().collect::<BTreeSet<_>>() {
            return Err(Violation {
                checker: "membership",
                detail: format!("raft members {raft_members:?} but live peers {members:?}"),
            });
        }
        if let Some(i) = live.iter().find(|i| {
            self.registry
                .get(**i)
                .is_some_and(|r| r.raft.membership_is_joint())
        }) {
            return Err(Violation {
                checker: "membership",
                detail: format!("peer {i}'s membership is still a joint config"),
            });
        }
        checkers::check_allocations(pins, &members)?;
        let views: BTreeMap<PeerId, BTreeSet<PeerId>> = live
            .iter()
            .filter_map(|i| {
                let r = self.registry.get(*i)?;
                let seen = r.board.current(r.clock.now()).into_iter().map(|m| m.peer);
                Some((self.peer(*i).id.clone(), seen.collect()))
            })
            .collect();
        checkers::check_metrics_reach(&views, &members.iter().cloned().collect())?;
        let expired = checkers::check_expired_removed(
            &lock(&self.expiring),
            replicas
                .iter()
                .map(|(label, _, pins)| (label.as_str(), pins)),
            now_ms(),
            EXPIRY_GRACE_MS,
        )?;
        probes::add("expiry: expired pin removed", expired as u64);
        let ipfs: BTreeMap<PeerId, BTreeMap<Cid, checkers::DaemonPin>> = live
            .iter()
            .map(|i| (self.peer(*i).id.clone(), self.peer(*i).ipfs.pins()))
            .collect();
        checkers::check_ipfs_matches_allocations(pins, &ipfs)?;
        checkers::check_pin_modes(pins, &ipfs)?;
        // Every daemon, not only live members': a removed peer's IPFS
        // outlives it, and the user's pins there must still be kept.
        let user: BTreeMap<PeerId, BTreeMap<Cid, cluster_core::PinMode>> = (0..self.peer_count())
            .map(|i| (self.peer(i).id.clone(), self.peer(i).ipfs.user_pins()))
            .collect();
        let every_ipfs: BTreeMap<PeerId, BTreeMap<Cid, checkers::DaemonPin>> = (0..self
            .peer_count())
            .map(|i| (self.peer(i).id.clone(), self.peer(i).ipfs.pins()))
            .collect();
        checkers::check_user_pins(&user, &every_ipfs)?;
        let statuses = self.tracker_statuses().await;
        checkers::check_replicas_pinned(pins, &statuses, live.len())?;
        let counts = checkers::check_tracker_status(pins, &statuses, &ipfs)?;
        probes::add("tracker: status pinned checked", counts.pinned);
        probes::add("tracker: status remote checked", counts.remote);
        // Allocations are compared only where no allocated peer ever left:
        // a removal drops the peer from allocations, for good.
        let never_removed: BTreeSet<PeerId> = raft_members
            .difference(&lock(&self.ever_removed))
            .cloned()
            .collect();
        // Nor where a leader re-allocated the pin (a peer departed, its
        // metrics expired, a hand-over): the cluster chose anew.
        let moved = self.registry.moved();
        probes::add("repair: cids re-allocated", moved.len() as u64);
        let stats = checkers::check_linearizable(
            &lock(&self.history),
            pins,
            &never_removed,
            &moved,
            now_ms(),
        )?;
        probes::add("oracle: cids checked", stats.cids as u64);
        probes::add("oracle: undecided cids", stats.undecided as u64);
        Ok(())
    }
}

/// Runs one simulation; call inside a madsim runtime.
pub async fn run(params: Params) -> Report {
    let swarm = Swarm::draw(&params);
    cluster_net::sim_hooks::COMMIT_DELAY_MAX_MS.store(swarm.commit_delay_max_ms, Ordering::Relaxed);
    if swarm.faults.is_empty() {
        probes::hit("swarm: fault-free seed");
    }
    let (buggify_tx, buggify_rx) = tokio::sync::mpsc::unbounded_channel();
    let (supervisor_tx, supervisor_rx) = tokio::sync::mpsc::unbounded_channel();
    let sim = Arc::new(Sim {
        swarm: swarm.clone(),
        wiped: Mutex::new(BTreeSet::new()),
        corrupt_pending: Mutex::new(BTreeSet::new()),
        expiring: Mutex::new(Vec::new()),
        ever_removed: Mutex::new(BTreeSet::new()),
        // Armed once the cluster is formed (see `run`).
        buggify_left: Mutex::new(0),
        buggify_tx,
        supervisor_tx,
        net: Arc::new(SimNet::default()),
        registry: Arc::new(Registry::default()),
        peers: Mutex::new(Vec::new()),
        nodes: Mutex::new(Vec::new()),
        removed: Mutex::new(BTreeSet::new()),
        down: Mutex::new(BTreeSet::new()),
        digest: Mutex::new(Digest::default()),
        history: Mutex::new(History::default()),
        violations: Mutex::new(Vec::new()),
        stop_clients: AtomicBool::new(false),
        membership_busy: AtomicBool::new(false),
        faults: Mutex::new(0),
    });
    sim.event(format!("swarm {swarm:?}"));
    madsim::task::spawn(Arc::clone(&sim).buggify_crashes(buggify_rx));
    madsim::task::spawn(Arc::clone(&sim).supervise(supervisor_rx));
    let weak = Arc::downgrade(&sim);
    cluster_net::sim_hooks::set_membership_change_hook(Some(Arc::new(move |node| {
        if let Some(sim) = weak.upgrade() {
            sim.on_membership_change(node);
        }
    })));
    for _ in 0..swarm.peers {
        sim.add_peer();
    }
    // The user's own pins from before the cluster, of CIDs the cluster may
    // come to want: it must leave them when it lets go.
    if swarm.faults.contains(&FaultKind::IpfsByHand) {
        for i in 0..swarm.peers {
            for _ in 0..thread_rng().gen_range(0..3) {
                let n = thread_rng().gen_range(0..swarm.cids);
                let mode = if thread_rng().gen_bool(0.3) {
                    cluster_core::PinMode::Direct
                } else {
                    cluster_core::PinMode::Recursive
                };
                if sim.peer(i).ipfs.pin_by_hand(&pool_cid(n), mode) {
                    probes::hit("ipfs: pin made by hand");
                    sim.event(format!(
                        "peer {i} ipfs: user pinned {n} {mode:?} before the cluster"
                    ));
                }
            }
        }
    }
    let cluster_id: u128 = thread_rng().gen();
    if let Err(e) = sim.bootstrap(cluster_id).await {
        sim.violation("bootstrap", e);
    }
    // Crash points only once the cluster exists: a crash inside the first
    // `initialize` is an operator's retry, not a consensus fault.
    *lock(&sim.buggify_left) = 3;
    // Metrics need a round to arrive before the first allocation.
    sleep_ms(1_500).await;
    let clients: Vec<_> = (0..swarm.clients as u64)
        .map(|c| madsim::task::spawn(Arc::clone(&sim).client(c)))
        .collect();
    let operator = madsim::task::spawn(Arc::clone(&sim).repin_on_alerts(swarm.clients as u64));
    let expiring_writer = madsim::task::spawn(Arc::clone(&sim).write_expiring_pins());
    sim.chaos(now_ms() + params.chaos_secs * 1_000).await;
    sim.heal().await;
    sim.check_liveness().await;
    // A membership change cut short by the faults is finished now, as an operator would.
    while sim.membership_busy.load(Ordering::Relaxed) {
        sleep_ms(500).await;
    }
    sim.repair_membership().await;
    // The harshest fault mixes leave few writes acknowledged during the
    // faults: the clients keep going on the healed cluster until the run
    // has tested enough (a cluster that cannot get there fails below).
    let acked_min = params.chaos_secs as usize / 4;
    let tail_outage = sim.start_tail_outage();
    let enough_by = now_ms() + 30_000;
    let tail_until = now_ms() + 3_000;
    while (lock(&sim.history).counts().0 < acked_min
        || (tail_outage.is_some() && now_ms() < tail_until))
        && now_ms() < enough_by
    {
        sleep_ms(500).await;
    }
    sim.stop_clients.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let _ = expiring_writer.await;
    let _ = operator.await;
    if let Some(ipfs) = tail_outage {
        sim.end_tail_outage(&ipfs).await;
    }
    sim.settle_and_check().await;
    sim.check_safety();
    sim.digest_final_state();
    probes::add(
        "clock: drifted timer fired",
        cluster_net::sim_hooks::DRIFTED_TIMERS.load(Ordering::Relaxed),
    );
    let (acked, _, _) = lock(&sim.history).counts();
    if acked < acked_min {
        sim.violation(
            "workload",
            format!("only {acked} requests acknowledged, fewer than {acked_min}: the run tested too little"),
        );
    }
    for v in sim.registry.election_errors() {
        sim.violation(v.checker, v.detail);
    }
    let (handovers, broken) = sim.registry.handovers();
    probes::add("repair: member dropped, a kept peer holding it", handovers);
    for v in broken {
        sim.violation(v.checker, v.detail);
    }
    sim.event(format!("leader ids seen {}", sim.registry.leaders_seen()));
    for e in sim.registry.start_errors() {
        // A peer that cannot start from its own disk lost something it acknowledged.
        sim.violation("restart", e);
    }
    let disks: Vec<(usize, Vec<String>)> = (0..sim.peer_count())
        .map(|i| (i, sim.peer(i).store.lost_acknowledged()))
        .collect();
    if let Err(v) = checkers::check_durable_acknowledgements(&disks) {
        sim.violation(v.checker, v.detail);
    }
    let report = Report {
        digest: lock(&sim.digest).value(),
        violations: lock(&sim.violations).clone(),
        outcomes: lock(&sim.history).counts(),
        faults: *lock(&sim.faults),
        sim_secs: now_ms() as f64 / 1_000.0,
    };
    report
}

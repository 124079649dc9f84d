//! The chaos scenario: start a cluster, run clients while faults chosen from
//! the seed hit it, heal, let it settle, then run every checker.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::allocator::{allocate, AllocationRequest};
use cluster_core::pinset::{Applied, Command, Entry, RequestId};
use cluster_core::tracker::{Input, TrackerConfig};
use cluster_core::{Cid, Millis, PeerId, Pin, PinOptions};
use cluster_net::{MembershipError, NodeInfo, RaftConfig};
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;

use crate::checkers::{self, Violation};
use crate::digest::Digest;
use crate::history::{Effect, History, Op, Outcome};
use crate::ipfs::FakeIpfs;
use crate::net::SimNet;
use crate::peer::{self, now_ms, MetricsBoard, PeerCtx, Registry};
use crate::store::SimStore;

/// Simulated ms allowed for a write to be acknowledged once a quorum is connected again.
pub const LIVENESS_BOUND_MS: u64 = 30_000;
/// Simulated ms allowed for replicas and IPFS daemons to converge after the heal.
pub const SETTLE_BOUND_MS: u64 = 90_000;
/// Distinct CIDs the clients work on (small, so requests collide).
const CIDS: u64 = 24;
/// How long a client waits for one request, in ms.
const CLIENT_TIMEOUT_MS: u64 = 8_000;
/// Attempts at joining or removing a peer before giving up.
const JOIN_ATTEMPTS_MAX: usize = 20;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Params {
    /// Peers at start.
    pub peers: usize,
    /// Length of the fault phase, in simulated seconds.
    pub chaos_secs: u64,
    /// Concurrent clients.
    pub clients: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            peers: 5,
            chaos_secs: 60,
            clients: 4,
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
    params: Params,
    net: Arc<SimNet>,
    registry: Arc<Registry>,
    board: Arc<MetricsBoard>,
    peers: Mutex<Vec<Arc<PeerCtx>>>,
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

fn raft_config() -> RaftConfig {
    RaftConfig {
        heartbeat_interval_ms: 100,
        election_timeout_min_ms: 400,
        election_timeout_max_ms: 800,
        // Small, so snapshots are built, installed and the log compacted often.
        snapshot_every_logs: 50,
        logs_to_keep: 20,
        snapshot_chunk_bytes: 512,
        rpc_timeout_ms: 1_000,
        write_timeout_ms: 5_000,
        membership_timeout_ms: 10_000,
        leader_retry_delay_ms: 50,
        ..RaftConfig::default()
    }
}

fn tracker_config() -> TrackerConfig {
    TrackerConfig {
        concurrent_pins: 4,
        concurrent_unpins: 2,
        queue_max: 10_000,
        attempts_max: 4,
        backoff_base_ms: 200,
        backoff_max_ms: 3_000,
        reconcile_interval_ms: 10_000,
        op_timeout_ms: 10_000,
    }
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

    fn peer(&self, index: usize) -> Arc<PeerCtx> {
        Arc::clone(&lock(&self.peers)[index])
    }

    fn add_peer(self: &Arc<Self>) -> usize {
        let mut peers = lock(&self.peers);
        let index = peers.len();
        let mut rng = thread_rng();
        let ctx = Arc::new(PeerCtx {
            index,
            id: PeerId::synthetic(index as u64 + 1),
            addr: format!("10.0.0.{}:9096", index + 1),
            store: SimStore::default(),
            ipfs: Arc::new(FakeIpfs::default()),
            net: Arc::clone(&self.net),
            registry: Arc::clone(&self.registry),
            board: Arc::clone(&self.board),
            raft_config: raft_config(),
            tracker_config: tracker_config(),
            clock_skew_ms: AtomicI64::new(0),
            group: ["a", "b", "c"][index % 3].to_string(),
            free_space_bytes: rng.gen_range(10..100u64) << 30,
        });
        peers.push(Arc::clone(&ctx));
        drop(peers);
        Handle::current()
            .create_node()
            .name(format!("peer-{index}"))
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, index as u8 + 1)))
            .init(move || peer::run_peer(Arc::clone(&ctx)))
            .build();
        self.event(format!("peer {index} created"));
        index
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
        for i in 1..self.params.peers {
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
        for attempt in 0..JOIN_ATTEMPTS_MAX {
            let live: Vec<usize> = self.live();
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
                Ok(()) => r
                    .raft
                    .write(Entry::new(Command::RemovePeer { peer: id.clone() }))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
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

    /// After the heal: peers that should be members are, and removed ones are not.
    async fn repair_membership(self: &Arc<Self>) {
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
            self.one_request(client, serial).await;
        }
    }

    async fn one_request(&self, client: u64, serial: u64) {
        let live = self.live();
        if live.is_empty() {
            return;
        }
        let (target, roll, n, m, rf, flavour) = {
            let mut rng = thread_rng();
            let rf = [(-1, -1), (1, 1), (1, 2), (2, 3), (3, 3)][rng.gen_range(0..5)];
            (
                live[rng.gen_range(0..live.len())],
                rng.gen_range(0..100),
                rng.gen_range(0..CIDS),
                rng.gen_range(0..CIDS),
                rf,
                rng.gen_range(0..10u8),
            )
        };
        let Some(running) = self.registry.get(target) else {
            return;
        };
        let ctx = self.peer(target);
        let invoked_ms = now_ms();
        let (command, cid, effect) = match roll {
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
                let mut pin = Pin::new(pool_cid(n), options, Millis(invoked_ms));
                // The peer that takes the request allocates, from its own view of metrics.
                let metrics = self.board.view_from(&ctx.id, &self.net);
                let request = AllocationRequest {
                    replication_factor_min: rf.0,
                    replication_factor_max: rf.1,
                    current: &[],
                    user_allocations: &[],
                    blacklist: &[],
                };
                let members: BTreeSet<PeerId> = running.raft.members().into_iter().collect();
                let metrics: Vec<_> = metrics
                    .into_iter()
                    .filter(|m| members.contains(&m.peer))
                    .collect();
                match allocate(
                    &request,
                    &metrics,
                    Millis(invoked_ms),
                    &peer::allocator_config(),
                ) {
                    Ok(allocations) => pin.allocations = allocations,
                    Err(e) => {
                        self.event(format!("client {client}/{serial} not allocated: {e}"));
                        return;
                    }
                }
                (Command::Pin(pin), pool_cid(n), Effect::Present)
            }
            55..=84 => (
                Command::Unpin { cid: pool_cid(n) },
                pool_cid(n),
                Effect::Absent,
            ),
            _ => (
                Command::Update {
                    from: pool_cid(n),
                    to: pool_cid(m),
                    name: format!("upd{client}-{serial}"),
                    expire_at: None,
                    timestamp: Millis(invoked_ms),
                },
                pool_cid(m),
                Effect::Present,
            ),
        };
        let entry = Entry {
            request: Some(RequestId { client, serial }),
            command,
        };
        let answer = madsim::time::timeout(
            Duration::from_millis(CLIENT_TIMEOUT_MS),
            running.raft.write(entry),
        )
        .await;
        let outcome = match answer {
            Ok(Ok(Ok(Applied::Pinned { .. } | Applied::Unpinned { .. }))) => Outcome::Acked,
            Ok(Ok(Ok(other))) => {
                self.violation("client", format!("unexpected answer {other:?}"));
                Outcome::Unknown
            }
            Ok(Ok(Err(_))) => Outcome::Failed,
            Ok(Err(_)) | Err(_) => Outcome::Unknown,
        };
        self.event(format!(
            "client {client}/{serial} -> peer {target}: {cid} {effect:?} {outcome:?}"
        ));
        lock(&self.history).record(Op {
            cid,
            effect,
            invoked_ms,
            completed_ms: now_ms(),
            outcome,
        });
    }

    // ---- faults -----------------------------------------------------------------

    fn crash(&self, index: usize) {
        lock(&self.down).insert(index);
        self.registry.remove(index);
        self.net.set_down(self.peer(index).id.as_str());
        Handle::current().kill(format!("peer-{index}"));
        self.peer(index).store.crash();
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

    /// Injects one fault chosen at random; returns how to undo it later.
    async fn inject(self: &Arc<Self>) -> Option<Undo> {
        let members: Vec<usize> = (0..lock(&self.peers).len())
            .filter(|i| !lock(&self.removed).contains(i))
            .collect();
        let live = self.live();
        let kind = thread_rng().gen_range(0..12);
        *lock(&self.faults) += 1;
        match kind {
            0 | 1 => {
                // Symmetric partition into two random sides.
                let mut side: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|_| thread_rng().gen_bool(0.5))
                    .collect();
                if side.is_empty() {
                    side.push(members[0]);
                }
                let other: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|i| !side.contains(i))
                    .collect();
                self.event(format!("fault partition {side:?} | {other:?}"));
                for a in self.ids(&side) {
                    for b in self.ids(&other) {
                        self.net.clog(&a, &b);
                        self.net.clog(&b, &a);
                    }
                }
                Some(Box::new(|s: &Sim| s.net.heal()))
            }
            2 => {
                // One-way: a peer hears nobody (its inbound links drop).
                let victim = self.pick(&members)?;
                self.event(format!("fault deaf {victim}"));
                let v = self.peer(victim).id.to_string();
                for other in self.ids(&members) {
                    self.net.clog(&other, &v);
                }
                Some(Box::new(|s: &Sim| s.net.heal()))
            }
            3 => {
                let leader = self.leader()?;
                self.event(format!("fault isolate leader {leader}"));
                let l = self.peer(leader).id.to_string();
                for other in self.ids(&members) {
                    self.net.clog(&other, &l);
                    self.net.clog(&l, &other);
                }
                Some(Box::new(|s: &Sim| s.net.heal()))
            }
            4 => {
                let loss = thread_rng().gen_range(50..300);
                let latency = (
                    thread_rng().gen_range(1..50),
                    thread_rng().gen_range(50..400),
                );
                self.event(format!("fault loss {loss}/1000 latency {latency:?}"));
                self.net.set_conditions(loss, latency);
                Some(Box::new(|s: &Sim| s.net.heal()))
            }
            5 | 6 => {
                let victim = self.pick(&live)?;
                self.event(format!("fault crash {victim}"));
                self.crash(victim);
                Some(Box::new(move |s: &Sim| {
                    s.event(format!("restart {victim}"));
                    s.restart(victim)
                }))
            }
            7 => {
                // Power loss of a majority at once.
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
            8 => {
                let victim = self.pick(&live)?;
                self.event(format!("fault disk errors {victim}"));
                self.peer(victim).store.set_fail_writes(true);
                Some(Box::new(move |s: &Sim| {
                    // The disk is fixed and the supervisor restarts the peer.
                    s.peer(victim).store.set_fail_writes(false);
                    if s.registry.get(victim).is_some() {
                        s.crash(victim);
                    }
                    s.restart(victim);
                }))
            }
            9 => {
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
            10 => {
                let victim = self.pick(&members)?;
                let ipfs = Arc::clone(&self.peer(victim).ipfs);
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
                Some(Box::new(move |_: &Sim| ipfs.heal()))
            }
            _ => {
                // Runs beside the other faults; one membership change at a time.
                if !self.membership_busy.swap(true, Ordering::Relaxed) {
                    madsim::task::spawn(Arc::clone(self).membership_change());
                }
                None
            }
        }
    }

    /// Removes a live peer for good, or adds a fresh one, during load.
    async fn membership_change(self: Arc<Self>) {
        let members = self.live();
        let grow = lock(&self.peers).len() < self.params.peers + 2
            && (members.len() < self.params.peers || thread_rng().gen_bool(0.5));
        if grow {
            let index = self.add_peer();
            self.event(format!("fault membership add {index}"));
            if let Err(e) = self.join(index).await {
                self.event(format!("join failed: {e}"));
            }
        } else if members.len() > 3 {
            let Some(victim) = self.pick(&members) else {
                return;
            };
            self.event(format!("fault membership remove {victim}"));
            lock(&self.removed).insert(victim);
            self.crash(victim);
            if let Err(e) = self.remove(victim).await {
                self.event(format!("removal failed: {e}"));
            }
        }
        self.membership_busy.store(false, Ordering::Relaxed);
    }

    async fn chaos(self: &Arc<Self>, until_ms: u64) {
        let mut undo: Vec<(u64, Undo)> = Vec::new();
        while now_ms() < until_ms {
            sleep_ms(thread_rng().gen_range(500..3_000)).await;
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

    // ---- heal and check --------------------------------------------------------

    async fn heal(self: &Arc<Self>) {
        self.event("heal".into());
        self.net.heal();
        let all = lock(&self.peers).len();
        for i in 0..all {
            let p = self.peer(i);
            p.store.set_fail_writes(false);
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
        while acked_at.is_none() && now_ms() <= heal_ms + LIVENESS_BOUND_MS {
            let target = self.live().first().and_then(|i| self.registry.get(*i));
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

    /// Waits for convergence, then runs the end-of-run checkers.
    async fn settle_and_check(self: &Arc<Self>) {
        let start = now_ms();
        for (_, r) in self.registry.all() {
            let _ = r.tracker.send(Input::Recover { cid: None });
        }
        loop {
            let result = self.final_checks();
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

    fn final_checks(&self) -> Result<(), Violation> {
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
        checkers::check_allocations(pins, &members)?;
        let ipfs: BTreeMap<PeerId, BTreeSet<Cid>> = live
            .iter()
            .map(|i| (self.peer(*i).id.clone(), self.peer(*i).ipfs.pins()))
            .collect();
        checkers::check_ipfs_matches_allocations(pins, &ipfs)?;
        let present: BTreeSet<Cid> = pins.keys().cloned().collect();
        checkers::check_acked_pins(&lock(&self.history), &present)
    }
}

/// Runs one simulation; call inside a madsim runtime.
pub async fn run(params: Params) -> Report {
    let sim = Arc::new(Sim {
        params: params.clone(),
        net: Arc::new(SimNet::default()),
        registry: Arc::new(Registry::default()),
        board: Arc::new(MetricsBoard::default()),
        peers: Mutex::new(Vec::new()),
        removed: Mutex::new(BTreeSet::new()),
        down: Mutex::new(BTreeSet::new()),
        digest: Mutex::new(Digest::default()),
        history: Mutex::new(History::default()),
        violations: Mutex::new(Vec::new()),
        stop_clients: AtomicBool::new(false),
        membership_busy: AtomicBool::new(false),
        faults: Mutex::new(0),
    });
    for _ in 0..params.peers {
        sim.add_peer();
    }
    let cluster_id: u128 = thread_rng().gen();
    if let Err(e) = sim.bootstrap(cluster_id).await {
        sim.violation("bootstrap", e);
    }
    // Metrics need a round to arrive before the first allocation.
    sleep_ms(1_500).await;
    let clients: Vec<_> = (0..params.clients as u64)
        .map(|c| madsim::task::spawn(Arc::clone(&sim).client(c)))
        .collect();
    sim.chaos(now_ms() + params.chaos_secs * 1_000).await;
    sim.heal().await;
    sim.check_liveness().await;
    // A membership change cut short by the faults is finished now, as an operator would.
    while sim.membership_busy.load(Ordering::Relaxed) {
        sleep_ms(500).await;
    }
    sim.repair_membership().await;
    sim.stop_clients.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    sim.settle_and_check().await;
    sim.check_safety();
    for e in sim.registry.start_errors() {
        // A peer that cannot start from its own disk lost something it acknowledged.
        sim.violation("restart", e);
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

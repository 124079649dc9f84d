//! The libp2p transport against the in-process one, side by side in one run.
//!
//! `cargo bench -p cluster-net --bench libp2p_raft` forms a 3-peer cluster
//! on each transport (redb stores in a temp dir, or `BENCH_STORE=mem`) and
//! prints, for each: the round trip of Raft AppendEntries calls (p50/p99,
//! measured around every `append_entries` call the leader makes, heartbeats
//! included, while one client writes sequentially), and pins/s for
//! `BENCH_CLIENTS` (64) concurrent writers on the leader. Then the ratio.
//! Environment: `BENCH_SEQ_PINS` (default 1000), `BENCH_CONC_PINS` (default
//! 20000), `BENCH_CLIENTS`, `BENCH_WORKERS` (tokio workers, default 2),
//! `BENCH_STORE=mem`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_core::pinset::{Applied, Command, Entry, RequestId};
use cluster_core::{Cid, Millis, PeerId, Pin, PinOptions};
use cluster_net::inproc::InProcRouter;
use cluster_net::p2p::{ClusterSecret, Libp2pConfig, Libp2pTransport};
use cluster_net::store::{DurableStore, MemStore, RedbStore};
use cluster_net::transport::BoxFuture;
use cluster_net::{
    Boot, ClusterRaft, NodeInfo, RaftConfig, RaftTransport, RpcRequest, RpcResponse, TransportError,
};

const CLUSTER_ID: u128 = 0xbe4c_0000_0000_0000_0000_0000_0000_0002;
const PEERS: usize = 3;
const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";
/// Most round-trip samples kept.
const SAMPLES_MAX: usize = 1_000_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mem_store() -> bool {
    std::env::var("BENCH_STORE").as_deref() == Ok("mem")
}

fn pin_entry(n: u64) -> Entry {
    let mut bytes = vec![0x12, 0x20];
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&n.to_be_bytes());
    digest[8] = 0xbe;
    bytes.extend_from_slice(&digest);
    let cid = Cid::from_bytes(&bytes).expect("valid cid");
    let options = PinOptions {
        replication_factor_min: -1,
        replication_factor_max: -1,
        ..Default::default()
    };
    Entry {
        request: Some(RequestId {
            client: 1 + n / 32,
            serial: n,
        }),
        command: Command::Pin(Pin::new(cid, options, Millis(n))),
    }
}

/// Times every AppendEntries call of the wrapped transport.
struct Timed {
    inner: Arc<dyn RaftTransport>,
    samples: Arc<Mutex<Vec<Duration>>>,
}

impl RaftTransport for Timed {
    fn call(
        &self,
        target: &NodeInfo,
        request: RpcRequest,
    ) -> BoxFuture<Result<RpcResponse, TransportError>> {
        let append = request.kind() == "append_entries";
        let call = self.inner.call(target, request);
        let samples = Arc::clone(&self.samples);
        Box::pin(async move {
            let start = Instant::now();
            let result = call.await;
            if append && result.is_ok() {
                let mut s = samples.lock().unwrap_or_else(|e| e.into_inner());
                if s.len() < SAMPLES_MAX {
                    s.push(start.elapsed());
                }
            }
            result
        })
    }
}

fn raft_config() -> RaftConfig {
    RaftConfig {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 500,
        election_timeout_max_ms: 1_000,
        rpc_timeout_ms: 400,
        ..RaftConfig::default()
    }
}

/// A running cluster on one transport.
struct Cluster {
    peers: Vec<ClusterRaft>,
    hosts: Vec<Libp2pTransport>,
    samples: Arc<Mutex<Vec<Duration>>>,
}

async fn start_raft(
    id: &PeerId,
    addr: String,
    n: usize,
    root: &std::path::Path,
    transport: Arc<dyn RaftTransport>,
) -> ClusterRaft {
    let boot = Boot::CreateIfEmpty {
        incarnation: n as u128 + 1,
    };
    async fn go<S: DurableStore>(
        id: &PeerId,
        addr: String,
        boot: Boot,
        store: S,
        transport: Arc<dyn RaftTransport>,
    ) -> ClusterRaft {
        ClusterRaft::start(id, addr, raft_config(), boot, store, transport)
            .await
            .expect("start")
    }
    if mem_store() {
        go(id, addr, boot, MemStore::new(), transport).await
    } else {
        let store = RedbStore::create(&root.join(format!("raft-{n}"))).expect("redb");
        go(id, addr, boot, store, transport).await
    }
}

async fn form(peers: Vec<ClusterRaft>) -> Vec<ClusterRaft> {
    peers[0].initialize(CLUSTER_ID).await.expect("initialize");
    peers[0].wait_for_leader(WAIT).await.expect("leader");
    for p in &peers[1..] {
        p.join(peers[0].node_info()).await.expect("join");
    }
    peers
}

async fn inproc_cluster(root: &std::path::Path) -> Cluster {
    let router = InProcRouter::serializing();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut peers = Vec::new();
    for n in 0..PEERS {
        let id = PeerId::synthetic(n as u64 + 1);
        let transport = Arc::new(Timed {
            inner: router.transport(id.as_str()),
            samples: Arc::clone(&samples),
        });
        let raft = start_raft(&id, format!("inproc/{n}"), n, root, transport).await;
        router.register(id.as_str(), raft.rpc_handler());
        peers.push(raft);
    }
    Cluster {
        peers: form(peers).await,
        hosts: Vec::new(),
        samples,
    }
}

async fn libp2p_cluster(root: &std::path::Path) -> Cluster {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut peers = Vec::new();
    let mut hosts = Vec::new();
    for n in 0..PEERS {
        let mut config = Libp2pConfig::new(
            root.join(format!("p2p-{n}")),
            vec!["/ip4/127.0.0.1/tcp/0".to_string()],
        );
        config.secret = Some(ClusterSecret::parse(SECRET).expect("secret"));
        let net = Libp2pTransport::start(config).await.expect("libp2p");
        let transport = Arc::new(Timed {
            inner: Arc::new(net.clone()),
            samples: Arc::clone(&samples),
        });
        let raft = start_raft(&net.peer_id(), net.addr(), n, root, transport).await;
        net.register(raft.rpc_handler());
        peers.push(raft);
        hosts.push(net);
    }
    Cluster {
        peers: form(peers).await,
        hosts,
        samples,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn check(result: Result<cluster_core::pinset::ApplyResult, cluster_net::WriteError>) {
    match result {
        Ok(Ok(Applied::Pinned { .. })) => {}
        other => panic!("write failed: {other:?}"),
    }
}

/// Figures of one transport.
struct Figures {
    append_p50_ms: f64,
    append_p99_ms: f64,
    appends: usize,
    sequential_pins_s: f64,
    concurrent_pins_s: f64,
}

async fn measure(cluster: &Cluster, seq: u64, conc: u64, clients: u64) -> Figures {
    let leader = cluster
        .peers
        .iter()
        .find(|p| p.is_leader())
        .expect("a leader")
        .clone();
    // Round trips while one client writes at a time.
    cluster
        .samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    let start = Instant::now();
    for n in 0..seq {
        check(leader.write(pin_entry(n)).await);
    }
    let sequential_pins_s = seq as f64 / start.elapsed().as_secs_f64();
    let mut rtt = std::mem::take(&mut *cluster.samples.lock().unwrap_or_else(|e| e.into_inner()));
    rtt.sort();

    let per_client = conc / clients;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let raft = leader.clone();
        let base = 1_000_000 + c * per_client;
        tasks.push(tokio::spawn(async move {
            for n in base..base + per_client {
                check(raft.write(pin_entry(n)).await);
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let concurrent_pins_s = (per_client * clients) as f64 / start.elapsed().as_secs_f64();
    Figures {
        append_p50_ms: percentile(&rtt, 0.50).as_secs_f64() * 1e3,
        append_p99_ms: percentile(&rtt, 0.99).as_secs_f64() * 1e3,
        appends: rtt.len(),
        sequential_pins_s,
        concurrent_pins_s,
    }
}

async fn stop(cluster: Cluster) {
    for p in &cluster.peers {
        p.shutdown().await;
    }
    for h in &cluster.hosts {
        h.shutdown().await;
    }
}

fn main() {
    let seq = env_or("BENCH_SEQ_PINS", 1_000);
    let conc = env_or("BENCH_CONC_PINS", 20_000);
    let clients = env_or("BENCH_CLIENTS", 64).max(1);
    let workers = env_or("BENCH_WORKERS", 2).max(1) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let root = tempfile::tempdir().expect("temp dir");
        println!(
            "3-peer cluster, {} stores, {workers} tokio workers, {seq} sequential pins then {conc} pins from {clients} clients on the leader",
            if mem_store() { "in-memory" } else { "redb (fsync per commit)" }
        );
        let inproc = inproc_cluster(&root.path().join("inproc")).await;
        let a = measure(&inproc, seq, conc, clients).await;
        stop(inproc).await;
        let libp2p = libp2p_cluster(&root.path().join("libp2p")).await;
        let b = measure(&libp2p, seq, conc, clients).await;
        stop(libp2p).await;
        println!("| transport | append rtt p50 ms | p99 ms | appends timed | sequential pins/s | {clients} clients pins/s |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        for (name, f) in [("in-process (serialising)", &a), ("libp2p (loopback)", &b)] {
            println!(
                "| {name} | {:.3} | {:.3} | {} | {:.0} | {:.0} |",
                f.append_p50_ms, f.append_p99_ms, f.appends, f.sequential_pins_s, f.concurrent_pins_s
            );
        }
        println!(
            "libp2p / in-process, {clients} clients: {:.0}%",
            100.0 * b.concurrent_pins_s / a.concurrent_pins_s.max(1e-9)
        );
    });
}

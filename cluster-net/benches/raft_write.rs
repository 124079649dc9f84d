//! Write throughput of a 3-peer in-process cluster with durable redb storage.
//!
//! `cargo bench -p cluster-net --bench raft_write` prints pins/s for one
//! sequential client (with p50/p99 latency) and for 64 concurrent clients.
//! Environment: `BENCH_SEQ_PINS` (default 2000), `BENCH_CONC_PINS` (default
//! 20000), `BENCH_CLIENTS` (default 64), `BENCH_IN_FLIGHT` (proposals in
//! flight per peer, default 2), `BENCH_WORKERS` (tokio worker threads,
//! default 2), `BENCH_STORE=mem` (in-memory store: the cost without fsync).

use std::time::{Duration, Instant};

use cluster_core::pinset::{Applied, Command, Entry, RequestId};
use cluster_core::{Cid, Millis, PeerId, Pin, PinOptions};
use cluster_net::inproc::InProcRouter;
use cluster_net::store::{MemStore, RedbStore};
use cluster_net::{Boot, ClusterRaft, RaftConfig};

const CLUSTER_ID: u128 = 0xbe4c_0000_0000_0000_0000_0000_0000_0001;
const PEERS: usize = 3;
const WAIT: Duration = Duration::from_secs(30);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
        // At most SESSION_WINDOW requests of one client may be in flight:
        // 32 consecutive serials per client id, as a node would spread them.
        request: Some(RequestId {
            client: 1 + n / 32,
            serial: n,
        }),
        command: Command::Pin(Pin::new(cid, options, Millis(n))),
    }
}

async fn form_cluster(root: &std::path::Path) -> (InProcRouter, Vec<ClusterRaft>) {
    let router = InProcRouter::new();
    let config = RaftConfig {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 500,
        election_timeout_max_ms: 1_000,
        // Below the election timeout (RaftConfig::validate).
        rpc_timeout_ms: 400,
        proposals_in_flight_max: env_or("BENCH_IN_FLIGHT", 2) as usize,
        ..RaftConfig::default()
    };
    let mut peers: Vec<ClusterRaft> = Vec::new();
    for n in 0..PEERS {
        let id = PeerId::synthetic(n as u64 + 1);
        let transport = router.transport(id.as_str());
        let addr = format!("inproc/{n}");
        let boot = Boot::CreateIfEmpty {
            incarnation: n as u128 + 1,
        };
        let raft = if std::env::var("BENCH_STORE").as_deref() == Ok("mem") {
            ClusterRaft::start(&id, addr, config.clone(), boot, MemStore::new(), transport).await
        } else {
            let store = RedbStore::create(&root.join(format!("peer-{n}"))).expect("create redb");
            ClusterRaft::start(&id, addr, config.clone(), boot, store, transport).await
        }
        .expect("start");
        router.register(id.as_str(), raft.rpc_handler());
        if n == 0 {
            raft.initialize(CLUSTER_ID).await.expect("initialize");
            raft.wait_for_leader(WAIT).await.expect("leader");
        } else {
            raft.join(peers[0].node_info()).await.expect("join");
        }
        peers.push(raft);
    }
    (router, peers)
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

async fn sequential(client: &ClusterRaft, first: u64, count: u64, label: &str) {
    let mut latencies = Vec::with_capacity(count as usize);
    let start = Instant::now();
    for n in first..first + count {
        let t = Instant::now();
        check(client.write(pin_entry(n)).await);
        latencies.push(t.elapsed());
    }
    let total = start.elapsed();
    latencies.sort();
    println!(
        "{label}: {count} pins in {:.2} s = {:.0} pins/s, latency p50 {:.2} ms, p99 {:.2} ms",
        total.as_secs_f64(),
        count as f64 / total.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
}

async fn concurrent(client: &ClusterRaft, first: u64, count: u64, clients: u64, label: &str) {
    let per_client = count / clients;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let raft = client.clone();
        let base = first + c * per_client;
        tasks.push(tokio::spawn(async move {
            for n in base..base + per_client {
                check(raft.write(pin_entry(n)).await);
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let total = start.elapsed();
    let done = per_client * clients;
    println!(
        "{label}: {done} pins from {clients} clients in {:.2} s = {:.0} pins/s",
        total.as_secs_f64(),
        done as f64 / total.as_secs_f64(),
    );
}

fn main() {
    let seq = env_or("BENCH_SEQ_PINS", 2_000);
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
        let (_router, peers) = form_cluster(root.path()).await;
        let leader = peers
            .iter()
            .find(|p| p.is_leader())
            .expect("a leader")
            .clone();
        let follower = peers
            .iter()
            .find(|p| !p.is_leader())
            .expect("a follower")
            .clone();
        match std::env::var("BENCH_STORE").as_deref() {
            Ok("mem") => println!("3-peer in-process cluster, in-memory stores (no fsync)"),
            _ => println!(
                "3-peer in-process cluster, redb (fsync per commit) in {}",
                root.path().display()
            ),
        }
        sequential(&leader, 0, seq, "sequential, 1 client on the leader").await;
        sequential(
            &follower,
            1_000_000,
            seq / 4,
            "sequential, 1 client on a follower (forwarded)",
        )
        .await;
        concurrent(
            &leader,
            2_000_000,
            conc,
            clients,
            "concurrent on the leader",
        )
        .await;
        concurrent(
            &follower,
            3_000_000,
            conc,
            clients,
            "concurrent on a follower (forwarded)",
        )
        .await;
        for p in &peers {
            p.shutdown().await;
        }
    });
}

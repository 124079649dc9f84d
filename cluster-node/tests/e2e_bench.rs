//! Benchmark (ignored; prints figures): how long a 3-peer cluster of real
//! `ipfscluster-server` processes, each driving its own real IPFS daemon
//! (js-ipfs from `e2e/ipfs`), takes to take in `PINS` pin adds (100,000 by
//! default) through the REST API and to have every daemon pin what is
//! allocated to it.
//!
//! Run: `PINS=100000 cargo test -p cluster-node --profile sim --test e2e_bench -- --ignored --nocapture`
//!
//! The contents are added to every daemon first (timed apart), so that a
//! pin measures the cluster and `pin/add`, not bitswap. The peers run with
//! the shipped defaults (replication everywhere, the default tracker
//! settings) except faster metrics, so that the three peers see each other
//! within seconds.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_core::{PinOptions, TrackerStatus};
use cluster_node::api::client::{Client, ClientError, StatusQuery};
use common::cluster::*;
use serde_json::Value;

/// Concurrent HTTP clients, as in the REST API's ingestion benchmark.
const CLIENTS: usize = 64;
/// Contents added to the daemons per request.
const ADD_BATCH: usize = 2_000;

fn pins_wanted() -> usize {
    std::env::var("PINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Starts a peer on `ipfs` with the shipped defaults but quick metrics.
fn peer(root: &std::path::Path, i: usize, ipfs: &Ipfs, contacts: &[String]) -> Peer {
    let dir = root.join(format!("peer-{i}"));
    let mut peer = Peer::init(&dir, ipfs, contacts);
    let path = dir.join("server.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("server.json")).expect("json");
    // `Peer::init` tunes everything for quick tests; a 3 s reconcile would
    // list 100k pins from each daemon every 3 s. Back to the defaults.
    for key in [
        "reconcile_interval",
        "retry_backoff_min",
        "retry_backoff_max",
    ] {
        if let Some(tracker) = config["pin_tracker"].as_object_mut() {
            tracker.remove(key);
        }
    }
    if let Some(ipfs) = config["ipfs_http"].as_object_mut() {
        ipfs.remove("pin_timeout");
    }
    std::fs::write(&path, serde_json::to_string_pretty(&config).expect("json")).expect("write");
    peer.start(format!("peer-{i}"));
    peer
}

/// Resident memory of a process in MiB, from `/proc`.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// How many CIDs `peer`'s own tracker reports pinned
/// (`GET /pins?local=true&filter=pinned`).
fn pinned_locally(rt: &tokio::runtime::Runtime, peer: &Peer) -> usize {
    let query = StatusQuery {
        local: true,
        filter: vec![TrackerStatus::Pinned],
        ..StatusQuery::default()
    };
    rt.block_on(peer.client().status_all_each(&query, |_| {}))
        .unwrap_or(0)
}

/// Client task `t` of `CLIENTS`: pins its share through peer `t % 3`,
/// retrying refusals (no leader for a moment) after a pause.
async fn pin_share(clients: Vec<Client>, cids: Arc<Vec<String>>, t: usize, done: Arc<AtomicUsize>) {
    let options = PinOptions::default();
    for n in (t..cids.len()).step_by(CLIENTS) {
        let c = cid(&cids[n]);
        let client = &clients[t % clients.len()];
        loop {
            match client.pin(&c, &options).await {
                Ok(_) => break,
                Err(ClientError::Transport(_) | ClientError::Timeout(_)) => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) if e.code() == 503 => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => panic!("pin {}: {e}", cids[n]),
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bench_pin_adds_end_to_end_on_three_peers_with_real_daemons() {
    let _serial = serial();
    let n = pins_wanted();
    let root = tempfile::Builder::new()
        .prefix("e2e-bench-")
        .tempdir()
        .expect("temp dir");
    let ipfs: Vec<Ipfs> = (0..3)
        .map(|i| {
            Ipfs::start(
                &root.path().join(format!("ipfs-{i}")),
                18400 + 10 * i as u16,
            )
        })
        .collect();

    // Contents on every daemon, batch by batch, the daemons in parallel.
    let started = Instant::now();
    let mut cids = Vec::with_capacity(n);
    for first in (0..n).step_by(ADD_BATCH) {
        let batch: Vec<Vec<u8>> = (first..(first + ADD_BATCH).min(n))
            .map(|i| format!("ipfs-cluster-rs e2e bench #{i}\n").into_bytes())
            .collect();
        let added: Vec<Vec<String>> = std::thread::scope(|scope| {
            let adds: Vec<_> = ipfs
                .iter()
                .map(|d| scope.spawn(|| d.add_all(&batch)))
                .collect();
            adds.into_iter().map(|a| a.join().expect("add")).collect()
        });
        assert!(added.iter().all(|a| *a == added[0]), "daemons disagree");
        cids.extend(added.into_iter().next().unwrap_or_default());
    }
    let prepared = started.elapsed();
    eprintln!("bench: {n} contents added to 3 daemons in {prepared:?}");

    let rt = common::runtime();
    let mut peers = vec![peer(root.path(), 0, &ipfs[0], &[])];
    let contact = peers[0].contact.clone();
    for (i, daemon) in ipfs.iter().enumerate().skip(1) {
        peers.push(peer(root.path(), i, daemon, std::slice::from_ref(&contact)));
    }
    let clients: Vec<Client> = peers.iter().map(Peer::client).collect();
    for client in &clients {
        wait_for("every peer to see 3 members", || {
            let seen = rt.block_on(client.peers()).ok()?;
            (seen.len() == 3).then_some(())
        });
    }

    // Ingestion: 64 clients, spread over the three peers' APIs.
    let cids = Arc::new(cids);
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|t| {
            rt.spawn(pin_share(
                clients.clone(),
                Arc::clone(&cids),
                t,
                Arc::clone(&done),
            ))
        })
        .collect();
    for task in tasks {
        rt.block_on(task).expect("client task");
    }
    let acknowledged = started.elapsed();
    eprintln!(
        "bench: {n} pins acknowledged in {acknowledged:?} ({:.0}/s)",
        n as f64 / acknowledged.as_secs_f64()
    );

    // Pinned: every peer's tracker reports every CID pinned (replication
    // everywhere). Asked of the trackers, which learn it from `pin/add`'s
    // answer: listing 100k pins from a js-ipfs daemon takes it ~15 s of
    // CPU, so polling the daemons would slow down the pinning measured.
    let mut pinned_at = [None; 3];
    let deadline = Instant::now() + Duration::from_secs(4 * 3600);
    while pinned_at.iter().any(Option::is_none) {
        assert!(Instant::now() < deadline, "not pinned within 4 hours");
        std::thread::sleep(Duration::from_secs(10));
        for (i, peer) in peers.iter().enumerate() {
            if pinned_at[i].is_some() {
                continue;
            }
            let have = pinned_locally(&rt, peer);
            eprintln!(
                "bench: peer {i}: {have}/{n} pinned after {:?}",
                started.elapsed()
            );
            if have == n {
                pinned_at[i] = Some(started.elapsed());
            }
        }
    }
    // Then the daemons themselves, once: each holds every CID.
    let wanted: BTreeSet<&String> = cids.iter().collect();
    for (i, daemon) in ipfs.iter().enumerate() {
        let pins = daemon.pins();
        let missing = wanted.iter().filter(|c| !pins.contains(**c)).count();
        assert_eq!(
            missing, 0,
            "daemon {i} lacks {missing} CIDs its tracker reports pinned"
        );
    }
    let rss: Vec<f64> = peers
        .iter()
        .map(|p| p.process.as_ref().map_or(0.0, |p| rss_mib(p.child.id())))
        .collect();
    let last = pinned_at
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or_default();
    eprintln!("| pins | contents added to 3 daemons | acknowledged (64 clients) | pinned on daemon 0 / 1 / 2 | all pinned | peer RSS (MiB) |");
    eprintln!(
        "| {n} | {:.1} s | {:.1} s ({:.0}/s) | {} | {:.1} s ({:.0} pins/s per daemon) | {} |",
        prepared.as_secs_f64(),
        acknowledged.as_secs_f64(),
        n as f64 / acknowledged.as_secs_f64(),
        pinned_at
            .iter()
            .map(|d| format!("{:.1} s", d.unwrap_or_default().as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" / "),
        last.as_secs_f64(),
        n as f64 / last.as_secs_f64(),
        rss.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
}

//! The embedded IPFS node against an external js-ipfs daemon, side by side
//! in one run (ignored by default; figures go to BENCHMARKS.md under
//! "Embedded IPFS"):
//!
//!     cargo test --release -p cluster-node --test embedded_bench -- --ignored --nocapture
//!
//! 1. Pins through the connector (what the pin tracker calls), serial, of
//!    local content (UnixFS files added first, unpinned): pins/s, p50 and
//!    p99 latency of one pin (each: a pin look-up, a synced mark, the pin).
//! 2. A whole peer (`ipfscluster-server daemon`, single-peer cluster) in
//!    each mode: start-up time (spawn to "IPFS Cluster is READY") and idle
//!    memory (VmRSS 5 s after ready; in external mode the js-ipfs daemon's
//!    own RSS too). Port base 16400 (this file only).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cluster_core::Cid;
use cluster_node::ipfs::embedded::{EmbeddedConfig, EmbeddedConnector};
use cluster_node::ipfs::kubo::{KuboConfig, KuboConnector};
use cluster_node::ipfs::IpfsConnector;
use common::{runtime, Daemons};

const BASE: u16 = 16400;
const PINS: usize = 500;
const STARTS: usize = 3;
const BIN: &str = env!("CARGO_BIN_EXE_ipfscluster-server");

/// Pins every CID serially: the pins/s and each pin's latency.
async fn pin_all(ipfs: &dyn IpfsConnector, cids: &[Cid]) -> (f64, Vec<Duration>) {
    let mut each = Vec::with_capacity(cids.len());
    let t = Instant::now();
    for cid in cids {
        let one = Instant::now();
        ipfs.pin(cid, -1).await.expect("pin");
        each.push(one.elapsed());
    }
    let rate = cids.len() as f64 / t.elapsed().as_secs_f64();
    each.sort();
    (rate, each)
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(label: &str, rate: f64, each: &[Duration]) {
    println!(
        "  {label}: {rate:.0} pins/s, p50 {:.2} ms, p99 {:.2} ms ({PINS} serial pins)",
        quantile(each, 0.5),
        quantile(each, 0.99)
    );
}

fn files() -> Vec<Vec<u8>> {
    (0..PINS)
        .map(|i| format!("embedded bench file {i}\n").into_bytes())
        .collect()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `init` a single peer in `dir` (`--ipfs-api` when given) on free ports.
fn init_peer(dir: &Path, ipfs_api: Option<&str>) {
    let mut args = vec!["--config", dir.to_str().expect("utf-8"), "init"];
    if let Some(api) = ipfs_api {
        args.extend(["--ipfs-api", api]);
    }
    let out = Command::new(BIN).args(&args).output().expect("init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("server.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    let port = |l: std::net::TcpListener| l.local_addr().expect("addr").port();
    let free = || port(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"));
    config["cluster"]["listen_multiaddress"] =
        serde_json::json!([format!("/ip4/127.0.0.1/tcp/{}", free())]);
    config["rest_api"]["listen_address"] = format!("127.0.0.1:{}", free()).into();
    std::fs::write(&path, serde_json::to_string_pretty(&config).expect("json")).expect("write");
}

/// Starts the peer in `dir`: the time to "READY" and its RSS when idle.
fn start_peer(dir: &Path) -> (Duration, u64) {
    let t = Instant::now();
    let mut child = Command::new(BIN)
        .args(["--config", dir.to_str().expect("utf-8"), "daemon"])
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains("IPFS Cluster is READY") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("peer ready");
    let ready = t.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let rss = rss_kib(child.id());
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = child.wait();
    (ready, rss)
}

/// Median start-up over `STARTS` starts (the first one is a first start)
/// and the last idle RSS.
fn peer_figures(dir: &Path) -> (Duration, Duration, u64) {
    let mut times = Vec::new();
    let mut rss = 0;
    for _ in 0..STARTS {
        let (t, r) = start_peer(dir);
        times.push(t);
        rss = r;
    }
    let first = times[0];
    times.sort();
    (first, times[STARTS / 2], rss)
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn embedded_against_an_external_daemon() {
    let t = Instant::now();
    let daemons = Daemons::start(1, BASE);
    let daemon_start = t.elapsed();
    let rt = runtime();
    let root = tempfile::tempdir().expect("dir");
    println!("pins through the connector, local content:");

    let embedded = rt.block_on(async {
        let node = EmbeddedConnector::start(EmbeddedConfig::new(root.path().join("embedded")))
            .await
            .expect("embedded node");
        let mut cids = Vec::new();
        for (n, f) in files().iter().enumerate() {
            cids.push(node.add_bytes(&format!("f{n}"), f).await.expect("add"));
        }
        let figures = pin_all(&node, &cids).await;
        node.shutdown().await;
        figures
    });
    report("embedded (rust-ipfs)", embedded.0, &embedded.1);

    let external = rt.block_on(async {
        let mut config = KuboConfig::new(daemons.url(0), root.path().join("kubo"));
        config.request_timeout = Duration::from_secs(60);
        let kubo = KuboConnector::new(config).expect("connector");
        let mut cids = Vec::new();
        for (n, f) in files().iter().enumerate() {
            cids.push(kubo.add(&format!("f{n}"), f).await.expect("add"));
        }
        pin_all(&kubo, &cids).await
    });
    report(
        "external js-ipfs daemon (Kubo RPC)",
        external.0,
        &external.1,
    );

    println!("one peer (ipfscluster-server), {STARTS} starts each:");
    let dir = root.path().join("peer-embedded");
    init_peer(&dir, None);
    let (first, median, rss) = peer_figures(&dir);
    println!(
        "  embedded: first start {:.0} ms, start median {:.0} ms, idle RSS {:.1} MiB",
        first.as_secs_f64() * 1000.0,
        median.as_secs_f64() * 1000.0,
        rss as f64 / 1024.0
    );
    let dir = root.path().join("peer-external");
    init_peer(&dir, Some(&daemons.multiaddr(0)));
    let (first, median, rss) = peer_figures(&dir);
    let daemon_rss = daemons.pid(0).map(rss_kib).unwrap_or(0);
    println!(
        "  external: first start {:.0} ms, start median {:.0} ms, idle RSS {:.1} MiB \
         (+ the js-ipfs daemon's {:.1} MiB, which took {:.1} s to init and start)",
        first.as_secs_f64() * 1000.0,
        median.as_secs_f64() * 1000.0,
        rss as f64 / 1024.0,
        daemon_rss as f64 / 1024.0,
        daemon_start.as_secs_f64()
    );
}

//! Benchmarks of the REST API over real `ipfscluster-server` processes
//! with their durable (redb) stores, on 127.0.0.1. They print figures
//! (recorded in BENCHMARKS.md, "REST API"); they are not timed tests:
//!
//!     cargo test -p cluster-node --profile sim --test rest_bench -- --ignored --nocapture
//!
//! - `bench_ingest`: 64 concurrent HTTP clients pin distinct CIDs through
//!   the three peers' APIs of a 3-peer cluster (`BENCH_PINS`, default
//!   19,200). IPFS is a closed port: the API's acknowledgement is the
//!   commit in consensus, which needs no IPFS; the trackers' failing pins
//!   retry in the background (their cost is in the figure).
//! - `bench_stream`: one peer whose state holds `BENCH_STREAM_PINS`
//!   (default 1,000,000) pins loaded with `state import`; `GET
//!   /allocations`, `GET /pins?local=true` and `GET /pins` streamed
//!   whole, lines counted, with the server's peak RSS during each request
//!   (`/proc/<pid>/clear_refs` resets the peak before it).
//!
//! `BENCH_SERVER_BIN` runs another `ipfscluster-server` binary instead of
//! this build's (e.g. an older commit's, to compare in the same minutes).

mod common;

use common::free_port;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_core::{Cid, PinOptions};
use cluster_node::api::client::{Client, ClientConfig};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ipfscluster-server");
const SECRET: &str = "5e4d3c2b1a0918273645546372819fa0b1c2d3e4f5061728394a5b6c7d8e9f00";
const WAIT: Duration = Duration::from_secs(300);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cli(dir: &Path, args: &[&str]) -> Command {
    // `BENCH_SERVER_BIN`: another build of the server (an older commit's,
    // to compare with the same client in the same minutes).
    let bin = std::env::var("BENCH_SERVER_BIN").unwrap_or_else(|_| BIN.to_string());
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    cmd
}

fn ok(dir: &Path, args: &[&str]) {
    let out = cli(dir, args).output().expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `init` in `dir` on free ports, IPFS on a closed port; (id, API address,
/// cluster address).
fn init_peer(dir: &Path, peers: &[String]) -> (String, String, String) {
    ok(dir, &["init", "--secret", SECRET]);
    let path = dir.join("server.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("config")).expect("json");
    let addr = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let api = format!("127.0.0.1:{}", free_port());
    config["cluster"]["listen_multiaddress"] = serde_json::json!([addr]);
    config["cluster"]["cluster_peers"] = serde_json::json!(peers);
    config["ipfs"]["mode"] = "external".into();
    config["ipfs_http"]["node_multiaddress"] =
        Value::String(format!("/ip4/127.0.0.1/tcp/{}", free_port()));
    config["rest_api"]["listen_address"] = Value::String(api.clone());
    // Three peers on one machine: the proxy's and the Pinning Service
    // API's default ports would clash.
    config["ipfs_proxy"]["listen_address"] = format!("127.0.0.1:{}", free_port()).into();
    config["pinning_service"]["listen_address"] = format!("127.0.0.1:{}", free_port()).into();
    std::fs::write(&path, serde_json::to_string_pretty(&config).expect("json")).expect("write");
    let id = config["cluster"]["id"].as_str().expect("id").to_string();
    (id, api, addr)
}

struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        let mut child = cli(dir, &["daemon"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn daemon");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                // Keep the start of the log only (the trackers' failing
                // pins log a lot).
                if log.len() < 1 << 20 {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let mut d = Daemon { child, log };
        d.wait_log("IPFS Cluster is READY");
        d
    }

    fn wait_log(&mut self, wanted: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if log.contains(wanted) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the daemon exited ({status}) before {wanted:?}:\n{log}");
            }
            assert!(Instant::now() < deadline, "no {wanted:?} in:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
    fn status_kib(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("field")
    }

    /// CPU seconds used so far (user + system).
    fn cpu_secs(&self) -> f64 {
        cpu_secs_of(&self.child.id().to_string())
    }

    /// Resets the peak RSS (Linux ≥ 4.0).
    fn reset_peak(&self) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{}/clear_refs", self.child.id()))
            .expect("clear_refs");
        f.write_all(b"5").expect("reset peak");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) of process `pid` (`self` for this one).
fn cpu_secs_of(pid: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start at ")".
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0
}

/// A distinct CIDv0 for `n`.
fn cid(n: u64) -> Cid {
    let mut bytes = vec![0x12, 0x20];
    bytes.extend_from_slice(&[0xab; 24]);
    bytes.extend_from_slice(&n.to_be_bytes());
    Cid::from_bytes(&bytes).expect("cid")
}

fn client(api: &str) -> Client {
    Client::new(ClientConfig {
        base_url: format!("http://{api}"),
        timeout: Duration::from_secs(120),
        ..ClientConfig::default()
    })
    .expect("client")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bench_ingest() {
    const CLIENTS: usize = 64;
    let pins = env_usize("BENCH_PINS", 19_200);
    let root = tempfile::tempdir().expect("tempdir");
    let dirs: Vec<PathBuf> = (0..3).map(|n| root.path().join(format!("p{n}"))).collect();
    let (first, api0, addr0) = init_peer(&dirs[0], &[]);
    let contact = format!("{addr0}/p2p/{first}");
    let mut apis = vec![api0];
    for dir in &dirs[1..] {
        apis.push(init_peer(dir, std::slice::from_ref(&contact)).1);
    }
    let mut daemons = vec![Daemon::start(&dirs[0])];
    for dir in &dirs[1..] {
        daemons.push(Daemon::start(dir));
    }
    let rt = runtime();
    let deadline = Instant::now() + WAIT;
    for api in &apis {
        while rt
            .block_on(client(api).peers())
            .map(|p| p.len())
            .unwrap_or(0)
            < 3
        {
            assert!(Instant::now() < deadline, "cluster never formed");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let options = PinOptions {
        replication_factor_min: -1,
        replication_factor_max: -1,
        ..PinOptions::default()
    };
    // All clients on the leader's API, or spread over the three peers'.
    let via_leader = std::env::var("BENCH_VIA_LEADER").is_ok();
    // Peer 0 started the cluster: it leads unless an election moved it.
    let leader_api = apis[0].clone();
    let cpu_before: Vec<f64> = daemons.iter().map(Daemon::cpu_secs).collect();
    let bench_before = cpu_secs_of("self");
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..CLIENTS {
            let c = if via_leader {
                client(&leader_api)
            } else {
                client(&apis[t % apis.len()])
            };
            let options = options.clone();
            tasks.push(tokio::spawn(async move {
                for n in (t..pins).step_by(CLIENTS) {
                    c.pin(&cid(n as u64), &options).await.expect("pin");
                }
            }));
        }
        for t in tasks {
            t.await.expect("client task");
        }
    });
    let took = started.elapsed();
    let cpu: Vec<String> = daemons
        .iter()
        .zip(&cpu_before)
        .map(|(d, b)| format!("{:.1}", d.cpu_secs() - b))
        .collect();
    println!(
        "ingest CPU seconds: peers {cpu:?}, clients (this process) {:.1}",
        cpu_secs_of("self") - bench_before
    );
    let listed = rt
        .block_on(client(&apis[0]).allocations(&[]))
        .expect("allocations")
        .len();
    assert_eq!(listed, pins);
    println!(
        "ingest: {pins} pins, {CLIENTS} clients over 3 peers' APIs: {:.2} s, {:.0} pins/s",
        took.as_secs_f64(),
        pins as f64 / took.as_secs_f64()
    );
}

/// Streams `path` of `api` whole: (lines, seconds).
async fn stream_lines(api: &str, path: &str) -> (usize, f64) {
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = hyper::Request::get(format!("http://{api}{path}"))
        .header("te", "trailers")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let started = Instant::now();
    let response = http.request(request).await.expect("answer");
    assert_eq!(response.status(), 200, "{path}");
    let mut body = response.into_body();
    let mut lines = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("frame");
        if let Some(data) = frame.data_ref() {
            lines += count_newlines(data);
        } else if let Some(t) = frame.trailers_ref() {
            let e = t.get("x-stream-error").map(|v| v.to_str().unwrap_or("?"));
            assert!(e.is_none_or(str::is_empty), "{path}: {e:?}");
        }
    }
    (lines, started.elapsed().as_secs_f64())
}

/// Newlines in `data`. `filter().count()` compiled to four bytes per
/// step here, which made this client a fifth of a 1M-line stream's CPU
/// on two cores; 32 byte counters added block by block (flushed before
/// they can overflow) compile to whole-register compares.
fn count_newlines(data: &[u8]) -> usize {
    const LANES: usize = 32;
    let mut total = 0;
    let mut blocks = data.chunks_exact(LANES);
    loop {
        let mut counts = [0u8; LANES];
        let mut taken = 0;
        for block in blocks.by_ref().take(u8::MAX as usize) {
            for (count, byte) in counts.iter_mut().zip(block) {
                *count += u8::from(*byte == b'\n');
            }
            taken += 1;
        }
        total += counts.iter().map(|c| usize::from(*c)).sum::<usize>();
        if taken < u8::MAX as usize {
            break;
        }
    }
    total + blocks.remainder().iter().filter(|b| **b == b'\n').count()
}

#[test]
fn newlines_are_counted_at_any_length_and_offset() {
    let mut data = Vec::new();
    for n in 0..20_000usize {
        data.push(if n % 7 == 0 || n % 300 < 2 {
            b'\n'
        } else {
            b'x'
        });
    }
    for (from, to) in [(0, 0), (0, 31), (3, 40), (0, 8160), (1, 8161), (5, 20_000)] {
        let part = &data[from..to];
        let slow = part.iter().filter(|b| **b == b'\n').count();
        assert_eq!(count_newlines(part), slow, "{from}..{to}");
    }
    assert_eq!(count_newlines(&[b'\n'; 10_000]), 10_000);
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bench_stream() {
    let pins = env_usize("BENCH_STREAM_PINS", 1_000_000);
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("p0");
    let (_, api, _) = init_peer(&dir, &[]);
    // IPFS is a closed port: every pin fails once, then waits an hour
    // before its retry, so the tracker is idle by the time streams start.
    let path = dir.join("server.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("config")).expect("json");
    config["pin_tracker"]["retry_backoff_min"] = "1h".into();
    config["pin_tracker"]["retry_backoff_max"] = "2h".into();
    std::fs::write(&path, serde_json::to_string_pretty(&config).expect("json")).expect("write");
    let file = root.path().join("pins.ndjson");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
        for n in 0..pins {
            writeln!(
                out,
                r#"{{"replication_factor_min":-1,"replication_factor_max":-1,"name":"p{n}","mode":"recursive","shard_size":0,"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":null,"pin_update":null,"origins":[],"cid":"{}","type":"pin","allocations":[],"max_depth":-1,"reference":null,"timestamp":"2026-12-06T10:00:00Z"}}"#,
                cid(n as u64)
            )
            .expect("write");
        }
    }
    let started = Instant::now();
    ok(&dir, &["state", "import", file.to_str().expect("utf-8")]);
    println!(
        "state import of {pins} pins: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let daemon = Daemon::start(&dir);
    let rt = runtime();
    // Let the tracker take in the pinset before measuring.
    std::thread::sleep(Duration::from_secs(env_usize("BENCH_SETTLE_S", 60) as u64));
    let paths = std::env::var("BENCH_STREAM_PATHS")
        .unwrap_or_else(|_| "/allocations,/pins?local=true,/pins".into());
    for path in paths.split(',') {
        let before = daemon.status_kib("VmRSS");
        daemon.reset_peak();
        let (lines, secs) = rt.block_on(stream_lines(&api, path));
        let peak = daemon.status_kib("VmHWM");
        let after = daemon.status_kib("VmRSS");
        println!(
            "GET {path}: {lines} entries in {secs:.2} s = {:.0} entries/s; server RSS before {} MiB, \
             peak during the request {} MiB (+{} MiB), after {} MiB",
            lines as f64 / secs,
            before / 1024,
            peak / 1024,
            peak.saturating_sub(before) / 1024,
            after / 1024
        );
        assert_eq!(lines, pins, "{path}");
    }
}

/// The same load straight into consensus: 3 `ClusterRaft`s in this
/// process over libp2p on 127.0.0.1 with redb stores (the daemon's
/// transport and store, its default Raft settings), 64 tasks writing
/// `Command::Pin` entries on the leader — the API's write path without
/// HTTP, JSON or allocation.
#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bench_ingest_raft_direct() {
    use cluster_core::pinset::{Command as PinCommand, Entry, RequestId};
    use cluster_core::{Millis, Pin};
    use cluster_net::p2p::{ClusterSecret, Libp2pConfig, Libp2pTransport};
    use cluster_net::store::RedbStore;
    use cluster_net::{Boot, ClusterRaft, RaftConfig};
    const CLIENTS: usize = 64;
    let pins = env_usize("BENCH_PINS", 19_200);
    let root = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    rt.block_on(async {
        let mut peers = Vec::new();
        let mut hosts = Vec::new();
        for n in 0..3 {
            let mut config = Libp2pConfig::new(
                root.path().join(format!("p2p-{n}")),
                vec!["/ip4/127.0.0.1/tcp/0".to_string()],
            );
            config.secret = Some(ClusterSecret::parse(SECRET).expect("secret"));
            let net = Libp2pTransport::start(config).await.expect("libp2p");
            let store = RedbStore::create(&root.path().join(format!("raft-{n}"))).expect("redb");
            let raft = ClusterRaft::start(
                &net.peer_id(),
                net.addr(),
                RaftConfig::default(),
                Boot::CreateIfEmpty {
                    incarnation: n as u128 + 1,
                },
                store,
                Arc::new(net.clone()),
            )
            .await
            .expect("start");
            net.register(raft.rpc_handler());
            peers.push(raft);
            hosts.push(net);
        }
        peers[0].initialize(7).await.expect("initialize");
        peers[0].wait_for_leader(WAIT).await.expect("leader");
        for p in &peers[1..] {
            p.join(peers[0].node_info()).await.expect("join");
        }
        let leader = peers.iter().find(|p| p.is_leader()).expect("leader").clone();
        let options = PinOptions {
            replication_factor_min: -1,
            replication_factor_max: -1,
            ..PinOptions::default()
        };
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..CLIENTS {
            let raft: ClusterRaft = leader.clone();
            let options = options.clone();
            tasks.push(tokio::spawn(async move {
                for n in (t..pins).step_by(CLIENTS) {
                    let entry = Entry {
                        request: Some(RequestId {
                            client: t as u64 + 1,
                            serial: n as u64,
                        }),
                        command: PinCommand::Pin(Pin::new(
                            cid(n as u64),
                            options.clone(),
                            Millis(n as u64),
                        )),
                    };
                    raft.write(entry).await.expect("write").expect("applied");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let took = started.elapsed();
        assert_eq!(leader.with_pinset(|p| p.len()), pins);
        println!(
            "raft direct: {pins} pins, {CLIENTS} writers on the leader (libp2p, redb): {:.2} s, {:.0} pins/s",
            took.as_secs_f64(),
            pins as f64 / took.as_secs_f64()
        );
        for p in &peers {
            p.shutdown().await;
        }
        for h in &hosts {
            h.shutdown().await;
        }
    });
}

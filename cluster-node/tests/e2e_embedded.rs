//! End-to-end in embedded mode: real `ipfscluster-server` processes, each
//! with the IPFS node embedded in it (no external daemon), on loopback.
//!
//! Content is put into a peer's embedded node through the library's
//! [`EmbeddedConnector`], on the peer's own repo while the peer is stopped
//! (the repo is locked while it runs), as a user adding a file to that
//! peer would; the cluster then moves it to the other peers by bitswap.
//! Pin states are read through the REST API's status, as a user does.
//!
//! Tests run one at a time (each starts three peers).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cluster_core::{Cid, PinOptions, TrackerStatus};
use cluster_node::api::client::{Client, ClientConfig, ClientError};
use cluster_node::ipfs::embedded::{EmbeddedConfig, EmbeddedConnector};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ipfscluster-server");
const SECRET: &str = "5b1e0c6a5b4f3e2d1c0b9a8f7e6d5c4b3a291807f6e5d4c3b2a1908f7e6d5c4b";
/// Longest wait for anything the cluster should converge to.
const WAIT: Duration = Duration::from_secs(90);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn cli(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(dir)
        .args(args)
        .env(
            "RUST_LOG",
            "info,connexa=warn,rust_ipfs=warn,openraft=warn,cluster_node::drivers=debug",
        )
        .env("NO_COLOR", "1")
        .env_remove("IPFS_CLUSTER_PATH");
    cmd
}

fn ok(dir: &Path, args: &[&str]) -> Output {
    let out = cli(dir, args).output().expect("run ipfscluster-server");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running daemon, its stderr collected; killed on drop.
struct Process {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Process {
    fn spawn(dir: &Path, tag: String) -> Process {
        let mut child = cli(dir, &["daemon"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ipfscluster-server daemon");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        Process { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn wait_log(&mut self, wanted: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log().contains(wanted) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("peer exited ({status}) before {wanted:?}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no {wanted:?} in:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, and waits for a clean exit.
    fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert_eq!(status.code(), Some(0), "unclean stop:\n{}", self.log());
                return;
            }
            assert!(Instant::now() < deadline, "no stop:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`.
    fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One peer in embedded mode.
struct Peer {
    dir: PathBuf,
    id: String,
    contact: String,
    rest: String,
    process: Option<Process>,
}

impl Peer {
    /// Plain `init` (embedded mode is the default), then test-sized
    /// settings on ports of its own.
    fn init(dir: &Path, contacts: &[String]) -> Peer {
        let out = ok(dir, &["init", "--secret", SECRET]);
        let said = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            said.lines().any(|l| l.starts_with("IPFS: embedded node")),
            "init did not choose embedded mode: {said}"
        );
        let path = dir.join("server.json");
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("server.json"))
                .expect("json");
        assert_eq!(config["ipfs"]["mode"], "embedded");
        let cluster_addr = format!("/ip4/127.0.0.1/tcp/{}", free_port());
        let rest = format!("127.0.0.1:{}", free_port());
        config["cluster"]["listen_multiaddress"] = serde_json::json!([cluster_addr]);
        config["cluster"]["cluster_peers"] = serde_json::json!(contacts);
        config["rest_api"]["listen_address"] = rest.clone().into();
        config["ipfs_proxy"]["listen_address"] = format!("127.0.0.1:{}", free_port()).into();
        config["pinning_service"]["listen_address"] = format!("127.0.0.1:{}", free_port()).into();
        config["metrics"]["interval"] = "1s".into();
        config["metrics"]["ttl"] = "3s".into();
        config["repinning"]["interval"] = "2s".into();
        config["pin_tracker"]["reconcile_interval"] = "3s".into();
        config["pin_tracker"]["retry_backoff_min"] = "200ms".into();
        config["pin_tracker"]["retry_backoff_max"] = "2s".into();
        config["ipfs_http"]["pin_timeout"] = "20s".into();
        std::fs::write(&path, serde_json::to_string_pretty(&config).expect("json"))
            .expect("write server.json");
        let id = config["cluster"]["id"].as_str().expect("id").to_string();
        Peer {
            dir: dir.to_path_buf(),
            contact: format!("{cluster_addr}/p2p/{id}"),
            id,
            rest,
            process: None,
        }
    }

    fn start(&mut self, tag: String) {
        assert!(self.process.is_none(), "{tag} runs already");
        let mut process = Process::spawn(&self.dir, tag);
        process.wait_log("IPFS Cluster is READY");
        process.wait_log("embedded IPFS node ");
        self.process = Some(process);
    }

    fn client(&self) -> Client {
        Client::new(ClientConfig {
            base_url: format!("http://{}", self.rest),
            timeout: Duration::from_secs(60),
            ..ClientConfig::default()
        })
        .expect("client")
    }

    /// Adds `files` to this (stopped) peer's embedded node: their CIDs.
    fn add_offline(&self, rt: &tokio::runtime::Runtime, files: &[Vec<u8>]) -> Vec<String> {
        assert!(
            self.process.is_none(),
            "the repo is locked while the peer runs"
        );
        rt.block_on(async {
            let node = EmbeddedConnector::start(EmbeddedConfig::new(self.dir.join("ipfs")))
                .await
                .expect("open the peer's embedded node");
            let mut cids = Vec::new();
            for (n, data) in files.iter().enumerate() {
                let cid = node.add_bytes(&format!("f{n}"), data).await.expect("add");
                cids.push(cid.to_string());
            }
            node.shutdown().await;
            cids
        })
    }
}

struct Cluster {
    peers: Vec<Peer>,
    rt: tokio::runtime::Runtime,
    _root: tempfile::TempDir,
}

impl Cluster {
    /// Three peers initialised; `before_start` runs on them stopped (to
    /// add content), then they start, peer 0 first.
    fn start(before_start: impl FnOnce(&[Peer], &tokio::runtime::Runtime)) -> Cluster {
        let root = tempfile::Builder::new()
            .prefix("e2e-embedded-")
            .tempdir()
            .expect("temp dir");
        let mut peers: Vec<Peer> = Vec::new();
        for i in 0..3 {
            let contacts: Vec<String> = peers
                .first()
                .map(|p| p.contact.clone())
                .into_iter()
                .collect();
            peers.push(Peer::init(
                &root.path().join(format!("peer-{i}")),
                &contacts,
            ));
        }
        let rt = runtime();
        before_start(&peers, &rt);
        for (i, p) in peers.iter_mut().enumerate() {
            p.start(format!("peer-{i}"));
        }
        let cluster = Cluster {
            peers,
            rt,
            _root: root,
        };
        cluster.wait_formed();
        cluster
    }

    /// Every running peer sees every running peer, with fresh metrics.
    fn wait_formed(&self) {
        let running: BTreeSet<String> = self
            .peers
            .iter()
            .filter(|p| p.process.is_some())
            .map(|p| p.id.clone())
            .collect();
        for peer in self.peers.iter().filter(|p| p.process.is_some()) {
            let client = peer.client();
            wait_for(&format!("{} to hold everyone's metrics", peer.id), || {
                let metrics = self.rt.block_on(client.metrics("freespace")).ok()?;
                let fresh: BTreeSet<String> = metrics
                    .into_iter()
                    .filter(|m| m.valid)
                    .map(|m| m.peer)
                    .collect();
                running.is_subset(&fresh).then_some(())
            });
        }
    }

    fn pin(&self, via: usize, cid: &str, options: &PinOptions) -> Vec<String> {
        let pin = self
            .rt
            .block_on(
                self.peers[via]
                    .client()
                    .pin(&Cid::parse(cid).expect("cid"), options),
            )
            .unwrap_or_else(|e| panic!("pin {cid} via peer {via}: {e}"));
        pin.allocations.iter().map(|a| a.to_string()).collect()
    }

    /// Peer `via`'s status of `cid` per peer id.
    fn status(&self, via: usize, cid: &str) -> BTreeMap<String, TrackerStatus> {
        self.rt
            .block_on(
                self.peers[via]
                    .client()
                    .status(&Cid::parse(cid).expect("cid"), false),
            )
            .map(|info| {
                info.peer_map
                    .into_iter()
                    .map(|(p, i)| (p, i.status))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `cid` is pinned on each of `holders` (peer ids),
    /// as peer `via`'s status API reports it.
    fn wait_pinned(&self, via: usize, cid: &str, holders: &BTreeSet<String>) {
        let deadline = Instant::now() + WAIT;
        loop {
            let last = self.status(via, cid);
            if holders
                .iter()
                .all(|h| last.get(h) == Some(&TrackerStatus::Pinned))
            {
                return;
            }
            if Instant::now() > deadline {
                let detail = self.rt.block_on(
                    self.peers[via]
                        .client()
                        .status(&Cid::parse(cid).expect("cid"), false),
                );
                panic!(
                    "{cid} not pinned on {holders:?}: {last:?}\n{detail:?}\nlogs:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn all_ids(&self) -> BTreeSet<String> {
        self.peers.iter().map(|p| p.id.clone()).collect()
    }

    fn logs(&self) -> String {
        self.peers
            .iter()
            .filter_map(|p| p.process.as_ref())
            .map(|p| tail(&p.log(), 30))
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn replicated(min: i32, max: i32) -> PinOptions {
    PinOptions {
        replication_factor_min: min,
        replication_factor_max: max,
        ..PinOptions::default()
    }
}

/// A file of several blocks (a DAG with links for bitswap to follow).
fn big_file(tag: &str) -> Vec<u8> {
    let mut big = Vec::new();
    for i in 0..40_000u32 {
        big.extend_from_slice(format!("{tag} block data line {i}\n").as_bytes());
    }
    big
}

#[test]
fn content_added_on_one_embedded_peer_is_pinned_on_the_others_by_bitswap() {
    let _serial = serial();
    let mut cids = Vec::new();
    let mut cluster = Cluster::start(|peers, rt| {
        cids = peers[0].add_offline(rt, &[big_file("everywhere"), big_file("two")]);
    });
    let ids = cluster.all_ids();
    // Everywhere: peers 1 and 2 fetch it from peer 0's node.
    let allocations = cluster.pin(1, &cids[0], &replicated(-1, -1));
    assert!(allocations.is_empty(), "{allocations:?}");
    cluster.wait_pinned(2, &cids[0], &ids);
    // Replication 2: pinned on exactly its allocations.
    let allocations: BTreeSet<String> = cluster
        .pin(2, &cids[1], &replicated(2, 2))
        .into_iter()
        .collect();
    assert_eq!(allocations.len(), 2, "{allocations:?}");
    cluster.wait_pinned(0, &cids[1], &allocations);
    let status = cluster.status(0, &cids[1]);
    for id in ids.difference(&allocations) {
        assert_ne!(status.get(id), Some(&TrackerStatus::Pinned), "{status:?}");
    }

    // A restart keeps the embedded node's pins (under a new peer id).
    let restarted = cluster.peers[2].process.take().expect("running");
    restarted.terminate();
    cluster.peers[2].start("peer-2 again".into());
    cluster.wait_formed();
    cluster.wait_pinned(0, &cids[0], &ids);
}

#[test]
fn a_restarted_peer_fetches_new_content_by_bitswap() {
    let _serial = serial();
    let mut cids = Vec::new();
    let mut cluster = Cluster::start(|peers, rt| {
        cids = peers[0].add_offline(rt, &[big_file("before"), big_file("after")]);
    });
    let ids = cluster.all_ids();
    cluster.pin(0, &cids[0], &replicated(-1, -1));
    cluster.wait_pinned(0, &cids[0], &ids);
    let restarted = cluster.peers[2].process.take().expect("running");
    restarted.terminate();
    cluster.peers[2].start("peer-2 again".into());
    cluster.wait_formed();
    cluster.pin(0, &cids[1], &replicated(-1, -1));
    cluster.wait_pinned(0, &cids[1], &ids);
}

/// Client task `t` of `tasks`: pins its share through peer `t % 3`, moving
/// to the next peer when one does not answer. Records acknowledged pins.
async fn pin_share(
    clients: Vec<Client>,
    cids: Arc<Vec<String>>,
    t: usize,
    tasks: usize,
    acked: Arc<Mutex<Vec<String>>>,
) {
    for n in (t..cids.len()).step_by(tasks) {
        let c = Cid::parse(&cids[n]).expect("cid");
        let mut via = t % clients.len();
        for _attempt in 0..12 {
            match clients[via].pin(&c, &replicated(-1, -1)).await {
                Ok(_) => {
                    acked
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(cids[n].clone());
                    break;
                }
                Err(ClientError::Transport(_) | ClientError::Timeout(_)) => {
                    via = (via + 1) % clients.len();
                }
                Err(e) if e.code() == 503 => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("pin {} via peer {via}: {e}", cids[n]),
            }
        }
    }
}

#[test]
fn acknowledged_pins_are_pinned_after_a_peer_is_killed_during_pin_adds() {
    let _serial = serial();
    const PINS: usize = 150;
    let files: Vec<Vec<u8>> = (0..PINS)
        .map(|i| format!("embedded crash test #{i}\n").into_bytes())
        .collect();
    let mut cids = Vec::new();
    let mut cluster = Cluster::start(|peers, rt| {
        // Peer 0 holds the content; the others fetch it by bitswap.
        cids = peers[0].add_offline(rt, &files);
    });
    let cids = Arc::new(cids);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<Client> = cluster.peers.iter().map(Peer::client).collect();
    const TASKS: usize = 8;
    let handles: Vec<_> = (0..TASKS)
        .map(|t| {
            let task = pin_share(
                clients.clone(),
                Arc::clone(&cids),
                t,
                TASKS,
                Arc::clone(&acked),
            );
            cluster.rt.spawn(task)
        })
        .collect();
    wait_for("a fifth of the pins acknowledged", || {
        (acked.lock().unwrap_or_else(|e| e.into_inner()).len() >= PINS / 5).then_some(())
    });
    // Peer 1 is neither the content's holder nor (likely) the leader.
    cluster.peers[1].process.take().expect("running").crash();
    for h in handles {
        cluster.rt.block_on(h).expect("client task");
    }
    let acked: Vec<String> = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        acked.len() >= PINS / 2,
        "only {} pins acknowledged",
        acked.len()
    );
    cluster.peers[1].start("peer-1 again".into());
    cluster.wait_formed();
    let ids = cluster.all_ids();
    for c in &acked {
        cluster.wait_pinned(1, c, &ids);
    }
}

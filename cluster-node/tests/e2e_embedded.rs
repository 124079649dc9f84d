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

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cluster_core::{Cid, PinOptions, TrackerStatus};
use cluster_node::api::client::{Client, ClientConfig, ClientError};
use cluster_node::ipfs::embedded::{EmbeddedConfig, EmbeddedConnector};
use common::cluster::free_port;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ipfscluster-server");
const SECRET: &str = "5b1e0c6a5b4f3e2d1c0b9a8f7e6d5c4b3a291807f6e5d4c3b2a1908f7e6d5c4b";
/// Longest wait for anything the cluster should converge to.
const WAIT: Duration = Duration::from_secs(90);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
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
    proxy: String,
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
        let proxy = format!("127.0.0.1:{}", free_port());
        config["ipfs_proxy"]["listen_address"] = proxy.clone().into();
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
            proxy,
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

/// The js-ipfs command-line client of the test recipe (`e2e/ipfs`).
fn jsipfs_bin() -> PathBuf {
    let bin =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e/ipfs/node_modules/.bin/jsipfs");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/ipfs-install.sh",
        bin.display()
    );
    bin
}

/// Runs `jsipfs <args>` with `repo` as its own repo (`--api` in `args`
/// makes it a client of that API; without, it works offline on `repo`).
fn jsipfs(repo: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(jsipfs_bin())
        .args(args)
        .current_dir(cwd)
        .env("NODE_ENV", "test")
        .env("IPFS_PATH", repo)
        .output()
        .expect("run jsipfs")
}

fn jsipfs_ok(repo: &Path, cwd: &Path, args: &[&str]) -> String {
    let out = jsipfs(repo, cwd, args);
    assert!(
        out.status.success(),
        "jsipfs {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `added <cid> <name>` lines of a `jsipfs add` as (name, cid).
fn added_lines(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("added")).then_some(())?;
            let cid = words.next()?.to_string();
            Some((words.collect::<Vec<_>>().join(" "), cid))
        })
        .collect()
}

/// A real IPFS client (js-ipfs' `jsipfs --api`) against the proxy of a peer
/// in embedded mode: what it adds gets the CIDs a real js-ipfs computes for
/// the same files and options, is pinned in the cluster and read back with
/// `cat` and `get` from another peer; `pin add|ls|rm` go to the cluster;
/// a call the embedded node does not serve gets the clear error.
#[test]
fn a_real_ipfs_client_uses_the_proxy_of_an_embedded_peer() {
    let _serial = serial();
    let cluster = Cluster::start(|_, _| {});
    let ids = cluster.all_ids();
    let work = tempfile::tempdir().expect("temp dir");
    let w = work.path();
    // Offline js-ipfs: the reference CIDs.
    let offline = w.join("offline-repo");
    jsipfs_ok(&offline, w, &["init", "--empty-repo"]);
    let client_repo = w.join("client-repo");
    std::fs::write(w.join("small.txt"), b"hello from a real ipfs client\n").expect("write");
    std::fs::write(w.join("big.bin"), big_file("proxy")).expect("write");
    std::fs::create_dir_all(w.join("tree/sub")).expect("mkdir");
    std::fs::write(w.join("tree/a.txt"), b"a").expect("write");
    std::fs::write(w.join("tree/sub/b.txt"), big_file("tree")).expect("write");
    let api0 = {
        let (host, port) = cluster.peers[0].proxy.split_once(':').expect("host:port");
        format!("/ip4/{host}/tcp/{port}")
    };
    let api1 = {
        let (host, port) = cluster.peers[1].proxy.split_once(':').expect("host:port");
        format!("/ip4/{host}/tcp/{port}")
    };

    // Same files and options, same CIDs as js-ipfs computes them.
    for options in [&[][..], &["--cid-version", "1"][..], &["-w"][..]] {
        for file in ["small.txt", "big.bin"] {
            let mut args = vec!["add", "-Q"];
            args.extend_from_slice(options);
            args.push(file);
            let mut offline_args = args.clone();
            offline_args.insert(1, "-n");
            let want = jsipfs_ok(&offline, w, &offline_args);
            let mut via = vec!["--api", api0.as_str()];
            via.extend_from_slice(&args);
            let got = jsipfs_ok(&client_repo, w, &via);
            assert_eq!(got.trim(), want.trim(), "add {options:?} {file}");
        }
    }
    let want = added_lines(&jsipfs_ok(
        &offline,
        w,
        &["add", "-r", "-n", "--progress=false", "tree"],
    ));
    let got = added_lines(&jsipfs_ok(
        &client_repo,
        w,
        &["--api", &api0, "add", "-r", "--progress=false", "tree"],
    ));
    assert_eq!(got, want, "add -r tree");
    let tree = got.get("tree").expect("the root").clone();

    // The adds were pinned in the cluster (everywhere): fetched by the
    // other peers' nodes, then read back through peer 1's proxy.
    cluster.wait_pinned(1, &tree, &ids);
    let small = jsipfs_ok(&client_repo, w, &["--api", &api0, "add", "-Q", "small.txt"]);
    let small = small.trim().to_string();
    cluster.wait_pinned(2, &small, &ids);
    let cat = jsipfs(&client_repo, w, &["--api", &api1, "cat", &small]);
    assert!(
        cat.status.success(),
        "cat: {}",
        String::from_utf8_lossy(&cat.stderr)
    );
    assert_eq!(cat.stdout, b"hello from a real ipfs client\n");
    let out = w.join("got");
    std::fs::create_dir_all(&out).expect("mkdir");
    jsipfs_ok(
        &client_repo,
        &out,
        &["--api", &api1, "get", &tree, "-o", "tree-copy"],
    );
    // js-ipfs' client writes the archive's root (named after the CID)
    // under the `-o` directory.
    let copy = out.join("tree-copy").join(&tree);
    assert_eq!(
        std::fs::read(copy.join("sub/b.txt")).expect("got sub/b.txt"),
        big_file("tree")
    );
    assert_eq!(std::fs::read(copy.join("a.txt")).expect("got a.txt"), b"a");

    // Content added without a pin, then pinned, listed and unpinned by
    // the client: all cluster operations.
    std::fs::write(w.join("later.txt"), b"pinned later by hand\n").expect("write");
    let later = jsipfs_ok(
        &client_repo,
        w,
        &["--api", &api0, "add", "-Q", "--pin=false", "later.txt"],
    );
    let later = later.trim().to_string();
    let status = cluster.status(0, &later);
    assert!(
        status.values().all(|s| *s == TrackerStatus::Unpinned),
        "added with --pin=false but the cluster has it: {status:?}"
    );
    let said = jsipfs_ok(&client_repo, w, &["--api", &api0, "pin", "add", &later]);
    assert!(said.contains(&later), "pin add said {said}");
    cluster.wait_pinned(1, &later, &ids);
    let listed = jsipfs_ok(
        &client_repo,
        w,
        &["--api", &api1, "pin", "ls", "--type", "recursive"],
    );
    for cid in [&later, &small, &tree] {
        assert!(
            listed.contains(cid.as_str()),
            "pin ls lacks {cid}:\n{listed}"
        );
    }
    jsipfs_ok(&client_repo, w, &["--api", &api1, "pin", "rm", &later]);
    wait_for("the unpin to reach every peer", || {
        let s = cluster.status(2, &later);
        s.values()
            .all(|s| *s == TrackerStatus::Unpinned)
            .then_some(())
    });

    // A call the embedded node does not serve: Kubo's error shape, clearly worded.
    let refused = jsipfs(
        &client_repo,
        w,
        &["--api", &api0, "name", "publish", &small],
    );
    assert!(!refused.status.success(), "name publish succeeded");
    let said = String::from_utf8_lossy(&refused.stderr).to_string()
        + &String::from_utf8_lossy(&refused.stdout);
    assert!(
        said.contains("needs an external IPFS daemon"),
        "unclear refusal: {said}"
    );
}

/// `ipfscluster add` (the REST API's `/add`) on a peer in embedded mode: the
/// file is imported by the peer's own node, pinned with replication 2 and
/// fetched by its allocations; the CID is the one js-ipfs computes.
#[test]
fn the_cli_adds_a_file_to_a_cluster_in_embedded_mode() {
    let _serial = serial();
    let cluster = Cluster::start(|_, _| {});
    let work = tempfile::tempdir().expect("temp dir");
    let w = work.path();
    let file = w.join("report.bin");
    std::fs::write(&file, big_file("cli add")).expect("write");
    let offline = w.join("offline-repo");
    jsipfs_ok(&offline, w, &["init", "--empty-repo"]);
    let want = jsipfs_ok(&offline, w, &["add", "-Q", "-n", "report.bin"]);
    let cli = PathBuf::from(env!("CARGO_BIN_EXE_ipfscluster"));
    let out = Command::new(cli)
        .args(["--host", &format!("http://{}", cluster.peers[2].rest)])
        .args(["add", "-Q", "--rmin", "2", "--rmax", "2"])
        .arg(&file)
        .output()
        .expect("run ipfscluster");
    assert!(
        out.status.success(),
        "ipfscluster add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        cid,
        want.trim(),
        "the embedded node's CID differs from js-ipfs'"
    );
    let pin = cluster
        .rt
        .block_on(
            cluster.peers[0]
                .client()
                .allocation(&Cid::parse(&cid).expect("cid")),
        )
        .expect("the pin");
    let holders: BTreeSet<String> = pin.allocations.iter().map(|a| a.to_string()).collect();
    assert_eq!(holders.len(), 2, "{holders:?}");
    cluster.wait_pinned(0, &cid, &holders);
}

/// A peer stopped for good: the pins allocated to it are re-allocated to
/// the peer left out, whose embedded node fetches them by bitswap from the
/// remaining holder.
#[test]
fn pins_of_a_peer_stopped_for_good_are_reallocated_and_pinned_elsewhere() {
    let _serial = serial();
    let mut cids = Vec::new();
    let mut cluster = Cluster::start(|peers, rt| {
        cids = peers[0].add_offline(rt, &[big_file("moved")]);
    });
    let cid = &cids[0];
    let first: BTreeSet<String> = cluster.pin(0, cid, &replicated(2, 2)).into_iter().collect();
    assert_eq!(first.len(), 2, "{first:?}");
    cluster.wait_pinned(0, cid, &first);
    // Stop an allocation that is not peer 0 (peer 0's API is asked below).
    let gone = cluster
        .peers
        .iter()
        .position(|p| p.id != cluster.peers[0].id && first.contains(&p.id))
        .expect("an allocation besides peer 0");
    let gone_id = cluster.peers[gone].id.clone();
    cluster.peers[gone]
        .process
        .take()
        .expect("running")
        .terminate();
    let moved = wait_for(
        "the pin to be re-allocated away from the stopped peer",
        || {
            let pin = cluster
                .rt
                .block_on(
                    cluster.peers[0]
                        .client()
                        .allocation(&Cid::parse(cid).expect("cid")),
                )
                .ok()?;
            let now: BTreeSet<String> = pin.allocations.iter().map(|a| a.to_string()).collect();
            (now.len() == 2 && !now.contains(&gone_id)).then_some(now)
        },
    );
    cluster.wait_pinned(0, cid, &moved);
}

/// `ipfscluster-server local-cluster`: one command starts three peers with
/// embedded nodes, pins the sample with replication 2 and keeps running;
/// SIGTERM stops every peer cleanly; a second run on the same directory
/// restarts the same cluster with the sample still pinned.
#[test]
fn local_cluster_runs_a_whole_cluster_and_restarts_it() {
    let _serial = serial();
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("local");
    let run = || {
        let mut child = Command::new(BIN)
            .args(["local-cluster", "--base-port", "23094", "--dir"])
            .arg(&dir)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn local-cluster");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut said = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                said.push_str(&line);
                said.push('\n');
                if line.starts_with("Press Ctrl-C") {
                    let _ = tx.send(said.clone());
                }
            }
        });
        let said = rx.recv_timeout(WAIT).expect("local-cluster running");
        (child, said)
    };
    let (mut child, said) = run();
    let cid = said
        .lines()
        .find_map(|l| {
            l.split_once("sample.txt: ")
                .map(|(_, c)| c.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no sample CID in:\n{said}"));
    let pinned = said.lines().filter(|l| l.ends_with(": pinned")).count();
    assert!(pinned >= 2, "sample pinned on {pinned} peers:\n{said}");
    let pids_of_peers = || -> Vec<String> {
        let out = Command::new("pgrep")
            .args(["-f", &format!("{}/peer-", dir.display())])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    };
    assert_eq!(pids_of_peers().len(), 3, "three peer processes");
    let term = |child: &mut Child| {
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success()));
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "local-cluster exit");
    };
    term(&mut child);
    assert!(
        pids_of_peers().is_empty(),
        "peers left running: {:?}",
        pids_of_peers()
    );

    // Again: the same cluster, the sample still pinned on two peers.
    let (mut child, said) = run();
    assert!(said.contains(&format!("sample.txt: {cid}")), "{said}");
    let client = Client::new(ClientConfig {
        base_url: "http://127.0.0.1:23194".into(),
        ..ClientConfig::default()
    })
    .expect("client");
    let peers = runtime().block_on(client.peers()).expect("peers");
    assert_eq!(peers.len(), 3);
    term(&mut child);
}

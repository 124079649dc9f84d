//! Real `ipfscluster-server` processes, each driving its own real IPFS
//! daemon (js-ipfs from `e2e/ipfs`), on 127.0.0.1 only: the harness of the
//! end-to-end tests (`e2e_cluster.rs`, `proxy_e2e.rs`). A cluster's peers
//! and daemons are killed when it drops, also when a test panics.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cluster_core::{Cid, PeerId, PinOptions, TrackerStatus};
use cluster_node::api::client::{Client, ClientConfig};
use cluster_node::api::types::ApiPin;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ipfscluster-server");
pub const SECRET: &str = "7d1e0c6a5b4f3e2d1c0b9a8f7e6d5c4b3a291807f6e5d4c3b2a1908f7e6d5c4b";
/// Longest wait for anything the cluster should converge to.
pub const WAIT: Duration = Duration::from_secs(90);

/// One test at a time (see the module docs); a failed test must not
/// poison the others, hence the `into_inner` on a poisoned lock.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub use super::free_port;

/// Polls `check` until it returns `Some`, panicking with `what` (and the
/// last value `describe` gives) after `WAIT`.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn cid(text: &str) -> Cid {
    Cid::parse(text).expect("a CID")
}

// ---------------------------------------------------------------- IPFS

/// One real IPFS daemon in its own directory, so that it can be stopped
/// and restarted alone (`ipfs-down.sh` stops every daemon of a directory,
/// `ipfs-up.sh` restarts the missing ones). Daemons of one cluster are
/// deliberately not connected to each other by the script: the cluster
/// connects them (through the IPFS addresses its metrics carry).
pub struct Ipfs {
    pub dir: PathBuf,
    pub port: u16,
}

impl Ipfs {
    pub fn start(dir: &Path, port: u16) -> Ipfs {
        let jsipfs = super::recipe_dir().join("node_modules/.bin/jsipfs");
        assert!(
            jsipfs.exists(),
            "the IPFS daemon is not installed ({} is missing): run scripts/ipfs-install.sh",
            jsipfs.display()
        );
        let ipfs = Ipfs {
            dir: dir.to_path_buf(),
            port,
        };
        ipfs.up();
        ipfs
    }

    /// (Re)starts the daemon if it is not running; its repo is kept.
    pub fn up(&self) {
        let out = Command::new(super::recipe_dir().join("ipfs-up.sh"))
            .arg("1")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .output()
            .expect("ipfs-up.sh");
        assert!(
            out.status.success(),
            "ipfs-up.sh on {} failed: {}{}\n{}",
            self.port,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("ipfs-0.log")).unwrap_or_default()
        );
    }

    /// Stops the daemon (by its recorded pid).
    pub fn down(&self) {
        let _ = Command::new(super::recipe_dir().join("ipfs-down.sh"))
            .arg(&self.dir)
            .output();
    }

    pub fn multiaddr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.port)
    }

    /// `POST /api/v0/<path>` with extra curl arguments: the raw body.
    pub fn call(&self, path: &str, extra: &[&str]) -> String {
        let out = Command::new("curl")
            .args(["-sS", "-f", "-X", "POST", "--max-time", "120"])
            .args(extra)
            .arg(format!("http://127.0.0.1:{}/api/v0/{path}", self.port))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "ipfs {path} on {} failed: {}",
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Adds each content as a file (not pinned), in one request: the CIDs
    /// (v0), in order.
    pub fn add_all(&self, contents: &[Vec<u8>]) -> Vec<String> {
        // One multipart body written to a file: a thousand `-F` arguments
        // would be slower and could overflow the command line.
        let boundary = "e2e-cluster-boundary-7f3a";
        let mut body = Vec::new();
        for (n, content) in contents.iter().enumerate() {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
                     filename=\"f{n}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let file = self.dir.join("add-body.bin");
        std::fs::write(&file, body).expect("write multipart body");
        let text = self.call(
            "add?pin=false&cid-version=0&progress=false",
            &[
                "-H",
                &format!("Content-Type: multipart/form-data; boundary={boundary}"),
                "--data-binary",
                &format!("@{}", file.display()),
            ],
        );
        let by_name: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| Some((v["Name"].as_str()?.into(), v["Hash"].as_str()?.into())))
            .collect();
        (0..contents.len())
            .map(|n| {
                by_name
                    .get(&format!("f{n}"))
                    .unwrap_or_else(|| panic!("no CID for f{n} in {text}"))
                    .clone()
            })
            .collect()
    }

    pub fn add(&self, content: &[u8]) -> String {
        self.add_all(&[content.to_vec()]).remove(0)
    }

    /// The CIDs this daemon has pinned recursively.
    pub fn pins(&self) -> BTreeSet<String> {
        let text = self.call("pin/ls?type=recursive", &[]);
        let mut pins = BTreeSet::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            // Kubo answers one `Keys` object; a streamed answer is one `Cid` per line.
            if let Some(keys) = v["Keys"].as_object() {
                pins.extend(keys.keys().cloned());
            }
            if let Some(c) = v["Cid"].as_str() {
                pins.insert(c.to_string());
            }
        }
        pins
    }

    pub fn has_pin(&self, cid: &str) -> bool {
        self.pins().contains(cid)
    }

    /// A pin of the user's own, made on the daemon directly.
    pub fn pin_directly(&self, cid: &str) {
        self.call(&format!("pin/add?arg={cid}"), &[]);
    }

    /// The peers this daemon's swarm is connected to.
    pub fn swarm_peers(&self) -> usize {
        let v: Value = serde_json::from_str(&self.call("swarm/peers", &[])).unwrap_or(Value::Null);
        v["Peers"].as_array().map_or(0, Vec::len)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("ipfs-0.log")).unwrap_or_default()
    }
}

impl Drop for Ipfs {
    fn drop(&mut self) {
        self.down();
    }
}

// ---------------------------------------------------------------- peers

pub fn cli(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .env_remove("IPFS_CLUSTER_PATH");
    cmd
}

pub fn ok(dir: &Path, args: &[&str]) -> Output {
    let out = cli(dir, args).output().expect("run ipfscluster-server");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running `ipfscluster-server daemon`; its stderr is collected (and
/// echoed, which the test harness shows only for a failed test). Killed
/// on drop, so a failed test leaves nothing behind.
pub struct Process {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
}

impl Process {
    pub fn spawn(dir: &Path, tag: String) -> Process {
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

    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn wait_log(&mut self, wanted: &str) {
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

    /// SIGTERM and wait: the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "no stop:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`: no chance to flush or say goodbye.
    pub fn crash(mut self) {
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

/// One cluster peer: its config directory and, while running, its process.
pub struct Peer {
    pub dir: PathBuf,
    pub id: String,
    /// `/ip4/127.0.0.1/tcp/<port>/p2p/<id>`.
    pub contact: String,
    pub rest: String,
    /// The IPFS proxy's `host:port`.
    pub proxy: String,
    pub process: Option<Process>,
}

/// Test-sized settings: metrics every second that expire after three,
/// quick reconciliation, re-allocation and retries.
pub fn tune(config: &mut Value) {
    config["metrics"]["interval"] = "1s".into();
    config["metrics"]["ttl"] = "3s".into();
    config["repinning"]["interval"] = "2s".into();
    config["pin_tracker"]["reconcile_interval"] = "3s".into();
    config["pin_tracker"]["retry_backoff_min"] = "200ms".into();
    config["pin_tracker"]["retry_backoff_max"] = "2s".into();
    config["ipfs_http"]["pin_timeout"] = "30s".into();
}

impl Peer {
    /// `init` in `dir` with its own ports, pointed at `ipfs`, joining
    /// through `contacts` (none: it starts the cluster).
    pub fn init(dir: &Path, ipfs: &Ipfs, contacts: &[String]) -> Peer {
        ok(
            dir,
            &["init", "--secret", SECRET, "--ipfs-api", &ipfs.multiaddr()],
        );
        let path = dir.join("server.json");
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("server.json"))
                .expect("json");
        let cluster_addr = format!("/ip4/127.0.0.1/tcp/{}", free_port());
        let rest = format!("127.0.0.1:{}", free_port());
        config["cluster"]["listen_multiaddress"] = serde_json::json!([cluster_addr]);
        config["cluster"]["cluster_peers"] = serde_json::json!(contacts);
        config["ipfs_http"]["node_multiaddress"] = ipfs.multiaddr().into();
        config["rest_api"]["listen_address"] = rest.clone().into();
        let proxy = format!("127.0.0.1:{}", free_port());
        config["ipfs_proxy"]["listen_address"] = proxy.clone().into();
        config["pinning_service"]["listen_address"] = format!("127.0.0.1:{}", free_port()).into();
        tune(&mut config);
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

    /// Starts the daemon and waits until it knows a leader.
    pub fn start(&mut self, tag: String) {
        assert!(self.process.is_none(), "{tag} runs already");
        let mut process = Process::spawn(&self.dir, tag);
        process.wait_log("IPFS Cluster is READY");
        self.process = Some(process);
    }

    pub fn client(&self) -> Client {
        Client::new(ClientConfig {
            base_url: format!("http://{}", self.rest),
            timeout: Duration::from_secs(60),
            ..ClientConfig::default()
        })
        .expect("client")
    }

    pub fn peer_id(&self) -> PeerId {
        PeerId::parse(&self.id).expect("peer id")
    }

    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }
}

// ---------------------------------------------------------------- cluster

/// Peers and their daemons (peer `i` drives daemon `i`). Fields drop in
/// order: peers first, then daemons, then the directory.
pub struct Cluster {
    pub peers: Vec<Peer>,
    pub ipfs: Vec<Ipfs>,
    pub rt: tokio::runtime::Runtime,
    pub root: tempfile::TempDir,
}

impl Cluster {
    /// `daemons` IPFS daemons on `base`, `base + 10`, …, and a peer for
    /// each of the first `running` of them, started (peer 0 first; the
    /// others join through it). The remaining daemons wait for peers
    /// added later by [`Cluster::add_peer`].
    pub fn start(base: u16, daemons: usize, running: usize) -> Cluster {
        let root = tempfile::Builder::new()
            .prefix("e2e-cluster-")
            .tempdir()
            .expect("temp dir");
        let ipfs = (0..daemons)
            .map(|i| Ipfs::start(&root.path().join(format!("ipfs-{i}")), base + 10 * i as u16))
            .collect();
        let mut cluster = Cluster {
            peers: Vec::new(),
            ipfs,
            rt: super::runtime(),
            root,
        };
        for _ in 0..running {
            cluster.add_peer();
        }
        cluster
    }

    /// Inits and starts the next peer (on the next daemon); waits until
    /// every running peer lists every member and has their metrics.
    pub fn add_peer(&mut self) -> usize {
        let i = self.peers.len();
        let contacts: Vec<String> = self
            .peers
            .first()
            .map(|p| p.contact.clone())
            .into_iter()
            .collect();
        let dir = self.root.path().join(format!("peer-{i}"));
        let mut peer = Peer::init(&dir, &self.ipfs[i], &contacts);
        peer.start(format!("peer-{i}"));
        self.peers.push(peer);
        self.wait_formed();
        i
    }

    /// Waits until every running peer sees every running peer as a
    /// member and holds a fresh `freespace` metric of each (allocation
    /// needs them).
    pub fn wait_formed(&self) {
        let running: BTreeSet<String> = self
            .peers
            .iter()
            .filter(|p| p.process.is_some())
            .map(|p| p.id.clone())
            .collect();
        for peer in self.peers.iter().filter(|p| p.process.is_some()) {
            let client = peer.client();
            wait_for(&format!("{} to see peers {running:?}", peer.id), || {
                let peers = self.rt.block_on(client.peers()).ok()?;
                let seen: BTreeSet<String> = peers.into_iter().map(|p| p.id).collect();
                running.is_subset(&seen).then_some(())
            });
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

    pub fn client(&self, i: usize) -> Client {
        self.peers[i].client()
    }

    /// Pins through peer `via`. A refusal for want of peers with fresh
    /// metrics is retried until [`WAIT`]: on a loaded machine a metrics
    /// push can come later than the tests' 3 s TTL, and that is not what
    /// the tests check.
    pub fn pin(&self, via: usize, cid_text: &str, options: &PinOptions) -> ApiPin {
        let deadline = Instant::now() + WAIT;
        loop {
            match self
                .rt
                .block_on(self.client(via).pin(&cid(cid_text), options))
            {
                Ok(pin) => return pin,
                Err(e)
                    if e.to_string().contains("not enough peers") && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("pin {cid_text} via peer {via}: {e}"),
            }
        }
    }

    pub fn unpin(&self, via: usize, cid_text: &str) -> ApiPin {
        self.rt
            .block_on(self.client(via).unpin(&cid(cid_text)))
            .unwrap_or_else(|e| panic!("unpin {cid_text} via peer {via}: {e}"))
    }

    /// Peer `via`'s state: CID → allocations (empty: everywhere).
    pub fn allocations(&self, via: usize) -> BTreeMap<String, BTreeSet<String>> {
        self.rt
            .block_on(self.client(via).allocations(&[]))
            .unwrap_or_else(|e| panic!("allocations via peer {via}: {e}"))
            .into_iter()
            .map(|p| {
                let allocs = p.allocations.iter().map(|a| a.to_string()).collect();
                (p.cid.to_string(), allocs)
            })
            .collect()
    }

    /// The daemons that should pin a pin with these allocations.
    pub fn holders(&self, allocations: &BTreeSet<String>) -> Vec<usize> {
        (0..self.peers.len())
            .filter(|&i| allocations.is_empty() || allocations.contains(&self.peers[i].id))
            .collect()
    }

    /// Waits until daemon `i` has (or has not) pinned every one of `cids`.
    pub fn wait_daemon(&self, i: usize, cids: &[String], pinned: bool) {
        let mut missing = Vec::new();
        let done = (|| {
            let deadline = Instant::now() + WAIT;
            loop {
                let pins = self.ipfs[i].pins();
                missing = cids
                    .iter()
                    .filter(|c| pins.contains(*c) != pinned)
                    .cloned()
                    .collect();
                if missing.is_empty() {
                    return true;
                }
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })();
        assert!(
            done,
            "daemon {i}: {} of {} CIDs not {} (e.g. {:?})\npeer log:\n{}\nIPFS log (tail):\n{}",
            missing.len(),
            cids.len(),
            if pinned { "pinned" } else { "unpinned" },
            missing.first(),
            self.peers.get(i).map(Peer::log).unwrap_or_default(),
            tail(&self.ipfs[i].log(), 40)
        );
    }

    /// Peer `via`'s status of `cid_text` per peer id.
    pub fn status(&self, via: usize, cid_text: &str) -> BTreeMap<String, TrackerStatus> {
        self.rt
            .block_on(self.client(via).status(&cid(cid_text), false))
            .unwrap_or_else(|e| panic!("status {cid_text} via peer {via}: {e}"))
            .peer_map
            .into_iter()
            .map(|(peer, info)| (peer, info.status))
            .collect()
    }

    pub fn sigterm(&mut self, i: usize) {
        let process = self.peers[i].process.take().expect("running");
        assert_eq!(
            process.terminate(),
            Some(0),
            "peer {i} did not stop cleanly"
        );
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

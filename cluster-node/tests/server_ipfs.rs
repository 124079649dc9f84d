//! `ipfscluster-server` driving a real IPFS daemon (js-ipfs with the Kubo
//! RPC API, from `e2e/ipfs`; install it with `scripts/ipfs-install.sh`): a
//! pin in the peer's state ends up pinned in IPFS, with the content added
//! to IPFS beforehand.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ipfscluster-server");
const SECRET: &str = "2f3a5d71c0b2e4f6a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5";
const WAIT: Duration = Duration::from_secs(60);

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("e2e")
        .join("ipfs")
}

/// The real IPFS daemons of one test; stopped on drop.
struct Ipfs {
    dir: PathBuf,
    api: String,
}

impl Ipfs {
    fn start(dir: &Path) -> Ipfs {
        let e2e = e2e_dir();
        assert!(
            e2e.join("node_modules/.bin/jsipfs").exists(),
            "the real IPFS daemon is not installed: run scripts/ipfs-install.sh"
        );
        // Four consecutive ports (API, gateway, swarm, gRPC) that are free.
        let base = loop {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("free port");
            if port < 60_000 && (1..4).all(|i| TcpListener::bind(("127.0.0.1", port + i)).is_ok()) {
                break port;
            }
        };
        let out = Command::new("bash")
            .arg(e2e.join("ipfs-up.sh"))
            .arg("1")
            .arg(dir)
            .arg(base.to_string())
            .output()
            .expect("ipfs-up.sh");
        let ipfs = Ipfs {
            dir: dir.to_path_buf(),
            api: format!("http://127.0.0.1:{base}"),
        };
        assert!(
            out.status.success(),
            "ipfs-up.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ipfs
    }

    fn multiaddr(&self) -> String {
        let port = self.api.rsplit(':').next().expect("port");
        format!("/ip4/127.0.0.1/tcp/{port}")
    }

    /// `curl -X POST <api>/api/v0/<path>` with `extra` arguments.
    fn call(&self, path: &str, extra: &[&str]) -> Value {
        let out = Command::new("curl")
            .args(["-sf", "-X", "POST"])
            .args(extra)
            .arg(format!("{}/api/v0/{path}", self.api))
            .output()
            .expect("curl");
        assert!(out.status.success(), "ipfs {path} failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().unwrap_or("null");
        serde_json::from_str(last).expect("ipfs answer")
    }

    /// Adds `bytes` without pinning them; returns the CID.
    fn add(&self, bytes: &[u8]) -> String {
        let file = self.dir.join("content.bin");
        std::fs::write(&file, bytes).expect("write content");
        let answer = self.call(
            "add?pin=false&cid-version=0",
            &["-F", &format!("file=@{}", file.display())],
        );
        answer["Hash"].as_str().expect("Hash").to_string()
    }

    fn pinned(&self, cid: &str) -> bool {
        let out = Command::new("curl")
            .args(["-s", "-X", "POST"])
            .arg(format!("{}/api/v0/pin/ls?arg={cid}", self.api))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).contains(&format!("\"{cid}\""))
    }
}

impl Drop for Ipfs {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(e2e_dir().join("ipfs-down.sh"))
            .arg(&self.dir)
            .output();
    }
}

fn cli(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    cmd
}

fn ok(dir: &Path, args: &[&str]) -> Output {
    let out = cli(dir, args).output().expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running daemon; killed on drop if the test fails.
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
                eprintln!("{line}");
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        Daemon { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "no stop:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn a_pin_of_the_peers_state_is_pinned_in_the_real_ipfs_daemon() {
    let root = tempfile::tempdir().expect("temp dir");
    let ipfs = Ipfs::start(&root.path().join("ipfs"));
    let cid = ipfs.add(b"ipfscluster-server drives a real IPFS daemon\n");
    assert!(!ipfs.pinned(&cid), "added content is pinned already");

    let dir = root.path().join("peer");
    let api = ipfs.multiaddr();
    ok(&dir, &["init", "--secret", SECRET, "--ipfs-api", &api]);
    let path = dir.join("server.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    config["cluster"]["listen_multiaddress"] =
        serde_json::json!([format!("/ip4/127.0.0.1/tcp/{port}")]);
    config["ipfs_http"]["node_multiaddress"] = Value::String(ipfs.multiaddr());
    config["pin_tracker"]["reconcile_interval"] = Value::from("2s");
    config["rest_api"]["listen_address"] = Value::String("127.0.0.1:0".into());
    config["pinning_service"]["listen_address"] = Value::String("127.0.0.1:0".into());
    config["ipfs_proxy"]["listen_address"] = Value::String("127.0.0.1:0".into());
    std::fs::write(&path, serde_json::to_string_pretty(&config).expect("json")).expect("write");

    let line = format!(
        r#"{{"replication_factor_min":-1,"replication_factor_max":-1,"name":"e2e","mode":"recursive","cid":"{cid}","type":"pin","allocations":[],"max_depth":-1,"timestamp":"2024-05-06T10:12:45Z"}}"#
    );
    let file = root.path().join("pins.ndjson");
    std::fs::write(&file, line).expect("write pins");
    ok(&dir, &["state", "import", file.to_str().expect("utf-8")]);

    let daemon = Daemon::start(&dir);
    let deadline = Instant::now() + WAIT;
    while !ipfs.pinned(&cid) {
        assert!(
            Instant::now() < deadline,
            "{cid} not pinned in IPFS:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(daemon.terminate(), Some(0));
}

//! The `ipfscluster-server` binary in temp dirs: init, config errors, the
//! execution lock, version, offline state export/import/cleanup, and real
//! daemons on 127.0.0.1 (one alone, stopped by SIGTERM; three forming a
//! cluster through `cluster_peers`). IPFS is a closed port: these tests do
//! not pin, and the drivers tolerate an unreachable daemon.

mod common;

use common::free_port;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ipfscluster-server");
const SECRET: &str = "2f3a5d71c0b2e4f6a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5";
const WAIT: Duration = Duration::from_secs(60);

fn cli(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(dir)
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .env_remove("IPFS_CLUSTER_PATH");
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    cli(dir, args).output().expect("run ipfscluster-server")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn ok(dir: &Path, args: &[&str]) -> Output {
    let out = run(dir, args);
    assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
    out
}

fn refused(dir: &Path, args: &[&str], wanted: &[&str]) {
    let out = run(dir, args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    let text = stderr(&out);
    for w in wanted {
        assert!(text.contains(w), "{args:?}: {w:?} not in {text}");
    }
}

/// A plain HTTP/1.1 GET of `path` on `addr` (host:port): the raw answer.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the REST API");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

fn read_config(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("server.json")).expect("server.json");
    serde_json::from_str(&text).expect("json")
}

fn write_config(dir: &Path, config: &Value) {
    let text = serde_json::to_string_pretty(config).expect("json");
    std::fs::write(dir.join("server.json"), text).expect("write server.json");
}

/// `init` a peer in `dir` on its own ports, IPFS on a closed port.
fn init_peer(dir: &Path, peers: &[String]) -> (String, String) {
    ok(dir, &["init", "--secret", SECRET]);
    let mut config = read_config(dir);
    let port = free_port();
    let addr = format!("/ip4/127.0.0.1/tcp/{port}");
    config["cluster"]["listen_multiaddress"] = serde_json::json!([addr]);
    config["cluster"]["cluster_peers"] = serde_json::json!(peers);
    config["ipfs"]["mode"] = "external".into();
    config["ipfs_http"]["node_multiaddress"] =
        Value::String(format!("/ip4/127.0.0.1/tcp/{}", free_port()));
    config["rest_api"]["listen_address"] = Value::String(format!("127.0.0.1:{}", free_port()));
    config["pinning_service"]["listen_address"] =
        Value::String(format!("127.0.0.1:{}", free_port()));
    config["ipfs_proxy"]["listen_address"] = Value::String(format!("127.0.0.1:{}", free_port()));
    write_config(dir, &config);
    let id = config["cluster"]["id"].as_str().expect("id").to_string();
    (id, addr)
}

fn cid(n: u8) -> String {
    // CIDv0 of a sha2-256 multihash of n repeated: built through the core.
    let mut bytes = vec![0x12, 0x20];
    bytes.extend_from_slice(&[n; 32]);
    cluster_core::Cid::from_bytes(&bytes)
        .expect("cid")
        .to_string()
}

fn pin_line(n: u8) -> String {
    format!(
        r#"{{"replication_factor_min":-1,"replication_factor_max":-1,"name":"pin-{n}","mode":"recursive","shard_size":0,"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":{{"n":"{n}"}},"pin_update":null,"origins":[],"cid":"{}","type":"pin","allocations":[],"max_depth":-1,"reference":null,"timestamp":"2024-05-06T10:12:45.512Z"}}"#,
        cid(n)
    )
}

/// A running daemon whose stderr is collected.
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

    fn wait_log(&mut self, wanted: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log().contains(wanted) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "daemon exited ({status}) before logging {wanted:?}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {wanted:?} in:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit code.
    fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Let the reader thread drain the pipe.
                std::thread::sleep(Duration::from_millis(100));
                return (status.code(), self.log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("daemon did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failed test must not leave daemons behind.
        let _ = self.child.kill();
    }
}

#[test]
fn init_writes_config_and_key_refuses_a_second_init_and_force_overwrites() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("peer");
    let out = ok(&dir, &["init"]);
    assert!(
        stderr(&out).contains("configuration written"),
        "{}",
        stderr(&out)
    );
    assert!(dir.join("server.json").exists());
    assert!(dir.join("identity.key").exists());
    let first = read_config(&dir);
    let secret = first["cluster"]["secret"].as_str().expect("secret");
    assert_eq!(secret.len(), 64);
    assert!(first["cluster"]["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("12D3Koo")));

    refused(&dir, &["init"], &["already exists", "--force"]);

    ok(&dir, &["init", "--force", "--secret", SECRET]);
    let second = read_config(&dir);
    assert_eq!(second["cluster"]["secret"], SECRET);
    // The identity is kept.
    assert_eq!(second["cluster"]["id"], first["cluster"]["id"]);
}

#[test]
fn init_takes_peers_and_refuses_a_bad_secret() {
    let root = tempfile::tempdir().expect("temp dir");
    let peer = "/ip4/127.0.0.1/tcp/9196/p2p/12D3KooWGHTKzeT4KaLGLrbKKyT8zKrBPXAUBRzCAN6ZMDMo4M6M";
    ok(root.path(), &["init", "--peers", peer]);
    assert_eq!(
        read_config(root.path())["cluster"]["cluster_peers"][0],
        peer
    );
    let other = root.path().join("other");
    refused(&other, &["init", "--secret", "abc"], &["cluster.secret"]);
    assert!(!other.join("server.json").exists());
}

#[test]
fn bad_configs_are_refused_naming_the_key() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path();
    ok(dir, &["init"]);
    let good = read_config(dir);
    type Spoil = fn(&mut Value);
    let cases: [(&str, Spoil); 6] = [
        ("cluster.secrett", |c| {
            c["cluster"]["secrett"] = Value::from("x")
        }),
        ("cluster.secret", |c| {
            c["cluster"]["secret"] = Value::from("0123")
        }),
        ("cluster.listen_multiaddress[0]", |c| {
            c["cluster"]["listen_multiaddress"] = serde_json::json!(["/ip4/1.2.3.4/tcp/nope"])
        }),
        ("metrics.interval", |c| {
            c["metrics"]["interval"] = Value::from("soon")
        }),
        ("rest_api.listen_address", |c| {
            c["rest_api"]["listen_address"] = Value::from("localhost")
        }),
        ("rest_api.basic_auth_credentials", |c| {
            c["rest_api"]["basic_auth_credentials"] = serde_json::json!({"a": "1", "b": "2"})
        }),
    ];
    for (key, spoil) in cases {
        let mut config = good.clone();
        spoil(&mut config);
        write_config(dir, &config);
        refused(dir, &["daemon"], &[key]);
        refused(dir, &["state", "export"], &[key]);
    }
}

#[test]
fn version_prints_the_version() {
    let root = tempfile::tempdir().expect("temp dir");
    let out = ok(root.path(), &["version"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        env!("CARGO_PKG_VERSION")
    );
    let out = ok(root.path(), &["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn state_import_then_export_gives_back_the_same_pins_and_cleanup_needs_force() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("peer");
    init_peer(&dir, &[]);
    let lines: Vec<String> = (1..=20).map(pin_line).collect();
    let file = root.path().join("pins.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write pins");
    let path = file.to_str().expect("utf-8 path");

    ok(&dir, &["state", "import", path]);
    // A second import into a peer with state is refused.
    refused(&dir, &["state", "import", path], &["state cleanup"]);

    let out = ok(&dir, &["state", "export"]);
    let exported: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let mut expected: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    expected.sort_by_key(|v| v["cid"].as_str().map(str::to_string));
    let mut got = exported.clone();
    got.sort_by_key(|v| v["cid"].as_str().map(str::to_string));
    assert_eq!(got, expected);

    // Export to a file, import into a second fresh peer, same set.
    let copy = root.path().join("copy.ndjson");
    ok(
        &dir,
        &["state", "export", "--file", copy.to_str().expect("utf-8")],
    );
    let other = root.path().join("other");
    init_peer(&other, &[]);
    ok(&other, &["state", "import", copy.to_str().expect("utf-8")]);
    let again = ok(&other, &["state", "export"]);
    assert_eq!(again.stdout, out.stdout);

    refused(&dir, &["state", "cleanup"], &["--force"]);
    ok(&dir, &["state", "cleanup", "--force"]);
    let empty = ok(&dir, &["state", "export"]);
    assert!(empty.stdout.is_empty());
}

#[test]
fn a_bad_import_line_is_named_and_nothing_is_imported() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("peer");
    init_peer(&dir, &[]);
    let mut lines: Vec<String> = (1..=5).map(pin_line).collect();
    lines[3] = lines[3].replace(
        r#""replication_factor_max":-1"#,
        r#""replication_factor_max":0"#,
    );
    let file = root.path().join("pins.ndjson");
    std::fs::write(&file, lines.join("\n")).expect("write");
    refused(
        &dir,
        &["state", "import", file.to_str().expect("utf-8")],
        &["line 4", "nothing was imported"],
    );
    std::fs::write(&file, format!("{}\nnot json\n", pin_line(1))).expect("write");
    refused(
        &dir,
        &["state", "import", file.to_str().expect("utf-8")],
        &["line 2"],
    );
    let out = ok(&dir, &["state", "export"]);
    assert!(out.stdout.is_empty(), "something was imported");
}

#[test]
fn a_single_peer_daemon_starts_refuses_a_second_and_stops_on_sigterm() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("peer");
    let (id, addr) = init_peer(&dir, &[]);
    let mut daemon = Daemon::start(&dir);
    daemon.wait_log("IPFS Cluster is READY");
    let log = daemon.log();
    assert!(log.contains(&id), "peer id not logged:\n{log}");
    assert!(log.contains(&addr), "listen address not logged:\n{log}");
    assert!(log.contains("starting a new cluster"), "{log}");
    daemon.wait_log(&format!("cluster members (1): {id}"));
    // Its REST API answers on the configured address with this peer's id.
    let rest = read_config(&dir)["rest_api"]["listen_address"]
        .as_str()
        .expect("rest address")
        .to_string();
    let answer = http_get(&rest, "/id");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&format!("\"id\":\"{id}\"")), "{answer}");
    // And its Pinning Service API on its own.
    let pinsvc = read_config(&dir)["pinning_service"]["listen_address"]
        .as_str()
        .expect("pinning service address")
        .to_string();
    let answer = http_get(&pinsvc, "/pins");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"count":0,"results":[]}"#), "{answer}");

    // The same directory is locked: a second daemon and the state
    // commands are refused.
    refused(&dir, &["daemon"], &["execution lock", "cluster.lock"]);
    refused(&dir, &["state", "export"], &["execution lock"]);

    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("stopped cleanly"), "{log}");

    // Restarted, it resumes its cluster.
    let mut again = Daemon::start(&dir);
    again.wait_log("restarting as a member of cluster");
    again.wait_log("IPFS Cluster is READY");
    let (code, log) = again.terminate();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn a_member_whose_data_is_gone_is_refused_with_how_to_rejoin() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("peer");
    init_peer(&dir, &[]);
    let file = root.path().join("pins.ndjson");
    std::fs::write(&file, pin_line(1)).expect("write");
    ok(&dir, &["state", "import", file.to_str().expect("utf-8")]);
    std::fs::remove_dir_all(dir.join("data")).expect("wipe data");
    refused(&dir, &["daemon"], &["holds no state", "join again"]);
}

#[test]
fn three_daemons_form_a_cluster_through_cluster_peers() {
    let root = tempfile::tempdir().expect("temp dir");
    let dirs: Vec<PathBuf> = (0..3)
        .map(|n| root.path().join(format!("peer-{n}")))
        .collect();
    let (first_id, first_addr) = init_peer(&dirs[0], &[]);
    let contact = format!("{first_addr}/p2p/{first_id}");
    let mut ids = vec![first_id];
    for dir in &dirs[1..] {
        ids.push(init_peer(dir, std::slice::from_ref(&contact)).0);
    }
    // The first peer starts from an imported state; the others receive it.
    let file = root.path().join("pins.ndjson");
    let lines: Vec<String> = (1..=10).map(pin_line).collect();
    std::fs::write(&file, lines.join("\n")).expect("write pins");
    ok(
        &dirs[0],
        &["state", "import", file.to_str().expect("utf-8")],
    );
    let mut first = Daemon::start(&dirs[0]);
    first.wait_log("IPFS Cluster is READY");
    let mut daemons = vec![first];
    for dir in &dirs[1..] {
        daemons.push(Daemon::start(dir));
    }
    let mut sorted = ids.clone();
    sorted.sort();
    let members = format!("cluster members (3): {}", sorted.join(", "));
    for d in &mut daemons {
        d.wait_log(&members);
    }
    assert!(daemons[1].log().contains("joined cluster"));
    // Followers first, the first peer last (it likely leads).
    let mut daemons = daemons.into_iter().rev();
    for d in daemons.by_ref() {
        let (code, log) = d.terminate();
        assert_eq!(code, Some(0), "{log}");
    }
    // Every peer's stopped state holds the same pins.
    let exports: Vec<Vec<u8>> = dirs
        .iter()
        .map(|dir| ok(dir, &["state", "export"]).stdout)
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&exports[0]).lines().count(),
        10,
        "{}",
        String::from_utf8_lossy(&exports[0])
    );
    assert!(exports.iter().all(|e| *e == exports[0]));
}

/// Peers listing each other in `cluster_peers` and started at the same
/// time form one cluster by themselves (the lowest peer id starts it).
/// Failed before: each waited for a cluster to join until its membership
/// timeout, then exited.
#[test]
fn three_daemons_listing_each_other_and_started_together_form_one_cluster() {
    let root = tempfile::tempdir().expect("temp dir");
    let dirs: Vec<PathBuf> = (0..3)
        .map(|n| root.path().join(format!("peer-{n}")))
        .collect();
    let peers: Vec<(String, String)> = dirs.iter().map(|dir| init_peer(dir, &[])).collect();
    let everyone: Vec<String> = peers
        .iter()
        .map(|(id, addr)| format!("{addr}/p2p/{id}"))
        .collect();
    for dir in &dirs {
        let mut config = read_config(dir);
        config["cluster"]["cluster_peers"] = serde_json::json!(everyone);
        // Short enough that the old behaviour fails within the test.
        config["consensus"]["raft"]["membership_timeout"] = Value::String("30s".to_string());
        write_config(dir, &config);
    }
    let mut daemons: Vec<Daemon> = dirs.iter().map(|dir| Daemon::start(dir)).collect();
    let mut sorted: Vec<String> = peers.iter().map(|(id, _)| id.clone()).collect();
    sorted.sort();
    let members = format!("cluster members (3): {}", sorted.join(", "));
    for d in &mut daemons {
        d.wait_log(&members);
    }
    let starters: Vec<usize> = (0..3)
        .filter(|&n| daemons[n].log().contains("starting a new cluster"))
        .collect();
    let lowest = peers
        .iter()
        .position(|(id, _)| *id == sorted[0])
        .expect("lowest id");
    assert_eq!(starters, vec![lowest], "exactly the lowest peer starts it");
    for d in daemons {
        let (code, log) = d.terminate();
        assert_eq!(code, Some(0), "{log}");
    }
}

#[test]
fn pins_imported_into_a_stopped_peer_survive_a_daemon_run() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("peer");
    init_peer(&dir, &[]);
    let file = root.path().join("pins.ndjson");
    let lines: Vec<String> = (1..=5).map(pin_line).collect();
    std::fs::write(&file, lines.join("\n")).expect("write pins");
    ok(&dir, &["state", "import", file.to_str().expect("utf-8")]);
    let before = ok(&dir, &["state", "export"]).stdout;
    let mut daemon = Daemon::start(&dir);
    daemon.wait_log("restarting as a member of cluster");
    daemon.wait_log("IPFS Cluster is READY");
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "{log}");
    let after = ok(&dir, &["state", "export"]).stdout;
    assert_eq!(String::from_utf8_lossy(&after).lines().count(), 5);
    assert_eq!(after, before);
}

#[test]
fn the_config_directory_comes_from_the_environment_then_home() {
    let root = tempfile::tempdir().expect("temp dir");
    let by_env = root.path().join("by-env");
    let out = Command::new(BIN)
        .arg("init")
        .env("IPFS_CLUSTER_PATH", &by_env)
        .env("HOME", root.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(by_env.join("server.json").exists());

    let out = Command::new(BIN)
        .arg("init")
        .env_remove("IPFS_CLUSTER_PATH")
        .env("HOME", root.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(root.path().join(".ipfs-cluster/server.json").exists());
    assert!(root.path().join(".ipfs-cluster/identity.key").exists());
}

#[test]
fn a_daemon_with_stats_enabled_serves_prometheus_metrics_on_their_address() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("peer");
    init_peer(&dir, &[]);
    let mut config = read_config(&dir);
    // Written by init, off as upstream.
    assert_eq!(config["observations"]["enable_stats"], false);
    let metrics = format!("127.0.0.1:{}", free_port());
    config["observations"] = serde_json::json!({
        "enable_stats": true,
        "metrics_listen_address": format!("/ip4/127.0.0.1/tcp/{}", &metrics[10..]),
    });
    write_config(&dir, &config);
    let mut daemon = Daemon::start(&dir);
    daemon.wait_log("IPFS Cluster is READY");
    let rest = config["rest_api"]["listen_address"]
        .as_str()
        .expect("rest address")
        .to_string();
    assert!(http_get(&rest, "/id").starts_with("HTTP/1.1 200"));
    let answer = http_get(&metrics, "/metrics");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for family in [
        "ipfscluster_pins",
        "ipfscluster_raft_term",
        "ipfscluster_raft_is_leader 1",
        "ipfscluster_peers 1",
        "ipfscluster_api_requests_total{method=\"GET\",route=\"/id\",code=\"200\"} 1",
    ] {
        assert!(answer.contains(family), "{family} missing:\n{answer}");
    }
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "{log}");
}

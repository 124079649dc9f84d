//! The `ipfscluster` binary end to end: the REAL binary
//! (`CARGO_BIN_EXE_ipfscluster`) against an in-process one-peer (and a
//! three-peer) cluster whose REST API listens on 127.0.0.1:0, with the
//! node's drivers over an in-memory IPFS (the harness of `rest_api.rs`).
//! Checks the text layouts, that `--enc json` prints the API's own JSON,
//! `--wait`, and the exit codes of every kind of failure.

use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use cluster_net::inproc::InProcRouter;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

mod inproc;
use inproc::*;

/// `ipfscluster` pointed at one peer of the harness.
trait RunCli {
    /// Runs `ipfscluster --host <this peer> args…`.
    async fn cli(&self, args: &[&str]) -> Out;
}

impl RunCli for Peer {
    async fn cli(&self, args: &[&str]) -> Out {
        let mut all = vec!["--host".to_string(), self.host()];
        all.extend(args.iter().map(ToString::to_string));
        run(all).await
    }
}

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "{self:#?}");
        &self.stdout
    }

    /// Every JSON object printed on stdout (one after another, as upstream).
    #[track_caller]
    fn json(&self) -> Vec<Value> {
        serde_json::Deserializer::from_str(self.ok())
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

/// Runs the real binary off the async threads (the cluster keeps running).
async fn run(args: Vec<String>) -> Out {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_ipfscluster"))
            .args(&args)
            .env_remove("CLUSTER_CREDENTIALS")
            .output()
            .expect("run ipfscluster");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("join")
}

/// The API's own answer to `GET path`, as JSON values (one per line for
/// streams).
async fn api_json(peer: &Peer, path: &str) -> Vec<Value> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = Request::get(peer.url(path))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = client.request(request).await.expect("answer");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::Deserializer::from_slice(&body)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .expect("API JSON")
}

/// `value` without the fields named `key` anywhere (times computed per request).
fn without(mut value: Value, key: &str) -> Value {
    fn strip(v: &mut Value, key: &str) {
        match v {
            Value::Object(map) => {
                map.remove(key);
                map.values_mut().for_each(|v| strip(v, key));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| strip(v, key)),
            _ => {}
        }
    }
    strip(&mut value, key);
    value
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_pin_lifecycle_in_text_and_json() {
    let peer = lone_peer(|_| {}).await;
    let me = peer.ctx.id.to_string();
    let c = cid(1).to_string();

    // Versions: the client's own, and the API's.
    let out = run(vec!["--version".into()]).await;
    assert!(out.ok().starts_with("ipfscluster version "), "{out:?}");
    let api_version = api_json(&peer, "/version").await;
    let version = peer.cli(&["version"]).await;
    assert_eq!(
        version.ok().trim(),
        api_version[0]["version"].as_str().expect("version")
    );
    assert_eq!(
        peer.cli(&["--enc", "json", "version"]).await.json(),
        api_version
    );

    // id / peers ls / member ls.
    let id = peer.cli(&["id"]).await;
    assert!(id.ok().starts_with(&format!("{me} | node-")), "{id:?}");
    assert!(
        id.ok().contains("| Sees 0 other peers\n  > Addresses:\n"),
        "{id:?}"
    );
    assert!(id.ok().contains("  > IPFS: 12D3KooWKuJ8"), "{id:?}");
    assert_eq!(
        peer.cli(&["--enc", "json", "id"]).await.json(),
        api_json(&peer, "/id").await
    );
    for args in [&["peers", "ls"][..], &["member", "ls"][..]] {
        let out = peer.cli(args).await;
        assert_eq!(out.ok(), id.ok(), "{args:?}");
    }

    // pin add --wait: the status once pinned, a progress line meanwhile.
    let added = peer
        .cli(&[
            "pin",
            "add",
            &c,
            "--name",
            "backup",
            "--metadata",
            "owner=alice",
            "--rmin",
            "1",
            "--rmax",
            "1",
            "--wait",
            "--wait-timeout",
            "20s",
        ])
        .await;
    let text = added.ok();
    assert!(
        text.starts_with(&format!("{c} | backup:\n    > node-")),
        "{added:?}"
    );
    assert!(text.contains(" : PINNED | "), "{added:?}");
    assert!(
        text.contains("| Attempts: 0 | Priority: false"),
        "{added:?}"
    );

    // status: text, and the API's JSON.
    let status = peer.cli(&["status", &c]).await;
    assert!(status.ok().contains(" : PINNED | "), "{status:?}");
    let cli_json = peer.cli(&["--enc", "json", "status", &c]).await.json();
    let api = api_json(&peer, &format!("/pins/{c}")).await;
    assert_eq!(
        without(cli_json[0].clone(), "timestamp"),
        without(api[0].clone(), "timestamp")
    );
    let all = peer.cli(&["status"]).await;
    assert!(all.ok().starts_with(&format!("{c} | backup:\n")), "{all:?}");
    assert!(all.ok().contains(" : PINNED | "), "{all:?}");
    let pinned = peer.cli(&["status", "--filter", "pinned"]).await;
    assert!(pinned.ok().contains(&c), "{pinned:?}");
    let none = peer.cli(&["status", "--filter", "pin_error"]).await;
    assert_eq!(none.ok(), "");

    // pin ls / allocations: the line layout, and the API's JSON.
    let ls = peer.cli(&["pin", "ls"]).await;
    assert!(
        ls.ok().starts_with(&format!(
            "{c} | backup | PIN | Repl. Factor: 1--1 | Allocations: [{me}] | Recursive | \
             Metadata: yes | Exp: ∞ | Added: "
        )),
        "{ls:?}"
    );
    assert_eq!(peer.cli(&["allocations", &c]).await.ok(), ls.ok());
    assert_eq!(
        peer.cli(&["--enc", "json", "pin", "ls"]).await.json(),
        api_json(&peer, "/allocations").await
    );
    assert_eq!(
        peer.cli(&["--enc", "json", "pin", "ls", &c]).await.json(),
        api_json(&peer, &format!("/allocations/{c}")).await
    );

    // recover (alias sync): one CID answers its status; all answers nothing here.
    let recovered = peer.cli(&["recover", &c]).await;
    assert!(
        recovered.ok().starts_with(&format!("{c} | backup:")),
        "{recovered:?}"
    );
    assert_eq!(peer.cli(&["sync"]).await.ok(), "");

    // pin update: the new CID takes the old one's options.
    let next = cid(2).to_string();
    let updated = peer
        .cli(&[
            "pin",
            "update",
            &c,
            &next,
            "--wait",
            "--wait-timeout",
            "20s",
        ])
        .await;
    assert!(
        updated.ok().starts_with(&format!("{next} | backup:")),
        "{updated:?}"
    );

    // pin rm --wait: unpinned everywhere.
    for x in [&c, &next] {
        let removed = peer.cli(&["pin", "rm", x, "--wait", "--wt", "20s"]).await;
        assert!(removed.ok().contains(" : UNPINNED | "), "{removed:?}");
    }
    assert_eq!(peer.cli(&["pin", "ls"]).await.ok(), "");
    let gone = peer.cli(&["pin", "rm", &c]).await;
    assert_eq!(gone.code, 2, "{gone:?}");
    assert!(gone.stderr.contains("404"), "{gone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_alerts_graph_and_gc() {
    let peer = lone_peer(|_| {}).await;
    let me = peer.ctx.id.to_string();
    let names = peer.cli(&["health", "metrics"]).await;
    assert!(names.ok().lines().any(|l| l == "ping"), "{names:?}");
    let mut sorted: Vec<&str> = names.ok().lines().collect();
    sorted.sort();
    assert_eq!(sorted, names.ok().lines().collect::<Vec<_>>());
    let ping = peer.cli(&["health", "metrics", "ping"]).await;
    assert!(ping.ok().starts_with(&format!("{me} | ping: ")), "{ping:?}");
    assert!(ping.ok().contains(" | Expires in: "), "{ping:?}");
    let json = peer
        .cli(&["--enc", "json", "health", "metrics", "ping"])
        .await
        .json();
    assert_eq!(json[0][0]["peer"], me.as_str());
    assert!(peer.cli(&["health", "alerts"]).await.code == 0);
    let graph = peer.cli(&["health", "graph"]).await;
    assert!(graph.ok().starts_with("digraph cluster {"), "{graph:?}");
    assert!(graph.ok().contains("C0 -> I0"), "{graph:?}");
    // An in-process transport measures no traffic: no lines, `{}`, as the
    // API answers (the libp2p numbers are in the end-to-end tests).
    let bandwidth = peer.cli(&["health", "bandwidth"]).await;
    assert_eq!(bandwidth.ok(), "", "{bandwidth:?}");
    let bandwidth = peer.cli(&["--enc", "json", "health", "bandwidth"]).await;
    assert_eq!(bandwidth.json(), api_json(&peer, "/health/bandwidth").await);
    // There is no `peers add` (upstream's ctl has none; sharness checks).
    let add = peer.cli(&["peers", "add", &me]).await;
    assert_ne!(add.code, 0, "{add:?}");

    // `ipfs gc` runs repo/gc on every peer's daemon; this in-memory daemon
    // cannot collect, which shows as its peer's error, not a failed command.
    let gc = peer.cli(&["ipfs", "gc"]).await;
    assert_eq!(gc.code, 0, "{gc:?}");
    assert!(
        gc.stdout.contains("ERROR: ") && gc.stdout.contains("repo/gc"),
        "{gc:?}"
    );
    let gc_json = peer.cli(&["--enc", "json", "ipfs", "gc"]).await.json();
    let entry = &gc_json[0]["peer_map"][me.as_str()];
    assert_eq!(entry["peer"], me.as_str(), "{gc_json:?}");
    assert!(
        entry["error"]
            .as_str()
            .is_some_and(|e| e.contains("repo/gc")),
        "{gc_json:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_exit_non_zero_with_one_error_line() {
    let peer = lone_peer(|c| c.basic_auth = Some(("alice".into(), "s3cret".into()))).await;

    // A bad CID is refused before any request.
    let bad = run(vec![
        "--host".into(),
        "/ip4/127.0.0.1/tcp/1".into(),
        "pin".into(),
        "add".into(),
        "notacid".into(),
    ])
    .await;
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr.starts_with("error: error parsing cid: "),
        "{bad:?}"
    );
    assert_eq!(bad.stdout, "");
    let bad_meta = peer
        .cli(&["pin", "add", &cid(3).to_string(), "--metadata", "x"])
        .await;
    assert_eq!(bad_meta.code, 1, "{bad_meta:?}");
    assert!(bad_meta.stderr.contains("key=value"), "{bad_meta:?}");
    let bad_enc = peer.cli(&["--enc", "yaml", "id"]).await;
    assert_eq!(bad_enc.code, 1, "{bad_enc:?}");
    let bad_filter = peer.cli(&["status", "--filter", "pinnned"]).await;
    assert_eq!(bad_filter.code, 1, "{bad_filter:?}");

    // Nothing listening: says which peer is not reachable.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("addr").port();
    drop(free);
    let host = format!("/ip4/127.0.0.1/tcp/{port}");
    let down = run(vec!["--host".into(), host.clone(), "id".into()]).await;
    assert_eq!(down.code, 1, "{down:?}");
    assert!(
        down.stderr
            .starts_with(&format!("error: the peer at {host} is not reachable")),
        "{down:?}"
    );
    assert_eq!(down.stderr.lines().count(), 1);

    // Wrong or missing credentials: 401, unauthorized, exit 2.
    for auth in [&["--basic-auth", "alice:wrong"][..], &[][..]] {
        let mut args = auth.to_vec();
        args.push("id");
        let denied = peer.cli(&args).await;
        assert_eq!(denied.code, 2, "{denied:?}");
        assert!(denied.stderr.contains("401"), "{denied:?}");
        assert!(denied.stderr.contains("unauthorized"), "{denied:?}");
    }
    let denied = peer
        .cli(&["--enc", "json", "--basic-auth", "alice:wrong", "id"])
        .await;
    assert_eq!(denied.code, 2);
    let body: Value = serde_json::from_str(&denied.stdout).expect("error object");
    assert_eq!(body["code"], 401);
    let id = peer.cli(&["--basic-auth", "alice:s3cret", "id"]).await;
    assert!(id.ok().starts_with(&peer.ctx.id.to_string()), "{id:?}");

    // A pin IPFS refuses: --wait stops at pin_error (exit 1).
    let failing = cid(4);
    peer.ipfs
        .failing
        .lock()
        .expect("lock")
        .insert(failing.clone());
    let failed = peer
        .cli(&[
            "--basic-auth",
            "alice:s3cret",
            "pin",
            "add",
            &failing.to_string(),
            "--wait",
            "--wt",
            "20s",
        ])
        .await;
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains("pin_error"), "{failed:?}");

    // Waiting for more peers than there are: --wait-timeout ends it (62).
    let short = peer
        .cli(&[
            "--basic-auth",
            "alice:s3cret",
            "pin",
            "add",
            &cid(5).to_string(),
            "--wait",
            "--wait-limit",
            "3",
            "--wait-timeout",
            "2s",
        ])
        .await;
    assert_eq!(short.code, 62, "{short:?}");
    assert!(
        short.stderr.contains("waiting for"),
        "progress line: {short:?}"
    );
    assert!(
        short
            .stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("error: ")),
        "{short:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_list_and_replicate() {
    let router = InProcRouter::new();
    let net = Arc::new(NodeNet::default());
    let peers = start_cluster(3, &router, &net).await;
    eventually("every peer's metrics on the first board", || {
        peers[0]
            .drivers
            .board
            .current(peers[0].ctx.clock.now())
            .len()
            == 3
    })
    .await;
    let ls = peers[0].cli(&["peers", "ls"]).await;
    assert_eq!(ls.ok().matches("| Sees 2 other peers").count(), 3, "{ls:?}");
    assert_eq!(
        peers[0]
            .cli(&["--enc", "json", "peers", "ls"])
            .await
            .json()
            .len(),
        3
    );

    // Two replicas: two peers pinned, the third remote; --wait ignores it.
    let c = cid(9).to_string();
    let added = peers[0]
        .cli(&[
            "pin",
            "add",
            &c,
            "--replication",
            "2",
            "--wait",
            "--wt",
            "20s",
        ])
        .await;
    assert_eq!(added.ok().matches(" : PINNED | ").count(), 2, "{added:?}");
    assert_eq!(added.ok().matches(" : REMOTE | ").count(), 1, "{added:?}");
    let local = peers[0].cli(&["status", "--local", &c]).await;
    assert_eq!(local.ok().lines().count(), 2, "{local:?}");

    // Removing the third peer.
    let third = peers[2].ctx.id.to_string();
    peers[0].cli(&["peers", "rm", &third]).await.ok();
    eventually("two members", || peers[0].raft.members().len() == 2).await;
    let bad = peers[0].cli(&["peers", "rm", "nope"]).await;
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr.starts_with("error: error parsing peer ID"),
        "{bad:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_uploads_files_and_directories_and_pins_the_root() {
    let peer = lone_peer(|_| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("css")).expect("mkdir");
    std::fs::write(site.join("index.html"), "<p>hi</p>").expect("write");
    std::fs::write(site.join("css/a.css"), "p{}").expect("write");
    let one = dir.path().join("one.txt");
    std::fs::write(&one, "just one").expect("write");
    let site_s = site.to_string_lossy().into_owned();
    let one_s = one.to_string_lossy().into_owned();

    // A directory without -r is refused before any request.
    let out = peer.cli(&["add", &site_s]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("use -r"), "{out:#?}");

    // Text: `added <cid> <path>` per file, the root last.
    let text = peer.cli(&["add", "-r", "--name", "web", &site_s]).await;
    let lines: Vec<&str> = text.ok().lines().collect();
    assert_eq!(lines.len(), 4, "{text:#?}");
    assert!(lines.iter().all(|l| l.starts_with("added ")));
    assert!(lines[3].ends_with(" site"), "{lines:?}");
    let root = lines[3].split(' ').nth(1).expect("cid").to_string();
    let pins = api_json(&peer, "/allocations").await;
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0]["cid"], root.as_str());
    assert_eq!(pins[0]["name"], "web");

    // -Q: only the root's CID; the same bytes, the same CID.
    let quieter = peer.cli(&["add", "-Q", "-r", &site_s]).await;
    assert_eq!(quieter.ok().trim(), root);
    // -q: CIDs only; --no-pin leaves the pinset alone.
    let quiet = peer.cli(&["add", "-q", "--no-pin", &one_s]).await;
    assert_eq!(quiet.ok().lines().count(), 1);
    assert!(!quiet.ok().contains("added"));
    assert_eq!(api_json(&peer, "/allocations").await.len(), 1);

    // JSON with --no-stream: one array; several paths are wrapped.
    let json = peer
        .cli(&[
            "--enc",
            "json",
            "add",
            "--no-stream",
            "--rmin",
            "1",
            "--rmax",
            "1",
            &one_s,
            &one_s,
        ])
        .await;
    let printed = json.json();
    let items = printed[0].as_array().expect("array");
    assert_eq!(items.len(), 3, "{printed:?}");
    assert_eq!(items[2]["name"], "");
    let wrapped = items[2]["cid"].as_str().expect("cid").to_string();

    // --wait: waits for the root to be pinned, then prints its status.
    let waited = peer.cli(&["add", "--wait", "-w", &one_s]).await;
    assert!(waited.ok().contains("PINNED"), "{waited:#?}");
    let pins = api_json(&peer, "/allocations").await;
    assert!(pins.iter().any(|p| p["cid"] == wrapped.as_str()));
}

//! The `ipfscluster` binary end to end: the REAL binary
//! (`CARGO_BIN_EXE_ipfscluster`) against an in-process one-peer (and a
//! three-peer) cluster whose REST API listens on 127.0.0.1:0, with the
//! node's drivers over an in-memory IPFS (the harness of `rest_api.rs`).
//! Checks the text layouts, that `--enc json` prints the API's own JSON,
//! `--wait`, and the exit codes of every kind of failure.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cluster_core::tracker::{IpfsPinType, ListedPin, TrackerConfig};
use cluster_core::{Cid, PeerId};
use cluster_net::inproc::InProcRouter;
use cluster_net::store::MemStore;
use cluster_net::transport::BoxFuture;
use cluster_net::{
    Boot, ClusterRaft, NodeInfo, NodeRpc, NodeRpcError, NodeRpcHandler, RaftConfig, TransportError,
};
use cluster_node::api::rest::{RestApi, RestConfig};
use cluster_node::drivers::expiry::ExpiryConfig;
use cluster_node::drivers::metrics::MetricsConfig;
use cluster_node::drivers::repair::RepairConfig;
use cluster_node::drivers::tracker::TrackerDriverConfig;
use cluster_node::ipfs::{IpfsConnector, IpfsError, IpfsId, RepoStat};
use cluster_node::rpc::NodeRouter;
use cluster_node::{start_drivers, DriverSettings, Drivers, PeerContext, SystemClock};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(15);
const CLUSTER_ID: u128 = 42;
// ---------------------------------------------------------------- fakes

/// IPFS in memory; pins of CIDs in `failing` fail.
#[derive(Default)]
struct MemIpfs {
    pins: Mutex<BTreeMap<Cid, ListedPin>>,
    failing: Mutex<BTreeSet<Cid>>,
}

struct Conn(Arc<MemIpfs>);

impl IpfsConnector for Conn {
    fn pin(&self, cid: &Cid, max_depth: i32) -> BoxFuture<Result<(), IpfsError>> {
        let (ipfs, cid) = (Arc::clone(&self.0), cid.clone());
        Box::pin(async move {
            if ipfs.failing.lock().expect("lock").contains(&cid) {
                return Err(IpfsError::Daemon {
                    path: "pin/add".into(),
                    message: "block not found (test)".into(),
                });
            }
            let pin_type = if max_depth == 0 {
                IpfsPinType::Direct
            } else {
                IpfsPinType::Recursive { max_depth: None }
            };
            ipfs.pins.lock().expect("lock").insert(
                cid.clone(),
                ListedPin {
                    cid,
                    pin_type,
                    by_cluster: true,
                },
            );
            Ok(())
        })
    }

    fn unpin(&self, cid: &Cid) -> BoxFuture<Result<(), IpfsError>> {
        let (ipfs, cid) = (Arc::clone(&self.0), cid.clone());
        Box::pin(async move {
            ipfs.pins.lock().expect("lock").remove(&cid);
            Ok(())
        })
    }

    fn list_pins(&self) -> BoxFuture<Result<Vec<ListedPin>, IpfsError>> {
        let pins = self
            .0
            .pins
            .lock()
            .expect("lock")
            .values()
            .cloned()
            .collect();
        Box::pin(async move { Ok(pins) })
    }

    fn repo_stat(&self) -> BoxFuture<Result<RepoStat, IpfsError>> {
        Box::pin(async move {
            Ok(RepoStat {
                repo_size: 100,
                storage_max: 1_000,
            })
        })
    }

    fn id(&self) -> BoxFuture<Result<IpfsId, IpfsError>> {
        Box::pin(async move {
            Ok(IpfsId {
                peer_id: "12D3KooWKuJ8LPTyHbyX4nt4C7uWmUobzFsiceTVoFw7HpmoNakM".into(),
                addresses: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            })
        })
    }

    fn swarm_connect(&self, _multiaddr: &str) -> BoxFuture<Result<(), IpfsError>> {
        Box::pin(async move { Ok(()) })
    }
}

/// The node RPCs between in-process peers; a peer marked down is unreachable.
#[derive(Default)]
struct NodeNet {
    routers: Mutex<BTreeMap<String, Arc<NodeRouter>>>,
    down: Mutex<BTreeSet<String>>,
}

struct PeerRpc {
    me: String,
    net: Arc<NodeNet>,
}

impl NodeRpc for PeerRpc {
    fn node_call(
        &self,
        target: &NodeInfo,
        method: &str,
        body: Vec<u8>,
    ) -> BoxFuture<Result<Vec<u8>, NodeRpcError>> {
        let peer = target.peer_id.clone();
        let down = self.net.down.lock().expect("lock").contains(&peer);
        let router = self.net.routers.lock().expect("lock").get(&peer).cloned();
        let (me, method) = (self.me.clone(), method.to_string());
        Box::pin(async move {
            let router = match router {
                Some(r) if !down => r,
                _ => {
                    return Err(NodeRpcError::Transport(TransportError::Unreachable {
                        peer,
                    }))
                }
            };
            router
                .handle(&me, &method, body)
                .await
                .map_err(|reason| NodeRpcError::Remote { peer, reason })
        })
    }
}

// -------------------------------------------------------------- harness

fn cid(n: u8) -> Cid {
    let mut bytes = vec![0x12, 0x20];
    bytes.extend_from_slice(&[n; 32]);
    Cid::from_bytes(&bytes).expect("valid cid")
}
fn settings() -> DriverSettings {
    let tracker = TrackerConfig {
        reconcile_interval_ms: 200,
        backoff_base_ms: 10,
        backoff_max_ms: 100,
        ..TrackerConfig::default()
    };
    DriverSettings {
        tracker: TrackerDriverConfig {
            idle_wake_ms: 50,
            ..TrackerDriverConfig::new(tracker, 1)
        },
        metrics: MetricsConfig {
            interval_ms: 50,
            tags: [("group".to_string(), "a".to_string())].into(),
            ..MetricsConfig::default()
        },
        repair: Some(RepairConfig {
            interval_ms: 100,
            ..RepairConfig::default()
        }),
        expiry: ExpiryConfig {
            interval_ms: 50,
            ..ExpiryConfig::default()
        },
    }
}

/// One running peer with its API.
struct Peer {
    raft: ClusterRaft,
    ctx: PeerContext,
    drivers: Drivers,
    ipfs: Arc<MemIpfs>,
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Peer {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The API as a multiaddress, the form `--host` takes by default.
    fn host(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.addr.port())
    }

    /// Runs `ipfscluster --host <this peer> args…`.
    async fn cli(&self, args: &[&str]) -> Out {
        let mut all = vec!["--host".to_string(), self.host()];
        all.extend(args.iter().map(ToString::to_string));
        run(all).await
    }
}

async fn start_raft(n: u64, router: &InProcRouter) -> ClusterRaft {
    let id = PeerId::synthetic(n);
    let raft = ClusterRaft::start(
        &id,
        format!("inproc/{n}"),
        RaftConfig::fast_for_tests(),
        Boot::CreateIfEmpty { incarnation: 7 },
        MemStore::new(),
        router.transport(id.as_str()),
    )
    .await
    .expect("start");
    router.register(id.as_str(), raft.rpc_handler());
    raft
}

async fn serve_api(api: RestApi) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(api.serve(listener, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn start_peer(
    raft: ClusterRaft,
    net: &Arc<NodeNet>,
    config: impl FnOnce(&mut RestConfig),
) -> Peer {
    let id = PeerId::parse(&raft.node_info().peer_id).expect("id");
    let ipfs = Arc::new(MemIpfs::default());
    let ctx = PeerContext {
        id: id.clone(),
        raft: raft.clone(),
        ipfs: Arc::new(Conn(Arc::clone(&ipfs))),
        clock: Arc::new(SystemClock::new()),
        rpc: Arc::new(PeerRpc {
            me: id.to_string(),
            net: Arc::clone(net),
        }),
    };
    let drivers = start_drivers(&ctx, settings(), Arc::new(|v| panic!("{v}"))).expect("drivers");
    net.routers
        .lock()
        .expect("lock")
        .insert(id.to_string(), Arc::clone(&drivers.router));
    let mut rest = RestConfig {
        peer_call_timeout: Duration::from_secs(2),
        peername: Some(format!("node-{}", &id.as_str()[id.as_str().len() - 4..])),
        ..RestConfig::default()
    };
    config(&mut rest);
    let api = RestApi::new(ctx.clone(), drivers.clone(), rest).expect("api");
    let (addr, stop) = serve_api(api).await;
    Peer {
        raft,
        ctx,
        drivers,
        ipfs,
        addr,
        _stop: stop,
    }
}

async fn lone_peer(config: impl FnOnce(&mut RestConfig)) -> Peer {
    let router = InProcRouter::new();
    let raft = start_raft(1, &router).await;
    raft.initialize(CLUSTER_ID).await.expect("initialize");
    raft.wait_for_leader(WAIT).await.expect("leader");
    let peer = start_peer(raft, &Arc::new(NodeNet::default()), config).await;
    // Own metrics on the board: allocation by tag needs them.
    eventually("own metrics", || {
        !peer.drivers.board.current(peer.ctx.clock.now()).is_empty()
    })
    .await;
    peer
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one run of the binary printed, and how it exited.
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

    // The server cannot collect garbage yet (501): its message, exit 2.
    let gc = peer.cli(&["ipfs", "gc"]).await;
    assert_eq!(gc.code, 2, "{gc:?}");
    assert!(
        gc.stderr.starts_with("error: the API answered 501: "),
        "{gc:?}"
    );
    assert_eq!(gc.stderr.lines().count(), 1, "{gc:?}");
    let gc_json = peer.cli(&["--enc", "json", "ipfs", "gc"]).await;
    assert_eq!(gc_json.code, 2);
    let body: Value = serde_json::from_str(&gc_json.stdout).expect("error object");
    assert_eq!(body["code"], 501);
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
    let first = start_raft(1, &router).await;
    first.initialize(CLUSTER_ID).await.expect("initialize");
    first.wait_for_leader(WAIT).await.expect("leader");
    let mut rafts = vec![first.clone()];
    for n in 2..=3 {
        let raft = start_raft(n, &router).await;
        raft.join(first.node_info()).await.expect("join");
        rafts.push(raft);
    }
    let mut peers = Vec::new();
    for raft in rafts {
        peers.push(start_peer(raft, &net, |_| {}).await);
    }
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

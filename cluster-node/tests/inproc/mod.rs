//! The in-process cluster the REST API and CLI tests run against: peers on
//! an in-process Raft router with in-memory stores, the node's real drivers
//! over an in-memory IPFS, node RPCs between them (a peer can be marked
//! unreachable), and each peer's REST API on 127.0.0.1:0.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::tracker::{IpfsPinType, ListedPin, TrackerConfig};
use cluster_core::{Cid, PeerId};
use cluster_net::inproc::InProcRouter;
use cluster_net::store::MemStore;
use cluster_net::transport::BoxFuture;
use cluster_net::{
    Boot, ClusterRaft, NodeInfo, NodeRpc, NodeRpcError, NodeRpcHandler, RaftConfig, TransportError,
};
use cluster_node::api::client::{Client, ClientConfig};
use cluster_node::api::rest::{RestApi, RestConfig};
use cluster_node::drivers::expiry::ExpiryConfig;
use cluster_node::drivers::metrics::MetricsConfig;
use cluster_node::drivers::repair::RepairConfig;
use cluster_node::drivers::tracker::TrackerDriverConfig;
use cluster_node::ipfs::{IpfsConnector, IpfsError, IpfsId, RepoStat};
use cluster_node::rpc::NodeRouter;
use cluster_node::{start_drivers, DriverSettings, Drivers, PeerContext, SystemClock};
use tokio::sync::oneshot;

pub const WAIT: Duration = Duration::from_secs(15);
pub const CLUSTER_ID: u128 = 42;

// ---------------------------------------------------------------- fakes

/// IPFS in memory; pins of CIDs in `failing` fail; each pin takes
/// `pin_delay` (none by default).
#[derive(Default)]
pub struct MemIpfs {
    pub pins: Mutex<BTreeMap<Cid, ListedPin>>,
    pub failing: Mutex<BTreeSet<Cid>>,
    pub pin_delay: Mutex<Option<Duration>>,
    /// What `resolve` answers, by path text; other paths fail as a daemon
    /// that finds no link would.
    pub resolved: Mutex<BTreeMap<String, Cid>>,
}

pub struct Conn(pub Arc<MemIpfs>);

impl IpfsConnector for Conn {
    fn pin(&self, cid: &Cid, max_depth: i32) -> BoxFuture<Result<(), IpfsError>> {
        let (ipfs, cid) = (Arc::clone(&self.0), cid.clone());
        let delay = *self.0.pin_delay.lock().expect("lock");
        Box::pin(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
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

    fn resolve(&self, path: &cluster_node::ipfs::IpfsPath) -> BoxFuture<Result<Cid, IpfsError>> {
        let text = path.to_string();
        let found = self.0.resolved.lock().expect("lock").get(&text).cloned();
        let answer = match (path.bare_cid(), found) {
            (Some(cid), _) | (None, Some(cid)) => Ok(cid),
            (None, None) => Err(IpfsError::Daemon {
                path: "resolve".into(),
                message: format!("no link named in {text} (test)"),
            }),
        };
        Box::pin(async move { answer })
    }

    fn add(
        &self,
        request: cluster_node::ipfs::AddRequest,
    ) -> BoxFuture<Result<(), cluster_node::ipfs::IpfsError>> {
        Box::pin(async move {
            cluster_node::ipfs::mem_add::add_in_memory(request, 64 << 20)
                .await
                .map(|_| ())
        })
    }
}

/// The node RPCs between in-process peers; a peer marked down is unreachable.
#[derive(Default)]
pub struct NodeNet {
    pub routers: Mutex<BTreeMap<String, Arc<NodeRouter>>>,
    pub down: Mutex<BTreeSet<String>>,
}

pub struct PeerRpc {
    pub me: String,
    pub net: Arc<NodeNet>,
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

pub fn cid(n: u8) -> Cid {
    let mut bytes = vec![0x12, 0x20];
    bytes.extend_from_slice(&[n; 32]);
    Cid::from_bytes(&bytes).expect("valid cid")
}

pub fn settings() -> DriverSettings {
    let tracker = TrackerConfig {
        reconcile_interval_ms: 200,
        backoff_base_ms: 10,
        backoff_max_ms: 100,
        ..TrackerConfig::default()
    };
    DriverSettings {
        tracker: TrackerDriverConfig {
            idle_wake_ms: 50,
            full_pass_ms: 0,
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
pub struct Peer {
    pub raft: ClusterRaft,
    pub ctx: PeerContext,
    pub drivers: Drivers,
    pub ipfs: Arc<MemIpfs>,
    pub addr: SocketAddr,
    pub _stop: oneshot::Sender<()>,
}

impl Peer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The API as a multiaddress, the form `ipfscluster --host` takes.
    pub fn host(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.addr.port())
    }

    /// A typed client of this peer's API.
    pub fn client(&self) -> Client {
        Client::new(ClientConfig {
            base_url: self.url(""),
            timeout: Duration::from_secs(20),
            ..ClientConfig::default()
        })
        .expect("client")
    }
}

pub async fn start_raft(n: u64, router: &InProcRouter) -> ClusterRaft {
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

pub async fn serve_api(api: RestApi) -> (SocketAddr, oneshot::Sender<()>) {
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

/// `n` peers in one cluster: the first starts it, the others join through
/// it; each with its drivers and REST API on default settings.
pub async fn start_cluster(n: u64, router: &InProcRouter, net: &Arc<NodeNet>) -> Vec<Peer> {
    let first = start_raft(1, router).await;
    first.initialize(CLUSTER_ID).await.expect("initialize");
    first.wait_for_leader(WAIT).await.expect("leader");
    let mut rafts = vec![first.clone()];
    for i in 2..=n {
        let raft = start_raft(i, router).await;
        raft.join(first.node_info()).await.expect("join");
        rafts.push(raft);
    }
    let mut peers = Vec::new();
    for raft in rafts {
        peers.push(start_peer(raft, net, |_| {}).await);
    }
    peers
}

pub async fn start_peer(
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

pub async fn lone_peer(config: impl FnOnce(&mut RestConfig)) -> Peer {
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

pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves `peer`'s Pinning Service API on 127.0.0.1:0 with `config` (its
/// listen address is ignored), with the same pin settings as its REST API.
#[cfg(feature = "pinsvc")]
pub async fn serve_pinsvc(
    peer: &Peer,
    config: cluster_node::api::pinsvc::PinSvcConfig,
) -> cluster_node::api::pinsvc::Running {
    use cluster_node::api::pinsvc::{PinSvcApi, Running};
    let id = peer.ctx.id.as_str();
    let cluster = RestConfig {
        peer_call_timeout: Duration::from_secs(2),
        peername: Some(format!("node-{}", &id[id.len() - 4..])),
        ..RestConfig::default()
    };
    let api = PinSvcApi::new(peer.ctx.clone(), peer.drivers.clone(), cluster, config)
        .expect("pinning service api");
    Running::start(api, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("serve the pinning service api")
}

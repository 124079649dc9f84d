//! The node's drivers on tokio around a real single-peer consensus (memory
//! store, in-process transport) and an in-memory IPFS connector: pins
//! written to the pinset reach IPFS, unpins leave it, a user's own pin
//! stays, statuses and metrics answer over the node RPC router.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::pinset::{Command, Entry};
use cluster_core::tracker::{IpfsPinType, ListedPin, TrackerConfig};
use cluster_core::{Cid, Millis, PeerId, Pin, PinOptions, TrackerStatus};
use cluster_net::inproc::InProcRouter;
use cluster_net::store::MemStore;
use cluster_net::transport::BoxFuture;
use cluster_net::{
    Boot, ClusterRaft, NodeInfo, NodeRpc, NodeRpcError, NodeRpcHandler, RaftConfig, TransportError,
};
use cluster_node::drivers::expiry::ExpiryConfig;
use cluster_node::drivers::metrics::MetricsConfig;
use cluster_node::drivers::repair::RepairConfig;
use cluster_node::drivers::tracker::TrackerDriverConfig;
use cluster_node::ipfs::{IpfsConnector, IpfsError, IpfsId, RepoStat};
use cluster_node::rpc::{MetricsPush, METRICS_PUSH};
use cluster_node::rpc::{StatusAnswer, StatusQuery, CONSENSUS_APPLIED, TRACKER_STATUS};
use cluster_node::{start_drivers, DriverSettings, PeerContext, SystemClock};

const WAIT: Duration = Duration::from_secs(10);

/// IPFS in memory: pins by CID with their type and mark.
#[derive(Default)]
struct MemIpfs {
    pins: Mutex<BTreeMap<Cid, ListedPin>>,
}

impl MemIpfs {
    fn pins(&self) -> BTreeMap<Cid, ListedPin> {
        self.pins.lock().expect("lock").clone()
    }

    fn pin_by_hand(&self, cid: &Cid) {
        self.pins.lock().expect("lock").insert(
            cid.clone(),
            ListedPin {
                cid: cid.clone(),
                pin_type: IpfsPinType::Recursive { max_depth: None },
                by_cluster: false,
            },
        );
    }
}

struct Conn(Arc<MemIpfs>);

impl IpfsConnector for Conn {
    fn pin(&self, cid: &Cid, max_depth: i32) -> BoxFuture<Result<(), IpfsError>> {
        let (ipfs, cid) = (Arc::clone(&self.0), cid.clone());
        Box::pin(async move {
            let pin_type = if max_depth == 0 {
                IpfsPinType::Direct
            } else {
                IpfsPinType::Recursive { max_depth: None }
            };
            ipfs.pins
                .lock()
                .expect("lock")
                .entry(cid.clone())
                .or_insert(ListedPin {
                    cid,
                    pin_type,
                    by_cluster: true,
                });
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
        let pins = self.0.pins().into_values().collect();
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
                peer_id: "12D3KooWmem".into(),
                addresses: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            })
        })
    }

    fn swarm_connect(&self, _multiaddr: &str) -> BoxFuture<Result<(), IpfsError>> {
        Box::pin(async move { Ok(()) })
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

/// A lone peer has nobody to call.
struct NoPeers;

impl NodeRpc for NoPeers {
    fn node_call(
        &self,
        target: &NodeInfo,
        _method: &str,
        _body: Vec<u8>,
    ) -> BoxFuture<Result<Vec<u8>, NodeRpcError>> {
        let peer = target.peer_id.clone();
        Box::pin(async move {
            Err(NodeRpcError::Transport(TransportError::Unreachable {
                peer,
            }))
        })
    }
}

fn cid(n: u8) -> Cid {
    let mut bytes = vec![0x12, 0x20];
    bytes.extend_from_slice(&[n; 32]);
    Cid::from_bytes(&bytes).expect("valid cid")
}

fn pin_entry(n: u8) -> Entry {
    let options = PinOptions {
        replication_factor_min: -1,
        replication_factor_max: -1,
        ..PinOptions::default()
    };
    Entry::new(Command::Pin(Pin::new(cid(n), options, Millis(1))))
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn lone_peer() -> (ClusterRaft, PeerContext, Arc<MemIpfs>) {
    let id = PeerId::synthetic(1);
    let router = InProcRouter::new();
    let raft = ClusterRaft::start(
        &id,
        "inproc/0",
        RaftConfig::fast_for_tests(),
        Boot::CreateIfEmpty { incarnation: 7 },
        MemStore::new(),
        router.transport(id.as_str()),
    )
    .await
    .expect("start");
    router.register(id.as_str(), raft.rpc_handler());
    raft.initialize(42).await.expect("initialize");
    raft.wait_for_leader(WAIT).await.expect("leader");
    let ipfs = Arc::new(MemIpfs::default());
    let ctx = PeerContext {
        id,
        raft: raft.clone(),
        ipfs: Arc::new(Conn(Arc::clone(&ipfs))),
        clock: Arc::new(SystemClock::new()),
        rpc: Arc::new(NoPeers),
    };
    (raft, ctx, ipfs)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_reach_ipfs_and_unpins_leave_it_but_the_users_own_pin_stays() {
    let (raft, ctx, ipfs) = lone_peer().await;
    ipfs.pin_by_hand(&cid(3));
    let drivers = start_drivers(&ctx, settings(), Arc::new(|v| panic!("{v}"))).expect("drivers");

    for n in 1..=3 {
        raft.write(pin_entry(n)).await.expect("write").expect("pin");
    }
    eventually("pins in ipfs", || {
        let pins = ipfs.pins();
        (1..=2).all(|n| pins.get(&cid(n)).is_some_and(|p| p.by_cluster))
            && pins.contains_key(&cid(3))
    })
    .await;
    // IPFS can hold a pin before the tracker has its answer: wait for the
    // statuses too (the user's pin of 3 counts as pinned for the cluster).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let statuses = drivers.tracker.statuses(None).await.expect("running");
        let pinned = statuses
            .iter()
            .filter(|(_, s)| s.status == TrackerStatus::Pinned)
            .count();
        if pinned == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all pinned: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for n in [1, 3] {
        raft.write(Entry::new(Command::Unpin { cid: cid(n) }))
            .await
            .expect("write")
            .expect("unpin");
    }
    eventually("unpinned from ipfs", || !ipfs.pins().contains_key(&cid(1))).await;
    // Let a reconcile pass run: the user's pin of 3 is still theirs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pins = ipfs.pins();
    assert!(pins.contains_key(&cid(2)));
    assert!(
        pins.get(&cid(3)).is_some_and(|p| !p.by_cluster),
        "the user's own pin was removed: {pins:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_answers_statuses_applied_index_and_keeps_own_metrics() {
    let (raft, ctx, ipfs) = lone_peer().await;
    let drivers = start_drivers(&ctx, settings(), Arc::new(|v| panic!("{v}"))).expect("drivers");
    raft.write(pin_entry(1)).await.expect("write").expect("pin");
    eventually("pinned", || ipfs.pins().contains_key(&cid(1))).await;

    let query = postcard::to_allocvec(&StatusQuery {
        cids: Some(vec![cid(1), cid(9)]),
    })
    .expect("encode");
    let answer = drivers
        .router
        .handle(ctx.id.as_str(), TRACKER_STATUS, query)
        .await
        .expect("status");
    let answer: StatusAnswer = postcard::from_bytes(&answer).expect("decode");
    assert_eq!(answer[0].0, cid(1));
    assert_eq!(answer[0].1.status, TrackerStatus::Pinned);
    assert_eq!(answer[1].1.status, TrackerStatus::Unpinned);

    let applied = drivers
        .router
        .handle("someone", CONSENSUS_APPLIED, Vec::new())
        .await
        .expect("applied");
    let applied: u64 = postcard::from_bytes(&applied).expect("decode");
    assert_eq!(applied, raft.applied_index());

    let unknown = drivers
        .router
        .handle("someone", "nope/v1", Vec::new())
        .await;
    assert!(unknown.is_err_and(|e| e.contains("unknown node method")));
    let garbage = drivers
        .router
        .handle("someone", TRACKER_STATUS, vec![0xff; 3])
        .await;
    assert!(garbage.is_err_and(|e| e.contains("does not decode")));

    // A peer speaks only for itself.
    let forged = MetricsPush {
        peer: PeerId::synthetic(5),
        free_space_bytes: 1,
        pinned: 0,
        queue_len: 0,
        tags: BTreeMap::new(),
        ipfs_peer_id: String::new(),
        ipfs_addresses: Vec::new(),
        ttl_ms: 60_000,
    };
    let forged = postcard::to_allocvec(&forged).expect("encode");
    let refused = drivers
        .router
        .handle(PeerId::synthetic(6).as_str(), METRICS_PUSH, forged)
        .await;
    assert!(refused.is_err_and(|e| e.contains("in the name of")));

    eventually("own metrics on the board", || {
        drivers
            .board
            .current(ctx.clock.now())
            .iter()
            .any(|m| m.peer == ctx.id && m.free_space_bytes == 900 && m.pinned == 1)
    })
    .await;
    assert!(drivers
        .board
        .current(ctx.clock.now())
        .iter()
        .all(|m| m.peer == ctx.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_removes_pins_whose_expiry_passed_and_leaves_the_others() {
    let (raft, ctx, ipfs) = lone_peer().await;
    let _drivers = start_drivers(&ctx, settings(), Arc::new(|v| panic!("{v}"))).expect("drivers");
    let now = ctx.clock.now().0;
    let expiring = |n: u8, at: u64| {
        let options = PinOptions {
            replication_factor_min: -1,
            replication_factor_max: -1,
            expire_at: Some(Millis(at)),
            ..PinOptions::default()
        };
        Entry::new(Command::Pin(Pin::new(cid(n), options, Millis(now))))
    };
    raft.write(expiring(1, now + 300))
        .await
        .expect("write")
        .expect("pin");
    raft.write(expiring(2, now + 3_600_000))
        .await
        .expect("write")
        .expect("pin");
    raft.write(pin_entry(3)).await.expect("write").expect("pin");
    eventually("pinned in ipfs", || ipfs.pins().len() == 3).await;
    eventually("expired pin removed", || {
        !raft.with_pinset(|p| p.contains(&cid(1)))
    })
    .await;
    assert!(ctx.clock.now().0 >= now + 300, "removed before its expiry");
    eventually("expired pin unpinned from ipfs", || {
        !ipfs.pins().contains_key(&cid(1))
    })
    .await;
    assert!(raft.with_pinset(|p| p.contains(&cid(2)) && p.contains(&cid(3))));
}

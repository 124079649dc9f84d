//! Helpers shared by the cluster tests: pins, peers over redb in temp dirs,
//! and an in-process router.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use cluster_core::pinset::{Command, Entry, RequestId};
use cluster_core::{Cid, Millis, PeerId, Pin, PinOptions};
use cluster_net::inproc::InProcRouter;
use std::sync::atomic::{AtomicU64, Ordering};

use cluster_net::store::{DurableStore, RedbStore, StoreError};
use cluster_net::{Boot, ClusterRaft, RaftConfig, StartError};

/// The cluster id used by the tests.
pub const CLUSTER_ID: u128 = 0x5eed_0000_0000_0000_0000_0000_0000_0001;
/// Generous limit for waits in tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A CIDv0 made from a counter.
pub fn cid(n: u64) -> Cid {
    let mut bytes = vec![0x12, 0x20];
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&n.to_be_bytes());
    digest[8] = 0xaa;
    bytes.extend_from_slice(&digest);
    Cid::from_bytes(&bytes).expect("valid cid")
}

/// A pin-everywhere entry for CID number `n`, with a request id. Tests send
/// up to 100 writes at once; a client may have at most
/// `SESSION_WINDOW` requests in flight, so the ids come from one client per
/// 32 serials, as a node spreads its concurrent writes over client ids.
pub fn pin_entry(n: u64) -> Entry {
    let options = PinOptions {
        replication_factor_min: -1,
        replication_factor_max: -1,
        ..Default::default()
    };
    Entry {
        request: Some(RequestId {
            client: 7 + n / 32,
            serial: n,
        }),
        command: Command::Pin(Pin::new(cid(n), options, Millis(n))),
    }
}

/// One test peer: its handle, id and data directory.
pub struct Peer {
    pub raft: ClusterRaft,
    pub id: PeerId,
    pub dir: PathBuf,
}

/// A set of peers on one in-process router, each with a redb file.
pub struct TestCluster {
    pub router: InProcRouter,
    pub config: RaftConfig,
    pub root: tempfile::TempDir,
    pub peers: Vec<Option<Peer>>,
}

impl TestCluster {
    /// An empty cluster with `config`.
    pub fn new(config: RaftConfig) -> TestCluster {
        TestCluster {
            router: InProcRouter::serializing(),
            config,
            root: tempfile::tempdir().expect("temp dir"),
            peers: Vec::new(),
        }
    }

    /// Starts peer number `n` on its redb directory (fresh or existing).
    pub async fn start_peer(&mut self, n: usize) -> ClusterRaft {
        let dir = self.root.path().join(format!("peer-{n}"));
        let store = open_retrying(&dir, RedbStore::open_or_create).await;
        self.start_peer_with(n, store, dir).await
    }

    /// Starts peer number `n` over any store, as a peer allowed to start
    /// empty (a new incarnation is drawn for an empty store).
    pub async fn start_peer_with<S: DurableStore>(
        &mut self,
        n: usize,
        store: S,
        dir: PathBuf,
    ) -> ClusterRaft {
        let boot = Boot::CreateIfEmpty {
            incarnation: next_incarnation(),
        };
        self.start_peer_boot(n, boot, store, dir)
            .await
            .expect("start peer")
    }

    /// Starts peer number `n` over any store with `boot`.
    pub async fn start_peer_boot<S: DurableStore>(
        &mut self,
        n: usize,
        boot: Boot,
        store: S,
        dir: PathBuf,
    ) -> Result<ClusterRaft, StartError> {
        let id = PeerId::synthetic(n as u64 + 1);
        let raft = ClusterRaft::start(
            &id,
            format!("inproc/{n}"),
            self.config.clone(),
            boot,
            store,
            self.router.transport(id.as_str()),
        )
        .await?;
        self.router.register(id.as_str(), raft.rpc_handler());
        while self.peers.len() <= n {
            self.peers.push(None);
        }
        self.peers[n] = Some(Peer {
            raft: raft.clone(),
            id,
            dir,
        });
        Ok(raft)
    }

    /// Bootstraps peer 0 and joins peers 1..count.
    pub async fn form(config: RaftConfig, count: usize) -> TestCluster {
        let mut cluster = TestCluster::new(config);
        let first = cluster.start_peer(0).await;
        first.initialize(CLUSTER_ID).await.expect("initialize");
        first.wait_for_leader(WAIT).await.expect("first leader");
        for n in 1..count {
            let peer = cluster.start_peer(n).await;
            peer.join(first.node_info()).await.expect("join");
        }
        cluster.wait_members(count).await;
        cluster
    }

    /// Waits until every running peer sees `count` voters.
    pub async fn wait_members(&self, count: usize) {
        let deadline = std::time::Instant::now() + WAIT;
        for n in self.alive() {
            while self.raft(n).members().len() != count {
                assert!(
                    std::time::Instant::now() < deadline,
                    "peer {n} sees members {:?}",
                    self.raft(n).members()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// The handle of peer `n`.
    pub fn raft(&self, n: usize) -> &ClusterRaft {
        &self.peers[n].as_ref().expect("peer running").raft
    }

    /// Indices of the running peers.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.peers.len())
            .filter(|n| self.peers[*n].is_some())
            .collect()
    }

    /// Index of the current leader among running peers.
    pub async fn leader(&self) -> usize {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            for n in self.alive() {
                if self.raft(n).is_leader() {
                    return n;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no leader elected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills peer `n`: shut down, unreachable, every handle dropped.
    pub async fn kill(&mut self, n: usize) -> PathBuf {
        let peer = self.peers[n].take().expect("peer running");
        self.router.set_down(peer.id.as_str(), true);
        peer.raft.shutdown().await;
        self.router.unregister(peer.id.as_str());
        peer.dir
    }

    /// Waits until every running peer applied `index`.
    pub async fn wait_applied_everywhere(&self, index: u64) {
        for n in self.alive() {
            assert!(
                self.raft(n).wait_for_applied(index, WAIT).await,
                "peer {n} did not apply {index} (at {})",
                self.raft(n).applied_index()
            );
        }
    }
}

/// A new, non-zero incarnation for each store created by the tests (the
/// production caller draws it at random).
pub fn next_incarnation() -> u128 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    u128::from(NEXT.fetch_add(1, Ordering::Relaxed)) << 64 | 0x1ac
}

/// Opens a redb store with `open`, retrying while a killed peer's last
/// tasks still unwind and hold the file lock (a real process exit releases
/// it at once).
pub async fn open_retrying(
    dir: &Path,
    open: impl Fn(&Path) -> Result<RedbStore, StoreError>,
) -> RedbStore {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match open(dir) {
            Ok(store) => return store,
            Err(e)
                if std::time::Instant::now() < deadline
                    && e.to_string().contains("already open") =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("open redb: {e}"),
        }
    }
}

/// Size of a file.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").len()
}

//! A failing disk stops a peer's Raft with a typed, visible error (so its
//! node can exit and be restarted), and a restart on the healed disk keeps
//! every acknowledged write.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cluster_core::pinset::{Command, Entry, RequestId};
use cluster_core::{Cid, Millis, PeerId, Pin, PinOptions};
use cluster_net::inproc::InProcRouter;
use cluster_net::store::{DurableStore, MemStore, MetaKey, StoreError, WriteBatch};
use cluster_net::{Boot, ClusterRaft, FatalError, RaftConfig, StartError};

const WAIT: Duration = Duration::from_secs(10);

/// A memory store whose reads or writes can be made to fail.
#[derive(Clone, Default)]
struct FlakyStore {
    inner: MemStore,
    fail_reads: Arc<AtomicBool>,
    fail_writes: Arc<AtomicBool>,
}

fn refused(what: &str) -> StoreError {
    StoreError::Io {
        path: "flaky".into(),
        reason: format!("injected {what} error"),
    }
}

impl DurableStore for FlakyStore {
    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        if self.fail_reads.load(Ordering::Relaxed) {
            return Err(refused("read"));
        }
        self.inner.get_meta(key)
    }

    fn log_range(&self, range: Range<u64>) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        if self.fail_reads.load(Ordering::Relaxed) {
            return Err(refused("read"));
        }
        self.inner.log_range(range)
    }

    fn log_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        if self.fail_reads.load(Ordering::Relaxed) {
            return Err(refused("read"));
        }
        self.inner.log_last()
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if self.fail_writes.load(Ordering::Relaxed) {
            return Err(refused("write (disk full)"));
        }
        self.inner.commit(batch)
    }
}

fn pin_entry(n: u64) -> Entry {
    let mut bytes = vec![0x12, 0x20];
    bytes.extend_from_slice(&[n as u8; 32]);
    let cid = Cid::from_bytes(&bytes).expect("valid cid");
    let options = PinOptions {
        replication_factor_min: -1,
        replication_factor_max: -1,
        ..Default::default()
    };
    Entry {
        request: Some(RequestId {
            client: 1,
            serial: n,
        }),
        command: Command::Pin(Pin::new(cid, options, Millis(n))),
    }
}

async fn start(store: FlakyStore, router: &InProcRouter) -> Result<ClusterRaft, StartError> {
    let peer = PeerId::synthetic(1);
    ClusterRaft::start(
        &peer,
        "inproc/1",
        RaftConfig::fast_for_tests(),
        Boot::CreateIfEmpty { incarnation: 1 },
        store,
        router.transport(peer.as_str()),
    )
    .await
}

/// A full disk fails the next append: Raft stops, and `fatal_error` /
/// `wait_fatal` say why (before, a node could not tell a dead Raft from a
/// slow one). After the disk is healed a restart has every acknowledged
/// write and takes new ones.
#[tokio::test]
async fn a_full_disk_stops_raft_visibly_and_a_restart_keeps_acknowledged_writes() {
    let router = InProcRouter::new();
    let store = FlakyStore::default();
    let raft = start(store.clone(), &router).await.expect("start");
    raft.initialize(7).await.expect("initialize");
    raft.wait_for_leader(WAIT).await.expect("leader");
    raft.write(pin_entry(1))
        .await
        .expect("first write")
        .expect("applied");
    assert_eq!(raft.fatal_error(), None);

    store.fail_writes.store(true, Ordering::Relaxed);
    let refused = tokio::time::timeout(WAIT, raft.write(pin_entry(2))).await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a write on a full disk was acknowledged: {refused:?}"
    );
    let fatal = tokio::time::timeout(WAIT, raft.wait_fatal())
        .await
        .expect("raft reports its fatal storage error");
    assert!(matches!(fatal, FatalError::Storage(_)), "{fatal:?}");
    assert_eq!(raft.fatal_error(), Some(fatal));
    raft.shutdown().await;
    drop(raft);

    // The disk has room again; the supervisor restarts the node.
    store.fail_writes.store(false, Ordering::Relaxed);
    let raft = start(store.clone(), &router).await.expect("restart");
    raft.wait_for_leader(WAIT)
        .await
        .expect("leader after restart");
    raft.write(pin_entry(3))
        .await
        .expect("write after restart")
        .expect("applied");
    let count = raft.with_pinset(|p| p.len());
    assert!(count >= 2, "acknowledged pin lost: {count} pins");
    assert_eq!(raft.fatal_error(), None);
    raft.shutdown().await;
}

/// A disk that fails reads while a peer starts: a typed start error, and
/// the store is untouched (a later start succeeds with the same state).
#[tokio::test]
async fn read_errors_at_start_are_a_typed_error_and_change_nothing() {
    let router = InProcRouter::new();
    let store = FlakyStore::default();
    let raft = start(store.clone(), &router).await.expect("start");
    raft.initialize(7).await.expect("initialize");
    raft.wait_for_leader(WAIT).await.expect("leader");
    raft.write(pin_entry(1))
        .await
        .expect("write")
        .expect("applied");
    raft.shutdown().await;
    drop(raft);

    store.fail_reads.store(true, Ordering::Relaxed);
    let failed = start(store.clone(), &router).await;
    assert!(
        matches!(
            failed,
            Err(StartError::Store(StoreError::Io { .. })) | Err(StartError::RaftStorage(_))
        ),
        "{failed:?}"
    );
    store.fail_reads.store(false, Ordering::Relaxed);
    let raft = start(store, &router)
        .await
        .expect("start on the healed disk");
    raft.wait_for_leader(WAIT).await.expect("leader");
    assert!(raft.wait_for_applied(1, WAIT).await);
    assert_eq!(raft.with_pinset(|p| p.len()), 1);
    raft.shutdown().await;
}

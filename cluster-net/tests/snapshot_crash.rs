//! A peer that crashes while it installs a received snapshot must restart
//! (issue 10, item 12). The crash is modelled by copying the store's
//! contents while the snapshot save is held up, which is what a power cut at
//! that moment would leave on disk.

mod common;

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_net::store::{DurableStore, MemStore, MetaKey, StoreError, WriteBatch, WriteOp};
use cluster_net::RaftConfig;
use common::*;

/// Copies every record of `store` into a new, independent store.
fn image_of(store: &MemStore) -> MemStore {
    let copy = MemStore::new();
    let mut batch = WriteBatch::durable();
    for key in MetaKey::ALL {
        if let Some(value) = store.get_meta(key).expect("read meta") {
            batch.push(WriteOp::PutMeta(key, value));
        }
    }
    for (index, bytes) in store.log_range(0..u64::MAX).expect("read log") {
        batch.push(WriteOp::PutLog(index, bytes));
    }
    copy.commit(batch).expect("copy");
    copy
}

/// A store that holds up the first snapshot save and records the disk image
/// at the end of the hold (the rest of the peer keeps running meanwhile).
struct HoldSnapshotSave {
    inner: MemStore,
    armed: AtomicBool,
    image: Arc<Mutex<Option<MemStore>>>,
}

impl DurableStore for HoldSnapshotSave {
    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_meta(key)
    }

    fn log_range(&self, range: Range<u64>) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.log_range(range)
    }

    fn log_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.inner.log_last()
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let saves_snapshot = batch
            .ops
            .iter()
            .any(|op| matches!(op, WriteOp::PutMeta(MetaKey::SnapshotData, _)));
        if saves_snapshot && self.armed.swap(false, Ordering::SeqCst) {
            // The decode and fsync of a large snapshot take this long; the
            // log store's purge runs meanwhile (it did, before the fix).
            std::thread::sleep(Duration::from_millis(500));
            *self.image.lock().expect("image lock") = Some(image_of(&self.inner));
        }
        self.inner.commit(batch)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_snapshot_install_restarts_and_catches_up() {
    let config = RaftConfig {
        snapshot_every_logs: 20,
        logs_to_keep: 5,
        ..RaftConfig::fast_for_tests()
    };
    let mut cluster = TestCluster::form(config, 2).await;
    let leader = cluster.leader().await;
    for n in 0..200 {
        cluster
            .raft(leader)
            .write(pin_entry(n))
            .await
            .expect("write")
            .expect("applied");
    }
    let image = Arc::new(Mutex::new(None));
    let store = HoldSnapshotSave {
        inner: MemStore::new(),
        armed: AtomicBool::new(true),
        image: Arc::clone(&image),
    };
    let dir = cluster.root.path().join("mem");
    let joiner = cluster.start_peer_with(2, store, dir.clone()).await;
    joiner
        .join(cluster.raft(leader).node_info())
        .await
        .expect("join");
    cluster.kill(2).await;
    let on_disk = image
        .lock()
        .expect("image lock")
        .take()
        .expect("the joiner received a snapshot");

    // Power back: the peer restarts from what was on disk and catches up.
    let back = cluster.start_peer_with(2, on_disk, dir).await;
    let index = cluster.raft(leader).applied_index();
    assert!(
        back.wait_for_applied(index, WAIT).await,
        "restarted peer stuck at {}",
        back.applied_index()
    );
    let expected = cluster.raft(leader).with_pinset(|p| p.to_map());
    assert_eq!(expected.len(), 200);
    assert_eq!(back.with_pinset(|p| p.to_map()), expected);
}

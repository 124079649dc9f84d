//! Snapshots are due by client writes and by log bytes, not only by log
//! entries (issue 10, item 16): one log entry carries a whole batch of
//! writes, so counting entries let a restart replay millions of pins.

mod common;

use std::time::{Duration, Instant};

use cluster_net::store::{DurableStore, MemStore, MetaKey};
use cluster_net::{ClusterRaft, RaftConfig};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_built_after_enough_writes_in_few_log_entries() {
    let config = RaftConfig {
        // openraft's own policy would wait for this many entries: never here.
        snapshot_every_logs: 1_000_000,
        snapshot_every_writes: 300,
        ..RaftConfig::fast_for_tests()
    };
    let (_cluster, store, raft) = lone_leader(config).await;
    // Concurrent writes: the batcher packs them into a few log entries.
    let mut tasks = Vec::new();
    for n in 0..1_000 {
        let raft = raft.clone();
        tasks.push(tokio::spawn(async move { raft.write(pin_entry(n)).await }));
    }
    for t in tasks {
        t.await.expect("task").expect("write").expect("applied");
    }
    let entries = raft.applied_index();
    assert!(
        entries < 300,
        "{entries} log entries: batching did not happen"
    );
    wait_for_snapshot(&store, &format!("1,000 writes in {entries} log entries")).await;
    raft.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_built_after_enough_log_bytes() {
    let config = RaftConfig {
        snapshot_every_logs: 1_000_000,
        snapshot_every_writes: 1_000_000,
        snapshot_every_log_bytes: 16 * 1024,
        ..RaftConfig::fast_for_tests()
    };
    let (_cluster, store, raft) = lone_leader(config).await;
    // One at a time: far fewer writes and entries than either count asks
    // for, but well past 16 KiB of log.
    for n in 0..400 {
        raft.write(pin_entry(n))
            .await
            .expect("write")
            .expect("applied");
        if n == 10 {
            assert!(
                store
                    .get_meta(MetaKey::SnapshotMeta)
                    .expect("read")
                    .is_none(),
                "a snapshot before the log held 16 KiB"
            );
        }
    }
    wait_for_snapshot(&store, "400 writes, over 16 KiB of log").await;
    raft.shutdown().await;
}

/// A one-peer cluster on an in-memory store, its peer the leader (the
/// cluster is returned to keep its directory alive).
async fn lone_leader(config: RaftConfig) -> (TestCluster, MemStore, ClusterRaft) {
    let mut cluster = TestCluster::new(config);
    let store = MemStore::new();
    let dir = cluster.root.path().join("mem");
    let raft = cluster.start_peer_with(0, store.clone(), dir).await;
    raft.initialize(CLUSTER_ID).await.expect("initialize");
    raft.wait_for_leader(WAIT).await.expect("leader");
    (cluster, store, raft)
}

/// Waits until `store` holds a snapshot; fails the test after `WAIT`.
async fn wait_for_snapshot(store: &MemStore, after: &str) {
    let deadline = Instant::now() + WAIT;
    while store
        .get_meta(MetaKey::SnapshotMeta)
        .expect("read")
        .is_none()
    {
        assert!(Instant::now() < deadline, "no snapshot after {after}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! Multi-peer behaviour over the in-process transport with redb storage:
//! election, replication, leader loss, restart, snapshot install on join,
//! removal of dead peers, cluster id checks.

mod common;

use std::collections::BTreeMap;

use cluster_core::pinset::Applied;
use cluster_net::store::{DurableStore, MemStore, MetaKey};
use cluster_net::{MembershipError, RaftConfig};
use common::*;

/// Writes pins `range` through peer `via`, asserting each is applied.
async fn write_pins(cluster: &TestCluster, via: usize, range: std::ops::Range<u64>) -> u64 {
    let mut last = 0;
    for n in range {
        let result = cluster.raft(via).write(pin_entry(n)).await.expect("write");
        assert!(
            matches!(result, Ok(Applied::Pinned { .. })),
            "pin {n}: {result:?}"
        );
        last = cluster.raft(via).applied_index();
    }
    last
}

fn pinsets(cluster: &TestCluster) -> Vec<BTreeMap<cluster_core::Cid, cluster_core::Pin>> {
    cluster
        .alive()
        .into_iter()
        .map(|n| cluster.raft(n).with_pinset(|p| p.to_map()))
        .collect()
}

async fn survive_leader_loss(count: usize) {
    let mut cluster = TestCluster::form(RaftConfig::fast_for_tests(), count).await;
    for n in 0..count {
        assert_eq!(cluster.raft(n).members().len(), count, "members on {n}");
    }
    let leader = cluster.leader().await;
    let follower = (leader + 1) % count;
    write_pins(&cluster, leader, 0..20).await;
    write_pins(&cluster, follower, 20..40).await;

    let old = cluster.kill(leader).await;
    assert!(old.exists());
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    let survivor = cluster.alive()[0];
    let last = write_pins(&cluster, survivor, 40..60).await;
    cluster.wait_applied_everywhere(last).await;
    let sets = pinsets(&cluster);
    assert_eq!(sets[0].len(), 60);
    assert!(sets.iter().all(|s| *s == sets[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_replicate_and_survive_leader_loss() {
    survive_leader_loss(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_peers_replicate_and_survive_leader_loss() {
    survive_leader_loss(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_peers_keep_acknowledged_writes() {
    let mut cluster = TestCluster::form(RaftConfig::fast_for_tests(), 3).await;
    let leader = cluster.leader().await;
    // Concurrent writes, so several land in one batch.
    let mut tasks = Vec::new();
    for n in 0..100 {
        let raft = cluster.raft((leader + n as usize) % 3).clone();
        tasks.push(tokio::spawn(async move { raft.write(pin_entry(n)).await }));
    }
    for t in tasks {
        assert!(matches!(
            t.await.expect("join"),
            Ok(Ok(Applied::Pinned { .. }))
        ));
    }
    // Restart one follower alone, then the whole cluster.
    let follower = (leader + 1) % 3;
    cluster.kill(follower).await;
    let back = cluster.start_peer(follower).await;
    assert_eq!(back.cluster_id(), Some(CLUSTER_ID));
    drop(back);
    let index = cluster.raft(leader).applied_index();
    cluster.wait_applied_everywhere(index).await;

    for n in 0..3 {
        cluster.kill(n).await;
    }
    for n in 0..3 {
        cluster.start_peer(n).await;
    }
    let leader = cluster.leader().await;
    let last = write_pins(&cluster, leader, 100..101).await;
    cluster.wait_applied_everywhere(last).await;
    let sets = pinsets(&cluster);
    assert_eq!(sets[0].len(), 101);
    assert!(sets.iter().all(|s| *s == sets[0]));
    for n in 0..101 {
        assert!(sets[0].contains_key(&cid(n)), "pin {n} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_peer_receives_pinset_by_chunked_snapshot() {
    let config = RaftConfig {
        snapshot_every_logs: 20,
        logs_to_keep: 5,
        snapshot_chunk_bytes: 512,
        ..RaftConfig::fast_for_tests()
    };
    let mut cluster = TestCluster::form(config, 2).await;
    let leader = cluster.leader().await;
    write_pins(&cluster, leader, 0..200).await;

    let store = MemStore::new();
    let dir = cluster.root.path().join("mem");
    let joiner = cluster.start_peer_with(2, store.clone(), dir).await;
    joiner
        .join(cluster.raft(leader).node_info())
        .await
        .expect("join");
    let index = cluster.raft(leader).applied_index();
    cluster.wait_applied_everywhere(index).await;
    assert_eq!(joiner.members().len(), 3);
    // The joiner never saw the early log: it got a snapshot.
    assert!(store
        .get_meta(MetaKey::SnapshotData)
        .expect("read")
        .is_some());
    assert!(store.log_range(0..2).expect("read").is_empty());
    let sets = pinsets(&cluster);
    assert_eq!(sets[0].len(), 200);
    assert!(sets.iter().all(|s| *s == sets[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_peer_can_be_removed() {
    let mut cluster = TestCluster::form(RaftConfig::fast_for_tests(), 3).await;
    let leader = cluster.leader().await;
    let victim = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let victim_id = cluster.peers[victim].as_ref().expect("peer").id.clone();
    cluster.kill(victim).await;
    cluster
        .raft(other)
        .remove_peer(&victim_id)
        .await
        .expect("remove dead peer");
    for n in cluster.alive() {
        let members = cluster.raft(n).members();
        assert_eq!(members.len(), 2, "members on {n}: {members:?}");
        assert!(!members.contains(&victim_id));
    }
    let last = write_pins(&cluster, other, 0..5).await;
    cluster.wait_applied_everywhere(last).await;
    // Removing it again succeeds at once (removal is idempotent).
    let again = cluster.raft(leader).remove_peer(&victim_id).await;
    assert_eq!(again, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_peer_cannot_be_removed() {
    let cluster = TestCluster::form(RaftConfig::fast_for_tests(), 1).await;
    let me = cluster.peers[0].as_ref().expect("peer").id.clone();
    let result = cluster.raft(0).remove_peer(&me).await;
    assert_eq!(result, Err(MembershipError::LastPeer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_of_another_cluster_cannot_join() {
    let mut cluster = TestCluster::form(RaftConfig::fast_for_tests(), 1).await;
    let stranger = cluster.start_peer(1).await;
    stranger
        .initialize(CLUSTER_ID + 1)
        .await
        .expect("own cluster");
    let result = stranger.join(cluster.raft(0).node_info()).await;
    assert_eq!(
        result,
        Err(MembershipError::ClusterMismatch {
            ours: CLUSTER_ID + 1,
            theirs: CLUSTER_ID
        })
    );
    // Bootstrapping again with another id is refused too.
    let again = cluster.raft(0).initialize(CLUSTER_ID + 2).await;
    assert!(matches!(
        again,
        Err(MembershipError::ClusterMismatch { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_leaves_cleanly() {
    let mut cluster = TestCluster::form(RaftConfig::fast_for_tests(), 3).await;
    let leader = cluster.leader().await;
    let leaving = (leader + 1) % 3;
    cluster.raft(leaving).leave().await.expect("leave");
    cluster.kill(leaving).await;
    let remaining = cluster.alive()[0];
    assert_eq!(cluster.raft(remaining).members().len(), 2);
    write_pins(&cluster, remaining, 0..3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_peer_fails_fast_then_catches_up() {
    let config = RaftConfig {
        write_timeout_ms: 600,
        ..RaftConfig::fast_for_tests()
    };
    let cluster = TestCluster::form(config, 3).await;
    let leader = cluster.leader().await;
    let isolated = (leader + 1) % 3;
    let isolated_id = cluster.peers[isolated].as_ref().expect("peer").id.clone();
    cluster.router.set_down(isolated_id.as_str(), true);

    // The majority keeps working.
    let last = write_pins(&cluster, leader, 0..20).await;
    // The isolated peer cannot reach a leader: a bounded, typed failure.
    let started = std::time::Instant::now();
    let result = cluster.raft(isolated).write(pin_entry(99)).await;
    assert!(
        matches!(
            result,
            Err(cluster_net::WriteError::Timeout { .. } | cluster_net::WriteError::NoLeader)
        ),
        "{result:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    cluster.router.set_down(isolated_id.as_str(), false);
    cluster.wait_applied_everywhere(last).await;
    let sets = pinsets(&cluster);
    assert!(sets.iter().all(|s| *s == sets[0]));
    assert_eq!(sets[0].len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_fail_fast_after_shutdown_and_before_bootstrap() {
    let cluster = TestCluster::form(RaftConfig::fast_for_tests(), 1).await;
    let raft = cluster.raft(0).clone();
    raft.shutdown().await;
    let started = std::time::Instant::now();
    let result = raft.write(pin_entry(1)).await;
    assert_eq!(result, Err(cluster_net::WriteError::Shutdown));
    assert!(started.elapsed() < std::time::Duration::from_secs(1));

    let mut fresh = TestCluster::new(RaftConfig::fast_for_tests());
    let lonely = fresh.start_peer(0).await;
    let result = lonely.write(pin_entry(2)).await;
    assert_eq!(result, Err(cluster_net::WriteError::NotInCluster));
    assert!(!lonely.is_member());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_leaves_and_the_rest_carry_on() {
    let mut cluster = TestCluster::form(RaftConfig::fast_for_tests(), 3).await;
    let leader = cluster.leader().await;
    cluster.raft(leader).leave().await.expect("leader leaves");
    cluster.kill(leader).await;
    cluster.wait_members(2).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    let last = write_pins(&cluster, new_leader, 0..3).await;
    cluster.wait_applied_everywhere(last).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_restores_snapshot_then_replays_log_tail() {
    let config = RaftConfig {
        snapshot_every_logs: 10,
        logs_to_keep: 3,
        ..RaftConfig::fast_for_tests()
    };
    let mut cluster = TestCluster::form(config, 3).await;
    let leader = cluster.leader().await;
    // Sequential writes: one log entry each, so snapshots and purges happen
    // several times and the last entries sit after the last snapshot.
    let last = write_pins(&cluster, leader, 0..57).await;
    cluster.wait_applied_everywhere(last).await;
    let before = pinsets(&cluster);
    let mut dirs = Vec::new();
    for n in 0..3 {
        dirs.push(cluster.kill(n).await);
    }
    {
        // The restart really starts from a snapshot: the log head is gone.
        let store = cluster_net::store::RedbStore::open(&dirs[0]).expect("reopen");
        assert!(store
            .get_meta(MetaKey::SnapshotMeta)
            .expect("read")
            .is_some());
        assert!(store.get_meta(MetaKey::LastPurged).expect("read").is_some());
        assert!(store.log_range(0..10).expect("read").is_empty());
    }
    for n in 0..3 {
        cluster.start_peer(n).await;
    }
    let leader = cluster.leader().await;
    let last = write_pins(&cluster, leader, 57..58).await;
    cluster.wait_applied_everywhere(last).await;
    let after = pinsets(&cluster);
    assert_eq!(after[0].len(), 58);
    assert!(after.iter().all(|s| *s == after[0]));
    for (cid, pin) in &before[0] {
        assert_eq!(after[0].get(cid), Some(pin));
    }
}

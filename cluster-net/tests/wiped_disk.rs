//! A peer whose disk was wiped or replaced must not come back as the old
//! member (issue 10, item 13): it remembers no vote and no log, so acting as
//! the old member could vote twice in a term and lose acknowledged writes.

mod common;

use std::time::Duration;

use cluster_net::store::{MemStore, RedbStore, StoreError};
use cluster_net::{Boot, MembershipError, RaftConfig, StartError};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_follower_does_not_come_back_as_the_old_member() {
    let mut cluster = TestCluster::form(RaftConfig::fast_for_tests(), 3).await;
    let leader = cluster.leader().await;
    for n in 0..20 {
        cluster
            .raft(leader)
            .write(pin_entry(n))
            .await
            .expect("write")
            .expect("applied");
    }
    let victim = (leader + 1) % 3;
    let dir = cluster.kill(victim).await;
    std::fs::remove_dir_all(&dir).expect("wipe");
    // Started again on an empty disk, as a new peer would be.
    let back = cluster.start_peer(victim).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        back.cluster_id(),
        None,
        "adopted the cluster id of traffic meant for its old self"
    );
    assert_eq!(
        back.applied_index(),
        0,
        "acknowledged appends as the old member"
    );

    // The old member's traffic still reaches it: it refuses it, so the
    // cluster keeps working with the two others.
    let last = cluster
        .raft(leader)
        .write(pin_entry(20))
        .await
        .expect("write")
        .expect("applied");
    assert!(matches!(last, cluster_core::pinset::Applied::Pinned { .. }));
    assert_eq!(back.applied_index(), 0);

    // Joining again is refused while it is a member under its old store.
    let refused = back.join(cluster.raft(leader).node_info()).await;
    assert!(
        matches!(refused, Err(MembershipError::StaleMember { .. })),
        "{refused:?}"
    );
    assert!(refused.unwrap_err().to_string().contains("remove it first"));
    // Remove it, then it joins as a new member and catches up.
    let id = cluster.peers[victim].as_ref().expect("peer").id.clone();
    cluster.raft(leader).remove_peer(&id).await.expect("remove");
    back.join(cluster.raft(leader).node_info())
        .await
        .expect("join again");
    let index = cluster.raft(leader).applied_index();
    assert!(back.wait_for_applied(index, WAIT).await);
    assert_eq!(back.with_pinset(|p| p.len()), 21);
    cluster.wait_members(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_member_with_a_missing_database_refuses_to_start() {
    let mut cluster = TestCluster::form(RaftConfig::fast_for_tests(), 1).await;
    let dir = cluster.kill(0).await;
    std::fs::remove_dir_all(&dir).expect("wipe");
    // redb never creates a missing database behind the caller's back...
    let missing = RedbStore::open(&dir).expect_err("missing database opened");
    assert!(matches!(missing, StoreError::Missing { .. }), "{missing:?}");
    assert!(missing.to_string().contains("join again"), "{missing}");
    // ...and a member's empty store (a replaced disk) is refused by start.
    let refused = cluster
        .start_peer_boot(0, Boot::Existing, MemStore::new(), dir)
        .await
        .expect_err("started a member with no state");
    assert!(matches!(refused, StartError::NoState { .. }), "{refused:?}");
    let text = refused.to_string();
    assert!(
        text.contains("Remove it") && text.contains("join again"),
        "{text}"
    );
}

//! A peer stopped cleanly keeps the commit point it learned: restarted alone
//! (no leader to tell it again), it applies every entry it had applied
//! before, so an offline `state export` of a stopped follower misses none.

mod common;

use cluster_net::RaftConfig;
use common::{pin_entry, TestCluster, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_stopped_cleanly_comes_back_alone_with_everything_it_applied() {
    let mut cluster = TestCluster::form(RaftConfig::fast_for_tests(), 3).await;
    let leader = cluster.leader().await;
    let follower = (0..3).find(|n| *n != leader).expect("a follower");
    for n in 0..5 {
        cluster
            .raft(leader)
            .write(pin_entry(n))
            .await
            .expect("write")
            .expect("pin");
    }
    let last = cluster.raft(leader).applied_index();
    cluster.wait_applied_everywhere(last).await;
    assert_eq!(cluster.raft(follower).with_pinset(|p| p.len()), 5);

    // Stop everyone, the follower first and cleanly; bring it back alone.
    cluster.kill(follower).await;
    for n in cluster.alive() {
        cluster.kill(n).await;
    }
    cluster.router.set_down(
        cluster_core::PeerId::synthetic(follower as u64 + 1).as_str(),
        false,
    );
    let back = cluster.start_peer(follower).await;
    assert!(
        back.wait_for_applied(last, WAIT).await,
        "restarted alone, the follower applied only up to {} of {last}",
        back.applied_index()
    );
    assert_eq!(back.with_pinset(|p| p.len()), 5);
}

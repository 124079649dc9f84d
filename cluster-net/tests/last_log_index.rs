//! `ClusterRaft::last_log_index`: a lone member restarted from its store
//! applies its whole log once it leads again, up to the index reported.

mod common;

use cluster_net::RaftConfig;
use common::{pin_entry, TestCluster, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_lone_member_applies_up_to_its_last_log_index() {
    let mut cluster = TestCluster::form(RaftConfig::fast_for_tests(), 1).await;
    let raft = cluster.raft(0).clone();
    for n in 0..10 {
        raft.write(pin_entry(n)).await.expect("write").expect("pin");
    }
    assert!(raft.last_log_index() >= raft.applied_index());
    assert!(raft.applied_index() > 0);
    drop(raft);
    cluster.kill(0).await;
    cluster.router.set_down(common_peer().as_str(), false);

    let back = cluster.start_peer(0).await;
    // Published by the Raft task shortly after start.
    let deadline = std::time::Instant::now() + WAIT;
    while back.last_log_index() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the log was not restored"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let last = back.last_log_index();
    back.wait_for_leader(WAIT).await.expect("leads again");
    assert!(
        back.wait_for_applied(last, WAIT).await,
        "not applied up to {last}"
    );
    assert_eq!(back.with_pinset(|p| p.len()), 10);
}

fn common_peer() -> cluster_core::PeerId {
    cluster_core::PeerId::synthetic(1)
}

//! Membership over the in-process transport: joins and removals are
//! idempotent and retried, concurrent joins all succeed, and peers started
//! together with the same initial peer list form one cluster by themselves.

mod common;

use std::time::Duration;

use cluster_core::PeerId;
use cluster_net::inproc::InProcRouter;
use cluster_net::store::MemStore;
use cluster_net::{ClusterRaft, MembershipError, NodeInfo, RaftConfig};
use common::*;

async fn start(n: u64, router: &InProcRouter, config: &RaftConfig) -> ClusterRaft {
    let id = PeerId::synthetic(n);
    let raft = ClusterRaft::start(
        &id,
        format!("inproc/{n}"),
        config.clone(),
        cluster_net::Boot::CreateIfEmpty { incarnation: 101 },
        MemStore::new(),
        router.transport(id.as_str()),
    )
    .await
    .expect("start");
    router.register(id.as_str(), raft.rpc_handler());
    raft
}

async fn wait_voters(peers: &[ClusterRaft], count: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    for p in peers {
        while p.members().len() != count || p.leader().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?} sees voters {:?}, leader {:?}",
                p.node_info(),
                p.members(),
                p.leader()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Item 15: a second join while the first one's membership change was not
/// yet committed failed with "membership change in progress" and was not
/// retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_all_succeed() {
    let router = InProcRouter::new();
    let config = RaftConfig::fast_for_tests();
    let first = start(1, &router, &config).await;
    first.initialize(CLUSTER_ID).await.expect("initialize");
    first.wait_for_leader(WAIT).await.expect("leader");
    let mut joins = Vec::new();
    let mut peers = vec![first.clone()];
    for n in 2..6 {
        let joiner = start(n, &router, &config).await;
        peers.push(joiner.clone());
        let via = first.node_info().clone();
        joins.push(tokio::spawn(async move { joiner.join(&via).await }));
    }
    for join in joins {
        let result = join.await.expect("task");
        assert_eq!(result, Ok(()));
    }
    wait_voters(&peers, 5).await;
}

/// Item 15: removing a peer that is already gone answered `NotMember`,
/// although the removal (say, an earlier attempt whose answer was lost) had
/// succeeded. Removal is idempotent now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_is_idempotent() {
    let router = InProcRouter::new();
    let config = RaftConfig::fast_for_tests();
    let first = start(1, &router, &config).await;
    first.initialize(CLUSTER_ID).await.expect("initialize");
    first.wait_for_leader(WAIT).await.expect("leader");
    let second = start(2, &router, &config).await;
    second.join(first.node_info()).await.expect("join");
    let third = start(3, &router, &config).await;
    third.join(first.node_info()).await.expect("join");
    let gone = PeerId::synthetic(3);
    assert_eq!(second.remove_peer(&gone).await, Ok(()));
    assert_eq!(second.remove_peer(&gone).await, Ok(()));
    assert_eq!(first.remove_peer(&gone).await, Ok(()));
    assert_eq!(first.members().len(), 2);
    // A join repeated after it succeeded is a no-op as well.
    assert_eq!(second.join(first.node_info()).await, Ok(()));
    assert_eq!(first.members().len(), 2);
    // The last voter still cannot be removed.
    assert_eq!(first.remove_peer(&PeerId::synthetic(2)).await, Ok(()));
    assert_eq!(
        first.remove_peer(&PeerId::synthetic(1)).await,
        Err(MembershipError::LastPeer)
    );
}

/// Item 15: peers started at the same time, each given the same initial
/// peer list, form one cluster with all of them as voters, without anyone
/// calling `initialize` on one peer and `join` on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_bootstrapped_together_converge() {
    let router = InProcRouter::new();
    let config = RaftConfig::fast_for_tests();
    let mut peers = Vec::new();
    for n in [3, 1, 5, 2, 4] {
        peers.push(start(n, &router, &config).await);
    }
    let initial: Vec<NodeInfo> = peers.iter().map(|p| p.node_info().clone()).collect();
    let mut boots = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        let p = p.clone();
        let initial = initial.clone();
        boots.push(tokio::spawn(async move {
            // Staggered a little, as real processes start.
            tokio::time::sleep(Duration::from_millis(37 * i as u64)).await;
            p.bootstrap(CLUSTER_ID, &initial).await
        }));
    }
    for boot in boots {
        assert_eq!(boot.await.expect("task"), Ok(()));
    }
    wait_voters(&peers, 5).await;
    for p in &peers {
        assert_eq!(p.cluster_id(), Some(CLUSTER_ID));
    }
    let leaders: std::collections::BTreeSet<_> = peers.iter().filter_map(|p| p.leader()).collect();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    let answer = peers[4].write(pin_entry(1)).await.expect("write");
    assert!(answer.is_ok(), "{answer:?}");
    // Bootstrapping again (a restart with the same list) changes nothing.
    assert_eq!(peers[0].bootstrap(CLUSTER_ID, &initial).await, Ok(()));
    wait_voters(&peers, 5).await;
}

/// A peer missing from the initial list it is given is refused: it could
/// only form a cluster of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_requires_this_peer_in_the_list() {
    let router = InProcRouter::new();
    let config = RaftConfig::fast_for_tests();
    let a = start(1, &router, &config).await;
    let b = start(2, &router, &config).await;
    let result = a.bootstrap(CLUSTER_ID, &[b.node_info().clone()]).await;
    assert!(
        matches!(result, Err(MembershipError::NotInInitialPeers(_))),
        "{result:?}"
    );
}

/// Raft node ids cover each store's incarnation, so bootstrap needs every
/// peer's real record: one without an incarnation, or naming this peer with
/// another store, is refused before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_requires_each_peers_incarnation() {
    let router = InProcRouter::new();
    let config = RaftConfig::fast_for_tests();
    let a = start(1, &router, &config).await;
    let b = start(2, &router, &config).await;
    let mut contact = b.node_info().clone();
    contact.incarnation = 0;
    let result = a
        .bootstrap(CLUSTER_ID, &[a.node_info().clone(), contact])
        .await;
    assert!(
        matches!(result, Err(MembershipError::UnknownIncarnation(_))),
        "{result:?}"
    );
    let mut old_self = a.node_info().clone();
    old_self.incarnation += 1;
    let result = a
        .bootstrap(CLUSTER_ID, &[old_self, b.node_info().clone()])
        .await;
    assert!(
        matches!(result, Err(MembershipError::ListedWithAnotherStore(_))),
        "{result:?}"
    );
    assert_eq!(a.cluster_id(), None, "a refused bootstrap wrote nothing");
}

/// Item 15: a join that meets a transient failure (here: the member asked
/// has not bootstrapped yet) failed at once; it is retried with back-off
/// within `membership_timeout_ms` now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_is_retried_until_the_member_is_ready() {
    let router = InProcRouter::new();
    let config = RaftConfig::fast_for_tests();
    let first = start(1, &router, &config).await;
    let joiner = start(2, &router, &config).await;
    let via = first.node_info().clone();
    let join = {
        let joiner = joiner.clone();
        tokio::spawn(async move { joiner.join(&via).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.initialize(CLUSTER_ID).await.expect("initialize");
    assert_eq!(join.await.expect("task"), Ok(()));
    wait_voters(&[first, joiner], 2).await;
}

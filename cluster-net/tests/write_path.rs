//! The client write path against a leader that fails half way: an attempt
//! whose outcome is unknown is retried only for entries with a request id.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cluster_core::pinset::{Command, Entry};
use cluster_core::{Millis, Pin, PinOptions};
use cluster_net::inproc::InProcRouter;
use cluster_net::store::MemStore;
use cluster_net::transport::BoxFuture;
use cluster_net::{
    ClusterRaft, NodeInfo, RaftConfig, RaftTransport, RpcHandler, RpcRequest, RpcResponse,
    TransportError,
};
use common::*;

/// What [`Faulty`] does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Deliver it and return the answer.
    Pass,
    /// Do not deliver it (`Unreachable`).
    Refuse,
    /// Deliver it and lose the answer (`Timeout`).
    LoseAnswer,
}

type Rule = Arc<dyn Fn(&NodeInfo, &RpcRequest) -> Fault + Send + Sync>;

/// A transport that asks `rule` what to do with every request it sends.
struct Faulty {
    inner: Arc<dyn RaftTransport>,
    rule: Rule,
}

impl RaftTransport for Faulty {
    fn call(
        &self,
        target: &NodeInfo,
        request: RpcRequest,
    ) -> BoxFuture<Result<RpcResponse, TransportError>> {
        let peer = target.peer_id.clone();
        match (self.rule)(target, &request) {
            Fault::Pass => self.inner.call(target, request),
            Fault::Refuse => Box::pin(async move { Err(TransportError::Unreachable { peer }) }),
            Fault::LoseAnswer => {
                let call = self.inner.call(target, request);
                Box::pin(async move {
                    let _ = call.await;
                    Err(TransportError::Timeout { peer })
                })
            }
        }
    }
}

fn faulty(rule: Rule) -> impl FnOnce(Arc<dyn RaftTransport>) -> Arc<dyn RaftTransport> {
    move |inner| Arc::new(Faulty { inner, rule })
}

/// Counts the forwarded writes a peer serves.
struct CountForwards {
    inner: Arc<dyn RpcHandler>,
    forwards: Arc<AtomicU32>,
}

impl RpcHandler for CountForwards {
    fn handle(&self, request: RpcRequest) -> BoxFuture<RpcResponse> {
        if request.kind() == "forward" {
            self.forwards.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.handle(request)
    }
}

async fn start(
    n: u64,
    router: &InProcRouter,
    config: &RaftConfig,
    wrap: impl FnOnce(Arc<dyn RaftTransport>) -> Arc<dyn RaftTransport>,
) -> ClusterRaft {
    let id = cluster_core::PeerId::synthetic(n);
    let raft = ClusterRaft::start(
        &id,
        format!("inproc/{n}"),
        config.clone(),
        cluster_net::Boot::CreateIfEmpty { incarnation: 101 },
        MemStore::new(),
        wrap(router.transport(id.as_str())),
    )
    .await
    .expect("start");
    router.register(id.as_str(), raft.rpc_handler());
    raft
}

/// Peer 1 (transport wrapped by `wrap`) bootstraps; peers 2 and 3 join.
async fn three(
    router: &InProcRouter,
    config: &RaftConfig,
    wrap: impl FnOnce(Arc<dyn RaftTransport>) -> Arc<dyn RaftTransport>,
) -> [ClusterRaft; 3] {
    let leader = start(1, router, config, wrap).await;
    leader.initialize(CLUSTER_ID).await.expect("initialize");
    leader.wait_for_leader(WAIT).await.expect("leader");
    let b = start(2, router, config, |t| t).await;
    b.join(leader.node_info()).await.expect("join");
    let c = start(3, router, config, |t| t).await;
    c.join(leader.node_info()).await.expect("join");
    [leader, b, c]
}

fn peer(n: u64) -> String {
    cluster_core::PeerId::synthetic(n).to_string()
}

/// Item 14. The leader proposes a forwarded write, one follower stores it,
/// the leader never learns that and shuts down: its answer used to be
/// `Refused(Shutdown)`, which the forwarding peer retried at the next
/// leader, although that leader was bound to commit the first copy too.
/// An entry without a request id was applied twice. Now the answer is
/// "outcome unknown" and such an entry is not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_proposed_by_a_leader_that_stops_is_not_proposed_again() {
    let router = InProcRouter::new();
    let on = Arc::new(AtomicBool::new(false));
    let rule: Rule = {
        let on = Arc::clone(&on);
        Arc::new(move |target, request| {
            if !on.load(Ordering::SeqCst) || request.kind() != "append_entries" {
                Fault::Pass
            } else if target.peer_id == peer(3) {
                Fault::LoseAnswer
            } else {
                Fault::Refuse
            }
        })
    };
    let [leader, writer, heir] = three(&router, &RaftConfig::fast_for_tests(), faulty(rule)).await;
    let forwards = Arc::new(AtomicU32::new(0));
    router.register(
        &peer(3),
        Arc::new(CountForwards {
            inner: heir.rpc_handler(),
            forwards: Arc::clone(&forwards),
        }),
    );
    writer
        .write(pin_entry(1))
        .await
        .expect("warm-up")
        .expect("pinned");
    assert!(leader.is_leader());

    on.store(true, Ordering::SeqCst);
    let options = PinOptions {
        replication_factor_min: -1,
        replication_factor_max: -1,
        ..Default::default()
    };
    // No request id: applying it twice could not be detected.
    let entry = Entry::new(Command::Pin(Pin::new(cid(2), options, Millis(2))));
    let write = {
        let writer = writer.clone();
        tokio::spawn(async move { writer.write(entry).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    leader.shutdown().await;
    let result = write.await.expect("task");

    // The heir stored the first copy and commits it once it leads.
    let deadline = std::time::Instant::now() + WAIT;
    while !heir.with_pinset(|p| p.get(&cid(2)).is_some()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first copy was never committed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        forwards.load(Ordering::SeqCst),
        0,
        "the write was proposed again at the next leader ({result:?})"
    );
    match result {
        Err(e) => assert!(e.outcome_unknown(), "{e:?}"),
        Ok(r) => panic!("acknowledged after a second proposal: {r:?}"),
    }
    writer.shutdown().await;
    heir.shutdown().await;
}

/// Item 14, batcher order. The proposal slot was released as soon as the
/// leader answered, before the batch's writers got their replies (which
/// wait for this peer to apply the entry). A peer that could not apply kept
/// proposing batch after batch, each waiting for its replies, without
/// bound. Now the slot is held until the replies are sent: with one slot,
/// a second batch is not proposed while the first one's replies wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_sent_before_the_proposal_slot_is_released() {
    let router = InProcRouter::new();
    let config = RaftConfig {
        proposals_in_flight_max: 1,
        ..RaftConfig::fast_for_tests()
    };
    let blocked = Arc::new(AtomicBool::new(false));
    let rule: Rule = {
        let blocked = Arc::clone(&blocked);
        // The follower (peer 2) receives nothing from the leader, so it
        // never applies; its forwarded writes still reach the leader.
        Arc::new(move |target, request| {
            if blocked.load(Ordering::SeqCst)
                && request.kind() == "append_entries"
                && target.peer_id == peer(2)
            {
                Fault::Refuse
            } else {
                Fault::Pass
            }
        })
    };
    let [leader, follower, _other] = three(&router, &config, faulty(rule)).await;
    let before = leader.with_pinset(|p| p.len());
    blocked.store(true, Ordering::SeqCst);
    let mut writes = Vec::new();
    for n in 10..13 {
        let follower = follower.clone();
        writes.push(tokio::spawn(
            async move { follower.write(pin_entry(n)).await },
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let proposed = leader.with_pinset(|p| p.len()) - before;
    blocked.store(false, Ordering::SeqCst);
    for write in writes {
        let answer = write.await.expect("task").expect("write");
        assert!(answer.is_ok(), "{answer:?}");
    }
    assert_eq!(
        proposed, 1,
        "batches proposed while the first one's replies still waited"
    );
}

/// Item 14, AppendEntries bound. openraft sent up to 300 log entries in one
/// AppendEntries whatever their size, so a follower catching up could get
/// one message too big to be answered within the heartbeat interval (its
/// time limit). The entry count is now derived from a byte budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_entries_stay_within_the_byte_budget() {
    let router = InProcRouter::new();
    let config = RaftConfig {
        batch_bytes_max: 1024,
        append_entries_bytes_max: 4096,
        ..RaftConfig::fast_for_tests()
    };
    let lagging = Arc::new(AtomicBool::new(false));
    let largest = Arc::new(AtomicU32::new(0));
    let rule: Rule = {
        let lagging = Arc::clone(&lagging);
        let largest = Arc::clone(&largest);
        Arc::new(move |target, request| {
            if request.kind() != "append_entries" {
                return Fault::Pass;
            }
            if target.peer_id == peer(3) && lagging.load(Ordering::SeqCst) {
                return Fault::Refuse;
            }
            let bytes = request.to_bytes().expect("encode").len() as u32;
            largest.fetch_max(bytes, Ordering::SeqCst);
            Fault::Pass
        })
    };
    let [leader, _b, laggard] = three(&router, &config, faulty(rule)).await;
    lagging.store(true, Ordering::SeqCst);
    for n in 0..300 {
        leader
            .write(pin_entry(n))
            .await
            .expect("write")
            .expect("pin");
    }
    lagging.store(false, Ordering::SeqCst);
    let index = leader.applied_index();
    assert!(laggard.wait_for_applied(index, WAIT).await, "caught up");
    let largest = largest.load(Ordering::SeqCst) as usize;
    assert!(
        largest <= config.append_entries_bytes_max,
        "an AppendEntries of {largest} bytes"
    );
}

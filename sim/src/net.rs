//! The simulated network between peers: latency, loss, partitions (symmetric,
//! one-way or bridged; failing fast or hanging until the caller's timeout),
//! duplicated requests, requests delivered after the caller gave up, and
//! dead peers, on madsim's clock and random numbers.
//!
//! A request runs its handler as a task of the target's simulated node, so a
//! crash of the target kills the requests it is serving. Raft traffic and the
//! node layer's peer RPCs (metrics, tracker status, the leader's applied
//! index) travel the same links and suffer the same faults, as they share
//! one libp2p connection between real peers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cluster_net::transport::BoxFuture;
use cluster_net::{
    NodeInfo, NodeRpc, NodeRpcError, NodeRpcHandler, RaftTransport, RpcHandler, RpcRequest,
    RpcResponse, TransportError,
};
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use madsim::task::NodeId;

/// How long a lost message keeps the caller waiting before it times out, in ms.
const LOST_MESSAGE_WAIT_MS: u64 = 500;
/// How long a call into a partition waits before failing, in ms.
const PARTITION_WAIT_MS: u64 = 50;
/// How long a call into a hanging partition waits (past any caller's timeout), in ms.
const HANG_MS: u64 = 30_000;
/// How late a stale request arrives after its caller gave up, in ms.
const STALE_DELAY_MS: (u64, u64) = (600, 4_000);

/// The network of one simulation.
#[derive(Default)]
pub struct SimNet {
    state: Mutex<NetState>,
}

struct NetState {
    endpoints: BTreeMap<String, (NodeId, Arc<dyn RpcHandler>)>,
    node_endpoints: BTreeMap<String, (NodeId, Arc<dyn NodeRpcHandler>)>,
    /// Directed links that drop everything: (from, to).
    clogged: BTreeSet<(String, String)>,
    loss_per_mille: u32,
    latency_ms: (u64, u64),
    /// Requests delivered twice, in thousandths.
    dup_per_mille: u32,
    /// Requests held back and delivered after the caller timed out, in thousandths.
    stale_per_mille: u32,
    /// Calls into a partition hang instead of failing fast.
    hang: bool,
}

impl Default for NetState {
    fn default() -> Self {
        NetState {
            endpoints: BTreeMap::new(),
            node_endpoints: BTreeMap::new(),
            clogged: BTreeSet::new(),
            loss_per_mille: 0,
            latency_ms: (1, 5),
            dup_per_mille: 0,
            stale_per_mille: 0,
            hang: false,
        }
    }
}

impl SimNet {
    fn state(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `peer` reachable: it runs on simulated node `node` and serves with `handler`.
    pub fn register(&self, peer: &str, node: NodeId, handler: Arc<dyn RpcHandler>) {
        self.state()
            .endpoints
            .insert(peer.to_string(), (node, handler));
    }

    /// Makes `peer`'s node layer reachable: it serves node RPCs with `handler`.
    pub fn register_node(&self, peer: &str, node: NodeId, handler: Arc<dyn NodeRpcHandler>) {
        self.state()
            .node_endpoints
            .insert(peer.to_string(), (node, handler));
    }

    /// Marks `peer` down (crashed): calls to it fail at once.
    pub fn set_down(&self, peer: &str) {
        let mut s = self.state();
        s.endpoints.remove(peer);
        s.node_endpoints.remove(peer);
    }

    /// Drops every message from `from` to `to`.
    pub fn clog(&self, from: &str, to: &str) {
        self.state()
            .clogged
            .insert((from.to_string(), to.to_string()));
    }

    /// Sets packet loss and latency.
    pub fn set_conditions(&self, loss_per_mille: u32, latency_ms: (u64, u64)) {
        let mut s = self.state();
        s.loss_per_mille = loss_per_mille;
        s.latency_ms = latency_ms;
    }

    /// Duplicates and delays requests past their caller's timeout.
    pub fn set_misdelivery(&self, dup_per_mille: u32, stale_per_mille: u32) {
        let mut s = self.state();
        s.dup_per_mille = dup_per_mille;
        s.stale_per_mille = stale_per_mille;
    }

    /// Makes calls into a partition hang (like a silently dropped TCP flow)
    /// rather than fail at once (like a refused connection).
    pub fn set_hang(&self, hang: bool) {
        self.state().hang = hang;
    }

    /// Clears partitions, loss, misdelivery and extra latency.
    pub fn heal(&self) {
        let mut s = self.state();
        s.clogged.clear();
        s.loss_per_mille = 0;
        s.latency_ms = (1, 5);
        s.dup_per_mille = 0;
        s.stale_per_mille = 0;
        s.hang = false;
    }

    /// True when messages from `from` reach `to`.
    pub fn link_up(&self, from: &str, to: &str) -> bool {
        !self
            .state()
            .clogged
            .contains(&(from.to_string(), to.to_string()))
    }

    /// A transport for the peer `me`.
    pub fn transport_for(self: &Arc<Self>, me: &str) -> Arc<dyn RaftTransport> {
        Arc::new(SimTransport {
            net: Arc::clone(self),
            me: me.to_string(),
        })
    }

    /// The node-RPC seam for the peer `me`.
    pub fn node_rpc_for(self: &Arc<Self>, me: &str) -> Arc<dyn NodeRpc> {
        Arc::new(SimTransport {
            net: Arc::clone(self),
            me: me.to_string(),
        })
    }

    /// One leg of a message: its delay, and whether it is lost.
    fn leg(&self, from: &str, to: &str) -> (Duration, bool) {
        let s = self.state();
        let mut rng = thread_rng();
        let delay = rng.gen_range(s.latency_ms.0..=s.latency_ms.1);
        let clogged = s.clogged.contains(&(from.to_string(), to.to_string()));
        let lost = clogged || rng.gen_range(0..1000) < s.loss_per_mille;
        (Duration::from_millis(delay), lost)
    }

    /// Carries one call from `from` to `to` through the network's faults:
    /// `endpoint` finds the target's node and handler, `serve` runs the
    /// request on that handler (once, twice when duplicated, late when
    /// stale). The transport-error mapping is the same for every protocol.
    async fn deliver<H, R>(
        self: Arc<Self>,
        from: String,
        to: String,
        endpoint: impl Fn(&NetState) -> Option<(NodeId, H)>,
        serve: impl Fn(H) -> BoxFuture<R>,
    ) -> Result<R, TransportError>
    where
        H: Clone + Send + 'static,
        R: Send + 'static,
    {
        let (delay, lost) = self.leg(&from, &to);
        if !self.link_up(&from, &to) {
            if self.state().hang {
                crate::probes::hit("net: call hung in a partition");
                madsim::time::sleep(Duration::from_millis(HANG_MS)).await;
                return Err(TransportError::Timeout { peer: to });
            }
            madsim::time::sleep(Duration::from_millis(PARTITION_WAIT_MS)).await;
            return Err(TransportError::Unreachable { peer: to });
        }
        madsim::time::sleep(delay).await;
        if lost {
            madsim::time::sleep(Duration::from_millis(LOST_MESSAGE_WAIT_MS)).await;
            return Err(TransportError::Timeout { peer: to });
        }
        let Some((node, handler)) = endpoint(&self.state()) else {
            return Err(TransportError::Unreachable { peer: to });
        };
        let Some(spawner) = Handle::current().get_node(node) else {
            return Err(TransportError::Unreachable { peer: to });
        };
        let (dup, stale) = {
            let s = self.state();
            let mut rng = thread_rng();
            (
                rng.gen_range(0..1000) < s.dup_per_mille,
                rng.gen_range(0..1000) < s.stale_per_mille,
            )
        };
        if stale {
            // Held in the network past the caller's patience, then
            // delivered anyway; its answer goes nowhere.
            crate::probes::hit("net: stale answer after the caller gave up");
            let late = thread_rng().gen_range(STALE_DELAY_MS.0..=STALE_DELAY_MS.1);
            let served = serve(handler);
            spawner.spawn(async move {
                madsim::time::sleep(Duration::from_millis(late)).await;
                let _ = served.await;
            });
            madsim::time::sleep(Duration::from_millis(LOST_MESSAGE_WAIT_MS)).await;
            return Err(TransportError::Timeout { peer: to });
        }
        if dup {
            crate::probes::hit("net: message duplicated");
            let served = serve(handler.clone());
            let extra = thread_rng().gen_range(0..50);
            spawner.spawn(async move {
                madsim::time::sleep(Duration::from_millis(extra)).await;
                let _ = served.await;
            });
        }
        let response = spawner
            .spawn(serve(handler))
            .await
            .map_err(|_| TransportError::Failed {
                peer: to.clone(),
                reason: "peer crashed while serving".into(),
            })?;
        let (delay, lost) = self.leg(&to, &from);
        madsim::time::sleep(delay).await;
        if lost {
            madsim::time::sleep(Duration::from_millis(LOST_MESSAGE_WAIT_MS)).await;
            return Err(TransportError::Timeout { peer: to });
        }
        Ok(response)
    }
}

/// One peer's end of the network, for Raft and for the node layer.
struct SimTransport {
    net: Arc<SimNet>,
    me: String,
}

impl RaftTransport for SimTransport {
    fn call(
        &self,
        target: &NodeInfo,
        request: RpcRequest,
    ) -> BoxFuture<Result<RpcResponse, TransportError>> {
        if request.kind() == "install_snapshot" {
            crate::probes::hit("net: snapshot sent");
        }
        let to = target.peer_id.clone();
        let from = self.me.clone();
        let lookup = to.clone();
        // As the libp2p transport does: the handler learns who sent it, so
        // the sender checks (members only, joins from the peer they name)
        // run under the faults too.
        let serve = move |handler: Arc<dyn RpcHandler>| {
            let (request, from) = (request.clone(), from.clone());
            Box::pin(async move { handler.handle_from(&from, request).await }) as BoxFuture<_>
        };
        Box::pin(Arc::clone(&self.net).deliver(
            self.me.clone(),
            to,
            move |s: &NetState| s.endpoints.get(&lookup).cloned(),
            serve,
        ))
    }
}

impl NodeRpc for SimTransport {
    fn node_call(
        &self,
        target: &NodeInfo,
        method: &str,
        body: Vec<u8>,
    ) -> BoxFuture<Result<Vec<u8>, NodeRpcError>> {
        let to = target.peer_id.clone();
        let (from, method) = (self.me.clone(), method.to_string());
        let lookup = to.clone();
        let serve = move |handler: Arc<dyn NodeRpcHandler>| {
            let served = handler.handle(&from, &method, body.clone());
            Box::pin(served) as BoxFuture<_>
        };
        let delivered = Arc::clone(&self.net).deliver(
            self.me.clone(),
            to.clone(),
            move |s: &NetState| s.node_endpoints.get(&lookup).cloned(),
            serve,
        );
        Box::pin(async move {
            match delivered.await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(reason)) => Err(NodeRpcError::Remote { peer: to, reason }),
                Err(e) => Err(NodeRpcError::Transport(e)),
            }
        })
    }
}

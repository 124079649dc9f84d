//! An in-process transport: a router of direct calls between peers of one
//! process, for tests and benchmarks. It can take a peer down or cut links
//! between peers; calls to or from an unreachable peer fail immediately.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::raft_glue::{CodecError, NodeInfo, RpcRequest, RpcResponse};
use crate::transport::{BoxFuture, RaftTransport, RpcHandler, TransportError};

#[derive(Default)]
struct RouterState {
    handlers: HashMap<String, Arc<dyn RpcHandler>>,
    down: HashSet<String>,
    cut: HashSet<(String, String)>,
}

/// Routes RPCs between the peers registered in it.
#[derive(Clone, Default)]
pub struct InProcRouter {
    state: Arc<Mutex<RouterState>>,
    serialize: bool,
}

impl std::fmt::Debug for InProcRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcRouter").finish_non_exhaustive()
    }
}

fn link(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl InProcRouter {
    /// A router that passes messages by value.
    pub fn new() -> InProcRouter {
        InProcRouter::default()
    }

    /// A router that encodes and decodes every message (as a network
    /// transport would), to exercise the wire format.
    pub fn serializing() -> InProcRouter {
        InProcRouter {
            serialize: true,
            ..InProcRouter::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, RouterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The transport peer `from` uses to send.
    pub fn transport(&self, from: &str) -> Arc<dyn RaftTransport> {
        Arc::new(InProcTransport {
            router: self.clone(),
            from: from.to_string(),
        })
    }

    /// Registers the handler of peer `peer` (and marks it up). The router
    /// holds the handler until [`unregister`](InProcRouter::unregister).
    pub fn register(&self, peer: &str, handler: Arc<dyn RpcHandler>) {
        let mut state = self.lock();
        state.handlers.insert(peer.to_string(), handler);
        state.down.remove(peer);
    }

    /// Forgets peer `peer` (as if its process died).
    pub fn unregister(&self, peer: &str) {
        self.lock().handlers.remove(peer);
    }

    /// Takes a peer down (`true`) or up: a down peer neither sends nor
    /// receives.
    pub fn set_down(&self, peer: &str, down: bool) {
        let mut state = self.lock();
        if down {
            state.down.insert(peer.to_string());
        } else {
            state.down.remove(peer);
        }
    }

    /// Cuts (`true`) or restores the link between two peers.
    pub fn set_cut(&self, a: &str, b: &str, cut: bool) {
        let mut state = self.lock();
        if cut {
            state.cut.insert(link(a, b));
        } else {
            state.cut.remove(&link(a, b));
        }
    }

    fn route(&self, from: &str, to: &str) -> Option<Arc<dyn RpcHandler>> {
        let state = self.lock();
        if state.down.contains(from)
            || state.down.contains(to)
            || state.cut.contains(&link(from, to))
        {
            return None;
        }
        state.handlers.get(to).cloned()
    }
}

struct InProcTransport {
    router: InProcRouter,
    from: String,
}

impl RaftTransport for InProcTransport {
    fn call(
        &self,
        target: &NodeInfo,
        request: RpcRequest,
    ) -> BoxFuture<Result<RpcResponse, TransportError>> {
        let router = self.router.clone();
        let from = self.from.clone();
        let to = target.peer_id.clone();
        Box::pin(async move {
            let unreachable = || TransportError::Unreachable { peer: to.clone() };
            let handler = router.route(&from, &to).ok_or_else(unreachable)?;
            let failed = |e: CodecError| TransportError::Failed {
                peer: to.clone(),
                reason: e.to_string(),
            };
            let request = if router.serialize {
                RpcRequest::from_bytes(&request.to_bytes().map_err(failed)?).map_err(failed)?
            } else {
                request
            };
            let response = handler.handle_from(&from, request).await;
            drop(handler);
            // A peer that went down while serving loses the answer.
            if router.route(&from, &to).is_none() {
                return Err(TransportError::Failed {
                    peer: to.clone(),
                    reason: "connection lost".to_string(),
                });
            }
            if router.serialize {
                RpcResponse::from_bytes(&response.to_bytes().map_err(failed)?).map_err(failed)
            } else {
                Ok(response)
            }
        })
    }
}

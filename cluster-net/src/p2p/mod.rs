//! Peer networking over libp2p (feature `libp2p`, not built under the
//! simulator): a [`RaftTransport`] that carries Raft traffic and peer RPCs
//! between the peers of a cluster.
//!
//! - `secret`: the 32-byte cluster secret that keys the private network;
//! - `key`: the peer's ed25519 identity, kept in the config directory;
//! - `handshake`: TCP + private network + noise + yamux, with a plain-words
//!   refusal of peers holding another secret;
//! - `codec`: the versioned protocol ids and the size-capped framing;
//! - `meter`: bytes in and out per protocol, and their recent rates;
//! - `peerstore`: known peers, dial back-off, the `peerstore` file;
//! - `swarm`: the task that owns the libp2p swarm.
//!
//! Each inbound request reaches the registered [`RpcHandler`] through
//! [`RpcHandler::handle_from`] with the peer id noise authenticated.

mod codec;
mod config;
mod handshake;
mod key;
mod meter;
mod peerstore;
mod secret;
mod swarm;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

#[doc(hidden)]
pub use codec::{decode_node_request, decode_node_response, read_frame};
pub use codec::{NODE_RPC_PROTOCOL, PEER_RPC_PROTOCOL, RAFT_PROTOCOL, WIRE_VERSION};
pub use config::{Libp2pConfig, Libp2pConfigError, ENVELOPE_OVERHEAD_BYTES};
pub use key::{KeyError, KEY_FILE};
pub use peerstore::{PeerRecord, PEERSTORE_FILE};
pub use secret::{ClusterSecret, SecretError, SECRET_BYTES};

use crate::raft_glue::{NodeInfo, RpcRequest, RpcResponse};
use crate::transport::{
    BoxFuture, NodeRpc, NodeRpcError, NodeRpcHandler, RaftTransport, RpcHandler, TransportError,
};
use swarm::{lock, Command, Proto, Shared, Task};

/// The peer id of the identity key in `config_dir`, creating the key (and
/// the directory) when there is none yet: for `init` and the offline
/// commands of a node, which need the peer's name without starting a host.
pub fn identity_peer_id(config_dir: &std::path::Path) -> Result<cluster_core::PeerId, KeyError> {
    let key = key::load_or_create(config_dir)?;
    let text = key.public().to_peer_id().to_string();
    cluster_core::PeerId::parse(&text).map_err(|e| KeyError::Corrupt {
        path: config_dir.join(KEY_FILE),
        reason: e.to_string(),
    })
}

/// Longest wait at start for the listeners to report their addresses.
const LISTEN_WAIT_MS: u64 = 5_000;

/// The libp2p host could not start.
#[derive(Debug, thiserror::Error)]
pub enum Libp2pError {
    /// The identity key could not be read or created.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A listen address is not a multiaddr or cannot be listened on.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// No listen address was given.
    #[error("no listen address configured")]
    NoListenAddress,
    /// The noise configuration failed.
    #[error("noise: {0}")]
    Noise(String),
    /// The peerstore file could not be read.
    #[error("peerstore file in {dir}: {reason}")]
    Peerstore {
        /// The config directory.
        dir: String,
        /// Why.
        reason: String,
    },
}

/// A peer's libp2p host, as a Raft transport. Cheap to clone.
///
/// Start it, start [`ClusterRaft`](crate::ClusterRaft) with it, then
/// [`register`](Libp2pTransport::register) the Raft handler. The host holds
/// the handler (which holds the transport): call
/// [`shutdown`](Libp2pTransport::shutdown) to stop it.
#[derive(Clone)]
pub struct Libp2pTransport {
    inner: Arc<Inner>,
}

struct Inner {
    peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Libp2pTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Libp2pTransport")
            .field("peer_id", &self.inner.peer_id)
            .field("listen", &self.inner.listen_addrs)
            .finish_non_exhaustive()
    }
}

fn parse_addr(text: &str) -> Result<Multiaddr, Libp2pError> {
    text.parse()
        .map_err(|e: libp2p::multiaddr::Error| Libp2pError::Listen {
            addr: text.to_string(),
            reason: e.to_string(),
        })
}

impl Libp2pTransport {
    /// Starts the host: loads (or creates) the identity key and the
    /// peerstore of `config.config_dir`, listens, and dials up to
    /// `bootstrap_dials_max` peers of the peerstore. Needs a tokio runtime.
    pub async fn start(config: Libp2pConfig) -> Result<Libp2pTransport, Libp2pError> {
        if config.listen.is_empty() {
            return Err(Libp2pError::NoListenAddress);
        }
        let listen = config
            .listen
            .iter()
            .map(|a| parse_addr(a))
            .collect::<Result<Vec<_>, _>>()?;
        let key = key::load_or_create(&config.config_dir)?;
        let peer_id = key.public().to_peer_id();
        match &config.secret {
            Some(secret) => {
                tracing::info!(peer = %peer_id, secret_fingerprint = %secret.fingerprint(), "private network on")
            }
            None => tracing::warn!(
                peer = %peer_id,
                "no cluster secret configured: any libp2p peer can connect to this one"
            ),
        }
        let transport = handshake::build(
            &key,
            config.secret,
            Duration::from_millis(config.connect_timeout_ms),
        )
        .map_err(|e| Libp2pError::Noise(e.to_string()))?;
        let meter = Arc::new(meter::Meter::new(std::time::Instant::now()));
        let behaviour = swarm::Behaviour::new(&config, &key, Arc::clone(&meter));
        let mut swarm = libp2p::Swarm::new(
            transport,
            behaviour,
            peer_id,
            libp2p::swarm::Config::with_tokio_executor().with_idle_connection_timeout(
                Duration::from_millis(config.idle_connection_timeout_ms),
            ),
        );
        let listen_addrs = listen_all(&mut swarm, &listen).await?;

        let mut store = peerstore::Peerstore::new(
            Duration::from_millis(config.redial_backoff_min_ms),
            Duration::from_millis(
                config
                    .redial_backoff_max_ms
                    .max(config.redial_backoff_min_ms),
            ),
        );
        let loaded = peerstore::load(&config.config_dir, &mut store).map_err(|e| {
            Libp2pError::Peerstore {
                dir: config.config_dir.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let bootstrap: Vec<_> = store
            .peers()
            .into_iter()
            .filter(|p| *p != peer_id)
            .take(config.bootstrap_dials_max)
            .collect();
        for peer in &bootstrap {
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(*peer)
                .addresses(store.addresses(peer))
                .build();
            if let Err(e) = swarm.dial(opts) {
                tracing::debug!(peer = %peer, error = %e, "bootstrap dial not started");
            }
        }
        tracing::info!(peer = %peer_id, listen = ?listen_addrs, peerstore = loaded, "libp2p host started");

        let shared = Arc::new(Shared {
            handler: Mutex::new(None),
            node_handler: Mutex::new(None),
            peerstore: Mutex::new(store),
            meter,
        });
        let (commands, queue) = mpsc::channel(config.command_queue_max.max(1));
        let task = Task::new(swarm, Arc::clone(&shared), config);
        let task = tokio::spawn(task.run(queue));
        Ok(Libp2pTransport {
            inner: Arc::new(Inner {
                peer_id,
                listen_addrs,
                commands,
                shared,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// This peer's id.
    pub fn peer_id(&self) -> cluster_core::PeerId {
        cluster_core::PeerId::parse(&self.inner.peer_id.to_string())
            .expect("invariant: a libp2p peer id is a valid base58 multihash")
    }

    /// The addresses the host listens on (resolved ports, without `/p2p/`).
    pub fn listen_addrs(&self) -> Vec<String> {
        self.inner
            .listen_addrs
            .iter()
            .map(|a| a.to_string())
            .collect()
    }

    /// The address to record in the membership ([`NodeInfo::addr`]): the
    /// first listen address.
    pub fn addr(&self) -> String {
        self.inner
            .listen_addrs
            .first()
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    /// Serves inbound requests with `handler` from now on. Until then they
    /// are refused.
    pub fn register(&self, handler: Arc<dyn RpcHandler>) {
        *lock(&self.inner.shared.handler) = Some(handler);
    }

    /// Serves inbound node RPCs (tracker status, metrics) with `handler`
    /// from now on. Until then they are answered with an error.
    pub fn register_node_rpc(&self, handler: Arc<dyn NodeRpcHandler>) {
        *lock(&self.inner.shared.node_handler) = Some(handler);
    }

    /// Stops serving inbound requests (they are refused).
    pub fn unregister(&self) {
        *lock(&self.inner.shared.handler) = None;
        *lock(&self.inner.shared.node_handler) = None;
    }

    /// Bytes in and out per protocol since start, and their rates over the
    /// last 10 s (see the `meter` module).
    pub fn traffic(&self) -> std::collections::BTreeMap<String, crate::transport::Traffic> {
        self.inner.shared.meter.traffic(std::time::Instant::now())
    }

    /// Known peers: addresses, connected or not, last seen, last error.
    pub fn peers(&self) -> Vec<PeerRecord> {
        lock(&self.inner.shared.peerstore).records()
    }

    /// Dials `addr` (a multiaddr, with `/p2p/<id>` to record the peer).
    pub async fn dial(&self, addr: &str) -> Result<(), Libp2pError> {
        let addr = parse_addr(addr)?;
        // A stopped host has nothing to dial with; nothing to report.
        let _ = self.inner.commands.send(Command::Dial { addr }).await;
        Ok(())
    }

    /// Saves the peerstore, closes every connection and stops the host.
    /// Calls fail as unreachable afterwards.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self
            .inner
            .commands
            .send(Command::Shutdown { done })
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
        let task = lock(&self.inner.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.unregister();
    }
}

/// Listens on every address and waits until each listener reports one.
async fn listen_all(
    swarm: &mut libp2p::Swarm<swarm::Behaviour>,
    listen: &[Multiaddr],
) -> Result<Vec<Multiaddr>, Libp2pError> {
    use libp2p::futures::StreamExt;
    use libp2p::swarm::SwarmEvent;

    let mut waiting = std::collections::HashMap::new();
    for addr in listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| Libp2pError::Listen {
                addr: addr.to_string(),
                reason: handshake::error_chain(&e),
            })?;
        waiting.insert(id, addr.clone());
    }
    let mut addrs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(LISTEN_WAIT_MS);
    while !waiting.is_empty() {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| Libp2pError::Listen {
                addr: format!("{:?}", waiting.values().collect::<Vec<_>>()),
                reason: "no address reported in time".to_string(),
            })?;
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                waiting.remove(&listener_id);
                addrs.push(address);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(addr) = waiting.remove(&listener_id) {
                    return Err(Libp2pError::Listen {
                        addr: addr.to_string(),
                        reason: format!("listener closed: {reason:?}"),
                    });
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                if let Some(addr) = waiting.get(&listener_id) {
                    return Err(Libp2pError::Listen {
                        addr: addr.to_string(),
                        reason: handshake::error_chain(&error),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(addrs)
}

impl Libp2pTransport {
    /// Sends `bytes` on `proto` to `target` and returns the answer's bytes.
    fn send(
        &self,
        target: &NodeInfo,
        proto: Proto,
        bytes: Vec<u8>,
    ) -> BoxFuture<Result<Vec<u8>, TransportError>> {
        let commands = self.inner.commands.clone();
        let target = target.clone();
        Box::pin(async move {
            let unreachable = || TransportError::Unreachable {
                peer: target.peer_id.clone(),
            };
            let Ok(peer) = target.peer_id.parse::<PeerId>() else {
                tracing::warn!(peer = %target.peer_id, "not a libp2p peer id: cannot call it");
                return Err(unreachable());
            };
            let addr = match target.addr.parse::<Multiaddr>() {
                Ok(addr) => Some(peerstore::split_p2p(&addr).0),
                Err(_) if target.addr.is_empty() => None,
                Err(e) => {
                    tracing::debug!(peer = %peer, addr = %target.addr, error = %e, "not a multiaddr");
                    None
                }
            };
            let (reply, answer) = oneshot::channel();
            commands
                .send(Command::Call {
                    peer,
                    addr,
                    proto,
                    request: bytes,
                    reply,
                })
                .await
                .map_err(|_| unreachable())?;
            answer.await.map_err(|_| unreachable())?
        })
    }
}

impl NodeRpc for Libp2pTransport {
    fn node_call(
        &self,
        target: &NodeInfo,
        method: &str,
        body: Vec<u8>,
    ) -> BoxFuture<Result<Vec<u8>, NodeRpcError>> {
        let peer = target.peer_id.clone();
        let failed = move |reason: String| {
            NodeRpcError::Transport(TransportError::Failed {
                peer: peer.clone(),
                reason,
            })
        };
        if method.len() > crate::transport::NODE_RPC_METHOD_MAX_BYTES {
            let e = failed(format!("method name {method:?} too long"));
            return Box::pin(async move { Err(e) });
        }
        let request = codec::NodeRequest {
            method: method.to_string(),
            body,
        };
        let bytes = match postcard::to_allocvec(&request) {
            Ok(bytes) => bytes,
            Err(e) => {
                let e = failed(format!("request could not be encoded: {e}"));
                return Box::pin(async move { Err(e) });
            }
        };
        let call = self.send(target, Proto::NodeRpc, bytes);
        let target = target.peer_id.clone();
        Box::pin(async move {
            let bytes = call.await?;
            let answer: codec::NodeResponse = postcard::from_bytes(&bytes)
                .map_err(|e| failed(format!("undecodable answer: {e}")))?;
            answer.map_err(|reason| NodeRpcError::Remote {
                peer: target,
                reason,
            })
        })
    }

    fn traffic(&self) -> std::collections::BTreeMap<String, crate::transport::Traffic> {
        Libp2pTransport::traffic(self)
    }
}

impl RaftTransport for Libp2pTransport {
    fn call(
        &self,
        target: &NodeInfo,
        request: RpcRequest,
    ) -> BoxFuture<Result<RpcResponse, TransportError>> {
        let failed = {
            let peer = target.peer_id.clone();
            move |reason: String| TransportError::Failed {
                peer: peer.clone(),
                reason,
            }
        };
        let bytes = match request.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                let e = failed(format!("request could not be encoded: {e}"));
                return Box::pin(async move { Err(e) });
            }
        };
        let call = self.send(target, Proto::of(&request), bytes);
        Box::pin(async move {
            let bytes = call.await?;
            RpcResponse::from_bytes(&bytes).map_err(|e| failed(e.to_string()))
        })
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn the_identity_peer_id_is_created_once_and_matches_the_hosts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sub = dir.path().join("config");
        let first = identity_peer_id(&sub).expect("create");
        assert_eq!(identity_peer_id(&sub).expect("read"), first);
        let key = key::load_or_create(&sub).expect("load");
        assert_eq!(first.as_str(), key.public().to_peer_id().to_string());
    }
}

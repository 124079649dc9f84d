//! The swarm task: owns the libp2p `Swarm`, takes calls from a bounded
//! queue, serves inbound requests on bounded handler pools, and keeps the
//! peerstore up to date.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use libp2p::futures::StreamExt;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{identify, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::codec::{
    NodeRequest, NodeResponse, WireCodec, NODE_RPC_PROTOCOL, PEER_RPC_PROTOCOL, RAFT_PROTOCOL,
};
use super::config::Libp2pConfig;
use super::handshake::{error_chain, is_secret_mismatch};
use super::meter::{self, Meter};
use super::peerstore::{self, Peerstore};
use crate::raft_glue::{RpcRequest, RpcResponse};
use crate::transport::{NodeRpcHandler, RpcHandler, TransportError};

/// Identify's protocol version: peers of another major version are logged.
pub(crate) const IDENTIFY_PROTOCOL_VERSION: &str = "/ipfs-cluster-rs/1";

/// Which of the two request-response protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Proto {
    Raft,
    PeerRpc,
    NodeRpc,
}

impl Proto {
    pub(crate) fn of(request: &RpcRequest) -> Proto {
        if request.is_raft_protocol() {
            Proto::Raft
        } else {
            Proto::PeerRpc
        }
    }
}

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    raft: request_response::Behaviour<WireCodec>,
    peer_rpc: request_response::Behaviour<WireCodec>,
    node_rpc: request_response::Behaviour<WireCodec>,
    identify: identify::Behaviour,
}

impl Behaviour {
    pub(crate) fn new(
        config: &Libp2pConfig,
        key: &libp2p::identity::Keypair,
        meter: Arc<Meter>,
    ) -> Behaviour {
        let codec = WireCodec {
            message_bytes_max: config.message_bytes_max,
            meter: Some(meter),
        };
        let rr = |protocol, timeout_ms| {
            request_response::Behaviour::with_codec(
                codec.clone(),
                [(protocol, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_millis(timeout_ms))
                    .with_max_concurrent_streams(config.streams_per_connection_max),
            )
        };
        Behaviour {
            raft: rr(RAFT_PROTOCOL, config.raft_request_timeout_ms),
            peer_rpc: rr(PEER_RPC_PROTOCOL, config.peer_rpc_timeout_ms),
            node_rpc: rr(NODE_RPC_PROTOCOL, config.node_rpc_timeout_ms),
            identify: identify::Behaviour::new(identify::Config::new(
                IDENTIFY_PROTOCOL_VERSION.to_string(),
                key.public(),
            )),
        }
    }

    fn rr(&mut self, proto: Proto) -> &mut request_response::Behaviour<WireCodec> {
        match proto {
            Proto::Raft => &mut self.raft,
            Proto::PeerRpc => &mut self.peer_rpc,
            Proto::NodeRpc => &mut self.node_rpc,
        }
    }
}

/// The answer to a call: the response bytes or why there is none.
pub(crate) type Reply = oneshot::Sender<Result<Vec<u8>, TransportError>>;

/// What the transport handle asks of the swarm task.
pub(crate) enum Command {
    /// Send a request to `peer` (dialling `addr` if needed).
    Call {
        peer: PeerId,
        addr: Option<Multiaddr>,
        proto: Proto,
        request: Vec<u8>,
        reply: Reply,
    },
    /// Dial an address (with or without `/p2p/`).
    Dial { addr: Multiaddr },
    /// Save the peerstore and stop.
    Shutdown { done: oneshot::Sender<()> },
}

/// An answer of a local handler, to send back.
struct Answer {
    proto: Proto,
    channel: ResponseChannel<Vec<u8>>,
    response: Vec<u8>,
}

/// State shared between the task and the handle.
pub(crate) struct Shared {
    pub(crate) handler: Mutex<Option<Arc<dyn RpcHandler>>>,
    pub(crate) node_handler: Mutex<Option<Arc<dyn NodeRpcHandler>>>,
    pub(crate) peerstore: Mutex<Peerstore>,
    /// The traffic counters the codecs feed.
    pub(crate) meter: Arc<Meter>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct Task {
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: Libp2pConfig,
    pending: HashMap<(Proto, OutboundRequestId), Reply>,
    answers_tx: mpsc::Sender<Answer>,
    raft_slots: Arc<Semaphore>,
    peer_rpc_slots: Arc<Semaphore>,
    node_rpc_slots: Arc<Semaphore>,
}

fn unreachable(peer: &PeerId) -> TransportError {
    TransportError::Unreachable {
        peer: peer.to_string(),
    }
}

impl Task {
    pub(crate) fn new(swarm: Swarm<Behaviour>, shared: Arc<Shared>, config: Libp2pConfig) -> Task {
        let (answers_tx, _) = mpsc::channel(1);
        Task {
            swarm,
            shared,
            pending: HashMap::new(),
            answers_tx,
            raft_slots: Arc::new(Semaphore::new(config.raft_handlers_max)),
            peer_rpc_slots: Arc::new(Semaphore::new(config.peer_rpc_handlers_max)),
            node_rpc_slots: Arc::new(Semaphore::new(config.node_rpc_handlers_max)),
            config,
        }
    }

    fn peerstore(&self) -> MutexGuard<'_, Peerstore> {
        lock(&self.shared.peerstore)
    }

    fn dir(&self) -> PathBuf {
        self.config.config_dir.clone()
    }

    /// Runs until shut down or every handle is gone.
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // Every handler holds a permit until its answer is queued, so the
        // queue never holds more than the pools allow.
        let (answers_tx, mut answers) = mpsc::channel(
            self.config.raft_handlers_max
                + self.config.peer_rpc_handlers_max
                + self.config.node_rpc_handlers_max,
        );
        self.answers_tx = answers_tx;
        let mut redial =
            tokio::time::interval(Duration::from_millis(self.config.redial_interval_ms.max(1)));
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sample = tokio::time::interval(meter::SAMPLE_EVERY);
        sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = commands.recv() => match command {
                    Some(Command::Call { peer, addr, proto, request, reply }) => {
                        self.call(peer, addr, proto, request, reply)
                    }
                    Some(Command::Dial { addr }) => self.dial_addr(addr),
                    Some(Command::Shutdown { done }) => {
                        self.save_peerstore_now();
                        let _ = done.send(());
                        break;
                    }
                    None => {
                        self.save_peerstore_now();
                        break;
                    }
                },
                Some(answer) = answers.recv() => self.answer(answer),
                _ = redial.tick() => self.redial(),
                _ = sample.tick() => self.shared.meter.sample(Instant::now()),
            }
        }
        // Pending callers learn the transport is gone when their reply
        // senders drop with the task.
        *lock(&self.shared.handler) = None;
    }

    fn call(
        &mut self,
        peer: PeerId,
        addr: Option<Multiaddr>,
        proto: Proto,
        request: Vec<u8>,
        reply: Reply,
    ) {
        let now = Instant::now();
        if self.pending.len() >= self.config.outbound_pending_max {
            tracing::warn!(peer = %peer, "too many requests awaiting answers; refused one");
            let _ = reply.send(Err(unreachable(&peer)));
            return;
        }
        let connected = self.swarm.is_connected(&peer);
        let addresses = {
            let keep = Duration::from_millis(self.config.keep_connected_ms);
            let mut store = self.peerstore();
            if let Some(addr) = addr {
                store.add_address(peer, addr);
            }
            store.want(peer, now + keep);
            if !connected && store.in_backoff(&peer, now) {
                drop(store);
                let _ = reply.send(Err(unreachable(&peer)));
                return;
            }
            store.addresses(&peer)
        };
        let id = self
            .swarm
            .behaviour_mut()
            .rr(proto)
            .send_request_with_addresses(&peer, request, addresses);
        self.pending.insert((proto, id), reply);
    }

    fn dial_addr(&mut self, addr: Multiaddr) {
        let (bare, peer) = peerstore::split_p2p(&addr);
        let opts = match peer {
            Some(peer) => {
                self.peerstore().add_address(peer, bare.clone());
                DialOpts::peer_id(peer).addresses(vec![bare]).build()
            }
            None => DialOpts::unknown_peer_id().address(bare).build(),
        };
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(addr = %addr, error = %e, "dial not started");
        }
    }

    /// Dials the peers that should be connected and are not, and saves the
    /// peerstore when it changed.
    fn redial(&mut self) {
        let now = Instant::now();
        let due = self.peerstore().due_for_redial(now);
        for peer in due {
            if self.swarm.is_connected(&peer) {
                continue;
            }
            let addresses = self.peerstore().addresses(&peer);
            tracing::debug!(peer = %peer, "redialling");
            let opts = DialOpts::peer_id(peer).addresses(addresses).build();
            if let Err(e) = self.swarm.dial(opts) {
                if !matches!(e, DialError::DialPeerConditionFalse(_)) {
                    self.peerstore()
                        .dial_failed(peer, error_chain(&e), Instant::now());
                }
            }
        }
        let text = {
            let mut store = self.peerstore();
            store.take_dirty().then(|| store.to_file())
        };
        if let Some(text) = text {
            let path = self.dir().join(peerstore::PEERSTORE_FILE);
            tokio::task::spawn_blocking(move || {
                if let Err(e) = super::key::write_private_file(&path, text.as_bytes()) {
                    tracing::warn!(path = %path.display(), error = %e, "could not save the peerstore");
                }
            });
        }
    }

    fn save_peerstore_now(&self) {
        let text = {
            let mut store = self.peerstore();
            store.take_dirty();
            store.to_file()
        };
        let path = self.dir().join(peerstore::PEERSTORE_FILE);
        if let Err(e) = super::key::write_private_file(&path, text.as_bytes()) {
            tracing::warn!(path = %path.display(), error = %e, "could not save the peerstore");
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Raft(e)) => self.on_rr_event(Proto::Raft, e),
            SwarmEvent::Behaviour(BehaviourEvent::PeerRpc(e)) => {
                self.on_rr_event(Proto::PeerRpc, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::NodeRpc(e)) => {
                self.on_rr_event(Proto::NodeRpc, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if info.protocol_version != IDENTIFY_PROTOCOL_VERSION {
                    tracing::warn!(peer = %peer_id, version = %info.protocol_version, ours = IDENTIFY_PROTOCOL_VERSION, "peer runs another protocol version");
                }
                for addr in info.listen_addrs {
                    if self.peerstore().add_address(peer_id, addr.clone()) {
                        self.swarm.add_peer_address(peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(_)) => {}
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                tracing::debug!(peer = %peer_id, remote = %endpoint.get_remote_address(), "connected");
                let mut store = self.peerstore();
                store.connected(peer_id);
                if endpoint.is_dialer() {
                    store.add_address(peer_id, endpoint.get_remote_address().clone());
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                let cause = cause.map(|e| error_chain(&e));
                tracing::debug!(peer = %peer_id, cause = ?cause, "disconnected");
                self.peerstore().disconnected(peer_id, cause);
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                if matches!(error, DialError::DialPeerConditionFalse(_)) {
                    return;
                }
                let text = error_chain(&error);
                let Some(peer) = peer_id else {
                    tracing::warn!(error = %text, "dial failed");
                    return;
                };
                if is_secret_mismatch(&text) {
                    tracing::warn!(peer = %peer, "cannot connect to peer {peer}: it does not use this cluster's secret");
                } else {
                    tracing::debug!(peer = %peer, error = %text, "dial failed");
                }
                self.peerstore().dial_failed(peer, text, Instant::now());
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                let text = error_chain(&error);
                if !is_secret_mismatch(&text) {
                    tracing::debug!(remote = %send_back_addr, error = %text, "incoming connection failed");
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(address = %address, "listening");
            }
            _ => {}
        }
    }

    fn on_rr_event(&mut self, proto: Proto, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } if proto == Proto::NodeRpc => self.inbound_node(peer, request, channel),
                request_response::Message::Request {
                    request, channel, ..
                } => self.inbound(proto, peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending.remove(&(proto, request_id)) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let error = match error {
                    OutboundFailure::DialFailure => unreachable(&peer),
                    OutboundFailure::UnsupportedProtocols => {
                        tracing::warn!(peer = %peer, "peer does not speak this version's protocols (another version of the cluster?)");
                        unreachable(&peer)
                    }
                    OutboundFailure::Timeout => TransportError::Timeout {
                        peer: peer.to_string(),
                    },
                    OutboundFailure::ConnectionClosed => TransportError::Failed {
                        peer: peer.to_string(),
                        reason: "connection closed before the answer".to_string(),
                    },
                    OutboundFailure::Io(e) => TransportError::Failed {
                        peer: peer.to_string(),
                        reason: error_chain(&e),
                    },
                };
                if let Some(reply) = self.pending.remove(&(proto, request_id)) {
                    let _ = reply.send(Err(error));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => match error {
                request_response::InboundFailure::Io(e) => {
                    tracing::warn!(peer = %peer, error = %error_chain(&e), "dropped an inbound request")
                }
                other => tracing::debug!(peer = %peer, error = %other, "inbound request failed"),
            },
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn refuse(&mut self, proto: Proto, channel: ResponseChannel<Vec<u8>>, reason: &str) {
        match RpcResponse::failed(reason).to_bytes() {
            Ok(response) => self.answer(Answer {
                proto,
                channel,
                response,
            }),
            Err(e) => tracing::warn!(error = %e, "could not encode a refusal"),
        }
    }

    fn inbound(
        &mut self,
        proto: Proto,
        peer: PeerId,
        bytes: Vec<u8>,
        channel: ResponseChannel<Vec<u8>>,
    ) {
        let request = match RpcRequest::from_bytes(&bytes) {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!(peer = %peer, bytes = bytes.len(), error = %e, "dropped an undecodable request");
                return self.refuse(proto, channel, "undecodable request");
            }
        };
        if Proto::of(&request) != proto {
            tracing::warn!(peer = %peer, kind = request.kind(), "dropped a request sent on the wrong protocol");
            return self.refuse(proto, channel, "request on the wrong protocol");
        }
        let handler = lock(&self.shared.handler).clone();
        let Some(handler) = handler else {
            return self.refuse(proto, channel, "peer is not serving yet");
        };
        let slots = match proto {
            Proto::Raft => &self.raft_slots,
            Proto::PeerRpc | Proto::NodeRpc => &self.peer_rpc_slots,
        };
        let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
            tracing::warn!(peer = %peer, kind = request.kind(), "too many requests in progress; refused one");
            return self.refuse(proto, channel, "too many requests in progress");
        };
        let answers = self.answers_tx.clone();
        let bytes_max = self.config.message_bytes_max;
        tokio::spawn(async move {
            let kind = request.kind();
            let response = handler.handle_from(&peer.to_string(), request).await;
            let response = match response.to_bytes() {
                Ok(bytes) if bytes.len() <= bytes_max => Ok(bytes),
                Ok(bytes) => {
                    tracing::warn!(peer = %peer, kind, bytes = bytes.len(), max = bytes_max, "answer too large to send");
                    RpcResponse::failed("answer too large").to_bytes()
                }
                Err(e) => {
                    tracing::warn!(peer = %peer, kind, error = %e, "could not encode an answer");
                    RpcResponse::failed("answer could not be encoded").to_bytes()
                }
            };
            if let Ok(response) = response {
                let _ = answers
                    .send(Answer {
                        proto,
                        channel,
                        response,
                    })
                    .await;
            }
            drop(permit);
        });
    }

    fn refuse_node(&mut self, channel: ResponseChannel<Vec<u8>>, reason: &str) {
        let answer: NodeResponse = Err(reason.to_string());
        match postcard::to_allocvec(&answer) {
            Ok(response) => self.answer(Answer {
                proto: Proto::NodeRpc,
                channel,
                response,
            }),
            Err(e) => tracing::warn!(error = %e, "could not encode a refusal"),
        }
    }

    fn inbound_node(&mut self, peer: PeerId, bytes: Vec<u8>, channel: ResponseChannel<Vec<u8>>) {
        let request: NodeRequest = match postcard::from_bytes(&bytes) {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!(peer = %peer, bytes = bytes.len(), error = %e, "dropped an undecodable node rpc");
                return self.refuse_node(channel, "undecodable request");
            }
        };
        if request.method.len() > crate::transport::NODE_RPC_METHOD_MAX_BYTES {
            return self.refuse_node(channel, "method name too long");
        }
        let handler = lock(&self.shared.node_handler).clone();
        let Some(handler) = handler else {
            return self.refuse_node(channel, "peer serves no node rpcs");
        };
        let Ok(permit) = Arc::clone(&self.node_rpc_slots).try_acquire_owned() else {
            tracing::warn!(peer = %peer, method = %request.method, "too many node rpcs in progress; refused one");
            return self.refuse_node(channel, "too many requests in progress");
        };
        let answers = self.answers_tx.clone();
        let bytes_max = self.config.message_bytes_max;
        tokio::spawn(async move {
            let answer: NodeResponse = handler
                .handle(&peer.to_string(), &request.method, request.body)
                .await;
            let too_large: NodeResponse = Err("answer too large".to_string());
            let response = match postcard::to_allocvec(&answer) {
                Ok(bytes) if bytes.len() <= bytes_max => Ok(bytes),
                Ok(bytes) => {
                    tracing::warn!(peer = %peer, method = %request.method, bytes = bytes.len(), max = bytes_max, "node rpc answer too large to send");
                    postcard::to_allocvec(&too_large)
                }
                Err(e) => Err(e),
            };
            match response {
                Ok(response) => {
                    let _ = answers
                        .send(Answer {
                            proto: Proto::NodeRpc,
                            channel,
                            response,
                        })
                        .await;
                }
                Err(e) => {
                    tracing::warn!(peer = %peer, error = %e, "could not encode a node rpc answer")
                }
            }
            drop(permit);
        });
    }

    fn answer(&mut self, answer: Answer) {
        let rr = self.swarm.behaviour_mut().rr(answer.proto);
        if rr.send_response(answer.channel, answer.response).is_err() {
            tracing::debug!("answer dropped: the requester went away");
        }
    }
}

//! `daemon`: runs one cluster peer: the libp2p host, the consensus over the
//! redb store, the IPFS connector and the node drivers, until it is told
//! to stop (or its consensus stops by itself on a storage error).
//!
//! How the peer comes into its cluster:
//! - its store holds cluster state: it restarts as the member it was;
//! - it is recorded as a member but its store is gone: refused (it must
//!   not come back empty as the member it was; the message says how to
//!   re-join);
//! - fresh, no other peer in `cluster_peers` or `--bootstrap`: it starts a
//!   new single-peer cluster;
//! - fresh, with other peers listed: it joins through them, in turn, going
//!   round again until `consensus.raft.membership_timeout` (meanwhile a
//!   member that reaches it may add it with `POST /peers`);
//! - fresh, started together with the peers it lists in `cluster_peers`
//!   (each listing the others), none of which belongs to a cluster yet:
//!   the one with the lowest peer id starts the cluster once it has heard
//!   from every other one, and they join it. Peers given with
//!   `--bootstrap` are only ever joined.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cluster_core::PeerId;
use cluster_net::p2p::{Libp2pError, Libp2pTransport};
use cluster_net::store::{RedbStore, StoreError};
use cluster_net::{Boot, ClusterRaft, FatalError, MembershipError, NodeInfo, StartError};

use crate::config::{ConfigError, PeerAddress, ServerConfig};
use crate::drivers::tracker::ViolationHook;
use crate::ipfs::IpfsConnector;
use crate::server::member::{self, MemberFileError};
use crate::server::{random_bytes, random_id, RandomError, VERSION};
use crate::{start_drivers, Drivers, PeerContext, SystemClock};

/// Directory (in the config directory) of the IPFS connector's record.
pub const IPFS_RECORD_DIR: &str = "ipfs";
/// How often the membership is looked at, to log its changes.
const MEMBERS_WATCH_MS: u64 = 1_000;
/// First pause between two rounds of join attempts through the listed peers.
const JOIN_ROUND_DELAY_MS: u64 = 250;
/// Longest pause between two rounds of join attempts.
const JOIN_ROUND_DELAY_MAX_MS: u64 = 4_000;
/// How often "no leader yet" is repeated while waiting for one.
const LEADER_NAG_MS: u64 = 10_000;

/// Options of `daemon` beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Peers to join through (multiaddrs with `/p2p/`), for a fresh peer.
    pub bootstrap: Vec<String>,
}

/// The daemon could not start, or stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration or the options are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The libp2p host could not start.
    #[error("starting the libp2p host: {0}")]
    Libp2p(#[from] Libp2pError),
    /// `server.json` names another peer than the identity key.
    #[error(
        "cluster.id in server.json is {configured} but the identity key in {key_dir} is peer \
         {actual}: the key decides; fix cluster.id or restore the right key"
    )]
    WrongIdentity {
        /// The configured id.
        configured: String,
        /// The key's peer id.
        actual: String,
        /// Where the key is.
        key_dir: PathBuf,
    },
    /// The consensus store could not be opened.
    #[error("opening the consensus data: {0}")]
    Store(#[from] StoreError),
    /// The consensus layer refused to start.
    #[error("starting the consensus: {0}")]
    Start(#[from] StartError),
    /// Bootstrapping or joining the cluster failed.
    #[error("{what}: {source}")]
    Membership {
        /// What was tried.
        what: String,
        /// Why it failed.
        source: MembershipError,
    },
    /// The IPFS connector could not be set up.
    #[error("setting up the IPFS connector: {0}")]
    Ipfs(String),
    /// The drivers refused their settings.
    #[error("starting the pin tracker: {0}")]
    Drivers(String),
    /// The REST API could not be set up (bad address, port taken).
    #[error("starting the REST API: {0}")]
    Rest(String),
    /// The Pinning Service API could not be set up (bad settings, port taken).
    #[error("starting the pinning service API: {0}")]
    PinSvc(String),
    /// The IPFS proxy could not be set up (bad address, port taken).
    #[error("starting the IPFS proxy: {0}")]
    Proxy(String),
    /// The membership record could not be written.
    #[error(transparent)]
    Member(#[from] MemberFileError),
    /// No randomness.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// This peer was removed from its cluster.
    #[error(
        "peer {0} was removed from the cluster and stopped. To take part again, run \
         `ipfscluster-server state cleanup --force` and start it with another peer in \
         cluster_peers (or --bootstrap) to join through"
    )]
    Removed(String),
    /// The consensus stopped by itself.
    #[error(transparent)]
    Fatal(#[from] FatalError),
}

/// How long a shutdown waits for REST requests in flight.
const REST_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// A running peer.
pub struct Daemon {
    /// Its id.
    pub peer: PeerId,
    /// Its libp2p host.
    pub net: Libp2pTransport,
    /// Its consensus.
    pub raft: ClusterRaft,
    /// Its drivers.
    pub drivers: Drivers,
    /// Where its REST API listens.
    pub rest_addr: std::net::SocketAddr,
    /// Stops the REST API (it lets requests in flight finish).
    rest_stop: tokio::sync::oneshot::Sender<()>,
    /// The REST API's task.
    rest_task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The Pinning Service API, unless `pinning_service.enabled` is off.
    pub pinsvc: Option<crate::api::pinsvc::Running>,
    /// Where the IPFS proxy listens, its stop and its task.
    #[cfg(feature = "proxy")]
    pub proxy: Served,
}

/// One HTTP API the daemon serves: its address, its stop, its task.
pub struct Served {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    /// Stops taking requests and waits (up to `drain`) for those in flight.
    async fn stop(self, what: &str, drain: Duration) {
        let _ = self.stop.send(());
        match tokio::time::timeout(drain, self.task).await {
            Ok(Ok(Err(e))) => tracing::warn!("{what} stopped with an error: {e}"),
            Err(_) => tracing::warn!("{what}: requests still running after {drain:?}"),
            _ => {}
        }
    }
}

/// Starts the peer configured in `config_dir`. The caller holds the
/// directory's lock and a tokio runtime.
pub async fn start(
    config_dir: &Path,
    config: &ServerConfig,
    options: &DaemonOptions,
) -> Result<Daemon, DaemonError> {
    let peers = config.peer_addresses(&options.bootstrap, "--bootstrap")?;
    let raft_config = config.raft_config();
    let key_dir = config.identity_dir(config_dir);
    let net_config = config.libp2p_config(&key_dir)?;
    let net = Libp2pTransport::start(net_config).await?;
    let peer = net.peer_id();
    if !config.cluster.id.is_empty() && config.cluster.id != peer.as_str() {
        net.shutdown().await;
        return Err(DaemonError::WrongIdentity {
            configured: config.cluster.id.clone(),
            actual: peer.to_string(),
            key_dir,
        });
    }
    tracing::info!("IPFS Cluster (ipfscluster-server {VERSION}) peer {peer}");
    tracing::info!(
        "cluster peer {peer} listening on: {}",
        net.listen_addrs().join(", ")
    );
    let started = start_consensus(config_dir, config, &net, &peer, raft_config).await;
    let raft = match started {
        Ok(raft) => raft,
        Err(e) => {
            net.shutdown().await;
            return Err(e);
        }
    };
    let joined = enter_cluster(
        config_dir,
        &raft,
        &net,
        &peer,
        &peers,
        &options.bootstrap,
        config.consensus.raft.membership_timeout,
    )
    .await;
    if let Err(e) = joined {
        raft.shutdown().await;
        net.shutdown().await;
        return Err(e);
    }
    // In embedded mode, the node's RPC API (what the proxy forwards to).
    let (started, ipfs_rpc_url) =
        match connect_ipfs(config, &config_dir.join(IPFS_RECORD_DIR)).await {
            Ok((ipfs, rpc_url)) => (start_node(ipfs, config, &raft, &net, &peer), rpc_url),
            Err(e) => (Err(e), None),
        };
    #[cfg(not(feature = "proxy"))]
    drop(ipfs_rpc_url);
    let (ctx, drivers) = match started {
        Ok(started) => started,
        Err(e) => {
            raft.shutdown().await;
            net.shutdown().await;
            return Err(e);
        }
    };
    #[cfg(feature = "proxy")]
    let proxy = match start_proxy(config, ctx.clone(), drivers.clone(), ipfs_rpc_url).await {
        Ok(proxy) => proxy,
        Err(e) => {
            raft.shutdown().await;
            net.shutdown().await;
            return Err(e);
        }
    };
    let (rest_addr, rest_stop, rest_task) =
        match start_rest(config, ctx.clone(), drivers.clone()).await {
            Ok(rest) => rest,
            Err(e) => {
                raft.shutdown().await;
                net.shutdown().await;
                return Err(e);
            }
        };
    let pinsvc = match start_pinsvc(config, ctx, drivers.clone()).await {
        Ok(pinsvc) => pinsvc,
        Err(e) => {
            let _ = rest_stop.send(());
            raft.shutdown().await;
            net.shutdown().await;
            return Err(e);
        }
    };
    tokio::spawn(log_members(raft.clone()));
    tokio::spawn(recover_periodically(
        drivers.clone(),
        config.pin_tracker.recover_interval,
    ));
    Ok(Daemon {
        peer,
        net,
        raft,
        drivers,
        rest_addr,
        rest_stop,
        rest_task,
        pinsvc,
        #[cfg(feature = "proxy")]
        proxy,
    })
}

/// Serves the Pinning Service API on `pinning_service.listen_address` when
/// enabled, with the REST API's pin settings.
async fn start_pinsvc(
    config: &ServerConfig,
    ctx: PeerContext,
    drivers: Drivers,
) -> Result<Option<crate::api::pinsvc::Running>, DaemonError> {
    use crate::api::pinsvc::{PinSvcApi, PinSvcConfig, Running};
    let section = &config.pinning_service;
    if !section.enabled {
        return Ok(None);
    }
    let listen = crate::api::rest::parse_listen(&section.listen_address)
        .map_err(|e| DaemonError::PinSvc(format!("pinning_service.listen_address: {e}")))?;
    let cluster = crate::api::rest::RestConfig {
        default_replication_min: config.cluster.replication_factor_min,
        default_replication_max: config.cluster.replication_factor_max,
        allocator: config.allocator_config(),
        ..crate::api::rest::RestConfig::default()
    };
    let pinsvc = PinSvcConfig {
        listen,
        basic_auth: section.basic_auth(&config.rest_api),
        access_tokens: section.access_tokens.clone(),
        ..PinSvcConfig::default()
    };
    let api = PinSvcApi::new(ctx, drivers, cluster, pinsvc)
        .map_err(|e| DaemonError::PinSvc(e.to_string()))?;
    let running = Running::start(api, listen).await.map_err(|e| {
        DaemonError::PinSvc(format!("pinning_service.listen_address {listen}: {e}"))
    })?;
    tracing::info!("Pinning Service API listening on http://{}", running.addr);
    Ok(Some(running))
}

/// Binds the IPFS proxy on `ipfs_proxy.listen_address` and serves it on a
/// task, forwarding to `ipfs_proxy.node_multiaddress` (default: the
/// connector's daemon, or `embedded_rpc`, the embedded node's RPC API).
#[cfg(feature = "proxy")]
async fn start_proxy(
    config: &ServerConfig,
    ctx: PeerContext,
    drivers: Drivers,
    embedded_rpc: Option<String>,
) -> Result<Served, DaemonError> {
    use crate::api::proxy::{IpfsProxy, ProxyConfig};
    let listen = crate::api::rest::parse_listen(&config.ipfs_proxy.listen_address)
        .map_err(|e| DaemonError::Proxy(format!("ipfs_proxy.listen_address: {e}")))?;
    let proxy_config = ProxyConfig {
        listen,
        node_url: match (&config.ipfs_proxy.node_multiaddress, embedded_rpc) {
            (None, Some(url)) => url,
            _ => config.ipfs_proxy_node_url()?,
        },
        default_replication_min: config.cluster.replication_factor_min,
        default_replication_max: config.cluster.replication_factor_max,
        allocator: config.allocator_config(),
        extract_headers_extra: config.ipfs_proxy.extract_headers_extra.clone(),
        extract_headers_ttl: config.ipfs_proxy.extract_headers_ttl,
        ..ProxyConfig::default()
    };
    let proxy = IpfsProxy::new(ctx, drivers, proxy_config)
        .map_err(|e| DaemonError::Proxy(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| DaemonError::Proxy(format!("ipfs_proxy.listen_address {listen}: {e}")))?;
    let addr = listener.local_addr().unwrap_or(listen);
    tracing::info!("IPFS Proxy listening on http://{addr}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(proxy.serve(listener, async move {
        let _ = stopped.await;
    }));
    Ok(Served { addr, stop, task })
}

/// Binds the REST API on `rest_api.listen_address` and serves it on a task
/// until the returned sender fires (or is dropped).
async fn start_rest(
    config: &ServerConfig,
    ctx: PeerContext,
    drivers: Drivers,
) -> Result<
    (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ),
    DaemonError,
> {
    let listen = crate::api::rest::parse_listen(&config.rest_api.listen_address)
        .map_err(|e| DaemonError::Rest(format!("rest_api.listen_address: {e}")))?;
    let rest_config = crate::api::rest::RestConfig {
        listen,
        basic_auth: config.rest_api.basic_auth(),
        max_add_bytes: config.rest_api.max_add_bytes,
        default_replication_min: config.cluster.replication_factor_min,
        default_replication_max: config.cluster.replication_factor_max,
        allocator: config.allocator_config(),
        ..crate::api::rest::RestConfig::default()
    };
    let api = crate::api::rest::RestApi::new(ctx, drivers, rest_config)
        .map_err(|e| DaemonError::Rest(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| DaemonError::Rest(format!("rest_api.listen_address {listen}: {e}")))?;
    let addr = listener.local_addr().unwrap_or(listen);
    tracing::info!("REST API listening on http://{addr}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_stop = start_metrics(config, &api).await?;
    let task = tokio::spawn(api.serve(listener, async move {
        let _ = stopped.await;
        drop(metrics_stop);
    }));
    Ok((addr, stop, task))
}

/// Serves the Prometheus metrics when `observations.enable_stats`, until
/// the returned sender fires or is dropped.
async fn start_metrics(
    config: &ServerConfig,
    api: &crate::api::rest::RestApi,
) -> Result<Option<tokio::sync::oneshot::Sender<()>>, DaemonError> {
    let section = &config.observations;
    if !section.enable_stats {
        return Ok(None);
    }
    let key = "observations.metrics_listen_address";
    let listen = crate::api::rest::parse_listen(&section.metrics_listen_address)
        .map_err(|e| DaemonError::Rest(format!("{key}: {e}")))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| DaemonError::Rest(format!("{key} {listen}: {e}")))?;
    let addr = listener.local_addr().unwrap_or(listen);
    tracing::info!("Prometheus metrics on http://{addr}/metrics");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let api = api.clone();
    tokio::spawn(async move {
        let served = api
            .serve_metrics(listener, async move {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!("metrics endpoint stopped: {e}");
        }
    });
    Ok(Some(stop))
}

/// Opens the store and starts the consensus on it.
async fn start_consensus(
    config_dir: &Path,
    config: &ServerConfig,
    net: &Libp2pTransport,
    peer: &PeerId,
    raft_config: cluster_net::RaftConfig,
) -> Result<ClusterRaft, DaemonError> {
    let data_dir = config.data_dir(config_dir);
    let was_member = member::is_member(config_dir);
    let (store, boot) = if was_member {
        let store = match RedbStore::open(&data_dir) {
            // A member whose database is gone: cluster-net says what to do.
            Err(StoreError::Missing { .. }) => {
                return Err(StartError::NoState {
                    peer: peer.to_string(),
                }
                .into())
            }
            other => other?,
        };
        (store, Boot::Existing)
    } else {
        let boot = Boot::CreateIfEmpty {
            incarnation: random_id()?,
        };
        (RedbStore::open_or_create(&data_dir)?, boot)
    };
    tracing::info!("consensus data in {}", data_dir.display());
    let raft = ClusterRaft::start(
        peer,
        net.addr(),
        raft_config,
        boot,
        store,
        Arc::new(net.clone()),
    )
    .await?;
    net.register(raft.rpc_handler());
    Ok(raft)
}

/// Bootstraps, joins or resumes the cluster (see the module docs).
async fn enter_cluster(
    config_dir: &Path,
    raft: &ClusterRaft,
    net: &Libp2pTransport,
    peer: &PeerId,
    peers: &[PeerAddress],
    bootstrap: &[String],
    limit: Duration,
) -> Result<(), DaemonError> {
    let others: Vec<&PeerAddress> = peers.iter().filter(|p| p.peer_id != *peer).collect();
    for other in &others {
        // Best effort: the host also redials peers it learns later.
        if let Err(e) = net.dial(&other.full).await {
            tracing::warn!("cannot dial {}: {e}", other.full);
        }
    }
    if let Some(cluster_id) = raft.cluster_id() {
        if !bootstrap.is_empty() {
            tracing::warn!(
                "--bootstrap ignored: this peer already belongs to cluster {cluster_id:032x}"
            );
        }
        tracing::info!(
            "restarting as a member of cluster {cluster_id:032x} (state found in the consensus data)"
        );
        member::record(config_dir, cluster_id)?;
        return Ok(());
    }
    if others.is_empty() {
        tracing::info!(
            "starting a new cluster: this peer has no cluster state and no other peer is listed \
             in cluster_peers or --bootstrap"
        );
        return start_new_cluster(config_dir, raft).await;
    }
    join_or_start_together(config_dir, raft, peer, &others, bootstrap.is_empty(), limit).await
}

/// Starts a new cluster of this one peer, under a random cluster id.
async fn start_new_cluster(config_dir: &Path, raft: &ClusterRaft) -> Result<(), DaemonError> {
    let cluster_id = random_id()?;
    raft.initialize(cluster_id)
        .await
        .map_err(|source| DaemonError::Membership {
            what: "starting a new cluster".to_string(),
            source,
        })?;
    member::record(config_dir, cluster_id)?;
    Ok(())
}

/// True (and recorded) once a member added this waiting peer to its
/// cluster (`POST /peers`): the cluster's first Raft message gave it the
/// cluster's id while it was still asking its contacts.
fn added_by_a_member(config_dir: &Path, raft: &ClusterRaft) -> Result<bool, DaemonError> {
    let Some(cluster_id) = raft.cluster_id() else {
        return Ok(false);
    };
    tracing::info!("added to cluster {cluster_id:032x} by one of its members");
    member::record(config_dir, cluster_id)?;
    Ok(true)
}

/// Joins through the listed peers, asking each in turn (one attempt each)
/// and going round again with back-off until `limit`.
///
/// Peers started together, each listing the others in `cluster_peers`,
/// have no cluster to join. When every listed peer answered that it
/// belongs to no cluster yet, the one with the lowest peer id among them
/// starts it and the others join it on their next round. Only one peer
/// can be lowest, and only a peer that heard "no cluster" from every other
/// one starts, so an existing cluster among the listed peers is always
/// joined rather than duplicated. Peers given with `--bootstrap` are meant
/// to be joined: then this peer never starts a cluster itself.
async fn join_or_start_together(
    config_dir: &Path,
    raft: &ClusterRaft,
    peer: &PeerId,
    others: &[&PeerAddress],
    may_start: bool,
    limit: Duration,
) -> Result<(), DaemonError> {
    let deadline = tokio::time::Instant::now() + limit;
    let lowest = others.iter().all(|other| *peer < other.peer_id);
    let mut delay = Duration::from_millis(JOIN_ROUND_DELAY_MS);
    let mut told = false;
    loop {
        let mut last = None;
        let mut without_cluster = 0;
        for via in others {
            if added_by_a_member(config_dir, raft)? {
                return Ok(());
            }
            if !told {
                tracing::info!("joining the cluster through {}", via.full);
            }
            let contact = NodeInfo {
                peer_id: via.peer_id.to_string(),
                addr: via.addr.clone(),
                incarnation: 0,
            };
            match raft.join_once(&contact).await {
                Ok(()) => {
                    let cluster_id = raft.cluster_id().unwrap_or_default();
                    tracing::info!("joined cluster {cluster_id:032x} through {}", via.peer_id);
                    member::record(config_dir, cluster_id)?;
                    return Ok(());
                }
                Err(MembershipError::NoCluster) => without_cluster += 1,
                Err(
                    e @ (MembershipError::ClusterMismatch { .. }
                    | MembershipError::NodeIdCollision { .. }
                    | MembershipError::StaleMember { .. }
                    | MembershipError::Shutdown
                    | MembershipError::Store(_)),
                ) => {
                    return Err(DaemonError::Membership {
                        what: format!("joining the cluster through {}", via.full),
                        source: e,
                    });
                }
                Err(e) => {
                    tracing::debug!("joining through {} failed: {e}", via.full);
                    last = Some((via.full.clone(), e));
                }
            }
        }
        told = true;
        if may_start && lowest && without_cluster == others.len() {
            tracing::info!(
                "starting a new cluster: every peer in cluster_peers is up and belongs to no \
                 cluster yet, and this peer has the lowest id among them (the others join it)"
            );
            return start_new_cluster(config_dir, raft).await;
        }
        if tokio::time::Instant::now() + delay >= deadline {
            if added_by_a_member(config_dir, raft)? {
                return Ok(());
            }
            let (via, source) = last.unwrap_or_else(|| {
                let names: Vec<&str> = others.iter().map(|o| o.full.as_str()).collect();
                (names.join(", "), MembershipError::NoCluster)
            });
            return Err(DaemonError::Membership {
                what: format!("joining the cluster (last tried through {via})"),
                source,
            });
        }
        if let Some((via, e)) = &last {
            tracing::warn!("joining through {via} failed: {e}; trying again in {delay:?}");
        } else {
            tracing::info!(
                "no listed peer belongs to a cluster yet; waiting for one to start it \
                 (trying again in {delay:?})"
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(JOIN_ROUND_DELAY_MAX_MS));
    }
}

/// Starts the drivers over `ipfs`, and serves node RPCs.
fn start_node(
    ipfs: Arc<dyn IpfsConnector>,
    config: &ServerConfig,
    raft: &ClusterRaft,
    net: &Libp2pTransport,
    peer: &PeerId,
) -> Result<(PeerContext, Drivers), DaemonError> {
    let ctx = PeerContext {
        id: peer.clone(),
        raft: raft.clone(),
        ipfs,
        clock: Arc::new(SystemClock::new()),
        rpc: Arc::new(net.clone()),
    };
    let epoch = u16::from_le_bytes(random_bytes()?);
    let on_violation: ViolationHook =
        Arc::new(|v| tracing::error!("pin tracker invariant broken (a bug): {v}"));
    let drivers = start_drivers(&ctx, config.driver_settings(epoch), on_violation)
        .map_err(|e| DaemonError::Drivers(e.to_string()))?;
    net.register_node_rpc(drivers.router.clone());
    Ok((ctx, drivers))
}

/// The connector `ipfs.mode` asks for. Its record of the pins the cluster
/// made (and the embedded node's key and repo) live in `data_dir`, apart
/// from the consensus data: `state cleanup` must not make the cluster
/// forget which of the daemon's pins are its own.
async fn connect_ipfs(
    config: &ServerConfig,
    data_dir: &Path,
) -> Result<(Arc<dyn IpfsConnector>, Option<String>), DaemonError> {
    match config.ipfs.mode {
        crate::config::IpfsMode::External => {
            tracing::info!(
                "IPFS daemon expected at {}",
                config.ipfs_http.node_multiaddress
            );
            Ok((connect_kubo(config, data_dir)?, None))
        }
        crate::config::IpfsMode::Embedded => start_embedded(config, data_dir).await,
    }
}

/// Starts the embedded node and its RPC API on a loopback port of its own;
/// answers the connector and the API's URL.
#[cfg(feature = "embedded-ipfs")]
async fn start_embedded(
    config: &ServerConfig,
    data_dir: &Path,
) -> Result<(Arc<dyn IpfsConnector>, Option<String>), DaemonError> {
    use crate::ipfs::embedded::{EmbeddedConfig, EmbeddedConnector};
    let http = &config.ipfs_http;
    let mut embedded = EmbeddedConfig::new(data_dir);
    embedded.swarm_listen = config.ipfs.swarm_listen_multiaddress.clone();
    embedded.pin_timeout = http.pin_timeout;
    embedded.unpin_timeout = http.unpin_timeout;
    embedded.request_timeout = http.request_timeout;
    embedded.storage_max = (config.ipfs.storage_max > 0).then_some(config.ipfs.storage_max);
    let node = EmbeddedConnector::start(embedded)
        .await
        .map_err(|e| DaemonError::Ipfs(e.to_string()))?;
    let id = node
        .id()
        .await
        .map_err(|e| DaemonError::Ipfs(e.to_string()))?;
    tracing::info!(
        "embedded IPFS node {} listening on: {} (repo in {})",
        id.peer_id,
        id.addresses.join(", "),
        data_dir.display()
    );
    let rpc_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let rpc_url = crate::ipfs::embedded::rpc::start(node.clone(), rpc_addr)
        .await
        .map_err(|e| DaemonError::Ipfs(e.to_string()))?;
    tracing::info!("embedded IPFS node's RPC API at {rpc_url} (behind the IPFS proxy)");
    Ok((Arc::new(node), Some(rpc_url)))
}

#[cfg(not(feature = "embedded-ipfs"))]
async fn start_embedded(
    _config: &ServerConfig,
    _data_dir: &Path,
) -> Result<(Arc<dyn IpfsConnector>, Option<String>), DaemonError> {
    Err(DaemonError::Ipfs(
        "ipfs.mode is \"embedded\" but this build has no embedded IPFS node (cluster-node \
         feature `embedded-ipfs`)"
            .to_string(),
    ))
}

#[cfg(feature = "kubo")]
fn connect_kubo(
    config: &ServerConfig,
    data_dir: &Path,
) -> Result<Arc<dyn IpfsConnector>, DaemonError> {
    use crate::ipfs::kubo::{api_url_from_multiaddr, KuboConfig, KuboConnector};
    let http = &config.ipfs_http;
    let url = api_url_from_multiaddr(&http.node_multiaddress)
        .map_err(|e| DaemonError::Ipfs(format!("ipfs_http.node_multiaddress: {e}")))?;
    let mut kubo = KuboConfig::new(url, data_dir.to_path_buf());
    kubo.request_timeout = http.request_timeout;
    kubo.pin_timeout = http.pin_timeout;
    kubo.unpin_timeout = http.unpin_timeout;
    kubo.concurrency = http.concurrency;
    let connector = KuboConnector::new(kubo).map_err(|e| DaemonError::Ipfs(e.to_string()))?;
    Ok(Arc::new(connector))
}

#[cfg(not(feature = "kubo"))]
fn connect_kubo(
    _config: &ServerConfig,
    _data_dir: &Path,
) -> Result<Arc<dyn IpfsConnector>, DaemonError> {
    Err(DaemonError::Ipfs(
        "this build has no IPFS connector (cluster-node feature `kubo`)".to_string(),
    ))
}

impl Daemon {
    /// Runs until `stop` completes (a signal) or the consensus stops by
    /// itself, then shuts the peer down cleanly.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> Result<(), DaemonError> {
        let fatal = tokio::select! {
            () = stop => None,
            fatal = self.raft.wait_fatal() => Some(Err(fatal.into())),
            () = removed(self.raft.clone()) => Some(Err(DaemonError::Removed(self.peer.to_string()))),
        };
        tracing::info!("shutting down peer {}", self.peer);
        // Stop taking requests first (those in flight finish), then serving
        // other peers, then the consensus (it releases the store), then the
        // host. The drivers' tasks end with the process.
        if let Some(pinsvc) = self.pinsvc {
            pinsvc.stop(REST_DRAIN).await;
        }
        #[cfg(feature = "proxy")]
        self.proxy.stop("ipfs proxy", REST_DRAIN).await;
        let _ = self.rest_stop.send(());
        match tokio::time::timeout(REST_DRAIN, self.rest_task).await {
            Ok(Ok(Err(e))) => tracing::warn!("rest api stopped with an error: {e}"),
            Err(_) => tracing::warn!("rest api: requests still running after {REST_DRAIN:?}"),
            _ => {}
        }
        self.net.unregister();
        self.raft.shutdown().await;
        self.net.shutdown().await;
        match fatal {
            Some(error) => error,
            None => {
                tracing::info!("peer {} stopped cleanly", self.peer);
                Ok(())
            }
        }
    }
}

/// Completes once this peer is no longer a member of its cluster (it was
/// removed).
async fn removed(raft: ClusterRaft) {
    loop {
        tokio::time::sleep(Duration::from_millis(MEMBERS_WATCH_MS)).await;
        if !raft.is_member() {
            return;
        }
    }
}

/// Logs the leader once known and the members whenever they change.
async fn log_members(raft: ClusterRaft) {
    let mut known: Option<Vec<String>> = None;
    let mut leader: Option<PeerId> = None;
    let mut ready = false;
    let mut waited = Duration::ZERO;
    let tick = Duration::from_millis(MEMBERS_WATCH_MS);
    loop {
        let now_leader = raft.leader();
        if now_leader != leader {
            match &now_leader {
                Some(l) if !ready => {
                    ready = true;
                    tracing::info!("leader is {l}");
                    tracing::info!("** IPFS Cluster is READY **");
                }
                Some(l) => tracing::info!("leader is now {l}"),
                None => {
                    tracing::warn!("no leader: the cluster cannot take writes until one is elected")
                }
            }
            leader = now_leader;
        } else if leader.is_none() {
            waited += tick;
            if waited.as_millis().is_multiple_of(u128::from(LEADER_NAG_MS)) {
                tracing::warn!(
                    "no leader after {}s: are a majority of the members running and reachable?",
                    waited.as_secs()
                );
            }
        }
        let mut members: Vec<String> = raft.members().iter().map(|p| p.to_string()).collect();
        members.sort();
        if known.as_ref() != Some(&members) && !members.is_empty() {
            tracing::info!(
                "cluster members ({}): {}",
                members.len(),
                members.join(", ")
            );
            known = Some(members);
        }
        tokio::time::sleep(tick).await;
    }
}

/// Retries failed pin operations every `interval` (IPFS Cluster's
/// `pin_recover_interval`).
async fn recover_periodically(drivers: Drivers, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        if !drivers.tracker.recover(None) {
            return;
        }
    }
}

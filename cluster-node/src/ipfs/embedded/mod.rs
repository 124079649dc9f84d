//! [`EmbeddedConnector`]: the [`IpfsConnector`] over an IPFS node running
//! inside the peer's own process (`rust-ipfs`, feature `embedded-ipfs`), so
//! a peer needs no external IPFS daemon.
//!
//! Everything lives in one directory of the peer (`ipfs/` beside
//! `server.json`): its repo (`repo/`: blocks and pins, kept across
//! restarts) and the record of
//! the cluster's own pins — the same append-only log the Kubo connector
//! keeps ([`crate::ipfs::kubo::marks`]), with the same rules: a CID is
//! marked before it is pinned, a pin found without the mark is the user's
//! and `unpin` leaves it in place.
//!
//! The node is offline by default (see [`node`]): it only talks to the
//! nodes of the other cluster peers, which the metrics driver asks it to
//! dial ([`IpfsConnector::swarm_connect`]) from the addresses they announce
//! with their metrics; blocks move between them by bitswap.
//!
//! # A new peer id at every start
//!
//! The node's libp2p identity is made afresh at each start and never
//! written down; the other peers learn it (and the node's addresses) from
//! the metrics, as they would a stable one. A stable identity breaks
//! bitswap after a restart, because of a bug in `rust-ipfs` 0.16.0: its
//! bitswap behaviour (`src/p2p/bitswap.rs`) keeps one session per peer id
//! in a `pollable_map::stream::StreamMap` (pollable-map 0.1.7), and
//! `StreamMap::remove`, called when the last connection to a peer closes
//! (`on_connection_close`), only takes the session out, leaving its key in
//! the map until the map polls that entry again, which nothing ever wakes
//! it to do. `contains_key` still counts the husk, so when the same peer id
//! connects again `ensure_session` makes no new session, `get_mut` finds
//! none, and every bitswap message of that peer is dropped: the nodes that
//! stayed up never answer the restarted node's wants, nor send it theirs,
//! for as long as they run (their connections come back fine). A peer id
//! they have never seen gets a session as usual, so a node that restarts
//! under a new identity fetches again. A connection lost between two nodes
//! that both keep running has the same effect on their pair; the cluster
//! then fetches from the other nodes until one of the two restarts.
//!
//! Every call has a deadline: `pin_timeout` for a pin (fetching blocks from
//! other nodes included), `unpin_timeout` for an unpin, `request_timeout`
//! otherwise. The node has no `pin/update`, progress or pin names.

pub mod import;
mod node;
pub mod rpc;
mod tar;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::cid::Cid as NodeCid;
use cluster_core::tracker::{IpfsPinType, ListedPin};
use cluster_core::Cid;
use futures_util::StreamExt;
use rust_ipfs::{Ipfs, Keypair, Multiaddr, PeerId, PinKind, PinMode, Protocol};

use super::kubo::marks::{self, lock, Marks};
use super::{AddRequest, BoxFuture, GcEntry, IpfsConnector, IpfsError, IpfsId, IpfsPath, RepoStat};
use import::ImportOptions;

pub use node::REPO_DIR;

/// The swarm address a node listens on unless configured otherwise:
/// loopback, a port chosen by the system (announced with the metrics).
pub const DEFAULT_SWARM_LISTEN: &str = "/ip4/127.0.0.1/tcp/0";

/// How long a dial refused because another one to the same peer is under
/// way waits for that one's connection.
const DIAL_RACE_WAIT: Duration = Duration::from_secs(10);

/// The embedded node's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// The node's directory: identity key, repo, record of the cluster's pins.
    pub dir: PathBuf,
    /// Swarm listen multiaddrs (`/ip4/…/tcp/…`).
    pub swarm_listen: Vec<String>,
    /// Limit of one pin, fetching included.
    pub pin_timeout: Duration,
    /// Limit of one unpin.
    pub unpin_timeout: Duration,
    /// Limit of every other call.
    pub request_timeout: Duration,
    /// The repo's size limit in bytes; `None`: what the file system under
    /// `dir` has free (plus what the repo already holds).
    pub storage_max: Option<u64>,
}

impl EmbeddedConfig {
    /// Defaults (the Kubo connector's deadlines, loopback swarm) for a node
    /// in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            dir: dir.into(),
            swarm_listen: vec![DEFAULT_SWARM_LISTEN.to_string()],
            pin_timeout: Duration::from_secs(2 * 60),
            unpin_timeout: Duration::from_secs(3 * 60 * 60),
            request_timeout: Duration::from_secs(5 * 60),
            storage_max: None,
        }
    }
}

struct Inner {
    node: Ipfs,
    config: EmbeddedConfig,
    marks: Arc<Mutex<Marks>>,
    /// Held (shared) by every import and pin, (exclusive) by a garbage
    /// collection: blocks stored but not pinned yet are never collected.
    gc_lock: tokio::sync::RwLock<()>,
}

/// The connector to the peer's embedded IPFS node. Cheap to clone; the node
/// stops when [`EmbeddedConnector::shutdown`] is called or the process ends.
#[derive(Clone)]
pub struct EmbeddedConnector {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedConnector")
            .field("dir", &self.inner.config.dir)
            .finish_non_exhaustive()
    }
}

/// How the node holds a CID with a pin of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Recursive,
    Direct,
}

pub(crate) fn daemon(path: &str, e: impl std::fmt::Display) -> IpfsError {
    IpfsError::Daemon {
        path: path.into(),
        message: e.to_string(),
    }
}

pub(crate) fn to_node_cid(cid: &Cid) -> Result<NodeCid, IpfsError> {
    NodeCid::try_from(cid.as_bytes()).map_err(|e| IpfsError::BadAnswer {
        path: "cid".into(),
        reason: format!("{cid} is not a CID the node takes: {e}"),
    })
}

pub(crate) fn from_node_cid(path: &str, cid: &NodeCid) -> Result<Cid, IpfsError> {
    Cid::from_bytes(&cid.to_bytes()).map_err(|e| IpfsError::BadAnswer {
        path: path.into(),
        reason: format!("{cid}: {e}"),
    })
}

fn says_not_pinned(e: &impl std::fmt::Display) -> bool {
    e.to_string().contains("not pinned")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs `work` within `limit`, a timeout named after `path`.
async fn within<T>(
    path: &str,
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, IpfsError>>,
) -> Result<T, IpfsError> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(IpfsError::Timeout {
            path: path.into(),
            after_ms: millis(limit),
        })
    })
}

impl EmbeddedConnector {
    /// Starts the node per `config` (creating its key and repo on the first
    /// start) and opens the record of the cluster's pins.
    pub async fn start(config: EmbeddedConfig) -> Result<EmbeddedConnector, IpfsError> {
        let listen = config
            .swarm_listen
            .iter()
            .map(|a| {
                a.parse::<Multiaddr>().map_err(|e| IpfsError::Config {
                    reason: format!("embedded ipfs swarm address {a:?}: {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let dir = config.dir.clone();
        let marks = tokio::task::spawn_blocking(move || Marks::open(&dir))
            .await
            .map_err(|e| IpfsError::Storage {
                reason: format!("opening the embedded node's files: {e}"),
            })??;
        // A new identity at every start, never the last one: see the
        // module docs (a peer id that disconnected is dead to the nodes
        // that stayed up).
        let key = Keypair::generate_ed25519();
        let node = node::start(&config.dir, &key, &listen).await?;
        Ok(EmbeddedConnector {
            inner: Arc::new(Inner {
                node,
                config,
                marks: Arc::new(Mutex::new(marks)),
                gc_lock: tokio::sync::RwLock::new(()),
            }),
        })
    }

    /// Stops the node and releases its repo (another start may follow).
    pub async fn shutdown(&self) {
        self.inner.node.clone().exit_daemon().await;
    }

    /// The node's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.config.dir
    }

    /// True when `cid` carries the cluster's mark in the record.
    pub fn is_marked(&self, cid: &Cid) -> bool {
        lock(&self.inner.marks).get(cid).is_some()
    }

    /// Adds `data` as a UnixFS file named `name` with Kubo's default
    /// options (not pinned: the cluster pins through its own operation) and
    /// returns the root CID.
    pub async fn add_bytes(&self, name: &str, data: &[u8]) -> Result<Cid, IpfsError> {
        let boundary = "embedded-add-boundary-7d1f";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            name.replace('/', "%2F")
        )
        .into_bytes();
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let stream = futures_util::stream::iter([Ok(body)]);
        let options = ImportOptions::default();
        let _no_gc = self.hold_off_gc().await;
        let import = import::import(self.inner.node.repo(), &options, &content_type, stream, &tx);
        within("add", self.inner.config.request_timeout, import).await?;
        drop(tx);
        let mut root = None;
        while let Some(file) = rx.recv().await {
            root = Some(file.cid);
        }
        root.ok_or_else(|| IpfsError::BadAnswer {
            path: "add".into(),
            reason: "nothing added".into(),
        })
    }

    /// Keeps garbage collection away while the caller stores blocks it
    /// has not pinned yet (dropped: collection may run).
    pub async fn hold_off_gc(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.inner.gc_lock.read().await
    }

    /// The node itself, for the RPC API served beside it.
    pub fn node(&self) -> &Ipfs {
        &self.inner.node
    }

    /// The node's call deadlines.
    pub fn config(&self) -> &EmbeddedConfig {
        &self.inner.config
    }

    /// The peer ids of the nodes this one is connected to.
    pub async fn swarm_peers(&self) -> Result<Vec<String>, IpfsError> {
        let i = &self.inner;
        let peers = within("swarm/peers", i.config.request_timeout, async {
            i.node
                .connected()
                .await
                .map_err(|e| daemon("swarm/peers", e))
        })
        .await?;
        Ok(peers.iter().map(ToString::to_string).collect())
    }
}

impl Inner {
    async fn held(&self, cid: &NodeCid) -> Result<Option<Held>, IpfsError> {
        match self.node.query_pins(vec![*cid], None).await {
            Ok(found) => Ok(found.into_iter().find_map(|(_, kind)| match kind {
                PinKind::Recursive(_) | PinKind::RecursiveIntention => Some(Held::Recursive),
                PinKind::Direct => Some(Held::Direct),
                PinKind::IndirectFrom(_) => None,
            })),
            Err(e) if says_not_pinned(&e) => Ok(None),
            Err(e) => Err(daemon("pin/ls", e)),
        }
    }

    fn is_marked(&self, cid: &Cid) -> bool {
        lock(&self.marks).get(cid).is_some()
    }

    async fn mark(&self, cid: &Cid, max_depth: i32) -> Result<(), IpfsError> {
        marks::add_off_thread(&self.marks, cid, max_depth).await
    }

    async fn unmark(&self, cid: &Cid) -> Result<(), IpfsError> {
        marks::remove_off_thread(&self.marks, cid).await
    }

    /// Pins `cid` in the node, fetching what is missing from connected nodes.
    async fn pin_add(&self, cid: &NodeCid, max_depth: i32) -> Result<(), IpfsError> {
        let _no_gc = self.gc_lock.read().await;
        let limit = self.config.pin_timeout;
        let mut pin = self.node.insert_pin(cid).timeout(limit);
        if max_depth != 0 {
            pin = pin.recursive();
        }
        if let Ok(depth) = u64::try_from(max_depth) {
            if depth > 0 {
                pin = pin.depth(depth);
            }
        }
        // The node's own timeout covers each fetch; this one the whole pin.
        within("pin/add", limit, async {
            pin.await.map_err(|e| {
                if e.to_string().contains("timed out") || e.to_string().contains("Timeout") {
                    IpfsError::Timeout {
                        path: "pin/add".into(),
                        after_ms: millis(limit),
                    }
                } else {
                    daemon("pin/add", e)
                }
            })
        })
        .await
    }

    async fn pin(&self, cid: &Cid, max_depth: i32) -> Result<(), IpfsError> {
        let node_cid = to_node_cid(cid)?;
        let want_recursive = max_depth != 0;
        let held = within("pin/ls", self.config.request_timeout, self.held(&node_cid)).await?;
        let was_marked = self.is_marked(cid);
        let serves = |h: Held| h == Held::Recursive || !want_recursive;
        match held {
            Some(h) if serves(h) => return Ok(()),
            // The user's direct pin, asked recursive: pinning deepens it,
            // and it stays the user's.
            Some(_) if !was_marked => return self.pin_add(&node_cid, max_depth).await,
            _ => {}
        }
        self.mark(cid, max_depth).await?;
        let result = self.pin_add(&node_cid, max_depth).await;
        if let Err(IpfsError::Daemon { .. }) = &result {
            // A refusal changed nothing; a timeout may have stored blocks
            // and the retry continues from them, so its mark stays.
            if !was_marked {
                self.unmark(cid).await?;
            }
        }
        result
    }

    async fn unpin(&self, cid: &Cid) -> Result<(), IpfsError> {
        if !self.is_marked(cid) {
            return Ok(()); // Not the cluster's pin (or none): the user's to keep.
        }
        let node_cid = to_node_cid(cid)?;
        within("pin/rm", self.config.unpin_timeout, async {
            let mut rm = self.node.remove_pin(node_cid);
            match self.held(&node_cid).await? {
                None => return Ok(()),
                Some(Held::Recursive) => rm = rm.recursive(),
                Some(Held::Direct) => {}
            }
            match rm.await {
                Ok(()) => Ok(()),
                Err(e) if says_not_pinned(&e) => Ok(()),
                Err(e) => Err(daemon("pin/rm", e)),
            }
        })
        .await?;
        self.unmark(cid).await
    }

    async fn list_pins(&self) -> Result<Vec<ListedPin>, IpfsError> {
        let mut all = Vec::new();
        // Only pins of their own: indirect ones are what recursive pins hold.
        for mode in [PinMode::Recursive, PinMode::Direct] {
            let mut pins = self.node.list_pins(Some(mode)).await;
            while let Some(pin) = pins.next().await {
                let (cid, mode) = pin.map_err(|e| daemon("pin/ls", e))?;
                let pin_type = match mode {
                    PinMode::Recursive => IpfsPinType::Recursive { max_depth: None },
                    PinMode::Direct => IpfsPinType::Direct,
                    PinMode::Indirect => continue,
                };
                all.push((from_node_cid("pin/ls", &cid)?, pin_type));
            }
        }
        let marks = lock(&self.marks);
        Ok(all
            .into_iter()
            .map(|(cid, pin_type)| {
                let by_cluster = marks.get(&cid).is_some();
                ListedPin {
                    cid,
                    pin_type,
                    by_cluster,
                }
            })
            .collect())
    }

    async fn repo_stat(&self) -> Result<RepoStat, IpfsError> {
        let repo_size = self
            .node
            .repo()
            .get_total_size()
            .await
            .map_err(|e| daemon("repo/stat", e))?;
        let repo_size = u64::try_from(repo_size).unwrap_or(u64::MAX);
        let dir = self.config.dir.clone();
        let free = tokio::task::spawn_blocking(move || fs2::available_space(&dir))
            .await
            .map_err(|e| daemon("repo/stat", e))?
            .map_err(|e| IpfsError::Storage {
                reason: format!("free space of {}: {e}", self.config.dir.display()),
            })?;
        // What the repo may still grow by is what the disk has free, capped
        // by the configured limit.
        let by_disk = repo_size.saturating_add(free);
        let storage_max = self.config.storage_max.map_or(by_disk, |m| m.min(by_disk));
        Ok(RepoStat {
            repo_size,
            storage_max,
        })
    }

    async fn id(&self) -> Result<IpfsId, IpfsError> {
        let addrs = self
            .node
            .listening_addresses()
            .await
            .map_err(|e| daemon("id", e))?;
        Ok(IpfsId {
            peer_id: self.node.keypair().public().to_peer_id().to_string(),
            addresses: addrs.iter().map(ToString::to_string).collect(),
        })
    }

    /// Removes every block no pin holds. rust-ipfs 0.16's own `gc` compares
    /// whole CIDs, and its block store lists blocks as CIDv1: every block
    /// of a CIDv0 pin (Kubo's default) would be removed. Blocks are kept by
    /// multihash here.
    async fn gc(&self) -> Result<Vec<GcEntry>, IpfsError> {
        let _exclusive = self.gc_lock.write().await;
        let repo = self.node.repo();
        let mut keep = std::collections::HashSet::new();
        let mut pins = repo.list_pins(None).await;
        while let Some(pin) = pins.next().await {
            let (cid, _) = pin.map_err(|e| daemon("repo/gc", e))?;
            keep.insert(cid.hash().to_bytes());
        }
        let mut removed = Vec::new();
        let mut blocks = repo.list_blocks().await;
        while let Some(cid) = blocks.next().await {
            if keep.contains(&cid.hash().to_bytes()) {
                continue;
            }
            removed.push(match repo.remove_block(cid, false).await {
                Ok(_) => GcEntry {
                    key: Some(cid.to_string()),
                    error: None,
                },
                Err(e) => GcEntry {
                    key: None,
                    error: Some(format!("removing {cid}: {e}")),
                },
            });
        }
        Ok(removed)
    }

    /// The CID an `/ipfs/…` path (a CID and links below it) leads to.
    async fn resolve(&self, path: &str) -> Result<Cid, IpfsError> {
        let parsed: rust_ipfs::IpfsPath = path.parse().map_err(|e| daemon("resolve", e))?;
        let (node, _) = self
            .node
            .dag()
            .resolve(parsed, true, &[], false)
            .await
            .map_err(|e| daemon("resolve", e))?;
        let cid = node.source();
        from_node_cid("resolve", cid)
    }

    async fn swarm_connect(&self, multiaddr: &str) -> Result<(), IpfsError> {
        let path = "swarm/connect";
        let mut addr: Multiaddr = multiaddr.parse().map_err(|e| daemon(path, e))?;
        let peer = match addr.pop() {
            Some(Protocol::P2p(peer)) => peer,
            _ => {
                return Err(daemon(
                    path,
                    format!("{multiaddr}: the address must end with /p2p/<peer id>"),
                ))
            }
        };
        if peer == self.node.keypair().public().to_peer_id() {
            return Ok(());
        }
        if self.node.is_connected(peer).await.unwrap_or(false) {
            return Ok(());
        }
        self.dial(peer, addr).await
    }

    async fn dial(&self, peer: PeerId, addr: Multiaddr) -> Result<(), IpfsError> {
        let path = "swarm/connect";
        // In the address book too, so the node may dial it again by itself.
        if let Err(e) = self.node.add_peer((peer, addr.clone())).await {
            tracing::debug!("embedded ipfs: address book refused {peer} at {addr}: {e}");
        }
        let opts = rust_ipfs::DialOpts::peer_id(peer)
            .addresses(vec![addr])
            .build();
        match self.node.connect(opts).await {
            Ok(_) => Ok(()),
            // The dial is refused when a connection to the peer came up (it
            // dialled this node at the same moment) or another dial to it
            // is under way: success once that connection is there.
            Err(e) if e.to_string().contains("PeerCondition") => {
                if self.wait_connected(peer).await {
                    Ok(())
                } else {
                    Err(daemon(path, e))
                }
            }
            Err(e) => Err(daemon(path, e)),
        }
    }

    /// True once the node is connected to `peer`, false if it is not
    /// within [`DIAL_RACE_WAIT`].
    async fn wait_connected(&self, peer: PeerId) -> bool {
        let deadline = tokio::time::Instant::now() + DIAL_RACE_WAIT;
        loop {
            if self.node.is_connected(peer).await.unwrap_or(false) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl IpfsConnector for EmbeddedConnector {
    fn pin(&self, cid: &Cid, max_depth: i32) -> BoxFuture<Result<(), IpfsError>> {
        let (inner, cid) = (Arc::clone(&self.inner), cid.clone());
        Box::pin(async move { inner.pin(&cid, max_depth).await })
    }

    fn unpin(&self, cid: &Cid) -> BoxFuture<Result<(), IpfsError>> {
        let (inner, cid) = (Arc::clone(&self.inner), cid.clone());
        Box::pin(async move { inner.unpin(&cid).await })
    }

    fn list_pins(&self) -> BoxFuture<Result<Vec<ListedPin>, IpfsError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let limit = inner.config.request_timeout;
            within("pin/ls", limit, inner.list_pins()).await
        })
    }

    fn repo_stat(&self) -> BoxFuture<Result<RepoStat, IpfsError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let limit = inner.config.request_timeout;
            within("repo/stat", limit, inner.repo_stat()).await
        })
    }

    fn id(&self) -> BoxFuture<Result<IpfsId, IpfsError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { within("id", inner.config.request_timeout, inner.id()).await })
    }

    fn swarm_connect(&self, multiaddr: &str) -> BoxFuture<Result<(), IpfsError>> {
        let (inner, addr) = (Arc::clone(&self.inner), multiaddr.to_string());
        Box::pin(async move {
            let limit = inner.config.request_timeout;
            within("swarm/connect", limit, inner.swarm_connect(&addr)).await
        })
    }

    fn repo_gc(&self) -> BoxFuture<Result<Vec<GcEntry>, IpfsError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let limit = inner.config.request_timeout;
            within("repo/gc", limit, inner.gc()).await
        })
    }

    fn resolve(&self, path: &IpfsPath) -> BoxFuture<Result<Cid, IpfsError>> {
        let (inner, text) = (Arc::clone(&self.inner), path.to_string());
        Box::pin(async move {
            let limit = inner.config.request_timeout;
            within("resolve", limit, inner.resolve(&text)).await
        })
    }

    fn add(&self, request: AddRequest) -> BoxFuture<Result<(), IpfsError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let params = request
                .options
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()));
            let options = ImportOptions::from_params(params).map_err(|e| daemon("add", e))?;
            let mut body = request.body;
            let stream = futures_util::stream::poll_fn(move |cx| body.poll_recv(cx));
            let content_type = request.content_type;
            let _no_gc = inner.gc_lock.read().await;
            import::import(
                inner.node.repo(),
                &options,
                &content_type,
                stream,
                &request.added,
            )
            .await
        })
    }
}

#[cfg(test)]
mod tests;

//! [`KuboConnector`]: the [`IpfsConnector`] over a daemon's Kubo RPC HTTP
//! API (`POST /api/v0/…`), as IPFS Cluster's `ipfshttp` connector.
//!
//! Tested against real js-ipfs daemons (see `e2e/ipfs/`), whose answers
//! differ from Kubo's in ways tolerated here: CIDs in base58btc, numbers as
//! strings, no `pin/update` (404: the connector pins the new CID and unpins
//! the old one instead), no pin names.
//!
//! **The cluster's mark.** Pins the cluster's pin operations make are
//! recorded durably in `data_dir` ([`marks`]), not named in the daemon: the
//! record works with every daemon (js-ipfs and Kubo < 0.26 have no names)
//! and a user cannot rename it away. A pin operation first asks the daemon
//! whether the CID is pinned already: if it is and the record does not say
//! it is the cluster's, it is the user's and stays the user's (no mark, and
//! nothing is pinned when it already holds what was asked). A CID not pinned
//! is marked *before* `pin/add`, so a crash in between leaves at worst a mark
//! on an unpinned CID rather than a cluster pin that looks like a user's;
//! the mark is taken back when the daemon refuses the pin. `unpin` removes
//! only a marked pin (then the mark): a pin without the mark is the user's,
//! and the connector leaves it in place and reports success.
//!
//! Every call has a deadline: `request_timeout` in general,
//! `unpin_timeout` for `pin/rm`, and for `pin/add` a no-progress deadline of
//! `pin_timeout` (Kubo streams progress; js-ipfs answers once, at the end, so
//! there it is the whole pin's deadline). At most `concurrency` calls run at
//! once.

mod addr;
pub mod answers;
mod http;
pub mod marks;
mod multipart;
pub mod upload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::tracker::{IpfsPinType, ListedPin};
use cluster_core::Cid;

pub use addr::api_url_from_multiaddr;
pub use answers::DaemonVersion;
use http::{CallError, Limit, Rpc};
use marks::{lock, Marks};

use super::{
    AddRequest, BoxFuture, IpfsConnector, IpfsError, IpfsId, IpfsPath, Namespace, RepoStat,
};

/// The connector's settings (upstream's `ipfs_connector.ipfshttp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KuboConfig {
    /// The daemon's RPC API, `http://host:port` (a multiaddr such as
    /// `/ip4/127.0.0.1/tcp/5001` is accepted too).
    pub api_url: String,
    /// Deadline of every call without its own (upstream default 5 min).
    pub request_timeout: Duration,
    /// Longest `pin/add` goes without progress (upstream default 2 min).
    pub pin_timeout: Duration,
    /// Deadline of `pin/rm` (upstream default 3 h).
    pub unpin_timeout: Duration,
    /// Calls in flight at most.
    pub concurrency: usize,
    /// Where the record of the cluster's pins lives.
    pub data_dir: PathBuf,
}

impl KuboConfig {
    /// Upstream's defaults for the daemon at `api_url`, the record in `data_dir`.
    pub fn new(api_url: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        KuboConfig {
            api_url: api_url.into(),
            request_timeout: Duration::from_secs(5 * 60),
            pin_timeout: Duration::from_secs(2 * 60),
            unpin_timeout: Duration::from_secs(3 * 60 * 60),
            concurrency: 32,
            data_dir: data_dir.into(),
        }
    }
}

/// How the daemon holds a CID with a pin of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Recursive,
    Direct,
}

struct Inner {
    api_url: String,
    config: KuboConfig,
    rpc: Rpc,
    marks: Arc<Mutex<Marks>>,
}

/// The connector to one Kubo-compatible daemon. Cheap to clone.
#[derive(Clone)]
pub struct KuboConnector {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KuboConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KuboConnector")
            .field("api_url", &self.inner.api_url)
            .field("data_dir", &self.inner.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl KuboConnector {
    /// A connector per `config`; opens (or creates) the record of the
    /// cluster's pins. Contacts no daemon: a daemon that is down shows in
    /// the calls' errors.
    pub fn new(config: KuboConfig) -> Result<KuboConnector, IpfsError> {
        let api_url = addr::normalize_api_url(&config.api_url)?;
        if config.concurrency == 0 {
            return Err(IpfsError::Config {
                reason: "concurrency must be at least 1".into(),
            });
        }
        let marks = Marks::open(&config.data_dir)?;
        Ok(KuboConnector {
            inner: Arc::new(Inner {
                rpc: Rpc::new(api_url.clone(), config.concurrency),
                api_url,
                config,
                marks: Arc::new(Mutex::new(marks)),
            }),
        })
    }

    /// The API URL calls go to (`http://host:port`).
    pub fn api_url(&self) -> &str {
        &self.inner.api_url
    }

    /// True when `cid` carries the cluster's mark in the record.
    pub fn is_marked(&self, cid: &Cid) -> bool {
        lock(&self.inner.marks).get(cid).is_some()
    }

    /// The daemon's version (`version`).
    pub async fn version(&self) -> Result<DaemonVersion, IpfsError> {
        let i = &self.inner;
        let body = i.call("version", &[], i.total()).await?;
        parsed("version", answers::version(&body))
    }

    /// The peer ids of the daemons this one is connected to (`swarm/peers`).
    pub async fn swarm_peers(&self) -> Result<Vec<String>, IpfsError> {
        let i = &self.inner;
        let body = i.call("swarm/peers", &[], i.total()).await?;
        parsed("swarm/peers", answers::swarm_peers(&body))
    }

    /// How the daemon holds `cid` (`pin/ls?arg=`, all types), with the
    /// cluster's mark; `None` when it is not pinned at all.
    pub async fn pin_ls_one(&self, cid: &Cid) -> Result<Option<ListedPin>, IpfsError> {
        let found = self.inner.pin_ls_arg(cid, "all").await?;
        Ok(found.map(|pin_type| self.inner.listed(cid.clone(), pin_type)))
    }

    /// Moves a recursive pin from `from` to `to` (`pin/update`, unpinning
    /// `from`); the cluster's mark moves with it. A daemon without
    /// `pin/update` (404, as js-ipfs) gets `pin/add` of `to` and then
    /// `pin/rm` of `from`. Fails as Kubo does when `from` is not pinned
    /// recursively.
    pub async fn pin_update(&self, from: &Cid, to: &Cid) -> Result<(), IpfsError> {
        self.inner.pin_update(from, to).await
    }

    /// Stores `data` as one raw block (`block/put`, not pinned) and returns
    /// its CID (CIDv1, raw, sha2-256).
    pub async fn block_put(&self, data: &[u8]) -> Result<Cid, IpfsError> {
        let i = &self.inner;
        // `format=raw`: js-ipfs ignores `cid-codec`, and Kubo still reads
        // `format` (it refuses the two together).
        let query = [("format", "raw"), ("mhtype", "sha2-256"), ("pin", "false")];
        let upload = multipart::one_file("block", data);
        let body = i
            .rpc
            .call("block/put", &query, Some(upload), i.total())
            .await
            .map_err(|e| e.into_ipfs("block/put"))?;
        parsed("block/put", answers::block_put(&body))
    }

    /// Adds `data` as a file named `name` (`add`, UnixFS, not pinned: the
    /// cluster pins through its own operation) and returns the root CID.
    pub async fn add(&self, name: &str, data: &[u8]) -> Result<Cid, IpfsError> {
        let i = &self.inner;
        let query = [("pin", "false"), ("progress", "false")];
        let upload = multipart::one_file(name, data);
        let body = i
            .rpc
            .call("add", &query, Some(upload), i.total())
            .await
            .map_err(|e| e.into_ipfs("add"))?;
        parsed("add", answers::added_root(&body))
    }
}

fn parsed<T>(path: &str, r: Result<T, answers::AnswerError>) -> Result<T, IpfsError> {
    r.map_err(|e| match e {
        answers::AnswerError::StreamedError(message) => IpfsError::Daemon {
            path: path.into(),
            message,
        },
        answers::AnswerError::Malformed(reason) => IpfsError::BadAnswer {
            path: path.into(),
            reason,
        },
    })
}

impl Inner {
    fn total(&self) -> Limit {
        Limit::Total(self.config.request_timeout)
    }

    async fn call(
        &self,
        path: &str,
        query: &[(&str, &str)],
        limit: Limit,
    ) -> Result<bytes::Bytes, IpfsError> {
        self.rpc
            .call(path, query, None, limit)
            .await
            .map_err(|e| e.into_ipfs(path))
    }

    fn listed(&self, cid: Cid, pin_type: IpfsPinType) -> ListedPin {
        let own_pin = !matches!(pin_type, IpfsPinType::Indirect);
        let by_cluster = own_pin && lock(&self.marks).get(&cid).is_some();
        ListedPin {
            cid,
            pin_type,
            by_cluster,
        }
    }

    /// `pin/ls?arg=<cid>&type=<kind>`: how it is held, `None` if not.
    async fn pin_ls_arg(&self, cid: &Cid, kind: &str) -> Result<Option<IpfsPinType>, IpfsError> {
        let arg = cid.to_string();
        let query = [("arg", arg.as_str()), ("type", kind), ("stream", "true")];
        match self.rpc.call("pin/ls", &query, None, self.total()).await {
            Ok(body) => {
                let pins = parsed("pin/ls", answers::pin_list(&body))?;
                // Compared as parsed values: the daemon may answer another base.
                Ok(pins.into_iter().find(|(c, _)| c == cid).map(|(_, t)| t))
            }
            Err(CallError::Daemon { message, .. }) if answers::says_not_pinned(&message) => {
                Ok(None)
            }
            Err(e) => Err(e.into_ipfs("pin/ls")),
        }
    }

    /// Whether `cid` has a pin of its own. Two narrow look-ups rather than
    /// `type=all`, which makes the daemon walk every recursive pin's DAG for
    /// a CID that is not pinned (the common case of a new pin).
    async fn held(&self, cid: &Cid) -> Result<Option<Held>, IpfsError> {
        if self.pin_ls_arg(cid, "recursive").await?.is_some() {
            return Ok(Some(Held::Recursive));
        }
        Ok(self.pin_ls_arg(cid, "direct").await?.map(|_| Held::Direct))
    }

    async fn mark(&self, cid: &Cid, max_depth: i32) -> Result<(), IpfsError> {
        marks::add_off_thread(&self.marks, cid, max_depth).await
    }

    async fn unmark(&self, cid: &Cid) -> Result<(), IpfsError> {
        marks::remove_off_thread(&self.marks, cid).await
    }

    fn is_marked(&self, cid: &Cid) -> bool {
        lock(&self.marks).get(cid).is_some()
    }

    /// `resolve?arg=<path>`, skipped for a bare `/ipfs/<cid>` (as upstream).
    async fn resolve(&self, path: &IpfsPath) -> Result<Cid, IpfsError> {
        if let Some(cid) = path.bare_cid() {
            return Ok(cid);
        }
        match self.resolve_call(path).await {
            // js-ipfs's `resolve` refuses `/ipld` paths ("invalid argument
            // /ipld/…"), and its `dag/resolve` stops at the first link of a
            // dag-cbor node; its `/ipfs` pathing walks the IPLD links of
            // non-UnixFS nodes, so the same segments are resolved there.
            Err(CallError::Daemon { message, .. })
                if path.namespace == Namespace::Ipld && message.contains("invalid argument") =>
            {
                self.resolve_call(&path.with_namespace(Namespace::Ipfs))
                    .await
                    .map_err(|e| e.into_ipfs("resolve"))
            }
            other => other.map_err(|e| e.into_ipfs("resolve")),
        }
    }

    async fn resolve_call(&self, path: &IpfsPath) -> Result<Cid, CallError> {
        let arg = path.to_string();
        let body = self
            .rpc
            .call("resolve", &[("arg", arg.as_str())], None, self.total())
            .await?;
        answers::resolved(&body).map_err(|e| CallError::BadAnswer(e.to_string()))
    }

    /// `pin/add` as upstream calls it for `max_depth`.
    async fn pin_add(&self, cid: &Cid, max_depth: i32) -> Result<(), IpfsError> {
        let arg = cid.to_string();
        let depth = max_depth.to_string();
        let mut query = vec![("arg", arg.as_str()), ("progress", "true")];
        match max_depth {
            0 => query.push(("recursive", "false")),
            d if d < 0 => query.push(("recursive", "true")),
            _ => query.extend([("recursive", "true"), ("max-depth", depth.as_str())]),
        }
        let body = self
            .call("pin/add", &query, Limit::Idle(self.config.pin_timeout))
            .await?;
        parsed("pin/add", answers::pins_done(&body)).map(|_| ())
    }

    async fn pin(&self, cid: &Cid, max_depth: i32) -> Result<(), IpfsError> {
        let want_recursive = max_depth != 0;
        let held = self.held(cid).await?;
        let was_marked = self.is_marked(cid);
        // A recursive pin holds everything a direct one does.
        let serves = |h: Held| h == Held::Recursive || !want_recursive;
        match held {
            Some(h) if serves(h) => return Ok(()),
            // The user's direct pin, asked recursive: pinning deepens it,
            // and it stays the user's.
            Some(_) if !was_marked => return self.pin_add(cid, max_depth).await,
            _ => {}
        }
        self.mark(cid, max_depth).await?;
        let result = self.pin_add(cid, max_depth).await;
        if let Err(IpfsError::Daemon { .. }) = &result {
            // A refusal changed nothing; a timeout may still pin, so its
            // mark stays.
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
        self.pin_rm(cid).await?;
        self.unmark(cid).await
    }

    /// `pin/rm`; "not pinned" counts as done.
    async fn pin_rm(&self, cid: &Cid) -> Result<(), IpfsError> {
        let arg = cid.to_string();
        let limit = Limit::Total(self.config.unpin_timeout);
        match self.rpc.call("pin/rm", &[("arg", &arg)], None, limit).await {
            Ok(_) => Ok(()),
            Err(CallError::Daemon { message, .. }) if answers::says_not_pinned(&message) => Ok(()),
            Err(e) => Err(e.into_ipfs("pin/rm")),
        }
    }

    async fn list_pins(&self) -> Result<Vec<ListedPin>, IpfsError> {
        let deadline = self.config.request_timeout;
        let listing = async {
            // Both kinds a pin of its own can be; indirect ones are not
            // asked for (the daemon would walk every DAG to list them).
            let mut all = Vec::new();
            for kind in ["recursive", "direct"] {
                let query = [("type", kind), ("stream", "true")];
                let body = self.call("pin/ls", &query, self.total()).await?;
                all.extend(parsed("pin/ls", answers::pin_list(&body))?);
            }
            Ok(all)
        };
        let all: Vec<(Cid, IpfsPinType)> = tokio::time::timeout(deadline, listing)
            .await
            .unwrap_or_else(|_| {
                Err(IpfsError::Timeout {
                    path: "pin/ls".into(),
                    after_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
                })
            })?;
        let marks = lock(&self.marks);
        Ok(all
            .into_iter()
            .map(|(cid, pin_type)| {
                let by_cluster =
                    !matches!(pin_type, IpfsPinType::Indirect) && marks.get(&cid).is_some();
                ListedPin {
                    cid,
                    pin_type,
                    by_cluster,
                }
            })
            .collect())
    }

    async fn pin_update(&self, from: &Cid, to: &Cid) -> Result<(), IpfsError> {
        let from_marked = self.is_marked(from);
        let to_was_marked = self.is_marked(to);
        // `to` pinned by the user already stays the user's.
        let to_users = !to_was_marked && self.held(to).await?.is_some();
        let mark_to = from_marked && !to_users && !to_was_marked;
        if mark_to {
            self.mark(to, -1).await?;
        }
        let result = self.update_or_fallback(from, to).await;
        match result {
            Ok(()) if from_marked => self.unmark(from).await,
            Ok(()) => Ok(()),
            Err(e) => {
                if mark_to && matches!(e, IpfsError::Daemon { .. }) {
                    self.unmark(to).await?;
                }
                Err(e)
            }
        }
    }

    async fn update_or_fallback(&self, from: &Cid, to: &Cid) -> Result<(), IpfsError> {
        let (a, b) = (from.to_string(), to.to_string());
        let query = [("arg", a.as_str()), ("arg", b.as_str()), ("unpin", "true")];
        let limit = Limit::Idle(self.config.pin_timeout);
        match self.rpc.call("pin/update", &query, None, limit).await {
            Ok(body) => parsed("pin/update", answers::pins_done(&body)).map(|_| ()),
            Err(e) if e.status() == Some(404) => {
                if self.held(from).await? != Some(Held::Recursive) {
                    return Err(IpfsError::Daemon {
                        path: "pin/update".into(),
                        message: "'from' cid was not recursively pinned already".into(),
                    });
                }
                self.pin_add(to, -1).await?;
                self.pin_rm(from).await
            }
            Err(e) => Err(e.into_ipfs("pin/update")),
        }
    }
}

impl Inner {
    /// `add` of a streamed upload, not pinned; each file is reported as the
    /// daemon's answer names it. The no-progress deadline is `pin_timeout`.
    async fn add_stream(&self, request: AddRequest) -> Result<(), IpfsError> {
        let AddRequest {
            content_type,
            options,
            body,
            added,
        } = request;
        let mut query: Vec<(&str, &str)> = options
            .iter()
            .filter(|(k, _)| ADD_OPTIONS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        query.extend([("pin", "false"), ("progress", "false")]);
        // Files go to the caller as the daemon names them; when the caller
        // is slower, they wait here in order (names and CIDs, not data).
        let mut pending = Vec::new();
        let result = self
            .rpc
            .call_upload(
                "add",
                &query,
                &content_type,
                upload::UploadBody::new(body),
                self.config.pin_timeout,
                |line| match answers::added_line(line) {
                    Ok(Some(file)) if pending.is_empty() => match added.try_send(file) {
                        Err(tokio::sync::mpsc::error::TrySendError::Full(file)) => {
                            pending.push(file);
                            Ok(())
                        }
                        _ => Ok(()),
                    },
                    Ok(Some(file)) => {
                        pending.push(file);
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(CallError::BadAnswer(e.to_string())),
                },
            )
            .await;
        for file in pending {
            if added.send(file).await.is_err() {
                break;
            }
        }
        result.map_err(|e| e.into_ipfs("add"))
    }
}

/// The `add` parameters passed through to the daemon.
const ADD_OPTIONS: &[&str] = &[
    "cid-version",
    "raw-leaves",
    "chunker",
    "hash",
    "trickle",
    "wrap-with-directory",
    "hidden",
];

impl IpfsConnector for KuboConnector {
    fn add(&self, request: AddRequest) -> BoxFuture<Result<(), IpfsError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.add_stream(request).await })
    }

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
        Box::pin(async move { inner.list_pins().await })
    }

    fn repo_stat(&self) -> BoxFuture<Result<RepoStat, IpfsError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let query = [("size-only", "true")];
            let body = inner.call("repo/stat", &query, inner.total()).await?;
            parsed("repo/stat", answers::repo_stat(&body))
        })
    }

    fn repo_gc(&self) -> BoxFuture<Result<Vec<super::GcEntry>, IpfsError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let query = [("stream-errors", "true")];
            let body = inner.call("repo/gc", &query, inner.total()).await?;
            parsed("repo/gc", answers::repo_gc(&body))
        })
    }

    fn id(&self) -> BoxFuture<Result<IpfsId, IpfsError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let body = inner.call("id", &[], inner.total()).await?;
            parsed("id", answers::id(&body))
        })
    }

    fn resolve(&self, path: &IpfsPath) -> BoxFuture<Result<Cid, IpfsError>> {
        let (inner, path) = (Arc::clone(&self.inner), path.clone());
        Box::pin(async move { inner.resolve(&path).await })
    }

    fn swarm_connect(&self, multiaddr: &str) -> BoxFuture<Result<(), IpfsError>> {
        let (inner, addr) = (Arc::clone(&self.inner), multiaddr.to_string());
        Box::pin(async move {
            inner
                .call("swarm/connect", &[("arg", &addr)], inner.total())
                .await
                .map(|_| ())
        })
    }
}

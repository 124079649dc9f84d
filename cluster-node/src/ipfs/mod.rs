//! The IPFS connector seam: what the node's drivers ask of an IPFS daemon.
//!
//! The pin tracker's commands (pin, unpin, list) and the metrics publisher's
//! facts (repo size, the daemon's id and addresses) go through
//! [`IpfsConnector`]. Production implementations talk to a Kubo-compatible
//! RPC API or run an embedded node; the simulator and unit tests use fakes.
//! No libp2p type crosses the seam: peer ids and addresses are strings.
//!
//! `kubo::KuboConnector` (feature `kubo`, on by default) is the production
//! implementation over a daemon's HTTP RPC API; `embedded::EmbeddedConnector`
//! (feature `embedded-ipfs`, on by default) runs an IPFS node in-process.

use cluster_core::tracker::ListedPin;
use cluster_core::Cid;

pub use cluster_net::transport::BoxFuture;

#[cfg(feature = "kubo")]
pub mod kubo;
pub mod mem_add;
pub mod multipart;
pub mod path;

pub use path::{IpfsPath, Namespace, PathError};

#[cfg(all(feature = "embedded-ipfs", not(madsim)))]
pub mod embedded;

/// Why an IPFS call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpfsError {
    /// The daemon could not be reached (not running, connection refused).
    #[error("ipfs daemon unreachable ({path}): {reason}")]
    Unreachable {
        /// The RPC path called, e.g. `pin/add`.
        path: String,
        /// What the transport said.
        reason: String,
    },
    /// No answer within the call's timeout; the work may have been done.
    #[error("ipfs request timed out ({path}) after {after_ms} ms")]
    Timeout {
        /// The RPC path called.
        path: String,
        /// How long the call waited.
        after_ms: u64,
    },
    /// The daemon answered with an error.
    #[error("ipfs error ({path}): {message}")]
    Daemon {
        /// The RPC path called.
        path: String,
        /// The daemon's message.
        message: String,
    },
    /// The daemon's answer could not be understood.
    #[error("ipfs answer not understood ({path}): {reason}")]
    BadAnswer {
        /// The RPC path called.
        path: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The connector's configuration is unusable (e.g. the daemon's address).
    #[error("ipfs connector misconfigured: {reason}")]
    Config {
        /// What is wrong with it.
        reason: String,
    },
    /// The connector's own durable state (the record of the cluster's pins)
    /// could not be read or written.
    #[error("ipfs connector storage failed: {reason}")]
    Storage {
        /// What failed.
        reason: String,
    },
}

/// Size figures of the daemon's repo (`repo/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RepoStat {
    /// Bytes stored.
    pub repo_size: u64,
    /// The repo's configured limit, in bytes.
    pub storage_max: u64,
}

impl RepoStat {
    /// Bytes still free under the limit (the `freespace` metric).
    pub fn free_space(&self) -> u64 {
        self.storage_max.saturating_sub(self.repo_size)
    }
}

/// One entry of a garbage collection (`repo/gc`): a removed block, or an
/// error the daemon met on the way.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct GcEntry {
    /// The removed block's CID, as the daemon wrote it.
    pub key: Option<String>,
    /// The error, if this entry is one.
    pub error: Option<String>,
}

/// The daemon's identity (`id`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpfsId {
    /// Its libp2p peer id, as a string.
    pub peer_id: String,
    /// Its swarm addresses (multiaddrs), as strings.
    pub addresses: Vec<String>,
}

/// One file or directory an [`IpfsConnector::add`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedFile {
    /// Its path within the upload.
    pub name: String,
    /// Its CID.
    pub cid: Cid,
    /// Its cumulative DAG size, in bytes.
    pub size: u64,
}

/// An upload for [`IpfsConnector::add`]: a body in Kubo's `add` encoding
/// (`multipart/form-data`, directories as `application/x-directory`
/// parts), read chunk by chunk so it never sits whole in memory.
#[derive(Debug)]
pub struct AddRequest {
    /// The body's `Content-Type`, with its boundary.
    pub content_type: String,
    /// The daemon's `add` parameters (`cid-version`, `raw-leaves`,
    /// `chunker`, `hash`, `trickle`, `wrap-with-directory`, `hidden`);
    /// the connector adds its own (`pin=false`, no progress).
    pub options: Vec<(String, String)>,
    /// The body's chunks; an `Err` aborts the upload with that reason.
    pub body: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    /// Where each file and directory stored is reported as the daemon
    /// finishes it, the root last.
    pub added: tokio::sync::mpsc::Sender<AddedFile>,
}

/// What the node's drivers need from an IPFS daemon. Every call has its own
/// timeout inside the implementation; a call that cannot be answered ends
/// with an [`IpfsError`], never hangs.
pub trait IpfsConnector: Send + Sync + 'static {
    /// Pins `cid` with the cluster's mark: recursively for `max_depth` -1,
    /// the block alone for 0, down to `max_depth` levels otherwise. Pinning
    /// what is already pinned the same way succeeds.
    fn pin(&self, cid: &Cid, max_depth: i32) -> BoxFuture<Result<(), IpfsError>>;

    /// Unpins `cid`; "not pinned" counts as success. A connector that
    /// records the cluster's mark may leave a pin without it in place (it is
    /// the user's) and still succeed.
    fn unpin(&self, cid: &Cid) -> BoxFuture<Result<(), IpfsError>>;

    /// Every pin the daemon holds, with its type and whether the cluster
    /// made it (its mark).
    fn list_pins(&self) -> BoxFuture<Result<Vec<ListedPin>, IpfsError>>;

    /// The repo's size figures.
    fn repo_stat(&self) -> BoxFuture<Result<RepoStat, IpfsError>>;

    /// The daemon's peer id and addresses.
    fn id(&self) -> BoxFuture<Result<IpfsId, IpfsError>>;

    /// Asks the daemon to connect to another daemon at `multiaddr` (so
    /// content moves between peers' daemons by bitswap). Best effort.
    fn swarm_connect(&self, multiaddr: &str) -> BoxFuture<Result<(), IpfsError>>;

    /// Garbage-collects the daemon's repo (`repo/gc`): what it removed,
    /// and the errors it met. Connectors without it refuse.
    fn repo_gc(&self) -> BoxFuture<Result<Vec<GcEntry>, IpfsError>> {
        Box::pin(async {
            Err(IpfsError::Config {
                reason: "this IPFS connector cannot garbage-collect (repo/gc)".into(),
            })
        })
    }

    /// The CID `path` leads to (`resolve`): the root of the immutable path
    /// an `/ipns` name or a sub-path resolves to. This default resolves a
    /// bare `/ipfs/<cid>` and refuses the rest, for connectors that cannot
    /// ask a daemon (the simulator's).
    fn resolve(&self, path: &IpfsPath) -> BoxFuture<Result<Cid, IpfsError>> {
        let answer = path.bare_cid().ok_or_else(|| IpfsError::Config {
            reason: format!("this IPFS connector cannot resolve {path}"),
        });
        Box::pin(async move { answer })
    }

    /// Stores the files of `request` in the daemon without pinning them
    /// (the cluster pins the root through its own operation) — the REST
    /// API's `POST /add`. A connector that cannot import content keeps this
    /// default, which refuses.
    fn add(&self, request: AddRequest) -> BoxFuture<Result<(), IpfsError>> {
        drop(request);
        Box::pin(async {
            Err(IpfsError::Config {
                reason: "this IPFS connector cannot add content".into(),
            })
        })
    }
}

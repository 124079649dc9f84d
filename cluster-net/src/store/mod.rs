//! The storage seam: a small key-value backend that the Raft log store and
//! state machine are written against once.
//!
//! Every write goes through [`DurableStore::commit`] with a [`WriteBatch`]:
//! the batch is applied atomically, and with [`Durability::Immediate`] it is
//! on stable storage when `commit` returns. The Raft glue relies on that to
//! acknowledge appends and votes only after they are durable.

mod memory;
#[cfg(feature = "redb-store")]
mod redb_store;

use std::ops::Range;
use std::path::PathBuf;

pub use memory::MemStore;
#[cfg(feature = "redb-store")]
pub use redb_store::{RedbStore, RAFT_DB_FILE_NAME};

/// The named single-value records kept beside the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetaKey {
    /// The last vote this peer cast or granted (term, candidate, committed flag).
    Vote,
    /// The last log id known to be committed (an optimisation, may lag).
    Committed,
    /// The last log id removed by log compaction.
    LastPurged,
    /// Metadata of the current state machine snapshot.
    SnapshotMeta,
    /// The bytes of the current state machine snapshot.
    SnapshotData,
    /// The id of the cluster this peer belongs to.
    ClusterId,
    /// Who the store belongs to: peer id and incarnation (a random id of
    /// this life of the store), written when the store is created.
    Identity,
    /// Present while this peer asked to join a cluster and has not learnt
    /// its id yet: only then may it adopt the cluster id of a Raft message.
    Joining,
}

impl MetaKey {
    /// Every key, for backends that enumerate them.
    pub const ALL: [MetaKey; 8] = [
        MetaKey::Vote,
        MetaKey::Committed,
        MetaKey::LastPurged,
        MetaKey::SnapshotMeta,
        MetaKey::SnapshotData,
        MetaKey::ClusterId,
        MetaKey::Identity,
        MetaKey::Joining,
    ];

    /// The stable on-disk name of the key.
    pub fn as_str(self) -> &'static str {
        match self {
            MetaKey::Vote => "vote",
            MetaKey::Committed => "committed",
            MetaKey::LastPurged => "last_purged",
            MetaKey::SnapshotMeta => "snapshot_meta",
            MetaKey::SnapshotData => "snapshot_data",
            MetaKey::ClusterId => "cluster_id",
            MetaKey::Identity => "identity",
            MetaKey::Joining => "joining",
        }
    }
}

/// One change inside a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Set a meta record.
    PutMeta(MetaKey, Vec<u8>),
    /// Remove a meta record.
    DeleteMeta(MetaKey),
    /// Store the log entry at an index (replacing any entry there).
    PutLog(u64, Vec<u8>),
    /// Remove every log entry at or after the index (conflict truncation).
    TruncateLogFrom(u64),
    /// Remove every log entry at or before the index (compaction).
    PurgeLogUpTo(u64),
}

/// How durable a committed batch must be when `commit` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On stable storage (fsync) before `commit` returns.
    Immediate,
    /// Atomic and visible to reads, but may be lost by a crash until a later
    /// immediate commit. Only for records that may safely go back in time
    /// (the committed index hint).
    Relaxed,
}

/// An atomic group of writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBatch {
    /// The changes, applied in order.
    pub ops: Vec<WriteOp>,
    /// Durability required when `commit` returns.
    pub durability: Durability,
}

impl WriteBatch {
    /// An empty batch that must be durable when committed.
    pub fn durable() -> WriteBatch {
        WriteBatch {
            ops: Vec::new(),
            durability: Durability::Immediate,
        }
    }

    /// An empty batch that may be lost by a crash.
    pub fn relaxed() -> WriteBatch {
        WriteBatch {
            ops: Vec::new(),
            durability: Durability::Relaxed,
        }
    }

    /// Appends one change.
    pub fn push(&mut self, op: WriteOp) -> &mut WriteBatch {
        self.ops.push(op);
        self
    }
}

/// Errors from a storage backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened (missing permissions, corrupt or
    /// truncated file, another process holds it).
    #[error("cannot open raft database {path}: {reason}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The backend's explanation.
        reason: String,
    },
    /// The database does not exist. A node configured as a member must not
    /// create it again: it would come back with no memory of its votes and
    /// log. Remove it from the cluster and join it again as a new peer.
    #[error(
        "raft database {path} does not exist (lost or replaced disk?); if this peer was a \
         cluster member, remove it from the cluster (remove_peer from a live member), then \
         start it with a new, empty database and join again"
    )]
    Missing {
        /// The expected database file.
        path: PathBuf,
    },
    /// A read or write failed.
    #[error("raft database {path}: {reason}")]
    Io {
        /// The database file (empty for in-memory backends).
        path: PathBuf,
        /// The backend's explanation.
        reason: String,
    },
    /// A stored record could not be decoded.
    #[error("raft database record {what} is corrupt: {reason}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Why decoding failed.
        reason: String,
    },
    /// The log was purged past the stored snapshot: the entries in between
    /// are gone and this peer's state cannot be rebuilt.
    #[error(
        "raft database: the log is purged up to index {purged} but the stored snapshot ends at {}; \
         the entries in between are lost, so this peer cannot rebuild its state. Remove it from \
         the cluster (from a live member) and join it again with an empty data directory",
        snapshot.map_or_else(|| "nothing (no snapshot)".to_string(), |s| format!("index {s}"))
    )]
    PurgedPastSnapshot {
        /// Last purged log index.
        purged: u64,
        /// Last log index of the stored snapshot, if any.
        snapshot: Option<u64>,
    },
    /// A stored record was written in a format version this build does not
    /// know (a newer version of the software, or a damaged record).
    #[error(
        "raft database record {what} has format version {version}; this build reads version \
         {supported} (written by another version of the software?)"
    )]
    UnknownFormat {
        /// Which record.
        what: String,
        /// The version found.
        version: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// The backend refuses writes (a simulated crash or injected fault).
    #[error("raft storage unavailable: {0}")]
    Unavailable(String),
}

/// A durable key-value backend for one peer's Raft state.
///
/// Methods are synchronous: the production backend (redb) blocks on fsync,
/// and the simulator's backend is in memory. Implementations must make
/// [`commit`](DurableStore::commit) atomic (all ops or none) and, for
/// [`Durability::Immediate`], durable when it returns `Ok`.
pub trait DurableStore: Send + Sync + 'static {
    /// Reads a meta record.
    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError>;

    /// Reads the log entries with index in `range`, in index order.
    fn log_range(&self, range: Range<u64>) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// Reads the log entry with the highest index.
    fn log_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError>;

    /// Applies the batch atomically, with the requested durability.
    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError>;
}

impl<S: DurableStore + ?Sized> DurableStore for std::sync::Arc<S> {
    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get_meta(key)
    }

    fn log_range(&self, range: Range<u64>) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        (**self).log_range(range)
    }

    fn log_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        (**self).log_last()
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        (**self).commit(batch)
    }
}

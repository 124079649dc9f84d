//! What the replicated log carries, and what applying it answers.

use serde::{Deserialize, Serialize};

use crate::pin::{Pin, PinType, PinValidationError};
use crate::{Cid, Millis, PeerId};

/// Identifies one client request so a retried request is applied once.
///
/// The pinset keeps a session per client (see [`crate::pinset::SESSION_WINDOW`]):
/// a client numbers its requests with growing serials (gaps and a little
/// reordering are fine) and re-sends a request with the same id and the
/// same command until it gets an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    /// The submitting client (e.g. a peer's API session), chosen by the driver;
    /// a fresh random id per client process keeps sessions apart.
    pub client: u64,
    /// Unique per client, growing.
    pub serial: u64,
}

/// The log index of the entry that last created or changed a pin. Commands
/// computed from a pin (re-allocation, expiry) carry the version they saw and
/// are refused with [`ApplyError::Stale`] when the pin changed since.
///
/// Entries of one batch share an index, but a batch applies as a whole, so
/// no reader ever sees a pin between two entries of one batch: the index
/// names exactly one observable version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PinVersion(pub u64);

/// A change to the shared pinset. Allocations are decided by the proposer and
/// travel inside the command, so applying it never consults metrics or clocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Add a pin, or change the options of an existing one.
    Pin(Pin),
    /// Remove a pin (a user's request: whatever version is stored).
    Unpin {
        /// The pin to remove.
        cid: Cid,
    },
    /// Remove a pin whose `expire_at` has passed, as the proposer saw it.
    /// Refused when the pin changed since (a user re-pinned it, maybe with a
    /// later expiry) or carries no expiry.
    Expire {
        /// The pin to remove.
        cid: Cid,
        /// The version the proposer judged expired.
        version: PinVersion,
    },
    /// Pin `to` as a copy of `from` (same allocations and options); `from` stays.
    Update {
        /// Existing pin to copy.
        from: Cid,
        /// New CID.
        to: Cid,
        /// Replaces the name when not empty.
        name: String,
        /// Replaces the expiry when set.
        expire_at: Option<Millis>,
        /// Submission time, set by the proposer.
        timestamp: Millis,
    },
    /// Replace the allocations of an existing pin (re-allocation after a peer
    /// loss). Unlike a re-pin it never brings back a pin removed meanwhile.
    Reallocate {
        /// The pin to move.
        cid: Cid,
        /// Its new allocations; fewer than the minimum keeps it flagged under-replicated.
        allocations: Vec<PeerId>,
        /// The version the allocations were computed from.
        version: PinVersion,
    },
    /// A peer left the cluster: drop it from every allocation, flag pins that
    /// fall under their minimum so the leader re-allocates them.
    RemovePeer {
        /// The departed peer.
        peer: PeerId,
    },
}

/// One log entry: a command and, for client requests, its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Set for client requests that may be retried.
    pub request: Option<RequestId>,
    /// The change.
    pub command: Command,
}

impl Entry {
    /// An entry without a request id.
    pub fn new(command: Command) -> Entry {
        Entry {
            request: None,
            command,
        }
    }
}

/// How a `Pin` command changed the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PinChange {
    /// The CID was not pinned before.
    Created,
    /// Options or allocations changed in place.
    Updated,
    /// Same request as what is stored: nothing changed.
    Unchanged,
}

/// What a successful apply did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// The pin is stored (read it back with `Pinset::get` when needed: the
    /// answer stays small because every peer builds it on every apply).
    Pinned {
        /// The pinned CID.
        cid: Cid,
        /// What changed.
        change: PinChange,
    },
    /// The pin is gone (read it before unpinning when the caller wants it
    /// back: answers stay small, they are remembered for retries).
    Unpinned {
        /// The removed CID.
        cid: Cid,
    },
    /// A peer was dropped from allocations.
    PeerRemoved {
        /// The peer.
        peer: PeerId,
        /// Pins whose allocations named it.
        pins_affected: u64,
        /// Of those, pins now under their minimum.
        under_replicated: u64,
    },
}

/// Why a command was refused; the state is untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ApplyError {
    /// The pin itself is invalid.
    #[error(transparent)]
    Invalid(#[from] PinValidationError),
    /// No such pin.
    #[error("pin is not part of the pinset: {0}")]
    NotFound(Cid),
    /// Re-pin of a recursive pin as direct.
    #[error("cannot repin a CID which is already pinned in recursive mode (new pin is pinned as direct). Unpin it first.")]
    RecursiveToDirect,
    /// Meta, cluster-DAG and shard pins are refused until sharding exists:
    /// without it nothing could ever unpin them (IPFS Cluster unpins them
    /// only together, from the meta pin).
    #[error("{0:?} pins are not supported yet (sharding is not implemented)")]
    Unsupported(PinType),
    /// The pin changed since the command was computed from it.
    #[error(
        "pin {cid} changed since this command was computed (version {expected:?}, now {current:?})"
    )]
    Stale {
        /// The pin.
        cid: Cid,
        /// The version the command was computed from.
        expected: PinVersion,
        /// The stored version.
        current: PinVersion,
    },
    /// An expiry for a pin that does not expire.
    #[error("pin {0} has no expiry")]
    NoExpiry(Cid),
    /// The request id was used before for a different command.
    #[error("request id {0:?} was already used for a different command")]
    RequestIdReused(RequestId),
    /// The request is older than what its client's session remembers: it may
    /// have been applied, so it is not applied again.
    #[error("request {0:?} is older than its session's de-duplication window")]
    RequestTooOld(RequestId),
}

/// An entry's log index did not grow: the driver replayed or reordered the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("applied index must grow: {index} after {applied}")]
pub struct OutOfOrder {
    /// The index given.
    pub index: u64,
    /// The last applied index.
    pub applied: u64,
}

/// The answer to one applied entry.
pub type ApplyResult = Result<Applied, ApplyError>;

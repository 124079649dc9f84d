//! What the replicated log carries, and what applying it answers.

use serde::{Deserialize, Serialize};

use crate::pin::{Pin, PinType, PinValidationError};
use crate::{Cid, Millis, PeerId};

/// Identifies one client request so a retried request is applied once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    /// The submitting client (e.g. a peer's API session), chosen by the driver.
    pub client: u64,
    /// Unique per client.
    pub serial: u64,
}

/// A change to the shared pinset. Allocations are decided by the proposer and
/// travel inside the command, so applying it never consults metrics or clocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Add a pin, or change the options of an existing one.
    Pin(Pin),
    /// Remove a pin.
    Unpin {
        /// The pin to remove.
        cid: Cid,
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
    /// The pin as it was before removal.
    Unpinned {
        /// Removed pin.
        pin: Box<Pin>,
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
    /// Re-pin with a different type.
    #[error("cannot repin CID with different tracking method, clear state with pin rm to proceed. New: {new:?}. Was: {was:?}")]
    TypeChange {
        /// Stored type.
        was: PinType,
        /// Requested type.
        new: PinType,
    },
    /// Re-pin of a recursive pin as direct.
    #[error("cannot repin a CID which is already pinned in recursive mode (new pin is pinned as direct). Unpin it first.")]
    RecursiveToDirect,
    /// Only data pins can be updated.
    #[error("this pin type cannot be updated: {0:?}")]
    NotUpdatable(PinType),
    /// Shard and cluster-DAG pins go away with their meta pin.
    #[error("{0:?} pins cannot be unpinned directly; unpin the meta pin")]
    NotUnpinnable(PinType),
}

/// The answer to one applied entry.
pub type ApplyResult = Result<Applied, ApplyError>;

//! The compact in-memory form of a pin (the CID is the map key, peers are interned).

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::pin::{
    bounded, check_allocations, check_shape, validate_replication, Allocated, Pin, PinMode,
    PinOptions, PinType, PinValidationError, ALLOCATIONS_MAX, NAME_MAX_BYTES,
};
use crate::{Cid, Millis, PeerId};

/// What the state keeps per CID. Rare fields live behind one box so the common
/// pin stays small (see the memory figure in BENCHMARKS.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredPin {
    pub allocations: Allocations,
    pub name: Name,
    pub timestamp: Millis,
    pub rmin: i32,
    pub rmax: i32,
    pub max_depth: i32,
    pub pin_type: PinType,
    /// Fewer allocations than `rmin`: computed by apply (see [`Pin::is_under_replicated`]).
    pub under_replicated: bool,
    pub extra: Option<Box<PinExtra>>,
    /// The log index that last created or changed it (see `PinVersion`).
    pub version: u64,
}

/// Allocation lists of up to three peers (the common replication factors)
/// live inside the pin: no allocation to apply, no pointer to chase when a
/// snapshot walks a million pins.
pub(crate) type Allocations = SmallVec<[PeerId; 3]>;

/// Pin names up to 16 bytes live inside the pin, for the same reasons.
/// Always valid UTF-8 (it is only ever built from a `str`).
pub(crate) type Name = SmallVec<[u8; 16]>;

/// The name as text.
pub(crate) fn name_str(name: &Name) -> &str {
    std::str::from_utf8(name).expect("invariant: names are built from str")
}

/// Fields most pins leave empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct PinExtra {
    pub reference: Option<Cid>,
    pub pin_update: Option<Cid>,
    pub expire_at: Option<Millis>,
    pub shard_size: u64,
    pub metadata: BTreeMap<String, String>,
    pub origins: Vec<String>,
}

impl PinExtra {
    fn is_empty(&self) -> bool {
        *self == PinExtra::default()
    }
}

/// Shares one allocation per distinct peer id across the whole pinset.
///
/// A hash set with a fixed (unseeded) hasher: interning runs for every
/// allocation of every applied pin, and hashing a peer id once beats several
/// string comparisons in an ordered set. Nothing iterates it in hash order.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerPool {
    peers: HashSet<PeerId, BuildHasherDefault<Fnv64>>,
}

/// FNV-1a: fixed, so the pool behaves the same on every peer and every run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv64 {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl PeerPool {
    pub fn intern(&mut self, peer: &PeerId) -> PeerId {
        if let Some(p) = self.peers.get(peer) {
            return p.clone();
        }
        self.peers.insert(peer.clone());
        peer.clone()
    }

    pub fn forget(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// Every interned peer, sorted.
    pub fn sorted(&self) -> Vec<&PeerId> {
        let mut peers: Vec<&PeerId> = self.peers.iter().collect();
        peers.sort();
        peers
    }

    pub fn is_interned(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.ptr_eq(peer))
    }
}

impl StoredPin {
    /// The stored form of `pin` (user allocations and the requested mode are not kept,
    /// as in IPFS Cluster: the mode is derived from the depth).
    /// `version` is the log index of the entry storing it.
    pub fn from_pin(pin: &Pin, pool: &mut PeerPool, version: u64) -> StoredPin {
        let o = &pin.options;
        let extra = PinExtra {
            reference: pin.reference.clone(),
            pin_update: o.pin_update.clone(),
            expire_at: o.expire_at,
            shard_size: o.shard_size,
            metadata: o.metadata.clone(),
            origins: o.origins.clone(),
        };
        StoredPin {
            allocations: pin.allocations.iter().map(|p| pool.intern(p)).collect(),
            name: Name::from_slice(pin.options.name.as_bytes()),
            timestamp: pin.timestamp,
            rmin: o.replication_factor_min,
            rmax: o.replication_factor_max,
            max_depth: pin.max_depth,
            pin_type: pin.pin_type,
            under_replicated: pin.is_under_replicated(),
            extra: (!extra.is_empty()).then(|| Box::new(extra)),
            version,
        }
    }

    pub fn to_pin(&self, cid: &Cid) -> Pin {
        let extra = self.extra.as_deref().cloned().unwrap_or_default();
        Pin {
            cid: cid.clone(),
            pin_type: self.pin_type,
            allocations: self.allocations.to_vec(),
            max_depth: self.max_depth,
            reference: extra.reference,
            timestamp: self.timestamp,
            options: PinOptions {
                replication_factor_min: self.rmin,
                replication_factor_max: self.rmax,
                name: name_str(&self.name).to_string(),
                mode: self.mode(),
                shard_size: extra.shard_size,
                user_allocations: Vec::new(),
                expire_at: extra.expire_at,
                metadata: extra.metadata,
                pin_update: extra.pin_update,
                origins: extra.origins,
            },
        }
    }

    /// What [`Pin::validate_with`] with `Allocated::Stored` says of
    /// `to_pin(cid)`, without building the pin for the common case of a pin
    /// without extras (snapshot restore checks a million of them). Pins with
    /// extras take the exact path.
    pub fn validate(&self, cid: &Cid) -> Result<(), PinValidationError> {
        if self.extra.is_some() {
            return self.to_pin(cid).validate_with(Allocated::Stored);
        }
        // Same checks, same order as `Pin::validate_with`; the fields an
        // extra-less pin leaves empty pass trivially.
        validate_replication(self.rmin, self.rmax)?;
        bounded("name", self.name.len(), NAME_MAX_BYTES)?;
        bounded("allocations", self.allocations.len(), ALLOCATIONS_MAX)?;
        check_shape(self.pin_type, self.mode(), self.max_depth, false)?;
        check_allocations(
            self.pin_type,
            self.rmin,
            self.rmax,
            &self.allocations,
            Allocated::Stored,
        )
    }

    fn mode(&self) -> PinMode {
        if self.max_depth == 0 {
            PinMode::Direct
        } else {
            PinMode::Recursive
        }
    }

    /// The under-replication rule applied to the stored fields.
    pub fn is_short(&self) -> bool {
        crate::pin::is_short(self.pin_type, self.rmin, self.allocations.len())
    }

    pub fn expire_at(&self) -> Option<Millis> {
        self.extra.as_ref().and_then(|e| e.expire_at)
    }
}

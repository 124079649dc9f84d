//! The pin object and its options, as IPFS Cluster v1 defines them.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Cid, Millis, PeerId};

/// Replication factor meaning "every peer of the cluster".
pub const REPLICATION_EVERYWHERE: i32 = -1;
/// Most peers an allocation (or user allocation list) may name.
pub const ALLOCATIONS_MAX: usize = 1024;
/// Longest pin name, in bytes.
pub const NAME_MAX_BYTES: usize = 4096;
/// Most metadata entries on one pin.
pub const METADATA_ENTRIES_MAX: usize = 128;
/// Longest metadata key or value, in bytes.
pub const METADATA_FIELD_MAX_BYTES: usize = 4096;
/// Most origins on one pin.
pub const ORIGINS_MAX: usize = 64;
/// Deepest limited-depth recursive pin.
pub const MAX_DEPTH_MAX: i32 = 1 << 20;

/// How IPFS should pin the DAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinMode {
    /// The whole DAG (IPFS `--recursive=true`).
    #[default]
    Recursive,
    /// Only the root block.
    Direct,
}

/// What kind of cluster pin this is (sharding uses the non-data kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum PinType {
    /// A normal pin of user data.
    #[default]
    #[serde(rename = "pin")]
    Data,
    /// The root of a sharded DAG; never pinned directly.
    #[serde(rename = "meta-pin")]
    Meta,
    /// The cluster DAG linking the shards of a sharded DAG.
    #[serde(rename = "clusterdag-pin")]
    ClusterDag,
    /// One shard of a sharded DAG.
    #[serde(rename = "shard-pin")]
    Shard,
}

/// User-settable options of a pin (`replication-min`, `name`, `meta-*` …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinOptions {
    /// Fewest peers that must pin it; -1 = everywhere; 0 = cluster default (requests only).
    pub replication_factor_min: i32,
    /// Most peers that should pin it; -1 = everywhere; 0 = cluster default (requests only).
    pub replication_factor_max: i32,
    /// Human name.
    pub name: String,
    /// Recursive or direct.
    pub mode: PinMode,
    /// Shard size in bytes for sharded adds (stored, used by the adder).
    pub shard_size: u64,
    /// Preferred peers, tried first by the allocator; never stored.
    pub user_allocations: Vec<PeerId>,
    /// When the pin should be removed automatically.
    pub expire_at: Option<Millis>,
    /// Free-form key/value metadata.
    pub metadata: BTreeMap<String, String>,
    /// The CID this pin replaces (pin update).
    pub pin_update: Option<Cid>,
    /// Multiaddresses (with `/p2p/`) of peers that have the content.
    pub origins: Vec<String>,
}

impl Default for PinOptions {
    fn default() -> Self {
        PinOptions {
            replication_factor_min: 0,
            replication_factor_max: 0,
            name: String::new(),
            mode: PinMode::Recursive,
            shard_size: 0,
            user_allocations: Vec::new(),
            expire_at: None,
            metadata: BTreeMap::new(),
            pin_update: None,
            origins: Vec::new(),
        }
    }
}

/// A cluster pin: what the shared state holds for one CID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The pinned content.
    pub cid: Cid,
    /// Data, meta, cluster-DAG or shard pin.
    #[serde(rename = "type")]
    pub pin_type: PinType,
    /// Peers that must pin it; empty when pinned everywhere.
    pub allocations: Vec<PeerId>,
    /// -1 recursive, 0 direct, n > 0 limited depth (shards use 1).
    pub max_depth: i32,
    /// Link between the pins of a sharded DAG.
    pub reference: Option<Cid>,
    /// When the pin was submitted to consensus (set by the proposer, not by apply).
    pub timestamp: Millis,
    /// User options.
    pub options: PinOptions,
}

/// Why a pin is not acceptable. Error texts follow IPFS Cluster's where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PinValidationError {
    /// Replication factors out of range or inconsistent.
    #[error("cluster.replication_factor_min/max invalid: min {min}, max {max} ({reason})")]
    ReplicationFactor {
        /// Requested minimum.
        min: i32,
        /// Requested maximum.
        max: i32,
        /// Which rule failed.
        reason: Cow<'static, str>,
    },
    /// The allocation list does not fit the replication factors.
    #[error("pin has {got} allocations, needs between {min} and {max}")]
    AllocationCount {
        /// Allocations given.
        got: usize,
        /// Minimum.
        min: i32,
        /// Maximum.
        max: i32,
    },
    /// One peer listed twice.
    #[error("peer {0} allocated twice")]
    DuplicateAllocation(PeerId),
    /// Everywhere pins carry no allocations.
    #[error("a pin replicated everywhere carries no allocations")]
    EverywhereWithAllocations,
    /// `expire_at` not after the submission time.
    #[error("pin.ExpireAt set before current time")]
    ExpiresBeforeSubmission,
    /// A field is over its bound.
    #[error("{field} too large: {got} > {max}")]
    TooLarge {
        /// Which field.
        field: Cow<'static, str>,
        /// Its size.
        got: usize,
        /// The bound.
        max: usize,
    },
    /// An origin is not a `/p2p/` multiaddress.
    #[error("origin {0:?} is not a multiaddress with /p2p/")]
    BadOrigin(String),
    /// Depth does not fit the mode or the pin type.
    #[error("max_depth {max_depth} invalid for {pin_type:?} pin in {mode:?} mode")]
    BadDepth {
        /// Depth given.
        max_depth: i32,
        /// Pin type.
        pin_type: PinType,
        /// Mode given.
        mode: PinMode,
    },
    /// Meta, cluster-DAG and shard pins must reference their partner.
    #[error("{0:?} pin requires a reference")]
    MissingReference(PinType),
    /// Meta pins are never allocated.
    #[error("meta pins carry no allocations")]
    MetaWithAllocations,
}

/// Checks replication factors as IPFS Cluster does, after defaults replaced 0.
pub fn validate_replication(min: i32, max: i32) -> Result<(), PinValidationError> {
    let bad = |reason: &'static str| {
        Err(PinValidationError::ReplicationFactor {
            min,
            max,
            reason: reason.into(),
        })
    };
    if min == 0 || max == 0 {
        return bad("0 must be replaced by the cluster default before pinning");
    }
    if min < REPLICATION_EVERYWHERE || max < REPLICATION_EVERYWHERE {
        return bad("must be -1 or positive");
    }
    if (min == REPLICATION_EVERYWHERE) != (max == REPLICATION_EVERYWHERE) {
        return bad("-1 (everywhere) must be used for both or neither");
    }
    if min > max {
        return bad("min is larger than max");
    }
    if max > 0 && max as usize > ALLOCATIONS_MAX {
        return bad("larger than the most peers a pin may name");
    }
    Ok(())
}

impl Pin {
    /// A data pin of `cid` with `options`, depth taken from the mode.
    pub fn new(cid: Cid, options: PinOptions, timestamp: Millis) -> Pin {
        let max_depth = match options.mode {
            PinMode::Recursive => -1,
            PinMode::Direct => 0,
        };
        Pin {
            cid,
            pin_type: PinType::Data,
            allocations: Vec::new(),
            max_depth,
            reference: None,
            timestamp,
            options,
        }
    }

    /// True when every peer pins it (replication -1).
    pub fn is_everywhere(&self) -> bool {
        self.options.replication_factor_min == REPLICATION_EVERYWHERE
    }

    /// True when the pin has fewer allocations than `replication_factor_min`.
    /// Only the pinset can store such a pin (after a peer removal or a short
    /// re-allocation); the leader then tops it up. It is computed from the
    /// allocations, never set by a proposer: a request like that is invalid.
    pub fn is_under_replicated(&self) -> bool {
        is_short(
            self.pin_type,
            self.options.replication_factor_min,
            self.allocations.len(),
        )
    }

    /// The mode implied by the depth (what IPFS Cluster reports on read-back).
    pub fn mode(&self) -> PinMode {
        if self.max_depth == 0 {
            PinMode::Direct
        } else {
            PinMode::Recursive
        }
    }

    /// True when `peer` should hold this pin in its IPFS daemon.
    pub fn is_allocated_to(&self, peer: &PeerId) -> bool {
        self.pin_type != PinType::Meta && (self.is_everywhere() || self.allocations.contains(peer))
    }

    /// Checks everything that can be checked on the pin alone, as a request:
    /// the allocations must reach `replication_factor_min`.
    pub fn validate(&self) -> Result<(), PinValidationError> {
        self.validate_with(Allocated::Fully)
    }

    /// Checks a pin as the pinset may hold it: like [`Pin::validate`], but
    /// with `Allocated::Stored` fewer allocations than the minimum, and more
    /// than the maximum during a hand-over, pass.
    pub(crate) fn validate_with(&self, allocated: Allocated) -> Result<(), PinValidationError> {
        let o = &self.options;
        validate_replication(o.replication_factor_min, o.replication_factor_max)?;
        bounded("name", o.name.len(), NAME_MAX_BYTES)?;
        bounded("allocations", self.allocations.len(), ALLOCATIONS_MAX)?;
        bounded(
            "user_allocations",
            o.user_allocations.len(),
            ALLOCATIONS_MAX,
        )?;
        bounded("metadata", o.metadata.len(), METADATA_ENTRIES_MAX)?;
        for (k, v) in &o.metadata {
            bounded("metadata key", k.len(), METADATA_FIELD_MAX_BYTES)?;
            bounded("metadata value", v.len(), METADATA_FIELD_MAX_BYTES)?;
        }
        bounded("origins", o.origins.len(), ORIGINS_MAX)?;
        for origin in &o.origins {
            bounded("origin", origin.len(), METADATA_FIELD_MAX_BYTES)?;
            if !origin.starts_with('/') || !origin.contains("/p2p/") {
                return Err(PinValidationError::BadOrigin(origin.clone()));
            }
        }
        if let Some(expire_at) = o.expire_at {
            if expire_at <= self.timestamp {
                return Err(PinValidationError::ExpiresBeforeSubmission);
            }
        }
        self.validate_shape()?;
        self.validate_allocations(allocated)
    }

    fn validate_shape(&self) -> Result<(), PinValidationError> {
        check_shape(
            self.pin_type,
            self.options.mode,
            self.max_depth,
            self.reference.is_some(),
        )
    }

    fn validate_allocations(&self, allocated: Allocated) -> Result<(), PinValidationError> {
        check_allocations(
            self.pin_type,
            self.options.replication_factor_min,
            self.options.replication_factor_max,
            &self.allocations,
            allocated,
        )
    }

    /// True when the two pins ask for the same thing (the timestamp aside):
    /// re-pinning with equal options is a no-op.
    pub fn same_request(&self, other: &Pin) -> bool {
        let strip = |p: &Pin| {
            let mut p = p.clone();
            p.timestamp = Millis(0);
            p.options.user_allocations.clear();
            p.options.mode = p.mode();
            p
        };
        strip(self) == strip(other)
    }
}

/// Depth against mode and type, and the reference non-data pins need (shared
/// with the pinset's stored form, which validates without building a `Pin`).
pub(crate) fn check_shape(
    pin_type: PinType,
    mode: PinMode,
    max_depth: i32,
    has_reference: bool,
) -> Result<(), PinValidationError> {
    let depth_ok = match pin_type {
        PinType::Data => match mode {
            PinMode::Direct => max_depth == 0,
            PinMode::Recursive => max_depth == -1 || (1..=MAX_DEPTH_MAX).contains(&max_depth),
        },
        PinType::Shard => max_depth == 1,
        PinType::ClusterDag => max_depth == 0,
        PinType::Meta => true,
    };
    if !depth_ok {
        return Err(PinValidationError::BadDepth {
            max_depth,
            pin_type,
            mode,
        });
    }
    if pin_type != PinType::Data && !has_reference {
        return Err(PinValidationError::MissingReference(pin_type));
    }
    Ok(())
}

/// The allocation rules (shared like [`check_shape`]).
pub(crate) fn check_allocations(
    pin_type: PinType,
    min: i32,
    max: i32,
    allocations: &[PeerId],
    allocated: Allocated,
) -> Result<(), PinValidationError> {
    // Allocation lists are short: pairwise comparison beats sorting a copy.
    for (i, p) in allocations.iter().enumerate() {
        if allocations[..i].contains(p) {
            return Err(PinValidationError::DuplicateAllocation(p.clone()));
        }
    }
    if pin_type == PinType::Meta {
        return if allocations.is_empty() {
            Ok(())
        } else {
            Err(PinValidationError::MetaWithAllocations)
        };
    }
    if min == REPLICATION_EVERYWHERE {
        return if allocations.is_empty() {
            Ok(())
        } else {
            Err(PinValidationError::EverywhereWithAllocations)
        };
    }
    let got = allocations.len();
    let too_few = got < min as usize && allocated == Allocated::Fully;
    let most = match allocated {
        Allocated::Fully => max as usize,
        Allocated::Stored => handover_allocations_max(max),
    };
    if too_few || got > most {
        return Err(PinValidationError::AllocationCount { got, min, max });
    }
    Ok(())
}

/// Whether a pin's allocations must reach its minimum (see [`Pin::validate_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Allocated {
    /// A request: at least `replication_factor_min` allocations.
    Fully,
    /// As the pinset may hold it: short of the minimum after a peer loss or
    /// a short re-allocation, over the maximum while a hand-over waits for
    /// the new peers to report pinned (see [`handover_allocations_max`]).
    Stored,
}

/// Most allocations a stored pin with maximum `max` may name: a hand-over
/// keeps the peers being replaced next to up to `max` replacements until the
/// replacements report pinned (`crate::repair`).
pub fn handover_allocations_max(max: i32) -> usize {
    (max.max(0) as usize).saturating_mul(2).min(ALLOCATIONS_MAX)
}

/// The under-replication rule, shared by [`Pin`] and the pinset's stored form.
pub(crate) fn is_short(pin_type: PinType, rmin: i32, allocations: usize) -> bool {
    pin_type != PinType::Meta
        && rmin != REPLICATION_EVERYWHERE
        && allocations < rmin.max(0) as usize
}

pub(crate) fn bounded(
    field: &'static str,
    got: usize,
    max: usize,
) -> Result<(), PinValidationError> {
    if got > max {
        return Err(PinValidationError::TooLarge {
            field: field.into(),
            got,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid() -> Cid {
        Cid::parse("QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq").unwrap()
    }

    fn pin(min: i32, max: i32, n: u64) -> Pin {
        let options = PinOptions {
            replication_factor_min: min,
            replication_factor_max: max,
            ..Default::default()
        };
        let mut p = Pin::new(cid(), options, Millis(1000));
        p.allocations = (0..n).map(PeerId::synthetic).collect();
        p
    }

    #[test]
    fn replication_rules_match_ipfs_cluster() {
        assert!(validate_replication(-1, -1).is_ok());
        assert!(validate_replication(2, 3).is_ok());
        for (min, max) in [(0, 1), (1, 0), (-1, 2), (2, -1), (3, 2), (-2, -2)] {
            assert!(validate_replication(min, max).is_err(), "{min}/{max}");
        }
        // Each bound on its own, as IPFS Cluster's `-1` and peer-count rules say.
        assert_eq!(REPLICATION_EVERYWHERE, -1);
        for (min, max) in [(-2, 3), (1, -2)] {
            let e = validate_replication(min, max).unwrap_err().to_string();
            assert!(e.contains("-1 or positive"), "{min}/{max}: {e}");
        }
        let most = ALLOCATIONS_MAX as i32;
        assert!(validate_replication(1, most).is_ok());
        assert!(validate_replication(1, most + 1).is_err());
        assert!(validate_replication(1, most + 50).is_err());
    }

    #[test]
    fn everywhere_is_a_minimum_of_minus_one() {
        assert!(pin(-1, -1, 0).is_everywhere());
        assert!(!pin(1, 1, 1).is_everywhere());
        assert!(!pin(2, 3, 2).is_everywhere());
    }

    #[test]
    fn allocations_must_fit_the_factors() {
        assert!(pin(2, 3, 2).validate().is_ok());
        assert!(pin(2, 3, 3).validate().is_ok());
        assert!(pin(2, 3, 1).validate().is_err());
        assert!(pin(2, 3, 4).validate().is_err());
        assert!(pin(-1, -1, 0).validate().is_ok());
        assert!(pin(-1, -1, 1).validate().is_err());
        let under = pin(2, 3, 1);
        assert!(under.is_under_replicated());
        assert!(under.validate_with(Allocated::Stored).is_ok());
        assert!(!pin(2, 3, 2).is_under_replicated());
        assert!(!pin(-1, -1, 0).is_under_replicated());
        let mut dup = pin(2, 3, 2);
        dup.allocations[1] = dup.allocations[0].clone();
        assert!(matches!(
            dup.validate(),
            Err(PinValidationError::DuplicateAllocation(_))
        ));
    }

    #[test]
    fn expiry_and_shape_checks() {
        let mut p = pin(1, 1, 1);
        p.options.expire_at = Some(Millis(999));
        assert_eq!(
            p.validate(),
            Err(PinValidationError::ExpiresBeforeSubmission)
        );
        let mut d = pin(1, 1, 1);
        d.options.mode = PinMode::Direct;
        assert!(d.validate().is_err(), "direct mode with recursive depth");
        d.max_depth = 0;
        assert!(d.validate().is_ok());
        let mut s = pin(1, 1, 1);
        s.pin_type = PinType::Shard;
        s.max_depth = 1;
        assert_eq!(
            s.validate(),
            Err(PinValidationError::MissingReference(PinType::Shard))
        );
        let mut o = pin(1, 1, 1);
        o.options.origins = vec!["/ip4/1.2.3.4/tcp/4001".into()];
        assert!(matches!(
            o.validate(),
            Err(PinValidationError::BadOrigin(_))
        ));
    }

    #[test]
    fn every_size_bound_takes_its_maximum_and_refuses_one_more() {
        let too_large = |p: &Pin, field: &str| match p.validate() {
            Err(PinValidationError::TooLarge { field: f, .. }) => f == field,
            _ => false,
        };
        let mut p = pin(1, 1, 1);
        p.options.name = "n".repeat(NAME_MAX_BYTES);
        assert!(p.validate().is_ok());
        p.options.name.push('n');
        assert!(too_large(&p, "name"));
        let mut p = pin(1, 1, 1);
        p.options.metadata = (0..METADATA_ENTRIES_MAX)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(p.validate().is_ok());
        p.options.metadata.insert("one more".into(), String::new());
        assert!(too_large(&p, "metadata"));
        let mut p = pin(1, 1, 1);
        p.options
            .metadata
            .insert("k".into(), "v".repeat(METADATA_FIELD_MAX_BYTES + 1));
        assert!(too_large(&p, "metadata value"));
        let mut p = pin(1, 1, 1);
        p.options.user_allocations = (0..ALLOCATIONS_MAX as u64 + 1)
            .map(PeerId::synthetic)
            .collect();
        assert!(too_large(&p, "user_allocations"));
    }

    #[test]
    fn limited_depths_and_origins_that_are_valid_pass() {
        let mut p = pin(1, 1, 1);
        for depth in [1, 5, MAX_DEPTH_MAX] {
            p.max_depth = depth;
            assert!(p.validate().is_ok(), "depth {depth}");
        }
        p.max_depth = MAX_DEPTH_MAX + 1;
        assert!(matches!(
            p.validate(),
            Err(PinValidationError::BadDepth { .. })
        ));
        let mut o = pin(1, 1, 1);
        o.options.origins =
            vec!["/ip4/1.2.3.4/tcp/4001/p2p/QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq".into()];
        assert!(o.validate().is_ok());
        assert!(check_shape(PinType::ClusterDag, PinMode::Recursive, 0, true).is_ok());
        assert!(check_shape(PinType::ClusterDag, PinMode::Recursive, 1, true).is_err());
    }

    #[test]
    fn json_uses_ipfs_cluster_strings() {
        assert_eq!(
            serde_json::to_string(&PinType::Meta).unwrap(),
            "\"meta-pin\""
        );
        assert_eq!(
            serde_json::to_string(&PinMode::Direct).unwrap(),
            "\"direct\""
        );
        let p = pin(1, 2, 1);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"type\":\"pin\""), "{json}");
        assert_eq!(serde_json::from_str::<Pin>(&json).unwrap(), p);
    }
}

//! Snapshot codec: the whole pinset to bytes and back.
//!
//! Layout: one version byte, a postcard body, and an 8-byte checksum of the body (little endian), so a torn or corrupted snapshot is refused instead
//! of restoring a different state.

use std::collections::BTreeMap;

use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::stored::{PeerPool, PinExtra, StoredPin};
use super::{ApplyResult, Pinset, RecentRequests, RequestId};
use crate::pin::PinType;
use crate::{Cid, Millis, PeerId};

/// Version byte of the snapshot format this build writes.
pub const SNAPSHOT_VERSION: u8 = 1;
const CHECKSUM_BYTES: usize = 8;

/// Why snapshot bytes could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Fewer bytes than the header and checksum.
    #[error("snapshot truncated: {0} bytes")]
    Truncated(usize),
    /// Written by a format this build does not know.
    #[error("unknown snapshot version {0}")]
    UnknownVersion(u8),
    /// The body does not match its checksum.
    #[error("snapshot checksum mismatch (corrupted or torn write)")]
    Checksum,
    /// The body did not decode.
    #[error("snapshot body does not decode: {0}")]
    Decode(String),
    /// The body decoded but breaks a rule of the state.
    #[error("snapshot content invalid: {0}")]
    Invalid(String),
}

/// A word-at-a-time multiply-rotate checksum: dependency-free, several GB/s,
/// and any flipped, dropped or reordered word changes it.
fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut hash: u64 = bytes.len() as u64 ^ 0xcbf2_9ce4_8422_2325;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("invariant: chunk of 8"));
        hash = (hash ^ w).wrapping_mul(K).rotate_left(29);
    }
    for b in words.remainder() {
        hash = (hash ^ u64::from(*b)).wrapping_mul(K).rotate_left(29);
    }
    hash ^ (hash >> 32)
}

#[derive(Serialize)]
struct BodyOut<'a> {
    applied_index: u64,
    peers: Vec<&'a PeerId>,
    pins: PinsOut<'a>,
    recent: Vec<(&'a RequestId, u64, &'a ApplyResult)>,
}

struct PinsOut<'a> {
    pins: &'a BTreeMap<Cid, StoredPin>,
    peer_index: &'a BTreeMap<usize, u32>,
}

#[derive(Serialize)]
struct PinOut<'a> {
    cid: &'a Cid,
    pin_type: PinType,
    allocations: Indices<'a>,
    name: &'a str,
    timestamp: Millis,
    rmin: i32,
    rmax: i32,
    max_depth: i32,
    under_replicated: bool,
    extra: Option<&'a PinExtra>,
}

struct Indices<'a> {
    peers: &'a [PeerId],
    /// Keyed by the interned text's address: allocations are interned, so the
    /// address identifies the peer without comparing strings.
    peer_index: &'a BTreeMap<usize, u32>,
}

impl Serialize for Indices<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.peers.len()))?;
        for p in self.peers {
            seq.serialize_element(&self.peer_index[&p.addr()])?;
        }
        seq.end()
    }
}

impl Serialize for PinsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.pins.iter().map(|(cid, p)| PinOut {
            cid,
            pin_type: p.pin_type,
            allocations: Indices {
                peers: &p.allocations,
                peer_index: self.peer_index,
            },
            name: &p.name,
            timestamp: p.timestamp,
            rmin: p.rmin,
            rmax: p.rmax,
            max_depth: p.max_depth,
            under_replicated: p.under_replicated,
            extra: p.extra.as_deref(),
        }))
    }
}

/// The decoded body. Pins are decoded straight into their stored form (the
/// peer table comes first, so allocations resolve as they are read).
struct BodyIn {
    applied_index: u64,
    pool: PeerPool,
    pins: Vec<(Cid, StoredPin)>,
    recent: Vec<(RequestId, u64, ApplyResult)>,
}

impl<'de> Deserialize<'de> for BodyIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BodyVisitor;
        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = BodyIn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a pinset snapshot body")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BodyIn, A::Error> {
                let missing = |what| de::Error::custom(format!("snapshot body lacks {what}"));
                let applied_index: u64 = seq
                    .next_element()?
                    .ok_or_else(|| missing("applied index"))?;
                let listed: Vec<PeerId> = seq.next_element()?.ok_or_else(|| missing("peers"))?;
                let mut pool = PeerPool::default();
                let peers: Vec<PeerId> = listed.iter().map(|p| pool.intern(p)).collect();
                let pins = seq
                    .next_element_seed(PinsSeed { peers: &peers })?
                    .ok_or_else(|| missing("pins"))?;
                let recent = seq.next_element()?.ok_or_else(|| missing("requests"))?;
                Ok(BodyIn {
                    applied_index,
                    pool,
                    pins,
                    recent,
                })
            }
        }
        d.deserialize_tuple(4, BodyVisitor)
    }
}

struct PinsSeed<'a> {
    peers: &'a [PeerId],
}

impl<'de> DeserializeSeed<'de> for PinsSeed<'_> {
    type Value = Vec<(Cid, StoredPin)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PinsSeed<'_> {
    type Value = Vec<(Cid, StoredPin)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence of pins")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Never trust a length prefix for the allocation size.
        const PREALLOCATE_MAX: usize = 1 << 20;
        let mut pins = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(PREALLOCATE_MAX));
        while let Some(pin) = seq.next_element_seed(PinSeed { peers: self.peers })? {
            pins.push(pin);
        }
        Ok(pins)
    }
}

struct PinSeed<'a> {
    peers: &'a [PeerId],
}

impl<'de> DeserializeSeed<'de> for PinSeed<'_> {
    type Value = (Cid, StoredPin);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_tuple(10, self)
    }
}

impl<'de> Visitor<'de> for PinSeed<'_> {
    type Value = (Cid, StoredPin);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a pin")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        fn next<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(seq: &mut A) -> Result<T, A::Error> {
            seq.next_element()?
                .ok_or_else(|| de::Error::custom("pin field missing"))
        }
        let cid: Cid = next(&mut seq)?;
        let pin_type: PinType = next(&mut seq)?;
        let allocations = seq
            .next_element_seed(AllocationsSeed { peers: self.peers })?
            .ok_or_else(|| de::Error::custom("pin allocations missing"))?;
        let name: &str = next(&mut seq)?;
        let stored = StoredPin {
            allocations,
            name: name.into(),
            timestamp: next(&mut seq)?,
            rmin: next(&mut seq)?,
            rmax: next(&mut seq)?,
            max_depth: next(&mut seq)?,
            pin_type,
            under_replicated: next(&mut seq)?,
            extra: next::<Option<PinExtra>, _>(&mut seq)?.map(Box::new),
        };
        Ok((cid, stored))
    }
}

struct AllocationsSeed<'a> {
    peers: &'a [PeerId],
}

impl<'de> DeserializeSeed<'de> for AllocationsSeed<'_> {
    type Value = Box<[PeerId]>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for AllocationsSeed<'_> {
    type Value = Box<[PeerId]>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("peer indices")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(
            seq.size_hint()
                .unwrap_or(0)
                .min(crate::pin::ALLOCATIONS_MAX),
        );
        while let Some(i) = seq.next_element::<u32>()? {
            let peer = self
                .peers
                .get(i as usize)
                .ok_or_else(|| de::Error::custom(format!("peer index {i} out of range")))?;
            out.push(peer.clone());
        }
        Ok(out.into_boxed_slice())
    }
}

impl Pinset {
    /// Encodes the whole state (pins, applied index, remembered requests).
    pub fn snapshot(&self) -> Vec<u8> {
        let peers: Vec<&PeerId> = self.pool.sorted();
        let peer_index: BTreeMap<usize, u32> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.addr(), i as u32))
            .collect();
        let body = BodyOut {
            applied_index: self.applied_index,
            peers,
            pins: PinsOut {
                pins: &self.pins,
                peer_index: &peer_index,
            },
            recent: self
                .recent
                .order
                .iter()
                .map(|id| {
                    let (index, result) = &self.recent.by_id[id];
                    (id, *index, result)
                })
                .collect(),
        };
        // Sized for a typical pin up front: growing an 80 MB buffer by
        // doubling would copy it several times over.
        const TYPICAL_PIN_BYTES: usize = 72;
        let mut out = Vec::with_capacity(64 + self.pins.len() * TYPICAL_PIN_BYTES);
        out.push(SNAPSHOT_VERSION);
        let mut out =
            postcard::to_extend(&body, out).expect("invariant: encoding into a Vec cannot fail");
        let checksum = checksum(&out[1..]);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Rebuilds a state from `snapshot()` bytes; refuses anything damaged.
    pub fn restore(bytes: &[u8]) -> Result<Pinset, SnapshotError> {
        if bytes.len() < 1 + CHECKSUM_BYTES {
            return Err(SnapshotError::Truncated(bytes.len()));
        }
        if bytes[0] != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnknownVersion(bytes[0]));
        }
        let (body, sum) = bytes[1..].split_at(bytes.len() - 1 - CHECKSUM_BYTES);
        let expected =
            u64::from_le_bytes(sum.try_into().expect("invariant: split at CHECKSUM_BYTES"));
        if checksum(body) != expected {
            return Err(SnapshotError::Checksum);
        }
        let body: BodyIn =
            postcard::from_bytes(body).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        Self::from_body(body)
    }

    fn from_body(body: BodyIn) -> Result<Pinset, SnapshotError> {
        let invalid = |m: String| Err(SnapshotError::Invalid(m));
        // Paired with the writer, which walks the map in order.
        if let Some(w) = body.pins.windows(2).find(|w| w[0].0 >= w[1].0) {
            return invalid(format!("pins out of order at {}", w[1].0));
        }
        // Sorted input builds the map in bulk, with full nodes.
        let pins: BTreeMap<Cid, StoredPin> = body.pins.into_iter().collect();
        let pool = body.pool;
        let mut recent = RecentRequests::default();
        for (id, index, result) in body.recent {
            if index > body.applied_index {
                return invalid(format!(
                    "request {id:?} at {index} beyond applied {}",
                    body.applied_index
                ));
            }
            recent.by_id.insert(id, (index, result));
            recent.order.push_back(id);
        }
        if recent.by_id.len() != recent.order.len() {
            return invalid("duplicate remembered request".into());
        }
        Ok(Pinset {
            pins,
            pool,
            applied_index: body.applied_index,
            recent,
        })
    }
}

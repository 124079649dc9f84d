//! Snapshot codec: the whole pinset to bytes and back.
//!
//! Layout: one version byte, a postcard body, and an 8-byte checksum of the body (little endian), so a torn or corrupted snapshot is refused instead
//! of restoring a different state.

use std::collections::BTreeMap;

use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::sessions::{Session, Sessions};
use super::stored::{Allocations, Name, PeerPool, PinExtra, StoredPin};
use super::Pinset;
use crate::pin::PinType;
use crate::{Cid, PeerId};

/// Version byte of the snapshot format this build writes.
/// Version 2: per-pin versions and per-client sessions.
pub const SNAPSHOT_VERSION: u8 = 2;
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

/// Frames `body` the way [`Pinset::snapshot`] does (version byte, body,
/// checksum), so a fuzz target reaches the body's decoder with arbitrary
/// bytes instead of stopping at the checksum. Not an API: only `fuzz/`
/// calls it.
#[doc(hidden)]
pub fn seal_snapshot_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + body.len() + CHECKSUM_BYTES);
    out.push(SNAPSHOT_VERSION);
    out.extend_from_slice(body);
    out.extend_from_slice(&checksum(body).to_le_bytes());
    out
}

/// Appends to a plain `Vec` (postcard's generic `Extend` flavor copies byte
/// by byte through an iterator, several times slower on 80 MB snapshots).
struct VecFlavor(Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavor {
    type Output = Vec<u8>;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// Writes the body in postcard's format (the decoder is serde's), by hand:
/// a pin is a dozen small fields, and going through serde byte by byte cost
/// more than everything else in a snapshot.
struct BodyWriter<'a> {
    out: Vec<u8>,
    /// Interned peer text address -> position in the peer table.
    peer_index: BTreeMap<usize, u32>,
    peers: Vec<&'a PeerId>,
}

impl<'a> BodyWriter<'a> {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn zigzag(&mut self, v: i32) {
        self.varint(u64::from(((v << 1) ^ (v >> 31)) as u32));
    }

    fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.out.extend_from_slice(b);
    }

    /// Appends `value` with serde (rare or small parts: extras, sessions).
    fn serde<T: Serialize + ?Sized>(&mut self, value: &T) {
        let out = std::mem::take(&mut self.out);
        self.out = postcard::serialize_with_flavor(value, VecFlavor(out))
            .expect("invariant: encoding into a Vec cannot fail");
    }

    fn pin(&mut self, cid: &Cid, p: &StoredPin) {
        // Field order and encodings match `PinSeed` below.
        self.bytes(cid.as_bytes());
        self.varint(match p.pin_type {
            PinType::Data => 0,
            PinType::Meta => 1,
            PinType::ClusterDag => 2,
            PinType::Shard => 3,
        });
        self.varint(p.allocations.len() as u64);
        for peer in p.allocations.iter() {
            let index = self.peer_index[&peer.addr()];
            self.varint(u64::from(index));
        }
        self.bytes(&p.name);
        self.varint(p.timestamp.0);
        self.zigzag(p.rmin);
        self.zigzag(p.rmax);
        self.zigzag(p.max_depth);
        self.out.push(u8::from(p.under_replicated));
        match &p.extra {
            None => self.out.push(0),
            Some(extra) => {
                self.out.push(1);
                self.serde(&**extra);
            }
        }
        self.varint(p.version);
    }
}

/// The decoded body. Pins are decoded straight into their stored form (the
/// peer table comes first, so allocations resolve as they are read).
struct BodyIn {
    applied_index: u64,
    pool: PeerPool,
    pins: Vec<(Cid, StoredPin)>,
    sessions: Vec<(u64, Session)>,
}

/// Decodes the body; knows the body's length to bound allocations.
struct BodySeed {
    body_len: usize,
}

impl<'de> DeserializeSeed<'de> for BodySeed {
    type Value = BodyIn;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<BodyIn, D::Error> {
        struct BodyVisitor {
            body_len: usize,
        }
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
                    .next_element_seed(PinsSeed {
                        peers: &peers,
                        body_len: self.body_len,
                    })?
                    .ok_or_else(|| missing("pins"))?;
                let sessions = seq.next_element()?.ok_or_else(|| missing("sessions"))?;
                Ok(BodyIn {
                    applied_index,
                    pool,
                    pins,
                    sessions,
                })
            }
        }
        d.deserialize_tuple(
            4,
            BodyVisitor {
                body_len: self.body_len,
            },
        )
    }
}

struct PinsSeed<'a> {
    peers: &'a [PeerId],
    body_len: usize,
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
        // A pin takes at least MIN_PIN_BYTES of the body, so the body's
        // length bounds the count (a length prefix alone is never trusted).
        const MIN_PIN_BYTES: usize = 40;
        let bound = self.body_len / MIN_PIN_BYTES;
        let mut pins = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(bound));
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
        d.deserialize_tuple(11, self)
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
            name: Name::from_slice(name.as_bytes()),
            timestamp: next(&mut seq)?,
            rmin: next(&mut seq)?,
            rmax: next(&mut seq)?,
            max_depth: next(&mut seq)?,
            pin_type,
            under_replicated: next(&mut seq)?,
            extra: next::<Option<PinExtra>, _>(&mut seq)?.map(Box::new),
            version: next(&mut seq)?,
        };
        Ok((cid, stored))
    }
}

struct AllocationsSeed<'a> {
    peers: &'a [PeerId],
}

impl<'de> DeserializeSeed<'de> for AllocationsSeed<'_> {
    type Value = Allocations;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for AllocationsSeed<'_> {
    type Value = Allocations;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("peer indices")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Allocations::new();
        while let Some(i) = seq.next_element::<u32>()? {
            if out.len() >= crate::pin::ALLOCATIONS_MAX {
                return Err(de::Error::custom("too many allocations"));
            }
            let peer = self
                .peers
                .get(i as usize)
                .ok_or_else(|| de::Error::custom(format!("peer index {i} out of range")))?;
            out.push(peer.clone());
        }
        Ok(out)
    }
}

fn decode_body(body: &[u8]) -> postcard::Result<BodyIn> {
    let mut de = postcard::Deserializer::from_bytes(body);
    BodySeed {
        body_len: body.len(),
    }
    .deserialize(&mut de)
}

impl Pinset {
    /// Encodes the whole state (pins, applied index, client sessions).
    pub fn snapshot(&self) -> Vec<u8> {
        let peers: Vec<&PeerId> = self.pool.sorted();
        let peer_index = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.addr(), i as u32))
            .collect();
        // Sized for a typical pin up front: growing an 80 MB buffer by
        // doubling would copy it several times over.
        const TYPICAL_PIN_BYTES: usize = 72;
        let mut w = BodyWriter {
            out: Vec::with_capacity(64 + self.pins.len() * TYPICAL_PIN_BYTES),
            peer_index,
            peers,
        };
        w.out.push(SNAPSHOT_VERSION);
        w.varint(self.applied_index);
        w.varint(w.peers.len() as u64);
        for i in 0..w.peers.len() {
            let peer = w.peers[i];
            w.bytes(peer.as_str().as_bytes());
        }
        w.varint(self.pins.len() as u64);
        for (cid, p) in &self.pins {
            w.pin(cid, p);
        }
        let sessions: Vec<(&u64, &Session)> = self.sessions.by_client.iter().collect();
        w.serde(&sessions);
        let mut out = w.out;
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
        let body: BodyIn = decode_body(body).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        Self::from_body(body)
    }

    fn from_body(body: BodyIn) -> Result<Pinset, SnapshotError> {
        let invalid = |m: String| Err(SnapshotError::Invalid(m));
        // Paired with the writer, which walks the map in order.
        if let Some(w) = body.pins.windows(2).find(|w| w[0].0 >= w[1].0) {
            return invalid(format!("pins out of order at {}", w[1].0));
        }
        if let Some(w) = body.sessions.windows(2).find(|w| w[0].0 >= w[1].0) {
            return invalid(format!("sessions out of order at client {}", w[1].0));
        }
        // Sorted input builds the maps in bulk, with full nodes.
        let pinset = Pinset {
            pins: body.pins.into_iter().collect(),
            pool: body.pool,
            applied_index: body.applied_index,
            sessions: Sessions::from_sessions(body.sessions.into_iter().collect()),
        };
        // Every pin as apply could have stored it, every session within its bounds.
        pinset.check_content().map_err(SnapshotError::Invalid)?;
        Ok(pinset)
    }
}

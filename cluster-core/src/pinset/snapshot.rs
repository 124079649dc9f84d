//! Snapshot codec: the whole pinset to bytes and back.
//!
//! Layout: one version byte, a postcard body, and an 8-byte FNV-1a checksum of
//! the body (little endian), so a torn or corrupted snapshot is refused instead
//! of restoring a different state.

use std::collections::BTreeMap;

use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

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

/// FNV-1a, 64 bit: dependency-free and fast enough for a checksum of the body.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
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
    peer_index: &'a BTreeMap<&'a PeerId, u32>,
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
    peer_index: &'a BTreeMap<&'a PeerId, u32>,
}

impl Serialize for Indices<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.peers.len()))?;
        for p in self.peers {
            seq.serialize_element(&self.peer_index[p])?;
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

#[derive(Deserialize)]
struct BodyIn {
    applied_index: u64,
    peers: Vec<PeerId>,
    pins: Vec<PinIn>,
    recent: Vec<(RequestId, u64, ApplyResult)>,
}

#[derive(Deserialize)]
struct PinIn {
    cid: Cid,
    pin_type: PinType,
    allocations: Vec<u32>,
    name: String,
    timestamp: Millis,
    rmin: i32,
    rmax: i32,
    max_depth: i32,
    under_replicated: bool,
    extra: Option<PinExtra>,
}

impl Pinset {
    /// Encodes the whole state (pins, applied index, remembered requests).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut peers: Vec<&PeerId> = self
            .pins
            .values()
            .flat_map(|p| p.allocations.iter())
            .collect();
        peers.sort();
        peers.dedup();
        let peer_index: BTreeMap<&PeerId, u32> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, i as u32))
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
        let mut out = vec![SNAPSHOT_VERSION];
        let mut out = postcard::to_extend(&body, std::mem::take(&mut out))
            .expect("invariant: encoding into a Vec cannot fail");
        let checksum = fnv1a64(&out[1..]);
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
        if fnv1a64(body) != expected {
            return Err(SnapshotError::Checksum);
        }
        let body: BodyIn =
            postcard::from_bytes(body).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        Self::from_body(body)
    }

    fn from_body(body: BodyIn) -> Result<Pinset, SnapshotError> {
        let invalid = |m: String| Err(SnapshotError::Invalid(m));
        let mut pool = PeerPool::default();
        let peers: Vec<PeerId> = body.peers.iter().map(|p| pool.intern(p)).collect();
        let mut pins = BTreeMap::new();
        let mut last: Option<Cid> = None;
        for p in body.pins {
            // Paired with the writer, which walks the map in order.
            if last.as_ref().is_some_and(|l| *l >= p.cid) {
                return invalid(format!("pins out of order at {}", p.cid));
            }
            let mut allocations = Vec::with_capacity(p.allocations.len());
            for i in p.allocations {
                match peers.get(i as usize) {
                    Some(peer) => allocations.push(peer.clone()),
                    None => return invalid(format!("pin {}: peer index {i} out of range", p.cid)),
                }
            }
            last = Some(p.cid.clone());
            let stored = StoredPin {
                allocations: allocations.into_boxed_slice(),
                name: p.name.into_boxed_str(),
                timestamp: p.timestamp,
                rmin: p.rmin,
                rmax: p.rmax,
                max_depth: p.max_depth,
                pin_type: p.pin_type,
                under_replicated: p.under_replicated,
                extra: p.extra.map(Box::new),
            };
            pins.insert(p.cid, stored);
        }
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

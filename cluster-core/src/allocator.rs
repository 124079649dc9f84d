//! Which peers should pin a CID: a pure function of the request, the peers'
//! metrics and `now`, balanced like IPFS Cluster's `balanced` allocator.
//!
//! Order of preference: current allocations that are still members are kept
//! (even without fresh metrics: a new leader's empty metrics view must not
//! move healthy replicas), then user allocations, then the other usable peers
//! ordered by `allocate_by` (tags partition peers and spread replicas across
//! partitions; free space, pin queue and pin count rank peers inside a
//! partition).
//!
//! A peer is *usable* for a new allocation when it is a member, not
//! blacklisted, its latest report is fresh, and it has every metric
//! `allocate_by` names: each `tag:<key>` it names, and free space above zero
//! when `freespace` is named. As in IPFS Cluster (where a peer lacking one of
//! the `allocate_by` metrics is no candidate), a peer without a tag is not
//! allocated rather than forming a partition of its own.

use std::cmp::{Ordering, Reverse};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::pin::{validate_replication, PinValidationError, REPLICATION_EVERYWHERE};
use crate::{Millis, PeerId};

/// What one peer last reported about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerMetrics {
    /// The reporting peer.
    pub peer: PeerId,
    /// Free space in its IPFS repo, in bytes.
    pub free_space_bytes: u64,
    /// Pins its IPFS daemon holds.
    pub pinned: u64,
    /// Pin operations waiting in its tracker.
    pub queue_len: u64,
    /// Its tags (`tag:<key>` metrics), e.g. `group`, `region`.
    pub tags: BTreeMap<String, String>,
    /// When its metrics were last received, on the allocating peer's clock.
    pub last_seen: Millis,
}

/// One criterion of `allocate_by`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AllocateBy {
    /// `tag:<key>`: partition peers by this tag's value and spread across partitions.
    Tag(String),
    /// `freespace`: more free space first.
    FreeSpace,
    /// `pinqueue`: shorter pin queue first.
    PinQueue,
    /// `numpin`: fewer pins first.
    NumPin,
}

impl AllocateBy {
    /// Parses an IPFS Cluster metric name (`tag:group`, `freespace`, `pinqueue`, `numpin`).
    pub fn parse(name: &str) -> Option<AllocateBy> {
        match name {
            "freespace" => Some(AllocateBy::FreeSpace),
            "pinqueue" => Some(AllocateBy::PinQueue),
            "numpin" => Some(AllocateBy::NumPin),
            _ => name
                .strip_prefix("tag:")
                .filter(|k| !k.is_empty())
                .map(|k| AllocateBy::Tag(k.to_string())),
        }
    }

    fn weight(&self, m: &PeerMetrics) -> i128 {
        match self {
            AllocateBy::Tag(_) => 0,
            AllocateBy::FreeSpace => i128::from(m.free_space_bytes),
            AllocateBy::PinQueue => -i128::from(m.queue_len),
            AllocateBy::NumPin => -i128::from(m.pinned),
        }
    }
}

/// Allocator settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatorConfig {
    /// Criteria, most significant first (IPFS Cluster default: `tag:group`, `freespace`).
    pub allocate_by: Vec<AllocateBy>,
    /// Metrics older than this are stale: the peer is not usable.
    pub metric_ttl_ms: u64,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig {
            allocate_by: vec![AllocateBy::Tag("group".into()), AllocateBy::FreeSpace],
            metric_ttl_ms: 30_000,
        }
    }
}

/// What to allocate.
#[derive(Debug, Clone, Copy)]
pub struct AllocationRequest<'a> {
    /// Fewest peers (-1 = everywhere).
    pub replication_factor_min: i32,
    /// Most peers (-1 = everywhere).
    pub replication_factor_max: i32,
    /// The pin's allocations so far (empty for a new pin).
    pub current: &'a [PeerId],
    /// Preferred peers, tried before the others.
    pub user_allocations: &'a [PeerId],
    /// Peers never to use (e.g. the dead peer being replaced).
    pub blacklist: &'a [PeerId],
    /// The cluster's current peers: only members are allocated, and current
    /// allocations that are members are kept.
    pub members: &'a [PeerId],
}

/// Why no allocation could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AllocationError {
    /// Replication factors invalid.
    #[error(transparent)]
    Replication(#[from] PinValidationError),
    /// Fewer usable peers than the minimum.
    #[error("not enough peers to allocate CID. Needed at least: {needed}. Wanted at most: {wanted}. Available candidates: {available}. See logs for more info.")]
    NotEnoughPeers {
        /// Peers still needed to reach the minimum.
        needed: usize,
        /// Peers wanted to reach the maximum.
        wanted: usize,
        /// Usable peers that could be added.
        available: usize,
    },
}

/// Chooses the peers that should pin a CID. An empty result means "everywhere".
pub fn allocate(
    request: &AllocationRequest<'_>,
    metrics: &[PeerMetrics],
    now: Millis,
    config: &AllocatorConfig,
) -> Result<Vec<PeerId>, AllocationError> {
    let (min, max) = (
        request.replication_factor_min,
        request.replication_factor_max,
    );
    validate_replication(min, max)?;
    if min == REPLICATION_EVERYWHERE {
        return Ok(Vec::new());
    }
    let (min, max) = (min as usize, max as usize);
    let usable = usable_peers(metrics, request, now, config);
    // Current allocations that are still members, in their order.
    let mut kept: Vec<&PeerId> = Vec::new();
    for p in request.current {
        if request.members.contains(p) && !request.blacklist.contains(p) && !kept.contains(&p) {
            kept.push(p);
        }
    }
    if kept.len() >= min {
        if kept.len() > max {
            // Over-allocated: drop the peers without fresh metrics first.
            let (fresh, unknown): (Vec<&PeerId>, Vec<&PeerId>) =
                kept.into_iter().partition(|p| usable.contains_key(p));
            kept = fresh.into_iter().chain(unknown).take(max).collect();
        }
        return Ok(kept.into_iter().cloned().collect());
    }
    let needed = min - kept.len();
    let wanted = max - kept.len();
    let mut priority: Vec<&PeerMetrics> = Vec::new();
    for p in request.user_allocations {
        if let Some(m) = usable.get(p) {
            if !kept.contains(&p) && !priority.iter().any(|q| q.peer == *p) {
                priority.push(m);
            }
        }
    }
    let candidates: Vec<&PeerMetrics> = usable
        .values()
        .copied()
        .filter(|m| !kept.contains(&&m.peer) && !priority.iter().any(|q| q.peer == m.peer))
        .collect();
    let available = priority.len() + candidates.len();
    if available < needed {
        return Err(AllocationError::NotEnoughPeers {
            needed,
            wanted,
            available,
        });
    }
    // Replicas already placed, for spreading across tags: kept peers whose
    // metrics (so tags) are known, then the user's choices.
    let mut placed: Vec<&PeerMetrics> =
        kept.iter().filter_map(|p| usable.get(p).copied()).collect();
    let mut chosen: Vec<PeerId> = kept.iter().map(|p| (*p).clone()).collect();
    for m in order(priority, &config.allocate_by, &placed)
        .into_iter()
        .take(wanted)
    {
        chosen.push(m.peer.clone());
        placed.push(m);
    }
    let rest = max - chosen.len();
    let ordered = order(candidates, &config.allocate_by, &placed);
    chosen.extend(ordered.into_iter().take(rest).map(|m| m.peer.clone()));
    debug_assert!(chosen.len() >= min && chosen.len() <= max);
    Ok(chosen)
}

/// Peers a new allocation may use (see the module doc), by their latest
/// report. Reports of one peer with equal `last_seen` are decided by their
/// content, never by input order: the most conservative one (least free
/// space, then most pins, then longest queue, then tags) wins.
fn usable_peers<'a>(
    metrics: &'a [PeerMetrics],
    request: &AllocationRequest<'_>,
    now: Millis,
    config: &AllocatorConfig,
) -> BTreeMap<&'a PeerId, &'a PeerMetrics> {
    let key = |m: &'a PeerMetrics| {
        (
            m.last_seen,
            Reverse(m.free_space_bytes),
            m.pinned,
            m.queue_len,
            &m.tags,
        )
    };
    let mut latest: BTreeMap<&PeerId, &PeerMetrics> = BTreeMap::new();
    for m in metrics {
        match latest.get(&m.peer) {
            Some(seen) if key(seen) >= key(m) => {}
            _ => {
                latest.insert(&m.peer, m);
            }
        }
    }
    let needs_space = config.allocate_by.contains(&AllocateBy::FreeSpace);
    let has_tags = |m: &PeerMetrics| {
        config.allocate_by.iter().all(|by| match by {
            AllocateBy::Tag(key) => m.tags.contains_key(key),
            _ => true,
        })
    };
    // Freshness is judged on the newest report only: an old report must not
    // resurrect a peer whose latest one is stale.
    latest.retain(|p, m| {
        now.since(m.last_seen) <= config.metric_ttl_ms
            && (!needs_space || m.free_space_bytes > 0)
            && has_tags(m)
            && request.members.contains(p)
            && !request.blacklist.contains(p)
    });
    latest
}

/// Orders peers by the criteria: tags partition and spread, numbers rank.
/// `placed` are the replicas already chosen (for spreading).
fn order<'a>(
    peers: Vec<&'a PeerMetrics>,
    by: &[AllocateBy],
    placed: &[&PeerMetrics],
) -> Vec<&'a PeerMetrics> {
    match by.split_first() {
        Some((AllocateBy::Tag(key), rest)) => {
            // Every usable peer has the tag (see `usable_peers`); placed
            // replicas without it count in no partition.
            let tag = |m: &PeerMetrics| m.tags.get(key).cloned();
            let mut groups: BTreeMap<String, Vec<&PeerMetrics>> = BTreeMap::new();
            for p in peers {
                if let Some(value) = tag(p) {
                    groups.entry(value).or_default().push(p);
                }
            }
            let mut partitions: Vec<Partition<'a>> = groups
                .into_iter()
                .map(|(value, members)| {
                    let in_partition: Vec<&PeerMetrics> = placed
                        .iter()
                        .copied()
                        .filter(|c| tag(c).as_ref() == Some(&value))
                        .collect();
                    let weight = rest
                        .first()
                        .map_or(0, |m| members.iter().map(|p| m.weight(p)).sum());
                    let ordered = order(members, rest, &in_partition);
                    Partition {
                        placed: in_partition.len(),
                        weight,
                        value,
                        peers: ordered.into_iter(),
                    }
                })
                .collect();
            // Ties between equally filled partitions: heavier first, then by name.
            partitions.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.value.cmp(&b.value)));
            spread(partitions)
        }
        Some(_) => {
            let mut peers = peers;
            peers.sort_by(|a, b| rank(a, b, by));
            peers
        }
        None => {
            let mut peers = peers;
            peers.sort_by(|a, b| a.peer.cmp(&b.peer));
            peers
        }
    }
}

/// One tag value's peers, in their own order, and how many replicas it holds.
struct Partition<'a> {
    placed: usize,
    weight: i128,
    value: String,
    peers: std::vec::IntoIter<&'a PeerMetrics>,
}

/// Each next replica goes to the partition holding the fewest so far (the
/// first in the given order among equals), so a group with replicas already
/// gets no more until the others caught up.
fn spread<'a>(mut partitions: Vec<Partition<'a>>) -> Vec<&'a PeerMetrics> {
    let mut out = Vec::with_capacity(partitions.iter().map(|p| p.peers.len()).sum());
    loop {
        let next = partitions
            .iter_mut()
            .filter(|p| p.peers.len() > 0)
            .min_by_key(|p| p.placed);
        let Some(partition) = next else {
            return out;
        };
        out.push(partition.peers.next().expect("invariant: not exhausted"));
        partition.placed += 1;
    }
}

fn rank(a: &PeerMetrics, b: &PeerMetrics, by: &[AllocateBy]) -> Ordering {
    by.iter()
        .map(|m| m.weight(b).cmp(&m.weight(a)))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.peer.cmp(&b.peer))
}

#[cfg(test)]
mod tests;

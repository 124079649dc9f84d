//! Which peers should pin a CID: a pure function of the request, the peers'
//! metrics and `now`, balanced like IPFS Cluster's `balanced` allocator.
//!
//! Order of preference: healthy current allocations are kept, then user
//! allocations, then the other healthy peers ordered by `allocate_by`
//! (tags partition peers and spread replicas across partitions; free space,
//! pin queue and pin count rank peers inside a partition).

use std::cmp::Ordering;
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
    let usable = usable_peers(metrics, request.blacklist, now, config.metric_ttl_ms);
    let mut current: Vec<&PeerMetrics> = Vec::new();
    for p in request.current {
        if let Some(m) = usable.get(p) {
            if !current.iter().any(|c| c.peer == *p) {
                current.push(m);
            }
        }
    }
    let (min, max) = (min as usize, max as usize);
    if current.len() >= max {
        return Ok(current.iter().take(max).map(|m| m.peer.clone()).collect());
    }
    if current.len() >= min {
        return Ok(current.iter().map(|m| m.peer.clone()).collect());
    }
    let needed = min - current.len();
    let wanted = max - current.len();
    let is_current = |p: &PeerId| current.iter().any(|c| c.peer == *p);
    let mut priority: Vec<&PeerMetrics> = Vec::new();
    for p in request.user_allocations {
        if let Some(m) = usable.get(p) {
            if !is_current(p) && !priority.iter().any(|q| q.peer == *p) {
                priority.push(m);
            }
        }
    }
    let candidates: Vec<&PeerMetrics> = usable
        .values()
        .copied()
        .filter(|m| !is_current(&m.peer) && !priority.iter().any(|q| q.peer == m.peer))
        .collect();
    let available = priority.len() + candidates.len();
    if available < needed {
        return Err(AllocationError::NotEnoughPeers {
            needed,
            wanted,
            available,
        });
    }
    let mut chosen: Vec<PeerId> = current.iter().map(|m| m.peer.clone()).collect();
    let ordered = order(priority, &config.allocate_by, &current)
        .into_iter()
        .chain(order(candidates, &config.allocate_by, &current));
    chosen.extend(ordered.take(wanted).map(|m| m.peer.clone()));
    debug_assert!(chosen.len() >= min && chosen.len() <= max);
    Ok(chosen)
}

/// Peers with fresh metrics, free space and not blacklisted; the latest report wins.
fn usable_peers<'a>(
    metrics: &'a [PeerMetrics],
    blacklist: &[PeerId],
    now: Millis,
    ttl_ms: u64,
) -> BTreeMap<&'a PeerId, &'a PeerMetrics> {
    let mut usable: BTreeMap<&PeerId, &PeerMetrics> = BTreeMap::new();
    for m in metrics {
        if blacklist.contains(&m.peer) {
            continue;
        }
        match usable.get(&m.peer) {
            Some(seen) if seen.last_seen >= m.last_seen => {}
            _ => {
                usable.insert(&m.peer, m);
            }
        }
    }
    // Freshness is judged on the newest report only: an old report must not
    // resurrect a peer whose latest one is stale.
    usable.retain(|_, m| now.since(m.last_seen) <= ttl_ms && m.free_space_bytes > 0);
    usable
}

/// Orders peers by the criteria: tags partition and interleave, numbers rank.
fn order<'a>(
    peers: Vec<&'a PeerMetrics>,
    by: &[AllocateBy],
    current: &[&PeerMetrics],
) -> Vec<&'a PeerMetrics> {
    match by.split_first() {
        Some((AllocateBy::Tag(key), rest)) => {
            let tag = |m: &PeerMetrics| m.tags.get(key).cloned().unwrap_or_default();
            let mut groups: BTreeMap<String, Vec<&PeerMetrics>> = BTreeMap::new();
            for p in peers {
                groups.entry(tag(p)).or_default().push(p);
            }
            let mut partitions: Vec<(usize, i128, String, Vec<&PeerMetrics>)> = groups
                .into_iter()
                .map(|(value, members)| {
                    let in_partition: Vec<&PeerMetrics> = current
                        .iter()
                        .copied()
                        .filter(|c| tag(c) == value)
                        .collect();
                    let weight = rest
                        .first()
                        .map_or(0, |m| members.iter().map(|p| m.weight(p)).sum());
                    let ordered = order(members, rest, &in_partition);
                    (in_partition.len(), weight, value, ordered)
                })
                .collect();
            // Fewest existing replicas first (spread), then heavier partitions, then by name.
            partitions.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
            round_robin(partitions.into_iter().map(|p| p.3).collect())
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

fn rank(a: &PeerMetrics, b: &PeerMetrics, by: &[AllocateBy]) -> Ordering {
    by.iter()
        .map(|m| m.weight(b).cmp(&m.weight(a)))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.peer.cmp(&b.peer))
}

fn round_robin<T>(lists: Vec<Vec<T>>) -> Vec<T> {
    let total = lists.iter().map(Vec::len).sum();
    let mut iters: Vec<_> = lists.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        for it in iters.iter_mut() {
            if let Some(x) = it.next() {
                out.push(x);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;

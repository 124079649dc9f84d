//! Peer metrics: each peer publishes its free space, pin counts, tags and
//! IPFS addresses to every member over the peer-RPC seam; each receiver
//! keeps the latest from every peer on a [`MetricsBoard`], stamped with its
//! own clock on arrival and dropped when their TTL runs out.
//!
//! The allocator reads the board; the publisher also connects this peer's
//! IPFS daemon to the daemons other peers announce, so content moves between
//! them by bitswap.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cluster_core::allocator::PeerMetrics;
use cluster_core::{Millis, PeerId};
use cluster_net::rt;

use crate::context::PeerContext;
use crate::drivers::tracker::TrackerHandle;
use crate::ipfs::IpfsId;
use crate::rpc::{self, MetricsPush, METRICS_PUSH};

/// Metrics one peer received from another (or made itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The figures, `last_seen` being the receiver's clock on arrival.
    pub metrics: PeerMetrics,
    /// The sender's IPFS daemon.
    pub ipfs: IpfsId,
    /// When they stop counting, on the receiver's clock.
    pub expires: Millis,
}

/// The latest metrics of every peer, as this peer received them.
#[derive(Debug, Default)]
pub struct MetricsBoard {
    latest: Mutex<BTreeMap<PeerId, Received>>,
}

impl MetricsBoard {
    fn latest(&self) -> MutexGuard<'_, BTreeMap<PeerId, Received>> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `push`, arrived at `now` (on this peer's clock).
    pub fn record(&self, push: MetricsPush, now: Millis) {
        let received = Received {
            metrics: PeerMetrics {
                peer: push.peer.clone(),
                free_space_bytes: push.free_space_bytes,
                pinned: push.pinned,
                queue_len: push.queue_len,
                tags: push.tags,
                last_seen: now,
            },
            ipfs: IpfsId {
                peer_id: push.ipfs_peer_id,
                addresses: push.ipfs_addresses,
            },
            expires: Millis(now.0.saturating_add(push.ttl_ms)),
        };
        self.latest().insert(push.peer, received);
    }

    /// Every peer's metrics that have not expired at `now`; expired ones
    /// are forgotten (a removed peer's go this way).
    pub fn current(&self, now: Millis) -> Vec<PeerMetrics> {
        self.current_received(now)
            .into_iter()
            .map(|r| r.metrics)
            .collect()
    }

    /// Like [`current`](Self::current), with the IPFS daemons announced.
    pub fn current_received(&self, now: Millis) -> Vec<Received> {
        let mut latest = self.latest();
        latest.retain(|_, r| r.expires >= now);
        latest.values().cloned().collect()
    }
}

/// The metrics publisher's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Pause between two rounds, in ms.
    pub interval_ms: u64,
    /// How long receivers keep a round's figures, in ms (IPFS Cluster's
    /// informers default to 30 s; a few intervals lets one push be lost).
    pub ttl_ms: u64,
    /// This peer's tags (`tag:<key>` allocation criteria).
    pub tags: BTreeMap<String, String>,
    /// Deadline of one push to one peer, and of one IPFS call, in ms.
    pub call_ms: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            interval_ms: 10_000,
            ttl_ms: 30_000,
            tags: BTreeMap::new(),
            call_ms: 5_000,
        }
    }
}

/// Publishes this peer's metrics every `interval_ms`, forever (the task
/// ends with the peer). A round whose IPFS daemon does not answer
/// `repo/stat` publishes nothing: without free space the peer must not be
/// allocated, and its last figures expire.
pub async fn publish_metrics(
    ctx: PeerContext,
    tracker: TrackerHandle,
    board: Arc<MetricsBoard>,
    config: MetricsConfig,
) {
    let limit = Duration::from_millis(config.call_ms);
    let mut ipfs_id = IpfsId::default();
    let mut connected: BTreeSet<String> = BTreeSet::new();
    loop {
        let stat = rt::timeout(limit, ctx.ipfs.repo_stat()).await;
        if let Some(Ok(id)) = rt::timeout(limit, ctx.ipfs.id()).await {
            ipfs_id = id;
        }
        match stat {
            Some(Ok(stat)) => {
                let counts = tracker.counts();
                let push = MetricsPush {
                    peer: ctx.id.clone(),
                    free_space_bytes: stat.free_space(),
                    pinned: counts.pinned as u64,
                    queue_len: (counts.queued + counts.in_flight) as u64,
                    tags: config.tags.clone(),
                    ipfs_peer_id: ipfs_id.peer_id.clone(),
                    ipfs_addresses: ipfs_id.addresses.clone(),
                    ttl_ms: config.ttl_ms,
                };
                board.record(push.clone(), ctx.clock.now());
                broadcast(&ctx, &push, limit);
            }
            Some(Err(e)) => tracing::warn!("metrics: ipfs repo/stat failed, not published: {e}"),
            None => tracing::warn!("metrics: ipfs repo/stat timed out, not published"),
        }
        connect_daemons(&ctx, &board, &ipfs_id, &mut connected, limit).await;
        rt::sleep(Duration::from_millis(config.interval_ms)).await;
    }
}

/// Sends `push` to every other member, each on its own task so one slow
/// peer holds up nobody.
fn broadcast(ctx: &PeerContext, push: &MetricsPush, limit: Duration) {
    for target in ctx.raft.member_infos() {
        if target.peer_id == ctx.id.as_str() {
            continue;
        }
        let (rpc, push) = (Arc::clone(&ctx.rpc), push.clone());
        rt::spawn(async move {
            let sent: Result<(), _> =
                rpc::call(rpc.as_ref(), &target, METRICS_PUSH, &push, limit).await;
            if let Err(e) = sent {
                tracing::debug!("metrics: push to {} failed: {e}", target.peer_id);
            }
        });
    }
}

/// Asks this peer's daemon to connect to every daemon announced on the board
/// that it is not connected to yet (by its announced addresses).
async fn connect_daemons(
    ctx: &PeerContext,
    board: &MetricsBoard,
    own: &IpfsId,
    connected: &mut BTreeSet<String>,
    limit: Duration,
) {
    let now = ctx.clock.now();
    let announced = board.current_received(now);
    let live: BTreeSet<String> = announced.iter().map(|r| r.ipfs.peer_id.clone()).collect();
    // A daemon gone from the board is dialled again when it comes back.
    connected.retain(|id| live.contains(id));
    for received in announced {
        let theirs = &received.ipfs;
        if theirs.peer_id.is_empty() || theirs.peer_id == own.peer_id {
            continue;
        }
        if connected.contains(&theirs.peer_id) {
            continue;
        }
        for address in &theirs.addresses {
            let target = if address.contains("/p2p/") {
                address.clone()
            } else {
                format!("{address}/p2p/{}", theirs.peer_id)
            };
            match rt::timeout(limit, ctx.ipfs.swarm_connect(&target)).await {
                Some(Ok(())) => {
                    connected.insert(theirs.peer_id.clone());
                    break;
                }
                Some(Err(e)) => tracing::debug!("metrics: ipfs swarm connect {target}: {e}"),
                None => tracing::debug!("metrics: ipfs swarm connect {target} timed out"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(peer: u64, ttl_ms: u64) -> MetricsPush {
        MetricsPush {
            peer: PeerId::synthetic(peer),
            free_space_bytes: 10,
            pinned: 1,
            queue_len: 2,
            tags: [("group".to_string(), "a".to_string())].into(),
            ipfs_peer_id: "12D3KooWipfs".into(),
            ipfs_addresses: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            ttl_ms,
        }
    }

    #[test]
    fn metrics_are_stamped_with_the_receivers_clock_and_expire_after_their_ttl() {
        let board = MetricsBoard::default();
        board.record(push(1, 100), Millis(1_000));
        board.record(push(2, 500), Millis(1_000));
        let at = |ms| -> Vec<PeerId> {
            board
                .current(Millis(ms))
                .into_iter()
                .map(|m| m.peer)
                .collect()
        };
        assert_eq!(at(1_100), vec![PeerId::synthetic(1), PeerId::synthetic(2)]);
        assert_eq!(board.current(Millis(1_050))[0].last_seen, Millis(1_000));
        assert_eq!(at(1_101), vec![PeerId::synthetic(2)]);
        // Expired entries are forgotten, not merely hidden.
        assert_eq!(at(1_050), vec![PeerId::synthetic(2)]);
    }

    #[test]
    fn a_newer_push_replaces_the_older_one() {
        let board = MetricsBoard::default();
        board.record(push(1, 100), Millis(1_000));
        let mut newer = push(1, 100);
        newer.free_space_bytes = 99;
        board.record(newer, Millis(1_080));
        let now = board.current(Millis(1_150));
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].free_space_bytes, 99);
        assert_eq!(now[0].last_seen, Millis(1_080));
    }
}

//! The leader's re-allocation driver. Every round it feeds the core the
//! facts (the pinset, the members, the metrics it received, since when it
//! has been receiving them, what trackers report pinned for the pins in a
//! hand-over) and proposes the core's answers, never touching the pinset
//! itself. What moves a pin and why is decided in [`cluster_core::repair`]:
//! departed peers, peers whose metrics expired (re-pinning), hand-overs
//! that finish once the replacements report pinned.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cluster_core::allocator::AllocatorConfig;
use cluster_core::pinset::{Applied, Command, Entry, PinChange};
use cluster_core::repair::{
    expired_peers, pinned_queries, plan_reallocations, PinnedReports, Reallocation, RepairFacts,
};
use cluster_core::{Cid, PeerId, TrackerStatus};
use cluster_net::rt;

use crate::context::PeerContext;
use crate::drivers::metrics::MetricsBoard;
use crate::drivers::tracker::TrackerHandle;
use crate::rpc::{self, StatusAnswer, StatusQuery, TRACKER_STATUS};

/// The re-allocation driver's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairConfig {
    /// Pause between two rounds, in ms.
    pub interval_ms: u64,
    /// Re-allocations proposed per round at most (a mass departure is
    /// repaired over several rounds, leaving room for client writes).
    pub per_round_max: usize,
    /// The allocator's settings (its metric TTL also says when a peer's
    /// metrics expired).
    pub allocator: AllocatorConfig,
    /// Pins in a hand-over whose trackers are asked about per round at most.
    pub handover_checks_max: usize,
    /// Deadline of one tracker status call, in ms.
    pub call_ms: u64,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            interval_ms: 10_000,
            per_round_max: 256,
            allocator: AllocatorConfig::default(),
            handover_checks_max: 4_096,
            call_ms: 5_000,
        }
    }
}

/// What the driver does with one re-allocation, told to a [`RepairHook`].
#[derive(Debug, Clone, Copy)]
pub enum RepairEvent<'a> {
    /// About to be proposed.
    Proposing(&'a Reallocation),
    /// Committed and applied: the pinset now holds these allocations.
    Applied(&'a Reallocation),
}

/// Told every [`RepairEvent`] (the simulator checks hand-overs against
/// what the IPFS daemons really hold; the binary logs them).
pub type RepairHook = Arc<dyn Fn(RepairEvent<'_>) + Send + Sync>;

/// Runs re-allocation rounds while this peer leads, forever (the task ends
/// with the peer). A failed proposal is retried by a later round: each
/// carries the pin's version, so a stale one is refused by the state machine.
pub async fn repair_allocations(
    ctx: PeerContext,
    board: Arc<MetricsBoard>,
    tracker: TrackerHandle,
    config: RepairConfig,
    hook: RepairHook,
) {
    // The board fills from the moment the peer starts.
    let watching_since = ctx.clock.now();
    loop {
        rt::sleep(Duration::from_millis(config.interval_ms)).await;
        if !ctx.raft.is_leader() {
            continue;
        }
        let now = ctx.clock.now();
        let members: BTreeSet<PeerId> = ctx.raft.members().into_iter().collect();
        let metrics = board.current(now);
        let no_reports = PinnedReports::new();
        let mut facts = RepairFacts {
            members: &members,
            metrics: &metrics,
            now,
            watching_since,
            pinned: &no_reports,
        };
        let expired = expired_peers(&facts, &config.allocator);
        let queries = ctx.raft.with_pinset(|pinset| {
            pinned_queries(
                pinset.iter(),
                &members,
                &expired,
                config.handover_checks_max,
            )
        });
        let pinned = ask_pinned(&ctx, &tracker, queries, &config).await;
        facts.pinned = &pinned;
        let plan = ctx.raft.with_pinset(|pinset| {
            plan_reallocations(
                pinset.iter_with_versions(),
                &facts,
                &config.allocator,
                config.per_round_max,
            )
        });
        for step in plan {
            hook(RepairEvent::Proposing(&step));
            tracing::info!(
                "repair: {} {:?} -> {:?}",
                step.cid,
                step.reason,
                step.allocations
            );
            let entry = Entry::new(Command::Reallocate {
                cid: step.cid.clone(),
                allocations: step.allocations.clone(),
                version: step.version,
            });
            match ctx.raft.write(entry).await {
                Ok(Ok(Applied::Pinned {
                    change: PinChange::Updated,
                    ..
                })) => hook(RepairEvent::Applied(&step)),
                Ok(other) => tracing::debug!("repair: re-allocation not applied: {other:?}"),
                Err(e) => {
                    tracing::debug!("repair: re-allocation not written, next round retries: {e}")
                }
            }
        }
    }
}

/// Asks each peer's tracker (this peer's directly) which of its CIDs it
/// has pinned. A peer that does not answer reports nothing: its pins wait.
async fn ask_pinned(
    ctx: &PeerContext,
    tracker: &TrackerHandle,
    queries: BTreeMap<PeerId, Vec<Cid>>,
    config: &RepairConfig,
) -> PinnedReports {
    let mut pinned = PinnedReports::new();
    if queries.is_empty() {
        return pinned;
    }
    let limit = Duration::from_millis(config.call_ms);
    let infos = ctx.raft.member_infos();
    for (peer, cids) in queries {
        let answer: Option<StatusAnswer> = if peer == ctx.id {
            rt::timeout(limit, tracker.statuses(Some(cids)))
                .await
                .flatten()
        } else {
            let Some(target) = infos.iter().find(|i| i.peer_id == peer.as_str()) else {
                continue;
            };
            let query = StatusQuery { cids: Some(cids) };
            match rpc::call(ctx.rpc.as_ref(), target, TRACKER_STATUS, &query, limit).await {
                Ok(answer) => Some(answer),
                Err(e) => {
                    tracing::debug!("repair: {peer} did not report its statuses: {e}");
                    None
                }
            }
        };
        for (cid, status) in answer.unwrap_or_default() {
            if status.status == TrackerStatus::Pinned {
                pinned.entry(cid).or_default().insert(peer.clone());
            }
        }
    }
    pinned
}

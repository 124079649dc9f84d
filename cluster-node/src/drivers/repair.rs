//! The leader's re-allocation driver: every round it asks the core which
//! pins need moving (allocations on departed peers, pins short of their
//! minimum) and proposes the answers, never touching the pinset itself.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cluster_core::allocator::AllocatorConfig;
use cluster_core::pinset::{Command, Entry};
use cluster_core::repair::plan_reallocations;
use cluster_core::PeerId;
use cluster_net::rt;

use crate::context::PeerContext;
use crate::drivers::metrics::MetricsBoard;

/// The re-allocation driver's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairConfig {
    /// Pause between two rounds, in ms.
    pub interval_ms: u64,
    /// Re-allocations proposed per round at most (a mass departure is
    /// repaired over several rounds, leaving room for client writes).
    pub per_round_max: usize,
    /// The allocator's settings.
    pub allocator: AllocatorConfig,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            interval_ms: 10_000,
            per_round_max: 256,
            allocator: AllocatorConfig::default(),
        }
    }
}

/// Runs re-allocation rounds while this peer leads, forever (the task ends
/// with the peer). A failed proposal is retried by a later round: each
/// carries the pin's version, so a stale one is refused by the state machine.
pub async fn repair_allocations(ctx: PeerContext, board: Arc<MetricsBoard>, config: RepairConfig) {
    loop {
        rt::sleep(Duration::from_millis(config.interval_ms)).await;
        if !ctx.raft.is_leader() {
            continue;
        }
        let now = ctx.clock.now();
        let members: BTreeSet<PeerId> = ctx.raft.members().into_iter().collect();
        let metrics = board.current(now);
        let plan = ctx.raft.with_pinset(|pinset| {
            plan_reallocations(
                pinset.iter_with_versions(),
                &members,
                &metrics,
                now,
                &config.allocator,
                config.per_round_max,
            )
        });
        for step in plan {
            let entry = Entry::new(Command::Reallocate {
                cid: step.cid,
                allocations: step.allocations,
                version: step.version,
            });
            if let Err(e) = ctx.raft.write(entry).await {
                tracing::debug!("repair: re-allocation not written, next round retries: {e}");
            }
        }
    }
}

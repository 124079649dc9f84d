//! The leader's expiry driver: every round it asks the pinset which pins'
//! `expire_at` has passed on this peer's clock and proposes their removal,
//! each carrying the version judged expired (a pin re-pinned meanwhile is
//! refused as stale by the state machine, never removed).

use std::time::Duration;

use cluster_core::pinset::{Command, Entry};
use cluster_net::rt;

use crate::context::PeerContext;

/// The expiry driver's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryConfig {
    /// Pause between two rounds, in ms (how late past `expire_at` a pin
    /// may still be there, at most, while a leader serves).
    pub interval_ms: u64,
    /// Removals proposed per round at most (a mass expiry is spread over
    /// rounds, leaving room for client writes).
    pub per_round_max: usize,
}

impl Default for ExpiryConfig {
    fn default() -> Self {
        ExpiryConfig {
            interval_ms: 10_000,
            per_round_max: 1_024,
        }
    }
}

/// Runs expiry rounds while this peer leads, forever (the task ends with the
/// peer). A removal not written is proposed again by a later round.
pub async fn remove_expired(ctx: PeerContext, config: ExpiryConfig) {
    loop {
        rt::sleep(Duration::from_millis(config.interval_ms.max(1))).await;
        if !ctx.raft.is_leader() {
            continue;
        }
        let now = ctx.clock.now();
        let due = ctx
            .raft
            .with_pinset(|pinset| pinset.expired(now, config.per_round_max));
        for (cid, version) in due {
            let entry = Entry::new(Command::Expire {
                cid: cid.clone(),
                version,
            });
            match ctx.raft.write(entry).await {
                Ok(_) => tracing::info!("expiry: {cid} removed (expired at version {version:?})"),
                Err(e) => tracing::debug!("expiry: {cid} not removed, next round retries: {e}"),
            }
        }
    }
}

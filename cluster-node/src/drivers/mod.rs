//! The driver loops one peer runs around the core, written once for the
//! binary and the simulator: the pin tracker's driver, the metrics
//! publisher, the leader's re-allocation and the leader's expiry of pins
//! whose `expire_at` passed. Every decision they act on is
//! a pure function of `cluster-core`; they feed it facts and carry out
//! its answers.

pub mod expiry;
pub mod metrics;
pub mod repair;
pub mod tracker;

use std::sync::Arc;

use cluster_core::tracker::TrackerConfigError;
use cluster_net::rt;

use crate::context::PeerContext;
use crate::rpc::NodeRouter;
use expiry::ExpiryConfig;
use metrics::{MetricsBoard, MetricsConfig};
use repair::{RepairConfig, RepairHook};
use tracker::{TrackerDriverConfig, TrackerHandle, ViolationHook};

/// Settings of every driver of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverSettings {
    /// The tracker driver's.
    pub tracker: TrackerDriverConfig,
    /// The metrics publisher's.
    pub metrics: MetricsConfig,
    /// The re-allocation driver's; `None` runs no re-allocation (pins on
    /// departed peers stay where they are until an operator moves them).
    pub repair: Option<RepairConfig>,
    /// The expiry driver's.
    pub expiry: ExpiryConfig,
}

/// The running drivers of one peer.
#[derive(Clone)]
pub struct Drivers {
    /// Its tracker.
    pub tracker: TrackerHandle,
    /// The metrics it received.
    pub board: Arc<MetricsBoard>,
    /// What serves its node RPCs: register it with the transport.
    pub router: Arc<NodeRouter>,
}

/// Starts every driver of the peer in `ctx` on the current runtime.
pub fn start_drivers(
    ctx: &PeerContext,
    settings: DriverSettings,
    on_violation: ViolationHook,
) -> Result<Drivers, TrackerConfigError> {
    start_drivers_observed(ctx, settings, on_violation, Arc::new(|_| {}))
}

/// Like [`start_drivers`], telling `on_repair` what the re-allocation
/// driver proposes and applies (the simulator checks hand-overs with it).
pub fn start_drivers_observed(
    ctx: &PeerContext,
    settings: DriverSettings,
    on_violation: ViolationHook,
    on_repair: RepairHook,
) -> Result<Drivers, TrackerConfigError> {
    let tracker = tracker::start_tracker(ctx, settings.tracker, on_violation)?;
    let board = Arc::new(MetricsBoard::default());
    let router = Arc::new(NodeRouter::new(
        ctx.raft.clone(),
        Arc::clone(&board),
        tracker.clone(),
        Arc::clone(&ctx.clock),
        Arc::clone(&ctx.ipfs),
    ));
    rt::spawn(metrics::publish_metrics(
        ctx.clone(),
        tracker.clone(),
        Arc::clone(&board),
        settings.metrics,
    ));
    if let Some(repair) = settings.repair {
        rt::spawn(repair::repair_allocations(
            ctx.clone(),
            Arc::clone(&board),
            tracker.clone(),
            repair,
            on_repair,
        ));
    }
    rt::spawn(expiry::remove_expired(ctx.clone(), settings.expiry));
    Ok(Drivers {
        tracker,
        board,
        router,
    })
}

//! What every handler works with: the peer's seams, its drivers, the API's
//! settings, and the few helpers they share (the clock, the membership,
//! writes with request ids).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use cluster_core::pinset::{Applied, Command, Entry, RequestId};
use cluster_core::{Millis, PeerId};
use cluster_net::NodeInfo;

use super::error::ApiError;
use super::RestConfig;
use crate::context::PeerContext;
use crate::drivers::metrics::Received;
use crate::drivers::Drivers;

/// Tries of one write whose outcome was unknown (it carries a request id,
/// so a retry applies at most once).
pub const WRITE_TRIES_MAX: u32 = 3;

/// The shared state behind every handler.
pub struct ApiState {
    /// The peer's seams.
    pub ctx: PeerContext,
    /// Its drivers.
    pub drivers: Drivers,
    /// The API's settings.
    pub config: RestConfig,
    /// What the API measures (the Prometheus endpoint shows it).
    pub observations: std::sync::Arc<super::observe::Observations>,
    /// This API instance's consensus session.
    client_id: u64,
    serial: AtomicU64,
}

impl ApiState {
    /// The state of an API over `ctx` and `drivers`.
    pub fn new(ctx: PeerContext, drivers: Drivers, config: RestConfig) -> ApiState {
        // A fresh session id per API instance: std's hasher keys are random
        // per process, mixed with the clock so restarts differ too.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(ctx.clock.now().0);
        h.write(ctx.id.as_str().as_bytes());
        ApiState {
            ctx,
            drivers,
            config,
            observations: Default::default(),
            client_id: h.finish(),
            serial: AtomicU64::new(1),
        }
    }

    /// Now, on the peer's clock.
    pub fn now(&self) -> Millis {
        self.ctx.clock.now()
    }

    /// Voting members, sorted.
    pub fn members(&self) -> Vec<PeerId> {
        let mut members = self.ctx.raft.members();
        members.sort();
        members
    }

    /// Every member's record (voters and learners), by peer id.
    pub fn member_infos(&self) -> BTreeMap<String, NodeInfo> {
        self.ctx
            .raft
            .member_infos()
            .into_iter()
            .map(|n| (n.peer_id.clone(), n))
            .collect()
    }

    /// True for this peer's own id.
    pub fn is_me(&self, peer: &str) -> bool {
        peer == self.ctx.id.as_str()
    }

    /// The name shown for `peer`: ours from the settings, others by id
    /// (peers do not announce names yet).
    pub fn peername(&self, peer: &str) -> String {
        match (&self.config.peername, self.is_me(peer)) {
            (Some(name), true) => name.clone(),
            _ => peer.to_string(),
        }
    }

    /// Fresh metrics of every peer, by peer id.
    pub fn received(&self) -> BTreeMap<String, Received> {
        self.drivers
            .board
            .current_received(self.now())
            .into_iter()
            .map(|r| (r.metrics.peer.to_string(), r))
            .collect()
    }

    /// Replicates `command` as this API's next request; an unknown outcome
    /// is retried with the same request id (applied at most once).
    pub async fn write(&self, command: Command) -> Result<Applied, ApiError> {
        let entry = Entry {
            request: Some(RequestId {
                client: self.client_id,
                serial: self.serial.fetch_add(1, Ordering::Relaxed),
            }),
            command,
        };
        let mut tries = 0;
        loop {
            tries += 1;
            match self.ctx.raft.write(entry.clone()).await {
                Ok(result) => return Ok(result?),
                Err(e) if e.outcome_unknown() && tries < WRITE_TRIES_MAX => {
                    tracing::debug!(error = %e, tries, "rest api: write outcome unknown, retrying");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

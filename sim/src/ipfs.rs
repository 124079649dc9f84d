//! A fake IPFS daemon per peer, with injectable faults: errors, slow answers,
//! and restarts that lose the pins in flight.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cluster_core::tracker::{IpfsPinType, ListedPin};
use cluster_core::Cid;
use madsim::rand::{thread_rng, Rng};

/// Normal answer latency range, in ms.
const LATENCY_MS: (u64, u64) = (1, 30);
/// Latency while the daemon is slow, in ms.
const SLOW_LATENCY_MS: (u64, u64) = (500, 4_000);

/// One daemon. It lives outside the cluster peer, so a peer crash keeps its pins.
#[derive(Default)]
pub struct FakeIpfs {
    state: Mutex<DaemonState>,
}

#[derive(Default)]
struct DaemonState {
    /// Pins the cluster made (they carry the cluster's mark).
    pins: BTreeSet<Cid>,
    error_per_mille: u32,
    slow: bool,
    restarts: u64,
}

impl FakeIpfs {
    fn state(&self) -> MutexGuard<'_, DaemonState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the share of requests that fail, in thousandths.
    pub fn set_error_per_mille(&self, per_mille: u32) {
        self.state().error_per_mille = per_mille;
    }

    /// Makes answers slow (seconds) or normal again.
    pub fn set_slow(&self, slow: bool) {
        self.state().slow = slow;
    }

    /// Restarts the daemon: requests in flight fail and change nothing.
    pub fn restart(&self) {
        self.state().restarts += 1;
    }

    /// Clears every fault.
    pub fn heal(&self) {
        let mut s = self.state();
        s.error_per_mille = 0;
        s.slow = false;
    }

    /// The pins it holds now.
    pub fn pins(&self) -> BTreeSet<Cid> {
        self.state().pins.clone()
    }

    /// Waits like a daemon would, then says whether the request survived.
    async fn serve(&self, what: &str) -> Result<(), String> {
        let (restarts, slow) = {
            let s = self.state();
            (s.restarts, s.slow)
        };
        let (lo, hi) = if slow { SLOW_LATENCY_MS } else { LATENCY_MS };
        let ms = thread_rng().gen_range(lo..=hi);
        madsim::time::sleep(Duration::from_millis(ms)).await;
        let s = self.state();
        if s.restarts != restarts {
            return Err(format!("{what}: connection reset (ipfs daemon restarted)"));
        }
        if thread_rng().gen_range(0..1000) < s.error_per_mille {
            return Err(format!("{what}: context deadline exceeded"));
        }
        Ok(())
    }

    /// `pin/add`.
    pub async fn pin(&self, cid: &Cid) -> Result<(), String> {
        self.serve("pin/add").await?;
        self.state().pins.insert(cid.clone());
        Ok(())
    }

    /// `pin/rm`; not pinned counts as done.
    pub async fn unpin(&self, cid: &Cid) -> Result<(), String> {
        self.serve("pin/rm").await?;
        self.state().pins.remove(cid);
        Ok(())
    }

    /// `pin/ls`.
    pub async fn list(&self) -> Result<Vec<ListedPin>, String> {
        self.serve("pin/ls").await?;
        Ok(self
            .state()
            .pins
            .iter()
            .map(|cid| ListedPin {
                cid: cid.clone(),
                // Every fake pin is a full recursive one, as Kubo lists it.
                pin_type: IpfsPinType::Recursive { max_depth: None },
                by_cluster: true,
            })
            .collect())
    }
}

//! The clock seam: where the drivers take `now` from.
//!
//! The core's step functions take time as an input; the drivers read it
//! here. The binary uses [`SystemClock`]; the simulator gives each peer a
//! clock of its own, which it can skew.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use cluster_core::Millis;

/// A source of `now` for the drivers. It never goes backwards.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch (the unit of pin timestamps and
    /// `expire_at`).
    fn now(&self) -> Millis;
}

/// The machine's wall clock, held back instead of stepping backwards
/// (an NTP step back must not make the tracker's deadlines move back in time).
#[derive(Debug, Default)]
pub struct SystemClock {
    latest: AtomicU64,
}

impl SystemClock {
    /// A clock reading the machine's time.
    pub fn new() -> SystemClock {
        SystemClock::default()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Millis(monotonic(&self.latest, wall))
    }
}

/// `reading`, or the latest value handed out when `reading` is behind it.
pub fn monotonic(latest: &AtomicU64, reading: u64) -> u64 {
    latest.fetch_max(reading, Ordering::Relaxed).max(reading)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_behind_the_latest_is_held_at_the_latest() {
        let latest = AtomicU64::new(0);
        assert_eq!(monotonic(&latest, 100), 100);
        assert_eq!(monotonic(&latest, 40), 100);
        assert_eq!(monotonic(&latest, 130), 130);
    }

    #[test]
    fn the_system_clock_reads_a_plausible_epoch_time() {
        // 2020-09-13 in ms: any machine running this is later.
        assert!(SystemClock::new().now().0 > 1_600_000_000_000);
    }
}

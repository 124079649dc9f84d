//! Bytes in and out per protocol (what `GET /health/bandwidth` shows).
//!
//! The codec counts every message it reads or writes, length prefix
//! included, on lock-free counters; the swarm task takes a sample of the
//! totals every [`SAMPLE_EVERY`], and a rate is the growth of a total over
//! the samples of the last [`RATE_WINDOW`] (since start while the host is
//! younger). Only the protocols' own bytes are counted: not the noise,
//! yamux and multistream framing around them, nor identify.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::StreamProtocol;

use super::codec::{NODE_RPC_PROTOCOL, PEER_RPC_PROTOCOL, RAFT_PROTOCOL};
use crate::transport::Traffic;

/// How often the swarm task samples the totals.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The span rates are averaged over.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(10);

/// How many protocols are metered.
const METERED: usize = 3;
/// The metered protocols, in counter order.
const PROTOCOLS: [StreamProtocol; METERED] = [RAFT_PROTOCOL, PEER_RPC_PROTOCOL, NODE_RPC_PROTOCOL];

#[derive(Debug, Default)]
struct Counter {
    inbound: AtomicU64,
    outbound: AtomicU64,
}

/// Totals at one instant: (in, out) per protocol.
type Totals = [(u64, u64); METERED];

/// Per-protocol byte counters with their recent samples.
#[derive(Debug)]
pub(crate) struct Meter {
    counters: [Counter; METERED],
    samples: Mutex<VecDeque<(Instant, Totals)>>,
}

impl Meter {
    /// Counters at zero, sampled at `now`.
    pub(crate) fn new(now: Instant) -> Meter {
        Meter {
            counters: Default::default(),
            samples: Mutex::new(VecDeque::from([(now, [(0, 0); METERED])])),
        }
    }

    fn counter(&self, protocol: &StreamProtocol) -> Option<&Counter> {
        let i = PROTOCOLS.iter().position(|p| p == protocol)?;
        self.counters.get(i)
    }

    /// `bytes` read on `protocol`.
    pub(crate) fn received(&self, protocol: &StreamProtocol, bytes: usize) {
        if let Some(c) = self.counter(protocol) {
            c.inbound.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// `bytes` written on `protocol`.
    pub(crate) fn sent(&self, protocol: &StreamProtocol, bytes: usize) {
        if let Some(c) = self.counter(protocol) {
            c.outbound.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    fn totals(&self) -> Totals {
        let mut totals = [(0, 0); METERED];
        for (t, c) in totals.iter_mut().zip(&self.counters) {
            *t = (
                c.inbound.load(Ordering::Relaxed),
                c.outbound.load(Ordering::Relaxed),
            );
        }
        totals
    }

    fn samples(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, Totals)>> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the totals at `now`, forgetting samples older than the
    /// window (the newest of those stays: it is where the window starts).
    pub(crate) fn sample(&self, now: Instant) {
        let totals = self.totals();
        let mut samples = self.samples();
        samples.push_back((now, totals));
        while samples.len() > 1
            && samples
                .get(1)
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= RATE_WINDOW)
        {
            samples.pop_front();
        }
    }

    /// Every protocol's totals and rates at `now`, by protocol id.
    pub(crate) fn traffic(&self, now: Instant) -> BTreeMap<String, Traffic> {
        let totals = self.totals();
        let (since, base) = {
            let samples = self.samples();
            // The oldest sample still inside the window (or the one it
            // starts at): rates cover the last RATE_WINDOW at most.
            let start = samples
                .iter()
                .find(|(at, _)| now.saturating_duration_since(*at) <= RATE_WINDOW)
                .or_else(|| samples.back())
                .copied();
            match start {
                Some((at, base)) => (now.saturating_duration_since(at), base),
                None => (Duration::ZERO, [(0, 0); METERED]),
            }
        };
        let seconds = since.as_secs_f64();
        let rate = |now: u64, then: u64| {
            if seconds > 0.0 {
                now.saturating_sub(then) as f64 / seconds
            } else {
                0.0
            }
        };
        PROTOCOLS
            .iter()
            .zip(totals.iter().zip(base.iter()))
            .map(|(protocol, ((total_in, total_out), (then_in, then_out)))| {
                (
                    protocol.to_string(),
                    Traffic {
                        total_in: *total_in,
                        total_out: *total_out,
                        rate_in: rate(*total_in, *then_in),
                        rate_out: rate(*total_out, *then_out),
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_per_protocol_and_rates_cover_the_recent_window() {
        let start = Instant::now();
        let meter = Meter::new(start);
        let at = |s: u64| start + Duration::from_secs(s);
        meter.received(&RAFT_PROTOCOL, 100);
        meter.sent(&RAFT_PROTOCOL, 40);
        meter.sent(&NODE_RPC_PROTOCOL, 7);
        meter.received(&StreamProtocol::new("/other/1"), 1_000);
        let t = meter.traffic(at(2));
        assert_eq!(t.len(), 3);
        let raft = t[RAFT_PROTOCOL.as_ref()];
        assert_eq!((raft.total_in, raft.total_out), (100, 40));
        assert_eq!((raft.rate_in, raft.rate_out), (50.0, 20.0));
        assert_eq!(t[NODE_RPC_PROTOCOL.as_ref()].total_out, 7);
        assert_eq!(t[PEER_RPC_PROTOCOL.as_ref()], Traffic::default());

        // Sampled every second; after a quiet window the rate is back to 0
        // while the totals stay.
        for s in 1..=30 {
            meter.sample(at(s));
        }
        let quiet = meter.traffic(at(30));
        assert_eq!(quiet[RAFT_PROTOCOL.as_ref()].total_in, 100);
        assert_eq!(quiet[RAFT_PROTOCOL.as_ref()].rate_in, 0.0);
        // 500 bytes in the last 5 s of a 10 s window: 50 B/s.
        meter.received(&PEER_RPC_PROTOCOL, 500);
        meter.sample(at(35));
        let busy = meter.traffic(at(35));
        assert_eq!(busy[PEER_RPC_PROTOCOL.as_ref()].rate_in, 50.0);
        // The samples stay bounded by the window.
        assert!(meter.samples().len() <= 12, "{}", meter.samples().len());
    }
}

//! Prometheus metrics of one peer (`GET /metrics` on their own listener,
//! upstream's `observations.metrics`, default `127.0.0.1:8888`, off by
//! default as upstream). Written by hand in the text exposition format
//! (version 0.0.4): a few families do not justify a metrics crate.
//!
//! Families:
//! - `ipfscluster_pins{state}`: the tracker's CIDs by state (`pinned`,
//!   `queued`, `pinning`, `error`), and `ipfscluster_pinset_size`;
//! - `ipfscluster_tracker_queue_length`, `ipfscluster_tracker_in_flight`;
//! - `ipfscluster_pin_duration_seconds` / `ipfscluster_unpin_duration_seconds`:
//!   histograms of the API's pin and unpin requests, from arrival to the
//!   commit in consensus;
//! - `ipfscluster_raft_term`, `ipfscluster_raft_is_leader`,
//!   `ipfscluster_raft_leader{peer}`, `ipfscluster_raft_applied_index`
//!   (openraft does not publish its commit index; applied ≤ committed),
//!   `ipfscluster_raft_last_log_index`;
//! - `ipfscluster_peers` (members), `ipfscluster_peers_seen` (members whose
//!   metrics are fresh);
//! - `ipfscluster_api_requests_total{method,route,code}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::state::ApiState;

/// Upstream's default metrics address.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:8888";

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram (cumulative buckets, sum and count).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let n = bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// What the API measures as it serves.
#[derive(Debug, Default)]
pub struct Observations {
    /// Pin requests.
    pub pin: Histogram,
    /// Unpin requests.
    pub unpin: Histogram,
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
}

impl Observations {
    fn request(&self, method: &str, route: &str, code: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((method.to_string(), route.to_string(), code))
            .or_insert(0) += 1;
    }
}

/// Middleware counting every request by method, route template and status.
pub async fn count_requests(
    State(obs): State<Arc<Observations>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    // The route template, never the raw path: CIDs would explode the
    // label set.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    obs.request(&method, &route, response.status().as_u16());
    response
}

/// Quotes a label value (`\`, `"` and newlines escaped).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn gauge(out: &mut String, name: &str, help: &str, samples: &[(&str, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// The whole exposition, as of now.
pub fn render(state: &ApiState) -> String {
    let mut out = String::new();
    let counts = state.drivers.tracker.counts();
    gauge(
        &mut out,
        "ipfscluster_pins",
        "CIDs this peer's tracker holds, by state.",
        &[
            ("{state=\"pinned\"}", counts.pinned as f64),
            ("{state=\"queued\"}", counts.queued as f64),
            ("{state=\"pinning\"}", counts.in_flight as f64),
            ("{state=\"error\"}", counts.failed as f64),
        ],
    );
    let pinset = state.ctx.raft.with_pinset(|p| p.len());
    gauge(
        &mut out,
        "ipfscluster_pinset_size",
        "Pins in the shared state.",
        &[("", pinset as f64)],
    );
    gauge(
        &mut out,
        "ipfscluster_tracker_queue_length",
        "Pin and unpin operations waiting in the tracker's queues.",
        &[("", counts.queued as f64)],
    );
    gauge(
        &mut out,
        "ipfscluster_tracker_in_flight",
        "IPFS operations in flight.",
        &[("", counts.in_flight as f64)],
    );
    state.observations.pin.write(
        &mut out,
        "ipfscluster_pin_duration_seconds",
        "API pin requests, from arrival to commit in consensus.",
    );
    state.observations.unpin.write(
        &mut out,
        "ipfscluster_unpin_duration_seconds",
        "API unpin requests, from arrival to commit in consensus.",
    );
    let raft = &state.ctx.raft;
    let watch = raft.watch();
    gauge(
        &mut out,
        "ipfscluster_raft_term",
        "This peer's current Raft term.",
        &[("", watch.current_term() as f64)],
    );
    gauge(
        &mut out,
        "ipfscluster_raft_is_leader",
        "1 when this peer leads.",
        &[("", if raft.is_leader() { 1.0 } else { 0.0 })],
    );
    let leader = raft
        .leader()
        .map(|p| format!("{{peer=\"{}\"}}", label(p.as_str())));
    gauge(
        &mut out,
        "ipfscluster_raft_leader",
        "The leader this peer knows (value 1), none when absent.",
        &leader
            .as_deref()
            .map(|l| vec![(l, 1.0)])
            .unwrap_or_default(),
    );
    gauge(
        &mut out,
        "ipfscluster_raft_applied_index",
        "Log index last applied to the pinset here (committed entries only).",
        &[("", raft.applied_index() as f64)],
    );
    gauge(
        &mut out,
        "ipfscluster_raft_last_log_index",
        "Index of the last entry of this peer's log.",
        &[("", raft.last_log_index() as f64)],
    );
    let members = state.members();
    let seen = state
        .received()
        .keys()
        .filter(|p| members.iter().any(|m| m.as_str() == p.as_str()))
        .count();
    gauge(
        &mut out,
        "ipfscluster_peers",
        "Cluster members.",
        &[("", members.len() as f64)],
    );
    gauge(
        &mut out,
        "ipfscluster_peers_seen",
        "Members whose metrics this peer holds fresh.",
        &[("", seen as f64)],
    );
    let _ = writeln!(
        out,
        "# HELP ipfscluster_api_requests_total REST API requests by method, route and status.\n\
         # TYPE ipfscluster_api_requests_total counter"
    );
    let requests = state
        .observations
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for ((method, route, code), n) in requests {
        let _ = writeln!(
            out,
            "ipfscluster_api_requests_total{{method=\"{}\",route=\"{}\",code=\"{code}\"}} {n}",
            label(&method),
            label(&route)
        );
    }
    out
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let mut response = (StatusCode::OK, render(&state)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(20));
        let mut out = String::new();
        h.write(&mut out, "x", "help");
        assert!(out.contains("# TYPE x histogram"));
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"0.05\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"10\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_count 3\n"));
        assert!(out.contains("x_sum 20.0305\n"), "{out}");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

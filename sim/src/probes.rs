//! Coverage probes: named counters on the rare paths a run should reach
//! (snapshot install, log truncation, a tracker timeout, a wiped disk, …).
//! A run prints them; the seed coordinator sums them over all seeds and,
//! on a full run, fails when a required probe never fired: a simulator
//! that never reaches a path cannot find its bugs.
//!
//! Process-wide on purpose: every seed runs in a process of its own, and the
//! simulated disk and network count from code that has no handle to the run.

use std::collections::BTreeMap;
use std::sync::Mutex;

static COUNTS: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

/// Probes every full run must fire at least once (summed over its seeds).
/// The torn-tail and unsynced-crash probes are counted but not required:
/// the log store writes every record durably, so on the product's code no
/// unsynced commit exists to lose (they fire on a planted relaxed write).
pub const REQUIRED: &[&str] = &[
    "client: answer Created",
    "client: answer Updated",
    "client: answer Unpinned",
    "client: answer NotFound",
    "client: answer RecursiveToDirect",
    "client: unknown outcome",
    "client: retry of an unknown request answered",
    "allocator: not enough peers",
    "disk: log truncated",
    "disk: log purged",
    "disk: snapshot stored",
    "disk: write refused",
    "disk: read refused",
    "disk: errors healed without a restart",
    "raft: fatal storage error, peer restarted",
    "restart: start refused by a failing disk",
    "disk: crash right after a vote was persisted",
    "disk: crash right after an append was persisted",
    "disk: wiped",
    "membership: wiped peer joined again",
    "disk: checksum caught a corrupt page",
    "restart: corrupt disk refused at start-up",
    "restart: corrupt disk wiped by the operator",
    "client: re-pin of a CID being re-allocated",
    "client: operator acted on an alert",
    "client: re-pin after an alert",
    "repair: proposal already stale when sent",
    "net: snapshot sent",
    "net: message duplicated",
    "net: stale answer after the caller gave up",
    "net: call hung in a partition",
    "membership: join finished",
    "membership: removal finished",
    "membership: leader removed",
    "membership: leader crashed during a change",
    "membership: removed peer kept running",
    "fault: quick reboot",
    "fault: long outage of a member",
    "repair: replacement added for an expired peer",
    "repair: hand-over finished",
    "repair: replacement must fetch large content",
    "repair: member dropped, a kept peer holding it",
    "clock: peer timers run fast",
    "clock: peer timers run slow",
    "clock: drifted timer fired",
    "ipfs: error after the work was done",
    "ipfs: request refused by a daemon that is down",
    "ipfs: request hung on a stuck daemon",
    "ipfs: answer lost for good",
    "ipfs: daemon back after the client traffic ended",
    "ipfs: answer later than the op timeout",
    "ipfs: cluster pin removed by hand",
    "ipfs: pin made by hand",
    "ipfs: direct pin asked",
    "ipfs: large content fetched for seconds",
    "expiry: pin with a near expiry acknowledged",
    "expiry: expired pin removed",
    "ipfs: daemons connected for bitswap",
    "tracker: status pinned checked",
    "tracker: status remote checked",
    "swarm: fault-free seed",
];

/// Counts one pass through the probe `name`.
pub fn hit(name: &'static str) {
    add(name, 1);
}

/// Counts `n` passes through the probe `name`.
pub fn add(name: &'static str, n: u64) {
    if n == 0 {
        return;
    }
    let mut counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    *counts.entry(name).or_default() += n;
}

/// Every probe that fired in this process, with its count.
pub fn snapshot() -> BTreeMap<&'static str, u64> {
    COUNTS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

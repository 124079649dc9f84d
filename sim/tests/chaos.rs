//! Seeded chaos runs (built only with `--cfg madsim`; `tests/simulate.rs`
//! launches this build from a plain `cargo test -p sim`).
//!
//! Environment: `SIM_SEED` first seed (default 1), `SIM_SEEDS` how many
//! (default 100), `SIM_SECS` simulated seconds of faults per seed (default 60),
//! `SIM_PEERS` peers at start (default 0: each seed draws 3, 5 or 7), `SIM_JOBS` seeds run in parallel
//! (default: available cores), `SIM_DETERMINISM` how many seeds run twice
//! to compare digests (default 3), `SIM_REQUIRE_PROBES` (default: on when at
//! least 100 seeds run) fails the run when a coverage probe never fired.
//! `SIM_TRACE` prints the controller's events, `SIM_RAFT_LOG` openraft's
//! info-level log (with the madsim node of each line), for one failing seed.
//! `MADSIM_TEST_SEED` / `MADSIM_TEST_NUM` are accepted as aliases of
//! `SIM_SEED` / `SIM_SEEDS`.
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sim::scenario::{self, Params, Report};

/// Probe counts of one seed, by name.
type Probes = BTreeMap<String, u64>;

fn env_u64(names: &[&str], default: u64) -> u64 {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok())
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{names:?} must be a number, got {v:?}"))
        })
        .unwrap_or(default)
}

/// Runs one seed in a fresh process: tokio (inside openraft) seeds each
/// thread's `select!` randomness from a process-wide counter, so only a new
/// process starts every run from the same state. The child is this test binary
/// in worker mode (`SIM_WORKER_SEED`).
fn run_seed(seed: u64, params: &Params) -> Result<(Report, Probes), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let out = std::process::Command::new(exe)
        .args(["--exact", "chaos", "--nocapture", "--test-threads", "1"])
        .env("SIM_WORKER_SEED", seed.to_string())
        .env("SIM_SECS", params.chaos_secs.to_string())
        .env("SIM_PEERS", params.peers.to_string())
        .output()
        .map_err(|e| format!("spawn worker: {e}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let Some(line) = text
        .lines()
        .find_map(|l| l.split_once("SIM-REPORT ").map(|(_, r)| r))
    else {
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("worker for seed {seed} died:\n{}", tail.join("\n")));
    };
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let violations = text
        .lines()
        .filter_map(|l| l.split_once("SIM-VIOLATION ").map(|(_, r)| r))
        .map(|l| sim::checkers::Violation {
            checker: "run",
            detail: l.to_string(),
        })
        .collect();
    let probes = text
        .lines()
        .filter_map(|l| l.split_once("SIM-PROBE ").map(|(_, r)| r))
        .filter_map(|r| r.split_once(' '))
        .filter_map(|(n, name)| Some((name.to_string(), n.parse().ok()?)))
        .collect();
    let report = Report {
        digest: field("digest"),
        violations,
        outcomes: (
            field("acked") as usize,
            field("failed") as usize,
            field("unknown") as usize,
        ),
        faults: field("faults") as usize,
        sim_secs: field("sim_ms") as f64 / 1000.0,
    };
    Ok((report, probes))
}

/// Worker mode: run one seed here and print the report for the coordinator.
fn work(seed: u64, params: Params) {
    if std::env::var_os("SIM_RAFT_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .init();
    }
    let limit = Duration::from_secs(params.chaos_secs + 600);
    let mut rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.set_time_limit(limit);
    let report = rt.block_on(scenario::run(params));
    for v in &report.violations {
        println!("SIM-VIOLATION {v}");
    }
    for (name, n) in sim::probes::snapshot() {
        println!("SIM-PROBE {n} {name}");
    }
    println!(
        "SIM-REPORT seed={seed} digest={} sim_ms={} faults={} acked={} failed={} unknown={}",
        report.digest,
        (report.sim_secs * 1000.0) as u64,
        report.faults,
        report.outcomes.0,
        report.outcomes.1,
        report.outcomes.2
    );
}

fn repro(seed: u64, params: &Params) -> String {
    format!(
        "repro: SIM_SEED={seed} SIM_SEEDS=1 SIM_SECS={} SIM_PEERS={} cargo test -p sim --test simulate simulations",
        params.chaos_secs, params.peers
    )
}

/// Seeds that once failed on the product: a default run (no `SIM_SEED`)
/// runs them too, after its range.
const REGRESSION_SEEDS: &[u64] = &[
    // 7 peers; the leader's peer cut off for 30 s came back with a term
    // inflated by its lonely elections and refused the leader elected
    // meanwhile (which joined while it was away) as a non-member
    // (cluster-net `check_sender`): it never caught up.
    482,
];

#[test]
fn chaos() {
    let first = env_u64(&["SIM_SEED", "MADSIM_TEST_SEED"], 1);
    let count = env_u64(&["SIM_SEEDS", "MADSIM_TEST_NUM"], 100);
    let params = Params {
        peers: env_u64(&["SIM_PEERS"], 0) as usize,
        chaos_secs: env_u64(&["SIM_SECS"], 60),
        ..Params::default()
    };
    if let Ok(seed) = std::env::var("SIM_WORKER_SEED") {
        work(seed.parse().expect("SIM_WORKER_SEED is a number"), params);
        return;
    }
    let jobs = env_u64(
        &["SIM_JOBS"],
        std::thread::available_parallelism().map_or(2, |n| n.get() as u64),
    )
    .max(1);
    println!(
        "chaos: seeds {first}..{} ({count}), {} peers, {} s of faults each, {jobs} in parallel",
        first + count,
        params.peers,
        params.chaos_secs
    );

    // Reproducibility: a seed run twice gives the same digest (every event,
    // the final pinsets and every IPFS pinset).
    let mut early_failures = Vec::new();
    let twice = env_u64(&["SIM_DETERMINISM"], 3).min(count);
    for seed in first..first + twice {
        match (run_seed(seed, &params), run_seed(seed, &params)) {
            (Ok((a, _)), Ok((b, _))) => {
                if a.digest != b.digest {
                    early_failures.push(format!(
                        "seed {seed} FAILED: not deterministic ({:016x} then {:016x})\n  {}",
                        a.digest,
                        b.digest,
                        repro(seed, &params)
                    ));
                } else {
                    println!(
                        "determinism: seed {seed} twice -> digest {:016x} both times",
                        a.digest
                    );
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                early_failures.push(format!(
                    "seed {seed} PANICKED: {e}\n  {}",
                    repro(seed, &params)
                ));
            }
        }
    }

    let mut seeds: Vec<u64> = (first..first + count).collect();
    let default_range =
        std::env::var_os("SIM_SEED").is_none() && std::env::var_os("MADSIM_TEST_SEED").is_none();
    if default_range {
        for seed in REGRESSION_SEEDS {
            if !seeds.contains(seed) {
                seeds.push(*seed);
            }
        }
    }
    let count = seeds.len() as u64;
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let failures = Mutex::new(early_failures);
    let totals = Mutex::new((0f64, 0usize, (0usize, 0usize, 0usize)));
    let probe_totals: Mutex<Probes> = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed) as usize) else {
                    return;
                };
                let result = run_seed(seed, &params);
                let mut failures = failures.lock().unwrap_or_else(|e| e.into_inner());
                match result {
                    Ok((report, probes)) => {
                        let mut p = probe_totals.lock().unwrap_or_else(|e| e.into_inner());
                        for (name, n) in probes {
                            *p.entry(name).or_default() += n;
                        }
                        let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
                        t.0 += report.sim_secs;
                        t.1 += report.faults;
                        t.2 .0 += report.outcomes.0;
                        t.2 .1 += report.outcomes.1;
                        t.2 .2 += report.outcomes.2;
                        if !report.violations.is_empty() {
                            let lines: Vec<String> = report
                                .violations
                                .iter()
                                .map(|v| format!("    {v}"))
                                .collect();
                            failures.push(format!(
                                "seed {seed} FAILED:\n{}\n  {}",
                                lines.join("\n"),
                                repro(seed, &params)
                            ));
                        }
                    }
                    Err(panic) => failures.push(format!(
                        "seed {seed} PANICKED: {panic}\n  {}",
                        repro(seed, &params)
                    )),
                }
            });
        }
    });
    let wall = started.elapsed().as_secs_f64();
    let (sim_secs, faults, (acked, failed, unknown)) =
        *totals.lock().unwrap_or_else(|e| e.into_inner());
    println!(
        "chaos: {count} seeds in {wall:.1} s wall ({:.1} seeds/min), {sim_secs:.0} simulated s ({:.1} sim s per wall s), \
         {faults} faults, requests acked {acked} failed {failed} unknown {unknown}",
        count as f64 * 60.0 / wall,
        sim_secs / wall
    );
    let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    let probes = probe_totals.into_inner().unwrap_or_else(|e| e.into_inner());
    println!("coverage probes over {count} seeds:");
    for (name, n) in &probes {
        println!("  {n:>9}  {name}");
    }
    let never: Vec<&str> = sim::probes::REQUIRED
        .iter()
        .copied()
        .filter(|name| probes.get(*name).copied().unwrap_or(0) == 0)
        .collect();
    for name in &never {
        println!("  {:>9}  {name}  <- never fired", 0);
    }
    let require = std::env::var("SIM_REQUIRE_PROBES")
        .map(|v| v == "1")
        .unwrap_or(count >= 100);
    if require && !never.is_empty() {
        failures.push(format!(
            "coverage: {} probe(s) never fired: {never:?}; the simulator no longer reaches those paths",
            never.len()
        ));
    }
    for f in &failures {
        println!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {count} seeds failed (see above)",
        failures.len()
    );
}

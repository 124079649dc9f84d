//! `cargo test -p sim` runs the simulations: madsim needs `--cfg madsim` in
//! every crate of the build, which a plain `cargo test` cannot set per package,
//! so this test re-runs cargo for `tests/chaos.rs` with that flag, in a target
//! directory of its own (so neither build invalidates the other).
#![cfg(not(madsim))]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// The nested builds share a target directory: run them one at a time.
static NESTED: Mutex<()> = Mutex::new(());

const PASSED_THROUGH: [&str; 9] = [
    "SIM_SEED",
    "SIM_SEEDS",
    "SIM_SECS",
    "SIM_PEERS",
    "SIM_JOBS",
    "SIM_DETERMINISM",
    "SIM_REQUIRE_PROBES",
    "MADSIM_TEST_SEED",
    "MADSIM_TEST_NUM",
];

fn madsim_target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp: keep the simulated build beside it.
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("..")
        .join("madsim")
}

/// Runs `cargo test -p sim --test chaos` under madsim; returns (success, output).
fn run_nested(features: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let _one_at_a_time = NESTED.lock().unwrap_or_else(|e| e.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["test", "-p", "sim", "--test", "chaos", "--profile", "sim"]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    cmd.args(["--", "--nocapture"])
        .env("RUSTFLAGS", "--cfg madsim")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", madsim_target_dir())
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for name in PASSED_THROUGH {
        if let Ok(v) = std::env::var(name) {
            cmd.env(name, v);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run nested cargo test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn simulations() {
    // `SIM_FEATURES` replays a failing seed of a broken variant.
    let features = std::env::var("SIM_FEATURES").unwrap_or_default();
    let features: Vec<&str> = features.split(',').filter(|f| !f.is_empty()).collect();
    let (ok, output) = run_nested(&features, &[]);
    println!("{output}");
    assert!(
        ok,
        "simulations failed; each failing seed above prints its repro command"
    );
}

/// The checkers bite: with a disk that acknowledges writes before they are
/// durable, a power loss of a majority loses acknowledged pins, and the run
/// fails with a seed and its repro command.
#[test]
fn checkers_catch_acknowledging_before_durable() {
    let (ok, output) = run_nested(
        &["bug-ack-before-durable"],
        &[("SIM_SEED", "1"), ("SIM_SEEDS", "30"), ("SIM_SECS", "60")],
    );
    let caught = output
        .lines()
        .filter(|l| l.contains(" FAILED:") || l.contains(" PANICKED:"))
        .count();
    println!("{output}");
    assert!(
        !ok,
        "the broken build passed: the checkers did not notice lost writes"
    );
    assert!(caught > 0, "no failing seed reported");
    assert!(
        output.contains("repro: SIM_SEED="),
        "failures must print their repro command"
    );
}

/// The checkers bite: when the leader never re-allocates the pins of a removed
/// peer, the allocation checker fails the runs that removed one.
#[test]
fn checkers_catch_skipped_reallocation() {
    let (ok, output) = run_nested(
        &["bug-skip-reallocation"],
        &[("SIM_SEED", "1"), ("SIM_SEEDS", "30"), ("SIM_SECS", "60")],
    );
    println!("{output}");
    assert!(
        !ok,
        "the broken build passed: the checkers did not notice under-replicated pins"
    );
    assert!(
        output.contains("allocations"),
        "the allocation checker should be the one failing"
    );
    assert!(
        output.contains("repro: SIM_SEED="),
        "failures must print their repro command"
    );
}

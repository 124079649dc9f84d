//! `cargo test -p sim` runs the simulations: madsim needs `--cfg madsim` in
//! every crate of the build, which a plain `cargo test` cannot set per package,
//! so this test re-runs cargo for `tests/chaos.rs` with that flag, in a target
//! directory of its own (so neither build invalidates the other).
#![cfg(not(madsim))]

use std::path::PathBuf;
use std::process::Command;

const PASSED_THROUGH: [&str; 11] = [
    "SIM_TRACE",
    "SIM_RAFT_LOG",
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
fn run_nested() -> (bool, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["test", "-p", "sim", "--test", "chaos", "--profile", "sim"]);
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
    let (ok, output) = run_nested();
    println!("{output}");
    assert!(
        ok,
        "simulations failed; each failing seed above prints its repro command"
    );
}

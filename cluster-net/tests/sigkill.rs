//! A real crash (issue 10, item 16): a child process writes pins through a
//! one-peer cluster on redb and prints each one the cluster acknowledged; the
//! parent kills it with SIGKILL at a random moment (almost always in the
//! middle of a commit: the child writes continuously, with snapshots and
//! log purges every few hundred writes), several times over the same
//! database. Then it reopens the database and every acknowledged pin must be
//! there.
//!
//! The child is this test binary again, selected by an environment variable.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cluster_core::PeerId;
use cluster_net::inproc::InProcRouter;
use cluster_net::store::RedbStore;
use cluster_net::{Boot, ClusterRaft, RaftConfig};
use common::*;

/// Set in the child: the database directory.
const CHILD_DIR: &str = "CLUSTER_NET_SIGKILL_CHILD_DIR";
/// Set in the child: the first pin number it writes.
const CHILD_FIRST: &str = "CLUSTER_NET_SIGKILL_CHILD_FIRST";
/// Concurrent writers in the child (so batches and fsyncs overlap).
const WRITERS: u64 = 8;
/// Kills per run.
const ROUNDS: u64 = 5;

fn config() -> RaftConfig {
    RaftConfig {
        // Snapshots and purges often, so kills land in them too.
        snapshot_every_logs: 40,
        logs_to_keep: 10,
        snapshot_every_writes: 300,
        ..RaftConfig::fast_for_tests()
    }
}

async fn start(dir: &Path, boot: Boot) -> ClusterRaft {
    let router = InProcRouter::new();
    let peer = PeerId::synthetic(1);
    let store = open_retrying(dir, RedbStore::open_or_create).await;
    let raft = ClusterRaft::start(
        &peer,
        "inproc/1",
        config(),
        boot,
        store,
        router.transport(peer.as_str()),
    )
    .await
    .expect("start");
    router.register(peer.as_str(), raft.rpc_handler());
    raft
}

/// The child: writes until killed. Does nothing in a normal test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let first: u64 = std::env::var(CHILD_FIRST)
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("first pin number");
    let raft = start(
        Path::new(&dir),
        Boot::CreateIfEmpty {
            incarnation: next_incarnation(),
        },
    )
    .await;
    if raft.cluster_id().is_none() {
        raft.initialize(CLUSTER_ID).await.expect("initialize");
    }
    raft.wait_for_leader(WAIT).await.expect("leader");
    println!("ready");
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let raft = raft.clone();
        writers.push(tokio::spawn(async move {
            for k in 0.. {
                let n = first + k * WRITERS + w;
                if let Ok(Ok(_)) = raft.write(pin_entry(n)).await {
                    // Line-buffered stdout: the line is out before the next write.
                    println!("acked {n}");
                }
            }
        }));
    }
    for w in writers {
        let _ = w.await;
    }
}

/// Runs the child until `kill_after` after it is ready; returns the pins it
/// acknowledged.
fn run_child_and_kill(dir: &Path, first: u64, kill_after: Duration) -> BTreeSet<u64> {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "sigkill_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_FIRST, first.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acked = BTreeSet::new();
    let mut killed_at: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(Duration::from_millis(5)) {
            // libtest's "test name ... " has no newline: "ready" ends it.
            Ok(line) if line.ends_with("ready") => {
                killed_at = Some(Instant::now() + kill_after);
            }
            Ok(line) => {
                if let Some(n) = line.strip_prefix("acked ") {
                    acked.insert(n.parse::<u64>().expect("pin number"));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("child exited before it was killed")
            }
        }
        assert!(Instant::now() < deadline, "child never got ready");
        if killed_at.is_some_and(|at| Instant::now() >= at) {
            break;
        }
    }
    child.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
    child.wait().expect("reap child");
    // What the child printed before it died still counts as acknowledged.
    reader.join().expect("reader");
    acked.extend(
        rx.try_iter()
            .filter_map(|l| l.strip_prefix("acked ")?.parse::<u64>().ok()),
    );
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_commit_loses_no_acknowledged_write() {
    if std::env::var(CHILD_DIR).is_ok() {
        return; // Running as the child of another test.
    }
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("peer");
    let mut acked = BTreeSet::new();
    for round in 0..ROUNDS {
        // Different moments in each round (no clock-based randomness, so a
        // failure reproduces on the same schedule).
        let kill_after = Duration::from_millis(300 + 173 * round);
        let dir = dir.clone();
        let got = tokio::task::spawn_blocking(move || {
            run_child_and_kill(&dir, round * 1_000_000, kill_after)
        })
        .await
        .expect("round");
        assert!(!got.is_empty(), "round {round}: nothing acknowledged");
        acked.extend(got);
    }
    // Reopen as the member it is: every acknowledged pin is there.
    let raft = start(&dir, Boot::Existing).await;
    raft.wait_for_leader(WAIT).await.expect("leader");
    let deadline = Instant::now() + WAIT;
    let missing = loop {
        let missing: Vec<u64> = raft.with_pinset(|p| {
            acked
                .iter()
                .copied()
                .filter(|n| p.get(&cid(*n)).is_none())
                .collect()
        });
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged pins lost after SIGKILL, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
    println!(
        "{} acknowledged pins survived {ROUNDS} SIGKILLs",
        acked.len()
    );
    raft.shutdown().await;
}

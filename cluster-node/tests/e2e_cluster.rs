//! End to end: several real `ipfscluster-server` processes, each driving its
//! own real IPFS daemon (js-ipfs from `e2e/ipfs`; install it once with
//! `scripts/ipfs-install.sh`: a missing daemon fails these tests), on
//! 127.0.0.1 only, driven through the typed REST client.
//!
//! Each test starts its own cluster; a file-wide lock runs them one at a
//! time (each cluster is a handful of Node and Rust processes, too many for
//! a small machine to run side by side). IPFS API ports: `17000 + 100 * t`
//! for test `t`, daemon `i` on `+ 10 * i` (see `ipfs-up.sh`); peers use
//! ephemeral ports.
//!
//!     cargo test -p cluster-node --test e2e_cluster

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_core::{PinOptions, TrackerStatus};
use cluster_node::api::client::{Client, ClientError};
use cluster_node::api::types::ApiPin;
use common::cluster::*;
use serde_json::Value;

/// Distinct small contents for one test (the tag keeps CIDs apart across
/// tests, whose daemons never share blocks anyway).
fn contents(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("ipfs-cluster-rs e2e {tag} #{i}\n").into_bytes())
        .collect()
}

fn replicated(min: i32, max: i32) -> PinOptions {
    PinOptions {
        replication_factor_min: min,
        replication_factor_max: max,
        ..PinOptions::default()
    }
}

/// Adds the same contents to every daemon (so pins never wait for
/// bitswap): their CIDs.
fn add_everywhere(cluster: &Cluster, items: &[Vec<u8>]) -> Vec<String> {
    // In parallel: adding a thousand files takes a js-ipfs daemon seconds.
    let all: Vec<Vec<String>> = std::thread::scope(|scope| {
        let adds: Vec<_> = cluster
            .ipfs
            .iter()
            .map(|ipfs| scope.spawn(move || ipfs.add_all(items)))
            .collect();
        adds.into_iter()
            .map(|a| a.join().expect("add thread"))
            .collect()
    });
    assert!(all.iter().all(|c| *c == all[0]), "daemons disagree on CIDs");
    all[0].clone()
}

// ---------------------------------------------------------------- tests

#[test]
fn a_pin_everywhere_reaches_every_daemon_and_its_removal_too() {
    let _serial = serial();
    let cluster = Cluster::start(17000, 3, 3);
    let cids = add_everywhere(&cluster, &contents("everywhere", 3));
    for (n, c) in cids.iter().enumerate() {
        let pin = cluster.pin(n % 3, c, &replicated(-1, -1));
        assert!(
            pin.allocations.is_empty(),
            "everywhere pins have no allocations"
        );
    }
    for i in 0..3 {
        cluster.wait_daemon(i, &cids, true);
    }
    for (n, c) in cids.iter().enumerate() {
        let status = cluster.status(0, c);
        assert_eq!(status.len(), 3, "{status:?}");
        assert!(
            status.values().all(|s| *s == TrackerStatus::Pinned),
            "{c}: {status:?}"
        );
        cluster.unpin((n + 1) % 3, c);
    }
    for i in 0..3 {
        cluster.wait_daemon(i, &cids, false);
    }
    assert!(cluster.allocations(2).is_empty());
}

#[test]
fn replication_two_lands_on_exactly_the_two_allocated_daemons() {
    let _serial = serial();
    let cluster = Cluster::start(17100, 3, 3);
    let cids = add_everywhere(&cluster, &contents("two", 6));
    for (n, c) in cids.iter().enumerate() {
        let pin = cluster.pin(n % 3, c, &replicated(2, 2));
        assert_eq!(pin.allocations.len(), 2, "{pin:?}");
    }
    // Peer 1 applies the pins made through the others a moment later.
    let state = wait_for("peer 1 to hold every pin", || {
        let state = cluster.allocations(1);
        cids.iter().all(|c| state.contains_key(c)).then_some(state)
    });
    for c in &cids {
        let allocs = &state[c];
        assert_eq!(allocs.len(), 2, "{c}: {allocs:?}");
        for i in cluster.holders(allocs) {
            cluster.wait_daemon(i, std::slice::from_ref(c), true);
        }
    }
    // Give the trackers time to (wrongly) pin elsewhere, then check that
    // exactly the allocated daemons hold each CID.
    std::thread::sleep(Duration::from_secs(4));
    for c in &cids {
        let holding: BTreeSet<String> = (0..3)
            .filter(|&i| cluster.ipfs[i].has_pin(c))
            .map(|i| cluster.peers[i].id.clone())
            .collect();
        assert_eq!(
            &holding, &state[c],
            "{c}: daemons holding it vs allocations"
        );
        let status = cluster.status(2, c);
        for (peer, s) in &status {
            let wanted = if state[c].contains(peer) {
                TrackerStatus::Pinned
            } else {
                TrackerStatus::Remote
            };
            assert_eq!(*s, wanted, "{c} on {peer}: {status:?}");
        }
    }
}

#[test]
fn content_added_to_one_daemon_is_pinned_on_the_others_over_bitswap() {
    let _serial = serial();
    let cluster = Cluster::start(17200, 3, 3);
    // The daemons start unconnected; the cluster connects them.
    wait_for("the peers to connect their IPFS daemons", || {
        (0..3)
            .all(|i| cluster.ipfs[i].swarm_peers() >= 1)
            .then_some(())
    });
    // Bigger than one block, so the DAG has links to follow.
    let mut big = Vec::new();
    for i in 0..40_000u32 {
        big.extend_from_slice(format!("block data line {i}\n").as_bytes());
    }
    let cid_text = cluster.ipfs[0].add(&big);
    cluster.pin(1, &cid_text, &replicated(-1, -1));
    for i in 0..3 {
        cluster.wait_daemon(i, std::slice::from_ref(&cid_text), true);
    }
    // The content itself moved: daemon 2 serves it back whole.
    let got = cluster.ipfs[2].call(&format!("cat?arg={cid_text}"), &[]);
    assert_eq!(got.as_bytes(), &big[..]);
}

/// A pin acknowledged by the API, with the options it was asked with.
type Acked = Arc<Mutex<Vec<String>>>;

/// Client task `t` of `tasks`: pins its share of `cids` through peer
/// `t % 3`, then, when that peer does not answer, through the next one
/// (as a client with several addresses would). Only pins the API
/// acknowledged are recorded; refusals are counted in `refused`.
async fn pin_share(
    clients: Vec<Client>,
    cids: Arc<Vec<String>>,
    t: usize,
    tasks: usize,
    acked: Acked,
    refused: Arc<std::sync::atomic::AtomicUsize>,
) {
    for n in (t..cids.len()).step_by(tasks) {
        let options = if n % 2 == 0 {
            replicated(-1, -1)
        } else {
            replicated(2, 2)
        };
        let c = cid(&cids[n]);
        let mut via = t % clients.len();
        for _attempt in 0..12 {
            match clients[via].pin(&c, &options).await {
                Ok(_) => {
                    acked
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(cids[n].clone());
                    break;
                }
                // Unknown outcome: not acknowledged, so not checked; try
                // another peer as a real client would.
                Err(ClientError::Transport(_) | ClientError::Timeout(_)) => {
                    via = (via + 1) % clients.len();
                }
                // No leader for a moment, or too few peers with fresh
                // metrics (a busy IPFS daemon answers repo/stat late):
                // refused, so not acknowledged; retry a little later.
                Err(e) if e.code() == 503 || e.to_string().contains("not enough peers") => {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("pin {} via peer {via}: {e}", cids[n]),
            }
        }
    }
}

#[test]
fn acknowledged_pins_survive_a_peer_killed_during_a_thousand_concurrent_pins() {
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = Cluster::start(17300, 3, 3);
    let cids = Arc::new(add_everywhere(&cluster, &contents("crash", 1000)));
    let acked: Acked = Arc::default();
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<Client> = (0..3).map(|i| cluster.client(i)).collect();
    const TASKS: usize = 16;
    let handles: Vec<_> = (0..TASKS)
        .map(|t| {
            let task = pin_share(
                clients.clone(),
                Arc::clone(&cids),
                t,
                TASKS,
                Arc::clone(&acked),
                Arc::clone(&refused),
            );
            cluster.rt.spawn(task)
        })
        .collect();
    // Kill the first peer (the one that started the cluster, likely the
    // leader) once a quarter of the pins went through.
    wait_for("a quarter of the pins acknowledged", || {
        (acked.lock().unwrap_or_else(|e| e.into_inner()).len() >= 250).then_some(())
    });
    cluster.peers[0].process.take().expect("running").crash();
    eprintln!("e2e: peer 0 killed after {:?}", started.elapsed());
    for h in handles {
        cluster.rt.block_on(h).expect("client task");
    }
    let acked: BTreeSet<String> = acked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    eprintln!(
        "e2e: {} pins acknowledged ({} refusals retried) after {:?}",
        acked.len(),
        refused.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed()
    );
    assert!(acked.len() >= 500, "only {} pins acknowledged", acked.len());

    cluster.peers[0].start("peer-0 again".into());
    cluster.wait_formed();
    // Every peer's state holds every acknowledged pin, and they agree.
    let states: Vec<BTreeMap<String, BTreeSet<String>>> = (0..3)
        .map(|i| {
            wait_for(&format!("peer {i} to hold every acknowledged pin"), || {
                let state = cluster.allocations(i);
                acked.iter().all(|c| state.contains_key(c)).then_some(state)
            })
        })
        .collect();
    let converged = wait_for("the peers' allocations to agree", || {
        let states: Vec<_> = (0..3).map(|i| cluster.allocations(i)).collect();
        states
            .iter()
            .all(|s| *s == states[0])
            .then(|| states[0].clone())
    });
    drop(states);
    // Each daemon pins what is allocated to its peer.
    for i in 0..3 {
        let mine: Vec<String> = acked
            .iter()
            .filter(|c| cluster.holders(&converged[*c]).contains(&i))
            .cloned()
            .collect();
        cluster.wait_daemon(i, &mine, true);
    }
    eprintln!("e2e: converged after {:?}", started.elapsed());
}

#[test]
fn a_stopped_ipfs_daemon_shows_in_status_and_recover_heals_it() {
    let _serial = serial();
    let cluster = Cluster::start(17400, 3, 3);
    let cids = add_everywhere(&cluster, &contents("daemon-down", 4));
    for c in &cids[..2] {
        cluster.pin(0, c, &replicated(-1, -1));
    }
    cluster.wait_daemon(2, &cids[..2], true);
    let down = &cluster.peers[2].id;
    cluster.ipfs[2].down();
    // Pinned while the daemon is away: peer 2 cannot pin these.
    for c in &cids[2..] {
        cluster.pin(1, c, &replicated(-1, -1));
    }
    // Pinned while the daemon was away: `pin_error` once the attempts fail.
    // (CIDs pinned before it stopped are the subject of the next test.)
    for c in &cids[2..] {
        wait_for(
            &format!("{c} to show an error on the peer without IPFS"),
            || {
                let s = *cluster.status(0, c).get(down)?;
                (s.matches(TrackerStatus::Error) || s == TrackerStatus::UnexpectedlyUnpinned)
                    .then_some(())
            },
        );
    }
    cluster.ipfs[2].up();
    let recovered = cluster
        .rt
        .block_on(cluster.client(2).recover_all(true))
        .expect("recover");
    eprintln!("e2e: recover answered {} statuses", recovered.len());
    for c in &cids {
        wait_for(&format!("{c} pinned everywhere after recover"), || {
            let status = cluster.status(1, c);
            (status.len() == 3 && status.values().all(|s| *s == TrackerStatus::Pinned))
                .then_some(())
        });
    }
    cluster.wait_daemon(2, &cids, true);
}

/// Upstream asks IPFS when it reports a CID allocated here (a failing
/// daemon is `cluster_error`); this peer answers from its tracker's memory.
#[test]
// Failed before the tracker reported cluster_error while its last IPFS
// listing had failed (the CIDs stayed `pinned` for the whole wait).
fn a_stopped_ipfs_daemon_turns_its_pinned_cids_into_errors_in_status() {
    let _serial = serial();
    let cluster = Cluster::start(17900, 3, 3);
    let cids = add_everywhere(&cluster, &contents("daemon-gone", 2));
    for c in &cids {
        cluster.pin(0, c, &replicated(-1, -1));
    }
    cluster.wait_daemon(2, &cids, true);
    let down = &cluster.peers[2].id;
    cluster.ipfs[2].down();
    for c in &cids {
        wait_for(
            &format!("{c} to stop showing `pinned` on the peer without IPFS"),
            || {
                let s = *cluster.status(0, c).get(down)?;
                (s.matches(TrackerStatus::Error) || s == TrackerStatus::UnexpectedlyUnpinned)
                    .then_some(())
            },
        );
    }
    cluster.ipfs[2].up();
    cluster
        .rt
        .block_on(cluster.client(2).recover_all(true))
        .expect("recover");
    for c in &cids {
        wait_for(&format!("{c} pinned on peer 2 after recover"), || {
            (cluster.status(1, c).get(down) == Some(&TrackerStatus::Pinned)).then_some(())
        });
    }
}

#[test]
fn a_removed_peers_pins_are_reallocated_and_pinned_elsewhere() {
    let _serial = serial();
    let mut cluster = Cluster::start(17500, 3, 3);
    let cids = add_everywhere(&cluster, &contents("removed", 6));
    for c in &cids {
        cluster.pin(0, c, &replicated(2, 2));
    }
    let before = cluster.allocations(0);
    // The allocator may leave one peer without any pin (equal free space
    // breaks ties the same way every time), so remove a peer that holds
    // some. With two copies on three peers, peer 1 or peer 2 always does.
    let holds = |i: usize| before.values().any(|a| a.contains(&cluster.peers[i].id));
    let (removed, kept) = if holds(2) { (2, 1) } else { (1, 2) };
    assert!(
        holds(removed),
        "no pin allocated to peer 1 or 2: {before:?}"
    );
    let gone = cluster.peers[removed].id.clone();
    cluster.sigterm(removed);
    cluster
        .rt
        .block_on(
            cluster
                .client(0)
                .remove_peer(&cluster.peers[removed].peer_id()),
        )
        .expect("remove a peer holding pins");
    wait_for("the removed peer to leave the member list", || {
        let peers = cluster.rt.block_on(cluster.client(kept).peers()).ok()?;
        (peers.len() == 2 && peers.iter().all(|p| p.id != gone)).then_some(())
    });
    let both: BTreeSet<String> =
        [cluster.peers[0].id.clone(), cluster.peers[kept].id.clone()].into();
    wait_for("every pin re-allocated to the two peers left", || {
        let state = cluster.allocations(kept);
        (state.len() == cids.len() && state.values().all(|a| *a == both)).then_some(())
    });
    cluster.wait_daemon(0, &cids, true);
    cluster.wait_daemon(kept, &cids, true);
}

/// Re-pinning (on by default): a peer that stops without being removed
/// stays a member, its metrics expire, and each pin it held is given to
/// the peer that had none; the stopped peer is dropped from the allocation
/// only once two running peers report the pin pinned. When it comes back
/// its daemon lets go of the pins it no longer holds.
#[test]
fn a_stopped_peers_pins_are_re_pinned_elsewhere_then_it_lets_them_go() {
    let _serial = serial();
    let mut cluster = Cluster::start(18100, 3, 3);
    let cids = add_everywhere(&cluster, &contents("repin", 6));
    for c in &cids {
        cluster.pin(0, c, &replicated(2, 2));
    }
    let before = cluster.allocations(0);
    let holds = |i: usize| before.values().any(|a| a.contains(&cluster.peers[i].id));
    let (stopped, kept) = if holds(2) { (2, 1) } else { (1, 2) };
    assert!(
        holds(stopped),
        "no pin allocated to peer 1 or 2: {before:?}"
    );
    let gone = cluster.peers[stopped].id.clone();
    let held: Vec<String> = before
        .iter()
        .filter(|(_, a)| a.contains(&gone))
        .map(|(c, _)| c.clone())
        .collect();
    cluster.sigterm(stopped);
    let running: BTreeSet<String> =
        [cluster.peers[0].id.clone(), cluster.peers[kept].id.clone()].into();
    wait_for(
        "every pin allocated to exactly the two running peers",
        || {
            let state = cluster.allocations(kept);
            (state.len() == cids.len() && state.values().all(|a| *a == running)).then_some(())
        },
    );
    cluster.wait_daemon(0, &cids, true);
    cluster.wait_daemon(kept, &cids, true);
    let members = cluster
        .rt
        .block_on(cluster.client(0).peers())
        .expect("peers");
    assert!(
        members.iter().any(|p| p.id == gone),
        "the stopped peer is still a member, only its pins moved"
    );
    cluster.peers[stopped].start(format!("peer-{stopped}-back"));
    cluster.wait_daemon(stopped, &held, false);
    assert_eq!(cluster.allocations(stopped).len(), cids.len());
}

#[test]
fn a_fourth_peer_joins_and_receives_the_whole_pinset() {
    let _serial = serial();
    let mut cluster = Cluster::start(17600, 4, 3);
    let cids = add_everywhere(&cluster, &contents("joiner", 6));
    for (n, c) in cids.iter().enumerate() {
        let options = if n % 2 == 0 {
            replicated(-1, -1)
        } else {
            replicated(2, 2)
        };
        cluster.pin(n % 3, c, &options);
    }
    let before = cluster.allocations(0);
    let joined = cluster.add_peer();
    wait_for("the new peer's state to match the cluster's", || {
        (cluster.allocations(joined) == before).then_some(())
    });
    // The pins meant for every peer reach the newcomer's daemon.
    let everywhere: Vec<String> = cids.iter().step_by(2).cloned().collect();
    cluster.wait_daemon(joined, &everywhere, true);
}

#[test]
fn a_users_own_pin_survives_the_cluster_pinning_and_unpinning_it() {
    let _serial = serial();
    let cluster = Cluster::start(17700, 3, 3);
    let cids = add_everywhere(&cluster, &contents("users-own", 1));
    let c = &cids[0];
    cluster.ipfs[1].pin_directly(c);
    cluster.pin(0, c, &replicated(-1, -1));
    for i in 0..3 {
        cluster.wait_daemon(i, std::slice::from_ref(c), true);
    }
    cluster.unpin(2, c);
    cluster.wait_daemon(0, std::slice::from_ref(c), false);
    cluster.wait_daemon(2, std::slice::from_ref(c), false);
    // Past a reconciliation round, the user's pin is still there.
    std::thread::sleep(Duration::from_secs(5));
    assert!(cluster.ipfs[1].has_pin(c), "the user's own pin was removed");
}

/// Upstream snapshots on shutdown, so an export of a cleanly stopped peer
/// holds every pin it had applied.
#[test]
// Failed before cluster-net wrote the pending commit point at a clean
// shutdown (the follower's export missed its last pin, 2 runs of 2).
fn an_exported_state_imported_into_a_fresh_peer_gives_the_same_pinset() {
    let _serial = serial();
    let mut cluster = Cluster::start(17800, 4, 3);
    let cids = add_everywhere(&cluster, &contents("export", 5));
    for (n, c) in cids.iter().enumerate() {
        let mut options = if n < 3 {
            replicated(-1, -1)
        } else {
            replicated(1, 2)
        };
        options.name = format!("export-{n}");
        options.metadata.insert("n".into(), n.to_string());
        cluster.pin(n % 3, c, &options);
    }
    /// What a pin means to its user (allocations are the cluster's own
    /// business and may change in the new cluster).
    fn pinset(pins: Vec<ApiPin>) -> BTreeMap<String, String> {
        pins.into_iter()
            .map(|p| {
                let meaning = format!(
                    "{} {} {} {:?} {:?}",
                    p.name, p.replication_factor_min, p.replication_factor_max, p.mode, p.metadata
                );
                (p.cid.to_string(), meaning)
            })
            .collect()
    }
    let before = wait_for("peer 2 to hold every pin", || {
        let pins = cluster
            .rt
            .block_on(cluster.client(2).allocations(&[]))
            .ok()?;
        (pins.len() == cids.len()).then(|| pinset(pins))
    });
    cluster.sigterm(2);
    let export = ok(&cluster.peers[2].dir, &["state", "export"]).stdout;
    let exported: BTreeSet<String> = String::from_utf8_lossy(&export)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["cid"].as_str().map(String::from))
        .collect();
    let wanted: BTreeSet<String> = cids.iter().cloned().collect();
    assert_eq!(
        exported,
        wanted,
        "the export of the stopped peer misses pins its API listed:\n{}",
        String::from_utf8_lossy(&export)
    );
    let file = cluster.root.path().join("export.ndjson");
    std::fs::write(&file, &export).expect("write export");

    // A fresh peer on the spare daemon, a cluster of its own.
    let dir = cluster.root.path().join("fresh");
    let mut fresh = Peer::init(&dir, &cluster.ipfs[3], &[]);
    ok(&dir, &["state", "import", file.to_str().expect("utf-8")]);
    fresh.start("fresh".into());
    cluster.peers.push(fresh);
    let after = cluster
        .rt
        .block_on(cluster.client(3).allocations(&[]))
        .expect("allocations of the fresh peer");
    assert_eq!(pinset(after), before);
    // And it acts on them: its daemon pins the pins meant for everyone.
    cluster.wait_daemon(3, &cids[..3], true);
}

/// `METHOD http://<addr><path>` with a JSON body, through curl: the HTTP
/// status and the body.
fn http_json(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let mut command = Command::new("curl");
    command
        .args([
            "-sS",
            "-X",
            method,
            "--max-time",
            "60",
            "-w",
            "\n%{http_code}",
        ])
        .args(["-H", "content-type: application/json"]);
    if let Some(body) = body {
        command.args(["--data-binary", &body.to_string()]);
    }
    let out = command
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl {method} {path}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), body.to_string())
}

#[test]
fn the_pinning_service_api_pins_into_every_daemon_and_removes_it() {
    let _serial = serial();
    let cluster = Cluster::start(18000, 2, 2);
    let cids = add_everywhere(&cluster, &contents("pinsvc", 1));
    let c = &cids[0];
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(cluster.peers[1].dir.join("server.json")).expect("server.json"),
    )
    .expect("json");
    let api = config["pinning_service"]["listen_address"]
        .as_str()
        .expect("pinning service address")
        .to_string();

    let pin = serde_json::json!({"cid": c, "name": "e2e", "meta": {"owner": "alice"}});
    let (code, body) = http_json(&api, "POST", "/pins", Some(&pin));
    assert_eq!(code, 202, "{body}");
    let added: Value = serde_json::from_str(&body).expect("PinStatus");
    assert_eq!(added["requestid"], c.as_str());
    // Delegates: each daemon's own addresses, dialable.
    let delegates: Vec<String> = added["delegates"]
        .as_array()
        .expect("delegates")
        .iter()
        .map(|d| d.as_str().expect("multiaddr").to_string())
        .collect();
    for ipfs in &cluster.ipfs {
        let id: Value = serde_json::from_str(&ipfs.call("id", &[])).expect("id");
        let id = id["ID"].as_str().expect("ipfs id");
        assert!(
            delegates.iter().any(|d| d.ends_with(&format!("/p2p/{id}"))),
            "{id} not among {delegates:?}"
        );
    }
    for i in 0..2 {
        cluster.wait_daemon(i, std::slice::from_ref(c), true);
    }
    let status = wait_for("the request to show pinned", || {
        let (code, body) = http_json(&api, "GET", &format!("/pins/{c}"), None);
        let got: Value = serde_json::from_str(&body).ok()?;
        (code == 200 && got["status"] == "pinned").then_some(got)
    });
    assert_eq!(status["pin"]["meta"]["owner"], "alice");
    let (code, body) = http_json(&api, "GET", "/pins?name=E2E&match=iexact", None);
    assert_eq!(code, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).expect("PinResults");
    assert_eq!(listed["count"], 1, "{listed}");

    let (code, body) = http_json(&api, "DELETE", &format!("/pins/{c}"), None);
    assert_eq!(code, 202, "{body}");
    for i in 0..2 {
        cluster.wait_daemon(i, std::slice::from_ref(c), false);
    }
    let (code, _) = http_json(&api, "GET", &format!("/pins/{c}"), None);
    assert_eq!(code, 404);
}

#[test]
fn add_through_the_api_stores_what_the_daemon_computes_and_pins_it_on_the_allocations() {
    use cluster_node::api::client::{add_query, AddParams};
    use cluster_node::api::upload::AddFiles;
    let _serial = serial();
    let cluster = Cluster::start(18700, 3, 3);
    wait_for("the peers to connect their IPFS daemons", || {
        (0..3)
            .all(|i| cluster.ipfs[i].swarm_peers() >= 1)
            .then_some(())
    });
    // Several blocks (the default chunker cuts at 256 KiB).
    let mut big = Vec::new();
    for i in 0..60_000u32 {
        big.extend_from_slice(format!("added through the cluster {i}\n").as_bytes());
    }
    let dir = cluster.root.path().join("upload");
    std::fs::create_dir_all(dir.join("site/sub")).expect("mkdir");
    let file = dir.join("big.txt");
    std::fs::write(&file, &big).expect("write");
    std::fs::write(dir.join("site/index.html"), "<p>cluster</p>").expect("write");
    std::fs::write(dir.join("site/sub/data.bin"), &big[..5000]).expect("write");

    let add = |paths: &[PathBuf], options: &PinOptions| {
        let files = AddFiles::walk(paths, true, false).expect("walk");
        let query = add_query(options, &AddParams::default());
        let mut out = Vec::new();
        cluster
            .rt
            .block_on(
                cluster
                    .client(1)
                    .add(files, &query, Arc::new(Default::default()), |o| out.push(o)),
            )
            .unwrap_or_else(|e| panic!("add via peer 1: {e}\n{}", cluster.peers[1].log()));
        out
    };
    let out = add(std::slice::from_ref(&file), &replicated(2, 2));
    assert_eq!(out.len(), 1, "{out:?}");
    let root = out[0].cid.as_ref().expect("cid").to_string();
    // Daemon 2 computes the same CID for the same bytes (only-hash: it does
    // not store them, so a copy there must come over bitswap).
    let computed = cluster.ipfs[2].call(
        "add?only-hash=true&pin=false&cid-version=0",
        &["-F", &format!("file=@{}", file.display())],
    );
    let computed: Value =
        serde_json::from_str(computed.lines().last().expect("line")).expect("json");
    assert_eq!(computed["Hash"].as_str(), Some(root.as_str()));
    assert_eq!(out[0].allocations.len(), 2);

    let allocations = cluster.allocations(0);
    let allocs = allocations.get(&root).expect("root in the pinset");
    assert_eq!(allocs.len(), 2);
    let holders = cluster.holders(allocs);
    for &i in &holders {
        cluster.wait_daemon(i, std::slice::from_ref(&root), true);
    }
    for i in (0..3).filter(|i| !holders.contains(i)) {
        assert!(
            !cluster.ipfs[i].has_pin(&root),
            "daemon {i} is not allocated"
        );
    }
    let other = holders
        .iter()
        .copied()
        .find(|&i| i != 1)
        .expect("a holder besides peer 1");
    let got = cluster.ipfs[other].call(&format!("cat?arg={root}"), &[]);
    assert_eq!(
        got.as_bytes(),
        &big[..],
        "daemon {other} serves the content"
    );

    // A directory: its files then the root, pinned everywhere.
    let out = add(&[dir.join("site")], &replicated(-1, -1));
    let names: Vec<&str> = out.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names.last(), Some(&"site"), "{names:?}");
    assert!(names.contains(&"site/sub/data.bin"), "{names:?}");
    let site = out
        .last()
        .and_then(|o| o.cid.as_ref())
        .expect("cid")
        .to_string();
    for i in 0..3 {
        cluster.wait_daemon(i, std::slice::from_ref(&site), true);
    }
    let index = cluster.ipfs[0].call(&format!("cat?arg={site}/index.html"), &[]);
    assert_eq!(index, "<p>cluster</p>");
}

/// `ipfscluster --host <peer's API> args…`: exit code, stdout, stderr.
fn ctl(peer: &Peer, args: &[&str]) -> (i32, String, String) {
    let host = format!(
        "/ip4/127.0.0.1/tcp/{}",
        peer.rest.rsplit(':').next().expect("port")
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ipfscluster"))
        .args(["--host", &host])
        .args(args)
        .env_remove("CLUSTER_CREDENTIALS")
        .output()
        .expect("run ipfscluster");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A raw request to a peer's API: status and body.
fn api(peer: &Peer, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-X",
        method,
        "--max-time",
        "120",
        "-w",
        "\n%{http_code}",
    ]);
    if let Some(body) = body {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let out = cmd
        .arg(format!("http://{}{path}", peer.rest))
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl {method} {path}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), body.to_string())
}

/// `/health/bandwidth` counts each protocol's bytes on the real libp2p
/// transport (its JSON, its CLI text and JSON); `/pins/{ipfs,ipld,ipns}/…`
/// pin and unpin what the contacted peer's js-ipfs daemon resolves;
/// `POST /peers` answers a member's ID and names a peer it cannot reach.
#[test]
fn bandwidth_path_pins_and_post_peers_against_real_daemons() {
    use cluster_net::p2p::{NODE_RPC_PROTOCOL, PEER_RPC_PROTOCOL, RAFT_PROTOCOL};
    use cluster_node::ipfs::IpfsPath;
    let _serial = serial();
    let mut cluster = Cluster::start(18800, 3, 3);
    let raft = RAFT_PROTOCOL.to_string();

    // Bandwidth: Raft heartbeats and metric pushes flow all the time.
    let client = cluster.client(0);
    let traffic = wait_for("raft traffic with a rate", || {
        let t = cluster.rt.block_on(client.bandwidth()).ok()?;
        let r = t.get(&raft)?;
        (r.total_in > 0 && r.total_out > 0 && r.rate_in > 0.0 && r.rate_out > 0.0).then_some(t)
    });
    let protocols: BTreeSet<String> = traffic.keys().cloned().collect();
    let want: BTreeSet<String> = [&RAFT_PROTOCOL, &PEER_RPC_PROTOCOL, &NODE_RPC_PROTOCOL]
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(protocols, want);
    let node_rpc = &traffic[&NODE_RPC_PROTOCOL.to_string()];
    assert!(
        node_rpc.total_in > 0 && node_rpc.total_out > 0,
        "{traffic:?}"
    );
    let (code, body) = api(&cluster.peers[0], "GET", "/health/bandwidth", None);
    assert_eq!(code, 200, "{body}");
    let json: Value = serde_json::from_str(&body).expect("json");
    for (protocol, t) in json.as_object().expect("object") {
        let keys: BTreeSet<&str> = t
            .as_object()
            .expect("entry")
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            ["rate_in", "rate_out", "total_in", "total_out"].into(),
            "{protocol}"
        );
        assert!(
            t["total_in"].is_u64() && t["rate_in"].is_f64(),
            "{protocol}: {t}"
        );
    }
    let (code, text, err) = ctl(&cluster.peers[0], &["health", "bandwidth"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let named: Vec<String> = lines
        .iter()
        .map(|l| l.split(": In: ").next().unwrap_or("").trim().to_string())
        .collect();
    assert_eq!(
        named,
        want.iter().cloned().collect::<Vec<_>>(),
        "sorted: {text}"
    );
    for line in &lines {
        assert!(
            line.contains(". Out: ") && line.contains(". RateIn: ") && line.ends_with("B/s"),
            "{line}"
        );
        let rate_out = line.rsplit("RateOut: ").next().unwrap_or("");
        let decimals = rate_out
            .trim_end_matches("B/s")
            .split('.')
            .nth(1)
            .unwrap_or("");
        assert_eq!(decimals.len(), 2, "{line}");
    }
    let (code, text, err) = ctl(&cluster.peers[0], &["--enc", "json", "health", "bandwidth"]);
    assert_eq!(code, 0, "{err}");
    let cli: Value = serde_json::from_str(&text).expect("json");
    let cli_keys: BTreeSet<String> = cli.as_object().expect("object").keys().cloned().collect();
    assert_eq!(cli_keys, want);
    assert!(cli[&raft]["total_in"].as_u64() >= Some(traffic[&raft].total_in));

    // Paths. A directory {sub/a.txt, b.txt} on peer 0's daemon, a dag-cbor
    // node linking to a.txt, and the daemon's name pointing at the root.
    let ipfs = &cluster.ipfs[0];
    let files = cluster.root.path().join("path-files");
    std::fs::create_dir_all(&files).expect("dir");
    std::fs::write(files.join("a.txt"), b"pinned by path, e2e").expect("write");
    std::fs::write(files.join("b.txt"), b"its sibling, e2e").expect("write");
    let added = ipfs.call(
        "add?wrap-with-directory=true&pin=false",
        &[
            "-F",
            &format!("file=@{};filename=sub/a.txt", files.join("a.txt").display()),
            "-F",
            &format!("file=@{};filename=b.txt", files.join("b.txt").display()),
        ],
    );
    let hash = |name: &str| -> String {
        added
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["Name"] == name)
            .and_then(|v| v["Hash"].as_str().map(String::from))
            .unwrap_or_else(|| panic!("{name:?} not in {added}"))
    };
    let (root, file) = (hash(""), hash("sub/a.txt"));
    std::fs::write(
        files.join("node.json"),
        format!(r#"{{"a":{{"b":{{"/":"{file}"}}}}}}"#),
    )
    .expect("write");
    let put: Value = serde_json::from_str(&ipfs.call(
        "dag/put?store-codec=dag-cbor&input-codec=dag-json",
        &[
            "-F",
            &format!(
                "file=@{};type=application/octet-stream",
                files.join("node.json").display()
            ),
        ],
    ))
    .expect("dag/put");
    let cbor = put["Cid"]["/"].as_str().expect("cid").to_string();
    let id: Value = serde_json::from_str(&ipfs.call("id", &[])).expect("id");
    let name = id["ID"].as_str().expect("ID").to_string();
    ipfs.call(
        &format!("name/publish?arg=/ipfs/{root}&allow-offline=true"),
        &[],
    );

    let via = cluster.client(0);
    for (path, want) in [
        (format!("/ipfs/{root}/sub/a.txt"), &file),
        (format!("/ipld/{cbor}/a/b"), &file),
        (format!("/ipns/{name}"), &root),
    ] {
        let parsed = IpfsPath::parse(&path).expect("path");
        let pin = cluster
            .rt
            .block_on(via.pin_by_path(&parsed, &replicated(-1, -1)))
            .unwrap_or_else(|e| panic!("pin {path}: {e}"));
        assert_eq!(pin.cid.to_string(), *want, "{path}");
        for i in 0..3 {
            cluster.wait_daemon(i, std::slice::from_ref(want), true);
        }
        let removed = cluster
            .rt
            .block_on(via.unpin_by_path(&parsed))
            .unwrap_or_else(|e| panic!("unpin {path}: {e}"));
        assert_eq!(removed.cid.to_string(), *want);
        for i in 0..3 {
            cluster.wait_daemon(i, std::slice::from_ref(want), false);
        }
    }
    let (code, body) = api(
        &cluster.peers[0],
        "POST",
        &format!("/pins/ipfs/{root}/nope"),
        None,
    );
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("error resolving") && body.contains("nope"),
        "{body}"
    );
    let (code, body) = api(&cluster.peers[0], "DELETE", "/pins/ipld/notacid/x", None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("error parsing path"), "{body}");
    assert!(cluster.allocations(0).is_empty());

    // POST /peers: a member is added already: its ID, the contacted peer
    // among its peers.
    let member = cluster.peers[2].peer_id();
    let id = cluster
        .rt
        .block_on(cluster.client(1).add_peer(&member))
        .expect("add a member");
    assert_eq!(id.id, member.as_str());
    assert!(id.error.is_empty(), "{}", id.error);
    assert!(id.cluster_peers.contains(&cluster.peers[1].id), "{id:?}");
    // A stopped, then removed peer: named, refused, soon; the membership
    // is unchanged.
    cluster.sigterm(2);
    cluster
        .rt
        .block_on(cluster.client(0).remove_peer(&member))
        .expect("remove");
    let started = Instant::now();
    let (code, body) = api(
        &cluster.peers[0],
        "POST",
        "/peers",
        Some(&format!(r#"{{"peer_id":"{member}"}}"#)),
    );
    assert_eq!(code, 500, "{body}");
    assert!(body.contains(member.as_str()), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let peers = cluster
        .rt
        .block_on(cluster.client(0).peers())
        .expect("peers");
    assert_eq!(peers.len(), 2, "{peers:?}");
    // Bad bodies.
    let (code, body) = api(&cluster.peers[0], "POST", "/peers", Some("{"));
    assert_eq!(
        (code, body.contains("error decoding request body")),
        (400, true),
        "{body}"
    );
    let (code, body) = api(
        &cluster.peers[0],
        "POST",
        "/peers",
        Some(r#"{"peer_id":"x"}"#),
    );
    assert_eq!(
        (code, body.contains("error decoding peer_id")),
        (400, true),
        "{body}"
    );
}

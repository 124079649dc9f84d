//! The IPFS proxy end to end: a real IPFS command-line client (js-ipfs'
//! `jsipfs --api <proxy>`) and curl talk to the proxy of a 2-peer cluster
//! of real `ipfscluster-server` processes over real js-ipfs daemons (the
//! e2e harness in `tests/common/cluster.rs`); every answer is checked
//! against the cluster state (typed REST client) and the daemons.
//!
//! One cluster for the whole file (its start is most of the cost). IPFS
//! API ports 18500 and 18510.
//!
//!     cargo test -p cluster-node --test proxy_e2e

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use common::cluster::*;
use serde_json::Value;

const BASE: u16 = 18500;

/// Runs `jsipfs --api <proxy> <args>` (a client only: its repo path is
/// never used).
fn jsipfs(proxy: &str, unused_repo: &Path, args: &[&str]) -> Output {
    let (host, port) = proxy.split_once(':').expect("host:port");
    let bin = common::recipe_dir().join("node_modules/.bin/jsipfs");
    Command::new(bin)
        .arg("--api")
        .arg(format!("/ip4/{host}/tcp/{port}"))
        .args(args)
        .env("NODE_ENV", "test")
        .env("IPFS_PATH", unused_repo)
        .output()
        .expect("run jsipfs")
}

/// `jsipfs` that must succeed: its stdout.
fn jsipfs_ok(proxy: &str, repo: &Path, args: &[&str]) -> String {
    let out = jsipfs(proxy, repo, args);
    assert!(
        out.status.success(),
        "jsipfs {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `POST http://<addr>/api/v0/<path>` with extra curl arguments: the status
/// and the body.
fn post(addr: &str, path: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            "--max-time",
            "120",
            "-w",
            "\n%{http_code}",
        ])
        .args(extra)
        .arg(format!("http://{addr}/api/v0/{path}"))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), body.to_string())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The cluster's pins as peer `via` lists them: CID → name.
fn cluster_pins(cluster: &Cluster, via: usize) -> std::collections::BTreeMap<String, String> {
    cluster
        .rt
        .block_on(cluster.client(via).allocations(&[]))
        .expect("allocations")
        .into_iter()
        .map(|p| (p.cid.to_string(), p.name))
        .collect()
}

/// The sha2-256 multihash of a CID (js-ipfs' `refs/local` lists blocks by
/// multihash, as raw CIDv1s).
fn multihash(cid: &str) -> Vec<u8> {
    let bytes = cluster_core::Cid::parse(cid)
        .unwrap_or_else(|e| panic!("{cid}: {e}"))
        .as_bytes()
        .to_vec();
    bytes[bytes.len().saturating_sub(34)..].to_vec()
}

/// Multihashes of the blocks the daemon holds (`refs/local`).
fn local_blocks(ipfs: &Ipfs) -> BTreeSet<Vec<u8>> {
    ipfs.call("refs/local", &[])
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["Ref"].as_str().map(multihash))
        .collect()
}

/// `RepoSize` and `StorageMax` of one daemon.
fn repo_figures(ipfs: &Ipfs) -> (u64, u64) {
    let v = json(&ipfs.call("repo/stat?size-only=true", &[]));
    let num = |v: &Value| match v {
        Value::String(s) => s.parse().expect("number"),
        other => other.as_u64().expect("number"),
    };
    (num(&v["RepoSize"]), num(&v["StorageMax"]))
}

#[test]
fn a_real_ipfs_client_through_the_proxy_drives_the_cluster() {
    let _serial = serial();
    let cluster = Cluster::start(BASE, 2, 2);
    let proxy = cluster.peers[0].proxy.clone();
    let repo = cluster.root.path().join("jsipfs-client-repo");
    let files = cluster.root.path().join("files");
    std::fs::create_dir_all(&files).expect("files dir");

    // A forwarded command answers as the daemon does.
    let (status, version) = post(&proxy, "version", &[]);
    assert_eq!(status, 200, "{version}");
    assert_eq!(
        json(&version)["Version"],
        json(&cluster.ipfs[0].call("version", &[]))["Version"]
    );

    // `add` goes to the local daemon, and the root is pinned in the cluster
    // before the client sees the end of the answer.
    let content = b"proxy e2e: added through the proxy\n".repeat(1000);
    let file = files.join("hello.txt");
    std::fs::write(&file, &content).expect("write file");
    let out = jsipfs_ok(
        &proxy,
        &repo,
        &["add", "--progress=false", file.to_str().expect("path")],
    );
    let added = out
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no CID in {out:?}"))
        .to_string();
    assert!(
        cluster_pins(&cluster, 1).contains_key(&added),
        "{added} not in the cluster state"
    );
    for i in 0..2 {
        cluster.wait_daemon(i, std::slice::from_ref(&added), true);
    }

    // A forwarded `cat` streams the content back.
    let cat = jsipfs(&proxy, &repo, &["cat", &added]);
    assert!(
        cat.status.success(),
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    assert_eq!(cat.stdout, content);

    // `add` with `pin-name` names the cluster pin; `pin=false` pins nothing.
    let named = files.join("named.txt");
    std::fs::write(&named, b"proxy e2e: named add\n").expect("write");
    let form = format!("file=@{}", named.display());
    let (status, body) = post(
        &proxy,
        "add?pin-name=my-site&progress=false",
        &["-F", &form],
    );
    assert_eq!(status, 200, "{body}");
    let named_cid = json(body.lines().last().expect("a line"))["Hash"]
        .as_str()
        .expect("Hash")
        .to_string();
    assert_eq!(
        cluster_pins(&cluster, 0)
            .get(&named_cid)
            .map(String::as_str),
        Some("my-site")
    );
    let unpinned = files.join("unpinned.txt");
    std::fs::write(&unpinned, b"proxy e2e: not pinned\n").expect("write");
    let form = format!("file=@{}", unpinned.display());
    let (status, body) = post(&proxy, "add?pin=false", &["-F", &form]);
    assert_eq!(status, 200, "{body}");
    let unpinned_cid = json(body.lines().last().expect("a line"))["Hash"]
        .as_str()
        .expect("Hash")
        .to_string();
    assert!(!cluster_pins(&cluster, 0).contains_key(&unpinned_cid));
    assert!(
        !cluster.ipfs[0].has_pin(&unpinned_cid),
        "the daemon pinned for itself"
    );

    // A pin the cluster refuses (3 replicas of 2 peers) ends the add's
    // answer with Kubo's error object; a bad option refuses the add.
    let (status, body) = post(
        &proxy,
        "add?replication-min=3&replication-max=3",
        &["-F", &form],
    );
    assert_eq!(status, 200, "{body}");
    let last = json(body.lines().last().expect("a line"));
    assert_eq!(last["Type"], "error", "{body}");
    assert!(
        last["Message"]
            .as_str()
            .expect("Message")
            .starts_with("cluster pin: "),
        "{body}"
    );
    let (status, body) = post(&proxy, "add?replication-min=many", &["-F", &form]);
    assert_eq!(
        (status, json(&body)["Code"].as_u64()),
        (400, Some(1)),
        "{body}"
    );
    assert!(!cluster_pins(&cluster, 0).contains_key(&unpinned_cid));

    // `pin add` of content already on both daemons.
    let both = b"proxy e2e: on both daemons\n".to_vec();
    let cid = cluster.ipfs[0].add(&both);
    assert_eq!(cluster.ipfs[1].add(&both), cid);
    let out = jsipfs_ok(&proxy, &repo, &["pin", "add", &cid]);
    assert!(out.contains(&cid), "{out}");
    assert!(cluster_pins(&cluster, 1).contains_key(&cid));
    for i in 0..2 {
        cluster.wait_daemon(i, std::slice::from_ref(&cid), true);
    }

    // A direct pin with a name, as Kubo's `pin add --recursive=false --name`.
    let direct = cluster.ipfs[0].add(b"proxy e2e: direct\n");
    let (status, body) = post(
        &proxy,
        &format!("pin/add?arg=/ipfs/{direct}&recursive=false&name=just-the-block"),
        &[],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["Pins"][0], direct.as_str());
    // A pin the user made on the daemon alone is not the cluster's.
    let users = cluster.ipfs[0].add(b"proxy e2e: the user's own\n");
    cluster.ipfs[0].pin_directly(&users);

    // `pin ls` answers from the cluster state, direct pins as direct.
    let out = jsipfs_ok(&proxy, &repo, &["pin", "ls"]);
    let listed: BTreeSet<(String, String)> = out
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        (added.clone(), "recursive".to_string()),
        (named_cid.clone(), "recursive".to_string()),
        (cid.clone(), "recursive".to_string()),
        (direct.clone(), "direct".to_string()),
    ]
    .into_iter()
    .collect();
    assert_eq!(listed, want, "jsipfs pin ls printed:\n{out}");
    let (status, body) = post(&proxy, "pin/ls?type=direct&names=true", &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body),
        serde_json::json!({"Keys": {direct.clone(): {"Type": "direct", "Name": "just-the-block"}}})
    );
    let (status, body) = post(&proxy, &format!("pin/ls?arg={users}"), &[]);
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        json(&body)["Message"],
        format!("path '{users}' is not pinned").as_str()
    );

    // `pin rm`, then the daemons let go of it.
    let out = jsipfs_ok(&proxy, &repo, &["pin", "rm", &cid]);
    assert!(out.contains(&cid), "{out}");
    assert!(!cluster_pins(&cluster, 1).contains_key(&cid));
    for i in 0..2 {
        cluster.wait_daemon(i, std::slice::from_ref(&cid), false);
    }
    let again = jsipfs(&proxy, &repo, &["pin", "rm", &cid]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("pin is not part of the pinset"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // `repo gc` runs on both daemons: the unpinned block goes from both.
    assert!(local_blocks(&cluster.ipfs[1]).contains(&multihash(&cid)));
    let (status, body) = post(&proxy, "repo/gc", &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body.lines().all(|l| json(l).get("Key").is_some()), "{body}");
    for i in 0..2 {
        let blocks = local_blocks(&cluster.ipfs[i]);
        assert!(!blocks.contains(&multihash(&cid)), "daemon {i} kept {cid}");
        assert!(
            blocks.contains(&multihash(&added)),
            "daemon {i} lost a pinned block"
        );
    }

    // `repo stat` sums both daemons.
    wait_for("repo stat to equal the daemons' sum", || {
        let before: Vec<(u64, u64)> = cluster.ipfs.iter().map(repo_figures).collect();
        let out = jsipfs_ok(&proxy, &repo, &["repo", "stat"]);
        let after: Vec<(u64, u64)> = cluster.ipfs.iter().map(repo_figures).collect();
        let field = |name: &str| -> Option<u64> {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .and_then(|v| v.trim().parse().ok())
        };
        let sum = |i: usize| -> u64 { before.iter().map(|f| if i == 0 { f.0 } else { f.1 }).sum() };
        (before == after
            && field("RepoSize") == Some(sum(0))
            && field("StorageMax") == Some(sum(1)))
        .then_some(())
    });

    // block/put?pin=true pins in the cluster, not on the daemon alone.
    let block = files.join("block.bin");
    std::fs::write(&block, b"proxy e2e: a raw block").expect("write");
    let form = format!("file=@{}", block.display());
    let (status, body) = post(&proxy, "block/put?pin=true&format=raw", &["-F", &form]);
    assert_eq!(status, 200, "{body}");
    let key = json(&body)["Key"].as_str().expect("Key").to_string();
    let stored: Vec<String> = cluster_pins(&cluster, 0)
        .into_keys()
        .filter(|c| cluster_core::Cid::parse(c).ok() == cluster_core::Cid::parse(&key).ok())
        .collect();
    assert_eq!(stored.len(), 1, "{key} not pinned in the cluster");

    // `pin update` moves the pin and its name.
    let newer = cluster.ipfs[0].add(b"proxy e2e: the site, version 2\n");
    let (status, body) = post(
        &proxy,
        &format!("pin/update?arg={named_cid}&arg={newer}"),
        &[],
    );
    assert_eq!(status, 200, "{body}");
    let pins = cluster_pins(&cluster, 0);
    assert_eq!(pins.get(&newer).map(String::as_str), Some("my-site"));
    assert!(!pins.contains_key(&named_cid));

    // Errors in Kubo's shape and codes.
    let (status, body) = post(&proxy, "pin/add?arg=not-a-cid", &[]);
    assert_eq!(status, 500, "{body}");
    let e = json(&body);
    assert_eq!(e["Type"], "error");
    assert!(
        e["Message"]
            .as_str()
            .expect("Message")
            .contains("not-a-cid"),
        "{body}"
    );
    let (status, body) = post(&proxy, "pin/update", &[]);
    assert_eq!(
        (status, json(&body)["Code"].as_u64()),
        (400, Some(1)),
        "{body}"
    );
}

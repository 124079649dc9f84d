//! `ipfscluster-server local-cluster`: starts the peers laid out by
//! [`cluster_node::server::local`] as child processes of this binary, adds
//! the sample file through peer 0's REST API with replication 2, shows its
//! status and keeps the cluster running until Ctrl-C (or SIGTERM).

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cluster_core::{Cid, PinOptions, TrackerStatus};
use cluster_node::api::client::{add_query, AddParams, Client, ClientConfig};
use cluster_node::api::upload::AddFiles;
use cluster_node::server::local::{prepare, LocalOptions, LocalPeer};

/// Longest wait for a peer to be ready, the cluster to form or the sample
/// to be pinned.
const WAIT: Duration = Duration::from_secs(120);

/// The running peers; each is stopped (SIGTERM, then killed if it lingers)
/// when this is dropped.
struct Children(Vec<(String, Child)>);

impl Children {
    fn stop(&mut self) {
        for (_, child) in &self.0 {
            // SIGTERM is the daemon's clean stop; std can only SIGKILL.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (name, child) in &mut self.0 {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        eprintln!("{name} did not stop within 30 s: killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        self.0.clear();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Bytes of `path` from `from` on (what a peer logged since its start).
fn log_since(path: &Path, from: u64) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(text.len());
    String::from_utf8_lossy(&text[from..]).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts `peer` (this binary, `daemon`), its output appended to its log,
/// and waits until it says it is ready.
fn start_peer(exe: &Path, name: &str, peer: &LocalPeer) -> Result<Child> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(&peer.log)
        .with_context(|| format!("opening {}", peer.log.display()))?;
    let from = log.metadata().map(|m| m.len()).unwrap_or(0);
    let mut command = Command::new(exe);
    // A process group of its own: a Ctrl-C in the terminal reaches this
    // process only, which stops each peer once (a second signal would make
    // a peer exit without its clean shutdown).
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .arg("--config")
        .arg(&peer.dir)
        .arg("daemon")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let deadline = Instant::now() + WAIT;
    loop {
        let said = log_since(&peer.log, from);
        if said.contains("IPFS Cluster is READY") {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("{name} exited ({status}):\n{}", tail(&said, 20));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("{name} not ready after {WAIT:?}:\n{}", tail(&said, 20));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn client(peer: &LocalPeer) -> Result<Client> {
    Ok(Client::new(ClientConfig {
        base_url: format!("http://{}", peer.rest),
        timeout: Duration::from_secs(60),
        ..ClientConfig::default()
    })?)
}

async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Adds the sample file through `peer`'s REST API, replication 2: its CID.
async fn add_sample(peer: &LocalPeer, sample: &Path) -> Result<Cid> {
    let api = client(peer)?;
    let files = AddFiles::walk(&[sample.to_path_buf()], false, false)?;
    let options = PinOptions {
        replication_factor_min: 2,
        replication_factor_max: 2,
        name: "sample.txt".into(),
        ..PinOptions::default()
    };
    let query = add_query(&options, &AddParams::default());
    let mut root = None;
    api.add(files, &query, Arc::new(AtomicU64::new(0)), |added| {
        if let Some(cid) = added.cid {
            root = Some(cid);
        }
    })
    .await
    .context("adding the sample file")?;
    root.context("the add answered no CID")
}

/// Runs the local cluster until `stop` completes.
pub async fn run(
    options: &LocalOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let peers = prepare(options)?;
    let n = peers.len();
    eprintln!(
        "local-cluster: {n} peers with embedded IPFS nodes, data in {}",
        options.dir.display()
    );
    let mut children = Children(Vec::new());
    // Peer 0 first: the others join the cluster through it.
    for (i, peer) in peers.iter().enumerate() {
        let name = format!("peer {i} ({})", peer.id);
        eprintln!(
            "local-cluster: starting {name}, REST API http://{}",
            peer.rest
        );
        let child = tokio::task::block_in_place(|| start_peer(&exe, &name, peer))?;
        children.0.push((name, child));
    }
    let api = client(&peers[0])?;
    wait_until("every peer to join the cluster", || async {
        let listed = api.peers().await.ok()?;
        (listed.len() == n).then_some(())
    })
    .await?;
    let sample = options.dir.join("sample.txt");
    let cid = add_sample(&peers[0], &sample).await?;
    let want = n.min(2);
    let info = wait_until(&format!("{cid} to be pinned on {want} peers"), || async {
        let info = api.status(&cid, false).await.ok()?;
        let pinned = info
            .peer_map
            .values()
            .filter(|p| p.status == TrackerStatus::Pinned)
            .count();
        (pinned >= want).then_some(info)
    })
    .await?;
    println!("{}: {cid}", sample.display());
    for (peer, status) in &info.peer_map {
        println!("  {peer}: {}", status.status);
    }
    let cli = exe.with_file_name("ipfscluster");
    let (rest0, proxy0) = (peers[0].rest, peers[0].proxy);
    println!(
        "\nThe cluster is running: {n} peers on 127.0.0.1, each with its own embedded IPFS node.\n\
         \x20 try:     {cli} --host /ip4/127.0.0.1/tcp/{rest} status {cid}\n\
         \x20          {cli} --host /ip4/127.0.0.1/tcp/{rest} peers ls\n\
         \x20          {cli} --host /ip4/127.0.0.1/tcp/{rest} add <file> --rmin 2 --rmax 2\n\
         \x20 REST APIs: {rests}\n\
         \x20 IPFS API (the proxy, for ipfs/kubo clients): http://{proxy0}\n\
         \x20 data and logs: {dir}\n\
         Press Ctrl-C to stop every peer; run the same command again to restart this cluster.",
        cli = cli.display(),
        rest = rest0.port(),
        rests = peers
            .iter()
            .map(|p| format!("http://{}", p.rest))
            .collect::<Vec<_>>()
            .join("  "),
        dir = options.dir.display(),
    );
    stop.await;
    eprintln!("local-cluster: stopping the peers");
    tokio::task::block_in_place(|| children.stop());
    eprintln!(
        "local-cluster: stopped; data kept in {}",
        options.dir.display()
    );
    Ok(())
}

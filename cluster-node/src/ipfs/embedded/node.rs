//! Starting the embedded `rust-ipfs` node: the few behaviours the cluster
//! needs (bitswap to move blocks, identify and ping to keep connections
//! healthy), TCP + noise on the configured addresses, a filesystem repo, and
//! nothing that reaches beyond them: no bootstrap list, no DHT, no MDNS, no
//! relay, no UPnP, no HTTP gateway. The crate's all-defaults constructor
//! (`with_default`) would bring the public DHT and more, so it is not used.

use std::path::Path;
use std::time::Duration;

use rust_ipfs::builder::DefaultIpfsBuilder as Builder;
use rust_ipfs::{Ipfs, Keypair, Multiaddr};

use crate::ipfs::IpfsError;

/// The repo's directory inside the embedded node's directory.
pub const REPO_DIR: &str = "repo";
/// Attempts at opening the repo: the lock of a process that just died (or
/// of this one's previous node, shut down a moment ago) may still be held.
const START_ATTEMPTS: u32 = 15;
/// Pause between two attempts.
const START_RETRY: Duration = Duration::from_millis(200);
/// Idle connections to other peers' nodes are kept this long: the metrics
/// driver dials a node once and bitswap needs the connection when a pin
/// comes, possibly hours later.
const IDLE_CONNECTION_SECS: u64 = 24 * 3600;

/// Longest wait at start for the listeners to report their addresses
/// (the first `id` announces them to the other peers).
const LISTEN_WAIT: Duration = Duration::from_secs(2);

/// Waits (briefly) until the node listens on as many addresses as asked.
async fn wait_listening(node: &Ipfs, wanted: usize) {
    let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
    while tokio::time::Instant::now() < deadline {
        match node.listening_addresses().await {
            Ok(addrs) if addrs.len() >= wanted => return,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    tracing::warn!("embedded ipfs: not all swarm listeners up after {LISTEN_WAIT:?}");
}

/// Starts the node with `key`, its repo under `dir`, listening on `listen`.
pub async fn start(dir: &Path, key: &Keypair, listen: &[Multiaddr]) -> Result<Ipfs, IpfsError> {
    let repo = dir.join(REPO_DIR);
    let mut last = String::new();
    for attempt in 1..=START_ATTEMPTS {
        let builder = Builder::with_keypair(key)
            .map_err(|e| IpfsError::Config {
                reason: format!("embedded ipfs key: {e}"),
            })?
            .set_path(&repo)
            .with_bitswap()
            .with_identify(Default::default())
            .with_ping(Default::default())
            .enable_tcp()
            .set_listening_addrs(listen.to_vec())
            .set_idle_connection_timeout(IDLE_CONNECTION_SECS);
        match builder.start().await {
            Ok(node) => {
                wait_listening(&node, listen.len()).await;
                return Ok(node);
            }
            Err(e) => {
                last = format!("{e:#}");
                tracing::debug!("embedded ipfs: start attempt {attempt} failed: {last}");
                tokio::time::sleep(START_RETRY).await;
            }
        }
    }
    Err(IpfsError::Storage {
        reason: format!(
            "embedded ipfs node in {} did not start after {START_ATTEMPTS} attempts: {last}",
            repo.display()
        ),
    })
}

//! The peer daemon `ipfscluster-server` as a library (feature `server`):
//! `init` writes a config directory, `daemon` runs the peer, the `state`
//! commands work on a stopped peer's consensus data. The binary only parses
//! the command line and calls these.
//!
//! A config directory holds `server.json`, the identity key, the
//! `cluster.lock` execution lock, the libp2p `peerstore`, the `member`
//! record (written once the peer belongs to a cluster) and, by default,
//! the consensus data in `data/`.

pub mod daemon;
pub mod init;
pub mod local;
pub mod lock;
pub mod member;
pub mod pin_json;
pub mod state;

use std::path::{Path, PathBuf};

/// Version of the binary (`version`, logs).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Environment variable naming the config directory.
pub const CONFIG_PATH_ENV: &str = "IPFS_CLUSTER_PATH";

/// The config directory: `explicit` (`--config`), else
/// `$IPFS_CLUSTER_PATH`, else `~/.ipfs-cluster`.
pub fn config_dir(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = explicit {
        return Some(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os(CONFIG_PATH_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".ipfs-cluster"))
}

/// The operating system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed: {0}")]
pub struct RandomError(String);

/// `N` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
    Ok(bytes)
}

/// A random non-zero 128-bit id (cluster ids, store incarnations).
pub fn random_id() -> Result<u128, RandomError> {
    loop {
        let id = u128::from_le_bytes(random_bytes()?);
        if id != 0 {
            return Ok(id);
        }
    }
}

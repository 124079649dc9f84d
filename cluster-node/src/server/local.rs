//! `ipfscluster-server local-cluster`: a whole cluster on this machine in one
//! command, each peer with its IPFS node embedded, nothing else installed.
//! This module writes (or finds again) the peers' config directories; the
//! binary runs them as child processes, adds a sample file and waits.
//!
//! Layout under the chosen directory: `peer-<i>/` (config, identity,
//! consensus data, embedded node), `peer-<i>.log`, `secret` and
//! `sample.txt`. Peer `i` listens on loopback at `base + 100·i` plus 0
//! (REST API), 1 (IPFS proxy), 2 (cluster swarm) and 3 (Pinning Service
//! API). Running it again on the same directory restarts the same cluster.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::config::{ConfigError, IpfsMode, ServerConfig, CONFIG_FILE};
use crate::server::init::{init, write_config, InitError, InitOptions};

/// The default first port: the REST API of peer 0 on upstream's 9094.
pub const DEFAULT_BASE_PORT: u16 = 9094;
/// The default number of peers.
pub const DEFAULT_PEERS: usize = 3;
/// The sample file's content (fixed, so a second run pins the same CID).
pub const SAMPLE: &str = "Hello from ipfs-cluster-rs!\n\
This file was added by `ipfscluster-server local-cluster` and pinned with replication 2.\n";

/// How the local cluster is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOptions {
    /// Where everything goes.
    pub dir: PathBuf,
    /// How many peers.
    pub peers: usize,
    /// Peer 0's REST API port; see the module docs for the others.
    pub base_port: u16,
}

/// One peer of the local cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPeer {
    /// Its config directory.
    pub dir: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// Its peer id.
    pub id: String,
    /// Its REST API.
    pub rest: SocketAddr,
    /// Its IPFS proxy.
    pub proxy: SocketAddr,
}

/// The local cluster could not be laid out.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Fewer than one or more than 9 peers, or ports past 65535.
    #[error("{0}")]
    Options(String),
    /// A file or directory could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `init` of a peer failed.
    #[error("init of {dir}: {source}")]
    Init {
        /// The peer's directory.
        dir: PathBuf,
        /// Why.
        source: InitError,
    },
    /// A peer's config could not be read or written.
    #[error("{dir}: {source}")]
    Config {
        /// The peer's directory.
        dir: PathBuf,
        /// Why.
        source: ConfigError,
    },
    /// Randomness for the secret was not available.
    #[error(transparent)]
    Random(#[from] crate::server::RandomError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn loopback(port: u32) -> Result<u16, LocalError> {
    u16::try_from(port).map_err(|_| LocalError::Options(format!("port {port} is past 65535")))
}

/// The cluster's secret: made once, kept in `dir/secret`.
fn secret(dir: &Path) -> Result<String, LocalError> {
    let path = dir.join("secret");
    match std::fs::read_to_string(&path) {
        Ok(s) => return Ok(s.trim().to_string()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&path)(e)),
        Err(_) => {}
    }
    let bytes: [u8; 32] = crate::server::random_bytes()?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, &hex).map_err(io(&path))?;
    Ok(hex)
}

/// Writes the peers' config directories that do not exist yet (peer 0 the
/// contact of the others) and answers every peer, in start order.
pub fn prepare(options: &LocalOptions) -> Result<Vec<LocalPeer>, LocalError> {
    if options.peers == 0 || options.peers > 9 {
        return Err(LocalError::Options(format!(
            "--peers {}: between 1 and 9",
            options.peers
        )));
    }
    std::fs::create_dir_all(&options.dir).map_err(io(&options.dir))?;
    let secret = secret(&options.dir)?;
    let mut peers: Vec<LocalPeer> = Vec::new();
    let mut contact: Option<String> = None;
    for i in 0..options.peers {
        let base = u32::from(options.base_port) + 100 * i as u32;
        let (rest, proxy, swarm, pinsvc) = (
            loopback(base)?,
            loopback(base + 1)?,
            loopback(base + 2)?,
            loopback(base + 3)?,
        );
        let dir = options.dir.join(format!("peer-{i}"));
        let config_dir_error = |source| LocalError::Config {
            dir: dir.clone(),
            source,
        };
        if !dir.join(CONFIG_FILE).exists() {
            init(
                &dir,
                &InitOptions {
                    secret: Some(secret.clone()),
                    peers: contact.iter().cloned().collect(),
                    ..InitOptions::default()
                },
            )
            .map_err(|source| LocalError::Init {
                dir: dir.clone(),
                source,
            })?;
            let mut config = ServerConfig::load(&dir).map_err(config_dir_error)?;
            config.cluster.listen_multiaddress = vec![format!("/ip4/127.0.0.1/tcp/{swarm}")];
            config.rest_api.listen_address = format!("127.0.0.1:{rest}");
            config.ipfs_proxy.listen_address = format!("127.0.0.1:{proxy}");
            config.pinning_service.listen_address = format!("127.0.0.1:{pinsvc}");
            config.ipfs.mode = IpfsMode::Embedded;
            write_config(&dir, &config).map_err(|source| LocalError::Init {
                dir: dir.clone(),
                source,
            })?;
        }
        let config = ServerConfig::load(&dir).map_err(config_dir_error)?;
        let id = config.cluster.id.clone();
        if contact.is_none() {
            contact = Some(format!("/ip4/127.0.0.1/tcp/{swarm}/p2p/{id}"));
        }
        peers.push(LocalPeer {
            log: options.dir.join(format!("peer-{i}.log")),
            dir,
            id,
            rest: SocketAddr::from(([127, 0, 0, 1], rest)),
            proxy: SocketAddr::from(([127, 0, 0, 1], proxy)),
        });
    }
    let sample = options.dir.join("sample.txt");
    if !sample.exists() {
        std::fs::write(&sample, SAMPLE).map_err(io(&sample))?;
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_laid_out_once_and_found_again() {
        let root = tempfile::tempdir().expect("temp dir");
        let options = LocalOptions {
            dir: root.path().join("local"),
            peers: 3,
            base_port: 20094,
        };
        let first = prepare(&options).expect("prepare");
        assert_eq!(first.len(), 3);
        assert_eq!(first[2].rest.port(), 20294);
        assert_eq!(first[1].proxy.port(), 20195);
        let c1 = ServerConfig::load(&first[1].dir).expect("config");
        assert_eq!(c1.ipfs.mode, IpfsMode::Embedded);
        assert_eq!(
            c1.cluster.cluster_peers,
            vec![format!("/ip4/127.0.0.1/tcp/20096/p2p/{}", first[0].id)]
        );
        let c0 = ServerConfig::load(&first[0].dir).expect("config");
        assert_eq!(c0.cluster.secret, c1.cluster.secret, "one cluster secret");
        // A second run reuses everything: same identities, same secret.
        let again = prepare(&options).expect("prepare again");
        assert_eq!(again, first);
        assert!(options.dir.join("sample.txt").exists());
        let bad = LocalOptions {
            peers: 0,
            ..options.clone()
        };
        assert!(prepare(&bad).is_err());
        let high = LocalOptions {
            base_port: 65500,
            ..options
        };
        assert!(prepare(&high).is_err());
    }
}

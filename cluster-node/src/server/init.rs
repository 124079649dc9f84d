//! `init`: writes a new config directory (`server.json` and the identity
//! key).

use std::path::{Path, PathBuf};

use cluster_core::PeerId;
use cluster_net::p2p::{ClusterSecret, KeyError, SECRET_BYTES};

use crate::config::{ConfigError, IpfsMode, ServerConfig, CONFIG_FILE};
use crate::server::lock::{ConfigLock, LockError};
use crate::server::{random_bytes, RandomError};

/// What `init` is asked to write.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Overwrite an existing `server.json`.
    pub force: bool,
    /// The cluster secret (64 hex characters); random when `None`.
    pub secret: Option<String>,
    /// Peers to join through (`cluster_peers`).
    pub peers: Vec<String>,
    /// An external IPFS daemon's API (multiaddr): writes `ipfs.mode =
    /// "external"` pointed at it; `None` writes `"embedded"` (when the
    /// build has the embedded node).
    pub ipfs_api: Option<String>,
}

/// What `init` wrote.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The configuration file.
    pub config_file: PathBuf,
    /// The peer id of the identity key.
    pub peer_id: PeerId,
    /// True when the identity key was already there (kept).
    pub kept_identity: bool,
    /// True in embedded mode (the node's peer id is made at each start,
    /// see [`crate::ipfs::embedded`]).
    pub ipfs_embedded: bool,
}

/// `init` refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The configuration exists and `--force` was not given.
    #[error("{0} already exists: not overwriting it (use --force to replace it; the identity key is kept)")]
    Exists(PathBuf),
    /// The directory could not be created or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A daemon runs on the directory.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The identity key could not be created or read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The options give an invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No randomness for the secret.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// Writes `server.json` and the identity key in `config_dir`.
pub fn init(config_dir: &Path, options: &InitOptions) -> Result<InitReport, InitError> {
    std::fs::create_dir_all(config_dir).map_err(|source| InitError::Io {
        path: config_dir.to_path_buf(),
        source,
    })?;
    let _lock = ConfigLock::acquire(config_dir)?;
    let config_file = config_dir.join(CONFIG_FILE);
    if config_file.exists() && !options.force {
        return Err(InitError::Exists(config_file));
    }
    let mut config = ServerConfig::default();
    config.cluster.secret = match &options.secret {
        Some(text) => text.trim().to_string(),
        None => ClusterSecret::from_bytes(random_bytes::<SECRET_BYTES>()?).to_hex(),
    };
    config.cluster.cluster_peers = options.peers.clone();
    match &options.ipfs_api {
        Some(api) => {
            config.ipfs.mode = IpfsMode::External;
            config.ipfs_http.node_multiaddress = api.trim().to_string();
        }
        None if cfg!(feature = "embedded-ipfs") => config.ipfs.mode = IpfsMode::Embedded,
        None => config.ipfs.mode = IpfsMode::External,
    }
    // Check what the user gave before a key is created for nothing.
    config.validate()?;
    let key_dir = config.identity_dir(config_dir);
    let kept_identity = key_dir.join(cluster_net::p2p::KEY_FILE).exists();
    let peer_id = cluster_net::p2p::identity_peer_id(&key_dir)?;
    config.cluster.id = peer_id.to_string();
    let ipfs_embedded = config.ipfs.mode == IpfsMode::Embedded;
    write_private(&config_file, config.to_json().as_bytes())?;
    Ok(InitReport {
        config_file,
        peer_id,
        kept_identity,
        ipfs_embedded,
    })
}

/// Writes `config` as the `server.json` of `config_dir`, owner-only and
/// atomically, after checking it.
pub fn write_config(config_dir: &Path, config: &ServerConfig) -> Result<(), InitError> {
    config.validate()?;
    write_private(&config_dir.join(CONFIG_FILE), config.to_json().as_bytes())
}

/// Writes `bytes` to `path` readable by the owner only (it holds the secret).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), InitError> {
    use std::io::Write;
    let io = |source| InitError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

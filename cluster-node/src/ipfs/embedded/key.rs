//! The embedded node's identity key: created once (by `init`, or the first
//! start of a peer configured before embedded mode existed) and read on
//! every start, so the node keeps its peer id across restarts and the other
//! peers' nodes find it again at the addresses they learnt.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rust_ipfs::Keypair;

/// The key's file name inside the embedded node's directory.
pub const NODE_KEY_FILE: &str = "node.key";

/// The key could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NodeKeyError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no valid key.
    #[error("{path}: not an IPFS node key: {reason}")]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Loads the key in `dir`, creating it (ed25519, owner-only file) when
/// there is none.
pub fn load_or_create(dir: &Path) -> Result<Keypair, NodeKeyError> {
    let path = dir.join(NODE_KEY_FILE);
    let io = |source| NodeKeyError::Io {
        path: path.clone(),
        source,
    };
    match fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| NodeKeyError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| io(std::io::Error::other(e.to_string())))?;
            fs::create_dir_all(dir).map_err(io)?;
            write_private(&path, &bytes).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// The peer id of the key in `dir` (created if missing), as a string.
pub fn peer_id(dir: &Path) -> Result<String, NodeKeyError> {
    Ok(load_or_create(dir)?.public().to_peer_id().to_string())
}

/// Writes `bytes` to `path` atomically, readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_then_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("ipfs");
        let first = peer_id(&sub).expect("create");
        let again = peer_id(&sub).expect("read");
        assert_eq!(first, again);
        assert!(first.starts_with("12D3KooW"), "{first}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(sub.join(NODE_KEY_FILE))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_damaged_key_is_refused_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(NODE_KEY_FILE), b"not a key").expect("write");
        assert!(matches!(
            load_or_create(dir.path()),
            Err(NodeKeyError::Corrupt { .. })
        ));
        assert_eq!(
            fs::read(dir.path().join(NODE_KEY_FILE)).expect("read"),
            b"not a key"
        );
    }
}

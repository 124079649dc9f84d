//! The peer's libp2p identity: an ed25519 key kept in a file of the config
//! directory. It is created once and read on every later start, never
//! regenerated: the peer id is the peer's name in the Raft membership.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

/// Name of the key file in the config directory.
pub const KEY_FILE: &str = "identity.key";

/// The identity key could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("identity key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The key file exists but does not hold a key. It is not replaced
    /// (the peer would come back under another peer id).
    #[error(
        "identity key file {path} is damaged ({reason}); restore it from a backup, \
         or remove it to start as a new peer under a new peer id"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Loads the key of `dir`, creating it (and `dir`) on the first start.
pub fn load_or_create(dir: &Path) -> Result<Keypair, KeyError> {
    let path = dir.join(KEY_FILE);
    let io = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    match fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| KeyError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| io(std::io::Error::other(e.to_string())))?;
            fs::create_dir_all(dir).map_err(io)?;
            write_private_file(&path, &bytes).map_err(io)?;
            tracing::info!(path = %path.display(), peer = %key.public().to_peer_id(), "created identity key");
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// Writes `bytes` to `path` atomically (a temporary file renamed over it,
/// both synced), readable by the owner only.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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
    if let Some(parent) = path.parent() {
        // The rename itself must survive a power cut.
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sub = dir.path().join("config");
        let first = load_or_create(&sub).expect("create");
        let again = load_or_create(&sub).expect("load");
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(sub.join(KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_damaged_key_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(KEY_FILE);
        fs::write(&path, b"not a key").expect("write");
        assert!(matches!(
            load_or_create(dir.path()),
            Err(KeyError::Corrupt { .. })
        ));
        assert_eq!(fs::read(&path).expect("read"), b"not a key");
    }
}

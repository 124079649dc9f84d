//! The execution lock of a config directory: one daemon or offline state
//! command at a time (two would share one Raft store and identity).
//!
//! An OS file lock on `cluster.lock`: it is released when the process
//! exits, however it exits, so a crashed daemon leaves no stale lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Name of the lock file in the config directory.
pub const LOCK_FILE: &str = "cluster.lock";

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "error obtaining execution lock: {path} is held by another process: another \
         ipfscluster-server (daemon or state command) is running on this config directory. \
         Stop it first, or use another directory (--config)"
    )]
    Held {
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file could not be opened or locked.
    #[error(
        "error obtaining execution lock: {path}: {source}. Make sure the config directory \
         exists and is writable for this user"
    )]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct ConfigLock {
    _file: File,
    path: PathBuf,
}

impl ConfigLock {
    /// Takes the lock of `config_dir` without waiting.
    pub fn acquire(config_dir: &Path) -> Result<ConfigLock, LockError> {
        let path = config_dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(ConfigLock { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(LockError::Held { path }),
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = ConfigLock::acquire(dir.path()).expect("first");
        let second = ConfigLock::acquire(dir.path());
        assert!(matches!(second, Err(LockError::Held { .. })), "{second:?}");
        drop(first);
        ConfigLock::acquire(dir.path()).expect("after release");
    }
}

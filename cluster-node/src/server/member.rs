//! The `member` record: written in the config directory once this peer
//! belongs to a cluster (it bootstrapped one or joined one).
//!
//! It is how the daemon tells "a new peer" from "a member whose consensus
//! data is gone": the latter must not start empty as the member it was (it
//! remembers no vote and no log), so it is refused with the steps to
//! re-join. `state cleanup` removes it with the data.

use std::path::{Path, PathBuf};

/// Name of the record in the config directory.
pub const MEMBER_FILE: &str = "member";

/// The record could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("membership record {path}: {source}")]
pub struct MemberFileError {
    /// The file.
    pub path: PathBuf,
    /// The error.
    pub source: std::io::Error,
}

fn path(config_dir: &Path) -> PathBuf {
    config_dir.join(MEMBER_FILE)
}

/// True when this peer is recorded as a member of a cluster.
pub fn is_member(config_dir: &Path) -> bool {
    path(config_dir).exists()
}

/// Records that this peer belongs to cluster `cluster_id`.
pub fn record(config_dir: &Path, cluster_id: u128) -> Result<(), MemberFileError> {
    let path = path(config_dir);
    let text = format!(
        "This peer is a member of cluster {cluster_id:032x}.\n\
         Its consensus data must not be lost: without it the peer cannot come back as a member.\n"
    );
    std::fs::write(&path, text).map_err(|source| MemberFileError { path, source })
}

/// Forgets the membership (after the data was removed).
pub fn forget(config_dir: &Path) -> Result<(), MemberFileError> {
    let path = path(config_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(MemberFileError { path, source }),
    }
}

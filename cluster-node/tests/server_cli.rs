//! The `ipfscluster-server` binary in temp dirs.

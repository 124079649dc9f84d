//! The `ipfscluster` binary end to end (filled below).

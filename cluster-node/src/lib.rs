//! # cluster-node
//!
//! The binaries `ipfscluster-server` (a cluster peer) and `ipfscluster` (the
//! command-line client). They arrive with the node, REST API and CLI issues;
//! until then each binary says so and exits with [`NOT_YET_EXIT_CODE`].

/// Exit code of a binary whose issue has not landed yet.
pub const NOT_YET_EXIT_CODE: i32 = 2;

/// Prints the "not yet" notice for `binary` and returns the exit code to use.
pub fn not_yet(binary: &str, what: &str) -> i32 {
    eprintln!(
        "{binary}: not yet: {what} lands with a later issue. Today the project ships the \
         sans-IO core (cargo test -p cluster-core), consensus (cargo test -p cluster-net) \
         and the simulator (cargo test -p sim)."
    );
    NOT_YET_EXIT_CODE
}

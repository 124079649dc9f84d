//! The fuzz targets' bodies, shared by the libFuzzer binaries in
//! `fuzz_targets/` (nightly, `cargo fuzz run <target>`) and by the stable
//! runner in `tests/stable.rs` (CI), so both run exactly the same checks.
//!
//! Each target is a function of arbitrary bytes that panics when it finds
//! a bug: a panic in the code under test, a broken invariant, or a
//! disagreement with a model or a round trip. Structured targets read their
//! bytes through [`arbitrary::Unstructured`].

pub mod cid;
pub mod kubo_answers;
pub mod multipart;
pub mod node_rpc;
pub mod p2p_wire;
pub mod pin_import;
pub mod pinset_entries;
pub mod pinsvc_request;
pub mod proxy_request;
pub mod raft_store;
pub mod rest_query;
pub mod runner;
pub mod seeds;
pub mod server_config;
pub mod snapshot;
pub mod state_machine;

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name: the libFuzzer binary and the `corpus/<name>/` directory.
    pub name: &'static str,
    /// Runs one input; panics on a finding.
    pub run: fn(&[u8]),
    /// Tokens the stable runner splices into inputs (libFuzzer finds its own).
    pub dictionary: &'static [&'static [u8]],
}

/// Every target, in the order CI runs them.
///
/// Parsers still being written get a target each when they land: a module here with a `run(&[u8])`, a line below, a binary in
/// `fuzz_targets/` (and a `[[bin]]` in `Cargo.toml`), seeds in
/// `corpus/<name>/`. The stable runner and CI pick it up from this list.
pub const TARGETS: &[Target] = &[
    Target {
        name: "cid",
        run: cid::run,
        dictionary: cid::DICTIONARY,
    },
    Target {
        name: "pinset_entries",
        run: pinset_entries::run,
        dictionary: &[],
    },
    Target {
        name: "snapshot_restore",
        run: snapshot::run_restore,
        dictionary: &[],
    },
    Target {
        name: "snapshot_body",
        run: snapshot::run_body,
        dictionary: &[],
    },
    Target {
        name: "state_machine",
        run: state_machine::run,
        dictionary: &[],
    },
    Target {
        name: "raft_store",
        run: raft_store::run,
        dictionary: &[],
    },
    Target {
        name: "p2p_wire",
        run: p2p_wire::run,
        dictionary: &[],
    },
    Target {
        name: "node_rpc",
        run: node_rpc::run,
        dictionary: &[],
    },
    Target {
        name: "kubo_answers",
        run: kubo_answers::run,
        dictionary: kubo_answers::DICTIONARY,
    },
    Target {
        name: "rest_query",
        run: rest_query::run,
        dictionary: rest_query::DICTIONARY,
    },
    Target {
        name: "server_config",
        run: server_config::run,
        dictionary: server_config::DICTIONARY,
    },
    Target {
        name: "pin_import",
        run: pin_import::run,
        dictionary: pin_import::DICTIONARY,
    },
    Target {
        name: "pinsvc_request",
        run: pinsvc_request::run,
        dictionary: pinsvc_request::DICTIONARY,
    },
    Target {
        name: "proxy_request",
        run: proxy_request::run,
        dictionary: proxy_request::DICTIONARY,
    },
    Target {
        name: "multipart",
        run: multipart::run,
        dictionary: multipart::DICTIONARY,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

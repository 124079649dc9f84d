//! The library half of the `ipfscluster` command-line client (feature
//! `cli`): where the API is ([`host`]), checking what the user typed before
//! any request ([`args`]), the text and JSON output ([`format`],
//! [`humanize`]), waiting for a pin to reach a status ([`wait`]) and one
//! method per command ([`session::Session`]). The binary only parses the
//! command line and calls these, so tests can drive them directly.
//!
//! Compatible with `ipfs-cluster-ctl` v1.1 where the REST API allows
//! (`/work/shared/reference/cli.md`): same commands, flags, text layouts
//! and JSON (the API's own objects, pretty-printed). Differences: errors
//! are one `error: …` line on stderr (upstream prints a block on stdout),
//! `--timeout` also takes a human duration, a single `--host` (no
//! failover list), no TLS or libp2p-http transport; `add` shows a plain
//! progress line on stderr and supports `--format unixfs` only.

pub mod args;
pub mod error;
pub mod format;
pub mod host;
pub mod humanize;
pub mod session;
pub mod wait;

pub use error::CliError;
pub use session::{Encoding, GlobalOptions, Session};

/// The client's own version (`ipfscluster --version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

//! The offline state commands of a stopped peer: `state export`,
//! `state import`, `state cleanup`. The caller holds the config
//! directory's lock.
//!
//! Export and import run this peer's real consensus code over its store
//! with no network (an in-process transport nobody else is on), so what
//! they read and write is exactly what the daemon would.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cluster_core::pin::PinType;
use cluster_core::pinset::{Command, Entry};
use cluster_core::{PeerId, Pin};
use cluster_net::inproc::InProcRouter;
use cluster_net::store::{RedbStore, StoreError, RAFT_DB_FILE_NAME};
use cluster_net::{Boot, ClusterRaft, MembershipError, RaftConfig, StartError, WriteError};

use crate::config::ServerConfig;
use crate::server::member::{self, MemberFileError};
use crate::server::pin_json::{PinJson, PinJsonError};
use crate::server::{random_id, RandomError};

/// Pins proposed together in one log entry by `import`.
const IMPORT_BATCH: usize = 256;
/// Longest wait for a lone member to lead itself and apply its log.
const LONE_CATCH_UP_WAIT: Duration = Duration::from_secs(30);
/// Longest wait for a started peer to publish what its store holds.
const METRICS_SETTLE_WAIT: Duration = Duration::from_secs(5);
/// Tries to reopen a store just closed in this process.
const REOPEN_TRIES: u32 = 50;
/// Longest wait for the imported cluster's own leader.
const IMPORT_LEADER_WAIT: Duration = Duration::from_secs(30);

/// An offline state command failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A line of the import is not a valid pin; nothing was imported.
    #[error("line {line}: {reason} (nothing was imported)")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The peer already has consensus state: import only fills a fresh one.
    #[error(
        "this peer already has consensus data in {0}: `state import` only fills a fresh peer. \
         Run `state cleanup --force` first (it removes every pin of this peer's copy)"
    )]
    NotFresh(PathBuf),
    /// `cleanup` without `--force`.
    #[error(
        "`state cleanup` removes this peer's consensus data ({0}) for good; \
         run it again with --force to proceed"
    )]
    NeedsForce(PathBuf),
    /// Reading the input or writing the output failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The consensus store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The consensus layer refused to start on it.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The imported cluster could not be created.
    #[error("creating the imported cluster: {0}")]
    Membership(#[from] MembershipError),
    /// A batch of pins could not be written.
    #[error("writing the imported pins: {0}")]
    Write(#[from] WriteError),
    /// The pinset refused a pin that passed every check before writing.
    #[error("the pinset refused an imported pin (the import stopped part-way): {0}")]
    Refused(String),
    /// The imported cluster found no leader (itself) in time.
    #[error("the imported single-peer cluster elected no leader within {0:?}")]
    NoLeader(Duration),
    /// The membership record could not be written or removed.
    #[error(transparent)]
    Member(#[from] MemberFileError),
    /// No randomness for the cluster id.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// Where a peer's consensus data lives.
pub struct PeerPaths {
    /// The config directory.
    pub config_dir: PathBuf,
    /// The consensus data directory.
    pub data_dir: PathBuf,
    /// This peer's id.
    pub peer: PeerId,
    /// The address recorded for it in the membership.
    pub addr: String,
}

impl PeerPaths {
    /// The paths of the peer configured by `config` in `config_dir`.
    pub fn of(config_dir: &Path, config: &ServerConfig, peer: PeerId) -> PeerPaths {
        PeerPaths {
            config_dir: config_dir.to_path_buf(),
            data_dir: config.data_dir(config_dir),
            peer,
            addr: config
                .cluster
                .listen_multiaddress
                .first()
                .cloned()
                .unwrap_or_default(),
        }
    }

    fn has_database(&self) -> bool {
        self.data_dir.join(RAFT_DB_FILE_NAME).exists()
    }
}

/// Consensus settings for reading a store offline: nobody campaigns (a
/// lone member would otherwise elect itself and append to its log).
fn quiet_raft_config(base: &RaftConfig) -> RaftConfig {
    const HOUR_MS: u64 = 3_600_000;
    RaftConfig {
        election_timeout_min_ms: 24 * HOUR_MS,
        election_timeout_max_ms: 24 * HOUR_MS + 1,
        ..base.clone()
    }
}

/// Writes every pin of the stopped peer's state to `out`, one JSON object
/// per line, in CID order; returns how many. A peer without consensus data
/// exports nothing.
///
/// The pinset is what the store says was committed: its last snapshot and
/// the log up to the last commit it recorded. A lone member's whole log is
/// committed (it is its own majority), but the record of that may lag the
/// last writes: such a peer is started once more with elections on, leads
/// itself and applies its whole log before it is read (which appends the
/// new term's empty entry, as every start of the daemon does).
pub async fn export(
    paths: &PeerPaths,
    raft_config: &RaftConfig,
    out: &mut dyn Write,
) -> Result<usize, StateError> {
    if !paths.has_database() {
        return Ok(0);
    }
    let Some(raft) = start_offline(paths, quiet_raft_config(raft_config)).await? else {
        return Ok(0);
    };
    // The handle's view of the log and membership is published by the
    // Raft task shortly after start.
    let deadline = tokio::time::Instant::now() + METRICS_SETTLE_WAIT;
    while (raft.last_log_index() == 0 || raft.members().is_empty())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lone = raft.members() == [paths.peer.clone()];
    let raft = if lone && raft.last_log_index() > raft.applied_index() {
        raft.shutdown().await;
        drop(raft);
        let Some(raft) = start_offline(paths, raft_config.clone()).await? else {
            return Ok(0);
        };
        let caught_up = raft.wait_for_leader(LONE_CATCH_UP_WAIT).await.is_some()
            && raft
                .wait_for_applied(raft.last_log_index(), LONE_CATCH_UP_WAIT)
                .await;
        if !caught_up {
            raft.shutdown().await;
            return Err(StateError::NoLeader(LONE_CATCH_UP_WAIT));
        }
        raft
    } else {
        raft
    };
    let pins: Vec<Pin> = raft.with_pinset(|pinset| pinset.iter().collect());
    raft.shutdown().await;
    let io = |source| StateError::Io {
        what: "writing the export".to_string(),
        source,
    };
    for pin in &pins {
        let line = serde_json::to_string(&PinJson::from(pin)).map_err(|e| io(e.into()))?;
        writeln!(out, "{line}").map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(pins.len())
}

/// Starts this peer's consensus on its existing store with no network;
/// `None` when the store holds no state at all.
async fn start_offline(
    paths: &PeerPaths,
    config: RaftConfig,
) -> Result<Option<ClusterRaft>, StateError> {
    let store = open_released(&paths.data_dir).await?;
    let router = InProcRouter::new();
    match ClusterRaft::start(
        &paths.peer,
        paths.addr.clone(),
        config,
        Boot::Existing,
        store,
        router.transport(paths.peer.as_str()),
    )
    .await
    {
        Ok(raft) => Ok(Some(raft)),
        // A store that was created but never written holds no pins.
        Err(StartError::NoState { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Opens the store, waiting briefly for an earlier handle in this process
/// to let go of the file.
async fn open_released(dir: &Path) -> Result<RedbStore, StateError> {
    let mut tries = 0;
    loop {
        match RedbStore::open(dir) {
            Err(StoreError::Open { .. }) if tries < REOPEN_TRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Reads pins, one JSON object per line (blank lines skipped), checking
/// every one as the pinset would; the first bad line is an error naming it.
pub fn read_pins(input: &mut dyn BufRead) -> Result<Vec<Pin>, StateError> {
    let mut pins = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (n, line) in input.lines().enumerate() {
        let line_no = n + 1;
        let line = line.map_err(|source| StateError::Io {
            what: format!("reading line {line_no}"),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| StateError::BadLine {
            line: line_no,
            reason,
        };
        let json: PinJson = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        let pin = json
            .to_pin()
            .map_err(|e: PinJsonError| bad(e.to_string()))?;
        if pin.pin_type != PinType::Data {
            return Err(bad(format!(
                "{:?} pins cannot be imported (only data pins)",
                pin.pin_type
            )));
        }
        pin.validate().map_err(|e| bad(e.to_string()))?;
        if let Some(first) = seen.insert(pin.cid.clone(), line_no) {
            return Err(bad(format!("{} is already on line {first}", pin.cid)));
        }
        pins.push(pin);
    }
    Ok(pins)
}

/// Fills a fresh peer with `pins`: creates a new single-peer cluster in its
/// store holding them (other peers then join it). Refuses a peer that
/// already has consensus state.
pub async fn import(
    paths: &PeerPaths,
    raft_config: &RaftConfig,
    pins: Vec<Pin>,
) -> Result<usize, StateError> {
    if member::is_member(&paths.config_dir) {
        return Err(StateError::NotFresh(paths.data_dir.clone()));
    }
    let store = RedbStore::open_or_create(&paths.data_dir)?;
    let router = InProcRouter::new();
    let raft = ClusterRaft::start(
        &paths.peer,
        paths.addr.clone(),
        raft_config.clone(),
        Boot::CreateIfEmpty {
            incarnation: random_id()?,
        },
        store,
        router.transport(paths.peer.as_str()),
    )
    .await?;
    let result = fill(&raft, paths, pins).await;
    raft.shutdown().await;
    result
}

async fn fill(raft: &ClusterRaft, paths: &PeerPaths, pins: Vec<Pin>) -> Result<usize, StateError> {
    if raft.cluster_id().is_some() || raft.applied_index() > 0 {
        return Err(StateError::NotFresh(paths.data_dir.clone()));
    }
    let cluster_id = random_id()?;
    raft.initialize(cluster_id).await?;
    if raft.wait_for_leader(IMPORT_LEADER_WAIT).await.is_none() {
        return Err(StateError::NoLeader(IMPORT_LEADER_WAIT));
    }
    member::record(&paths.config_dir, cluster_id)?;
    let count = pins.len();
    let mut pins = pins.into_iter().peekable();
    while pins.peek().is_some() {
        let batch: Vec<Entry> = pins
            .by_ref()
            .take(IMPORT_BATCH)
            .map(|pin| Entry::new(Command::Pin(pin)))
            .collect();
        let results = match raft.write_batch(batch.clone()).await {
            // Pins with much metadata: one log entry each instead.
            Err(WriteError::TooLarge { .. }) => {
                let mut results = Vec::with_capacity(batch.len());
                for entry in batch {
                    results.push(raft.write(entry).await?);
                }
                results
            }
            other => other?,
        };
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            // Every pin was checked on its own before; the pinset refusing
            // one now is a bug to report, not a user error.
            return Err(StateError::Refused(e.to_string()));
        }
    }
    Ok(count)
}

/// Removes the stopped peer's consensus data and its membership record: its
/// next start is a first start. Needs `force`.
pub fn cleanup(paths: &PeerPaths, force: bool) -> Result<bool, StateError> {
    if !force {
        return Err(StateError::NeedsForce(paths.data_dir.clone()));
    }
    let existed = paths.data_dir.exists();
    if existed {
        std::fs::remove_dir_all(&paths.data_dir).map_err(|source| StateError::Io {
            what: format!("removing {}", paths.data_dir.display()),
            source,
        })?;
    }
    member::forget(&paths.config_dir)?;
    Ok(existed)
}

//! `server.json`: the peer daemon's configuration, its defaults and its
//! validation.
//!
//! Durations are written as humans write them (`"30s"`, `"2m"`, `"1h 30m"`).
//! Unknown keys are refused (a misspelt key would otherwise be silently
//! ignored and its default used). Every error names the key at fault, as a
//! dotted path (`cluster.secret`, `consensus.raft.heartbeat_interval`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cluster_core::allocator::AllocatorConfig;
use cluster_core::tracker::TrackerConfig;
use cluster_net::p2p::{ClusterSecret, Libp2pConfig};
use cluster_net::RaftConfig;
use serde::{Deserialize, Serialize};

use crate::drivers::expiry::ExpiryConfig;
use crate::drivers::metrics::MetricsConfig;
use crate::drivers::repair::RepairConfig;
use crate::drivers::tracker::TrackerDriverConfig;
use crate::DriverSettings;

/// Name of the configuration file in the config directory.
pub const CONFIG_FILE: &str = "server.json";

/// The whole `server.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The peer itself and the cluster it belongs to.
    pub cluster: ClusterSection,
    /// Consensus settings.
    pub consensus: ConsensusSection,
    /// The REST API.
    pub rest_api: RestApiSection,
    /// The IPFS proxy.
    pub ipfs_proxy: IpfsProxySection,
    /// The Pinning Service API.
    pub pinning_service: PinningServiceSection,
    /// The IPFS daemon this peer drives.
    pub ipfs_http: IpfsHttpSection,
    /// Whether that is an embedded node or an external daemon.
    pub ipfs: IpfsSection,
    /// The pin tracker.
    pub pin_tracker: PinTrackerSection,
    /// Metrics this peer publishes.
    pub metrics: MetricsSection,
    /// Re-allocation of pins whose peers left.
    pub repinning: RepinningSection,
    /// Removal of pins whose `expire_at` passed.
    pub expiry: ExpirySection,
    /// Prometheus metrics (upstream's `observations.metrics`).
    pub observations: ObservationsSection,
}

/// The `observations` section: the Prometheus endpoint `GET /metrics`.
/// Off by default, as upstream (`enable_stats: false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservationsSection {
    /// Serve the metrics.
    pub enable_stats: bool,
    /// `host:port` (or `/ip4/…/tcp/…`) the metrics are served on
    /// (upstream's default `127.0.0.1:8888`).
    pub metrics_listen_address: String,
}

impl Default for ObservationsSection {
    fn default() -> Self {
        ObservationsSection {
            enable_stats: false,
            metrics_listen_address: crate::api::rest::observe::DEFAULT_METRICS_LISTEN.into(),
        }
    }
}

/// The `cluster` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// This peer's id, written by `init` for the reader's benefit; the key
    /// file is the truth and the daemon refuses a mismatch.
    pub id: String,
    /// The identity key file, relative to the config directory.
    pub identity_file: PathBuf,
    /// The cluster secret (64 hex characters); empty runs without a private
    /// network (any libp2p peer may connect: a warning is logged).
    pub secret: String,
    /// Other peers of the cluster, as multiaddrs with `/p2p/<id>`: a new
    /// peer joins the cluster through them.
    pub cluster_peers: Vec<String>,
    /// Where the cluster's libp2p host listens.
    pub listen_multiaddress: Vec<String>,
    /// The consensus data directory, relative to the config directory
    /// unless absolute.
    pub data_folder: PathBuf,
    /// Default replication minimum of new pins (-1: everywhere).
    pub replication_factor_min: i32,
    /// Default replication maximum of new pins (-1: everywhere).
    pub replication_factor_max: i32,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            id: String::new(),
            identity_file: PathBuf::from(cluster_net::p2p::KEY_FILE),
            secret: String::new(),
            cluster_peers: Vec::new(),
            listen_multiaddress: vec!["/ip4/127.0.0.1/tcp/9096".to_string()],
            data_folder: PathBuf::from("data"),
            replication_factor_min: -1,
            replication_factor_max: -1,
        }
    }
}

/// The `consensus` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusSection {
    /// Raft's timing and snapshot policy.
    pub raft: RaftSection,
}

/// The `consensus.raft` section: what a user tunes of [`RaftConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSection {
    /// Leader heartbeat period.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomised election timeout.
    #[serde(with = "humantime_serde")]
    pub election_timeout_min: Duration,
    /// Upper bound of the randomised election timeout.
    #[serde(with = "humantime_serde")]
    pub election_timeout_max: Duration,
    /// Time allowed for one snapshot chunk or forwarded write attempt.
    #[serde(with = "humantime_serde")]
    pub rpc_timeout: Duration,
    /// Time allowed for a client write, retries included.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Time allowed for a join or removal, retries included.
    #[serde(with = "humantime_serde")]
    pub membership_timeout: Duration,
    /// Snapshot after this many log entries.
    pub snapshot_every_logs: u64,
    /// Snapshot after this many client writes (0: no limit).
    pub snapshot_every_writes: u64,
    /// Snapshot after this many bytes of log (0: no limit).
    pub snapshot_every_log_bytes: u64,
    /// Log entries kept behind a snapshot.
    pub logs_to_keep: u64,
}

impl Default for RaftSection {
    fn default() -> Self {
        let d = RaftConfig::default();
        RaftSection {
            heartbeat_interval: ms(d.heartbeat_interval_ms),
            election_timeout_min: ms(d.election_timeout_min_ms),
            election_timeout_max: ms(d.election_timeout_max_ms),
            rpc_timeout: ms(d.rpc_timeout_ms),
            write_timeout: ms(d.write_timeout_ms),
            membership_timeout: ms(d.membership_timeout_ms),
            snapshot_every_logs: d.snapshot_every_logs,
            snapshot_every_writes: d.snapshot_every_writes,
            snapshot_every_log_bytes: d.snapshot_every_log_bytes,
            logs_to_keep: d.logs_to_keep,
        }
    }
}

/// The `ipfs_proxy` section: the Kubo-compatible API in front of the
/// IPFS daemon (upstream's `api.ipfsproxy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpfsProxySection {
    /// `host:port` to listen on.
    pub listen_address: String,
    /// The IPFS daemon's RPC API the proxy forwards to; absent: the one
    /// of `ipfs_http.node_multiaddress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_multiaddress: Option<String>,
    /// Extra header names copied from the daemon's answers onto the
    /// proxy's own answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extract_headers_extra: Vec<String>,
    /// How long headers learned from the daemon are kept (`0s`: learned
    /// once).
    #[serde(default = "default_extract_headers_ttl", with = "humantime_serde")]
    pub extract_headers_ttl: Duration,
}

fn default_extract_headers_ttl() -> Duration {
    Duration::from_secs(5 * 60)
}

impl Default for IpfsProxySection {
    fn default() -> Self {
        IpfsProxySection {
            listen_address: "127.0.0.1:9095".to_string(),
            node_multiaddress: None,
            extract_headers_extra: Vec::new(),
            extract_headers_ttl: default_extract_headers_ttl(),
        }
    }
}

/// The `rest_api` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestApiSection {
    /// `host:port` to listen on.
    pub listen_address: String,
    /// `{"user": "password"}`: requests must carry these basic-auth
    /// credentials (upstream's key; one user). Absent: no authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth_credentials: Option<BTreeMap<String, String>>,
    /// Largest `POST /add` upload, in bytes (streamed to IPFS, never held
    /// in memory: this bounds what one request can store).
    #[serde(default = "default_max_add_bytes")]
    pub max_add_bytes: u64,
}

fn default_max_add_bytes() -> u64 {
    crate::api::rest::DEFAULT_MAX_ADD_BYTES
}

impl RestApiSection {
    /// The one user and password of `basic_auth_credentials`, if set.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        let (user, pass) = self.basic_auth_credentials.as_ref()?.iter().next()?;
        Some((user.clone(), pass.clone()))
    }
}

/// The `pinning_service` section: the IPFS Pinning Service API.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinningServiceSection {
    /// `host:port` to listen on.
    pub listen_address: String,
    /// Whether the daemon serves it (upstream serves it when its section
    /// is present, as `init` writes it).
    #[serde(default = "serve_by_default")]
    pub enabled: bool,
    /// `{"user": "password"}`: basic-auth credentials, whose password also
    /// signs the tokens of `POST /token` (upstream's key; one user).
    /// Absent: the REST API's credentials, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth_credentials: Option<BTreeMap<String, String>>,
    /// Bearer tokens accepted as they are (what `ipfs pin remote service
    /// add` is given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_tokens: Vec<String>,
}

fn serve_by_default() -> bool {
    true
}

impl std::fmt::Debug for PinningServiceSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a password or a token.
        f.debug_struct("PinningServiceSection")
            .field("listen_address", &self.listen_address)
            .field("enabled", &self.enabled)
            .field(
                "users",
                &self
                    .basic_auth_credentials
                    .as_ref()
                    .map(|c| c.keys().collect::<Vec<_>>()),
            )
            .field("access_tokens", &self.access_tokens.len())
            .finish()
    }
}

impl PinningServiceSection {
    /// The user and password that guard the API: its own, else the REST
    /// API's (`rest`).
    pub fn basic_auth(&self, rest: &RestApiSection) -> Option<(String, String)> {
        let own = self.basic_auth_credentials.as_ref();
        let (user, pass) = own
            .or(rest.basic_auth_credentials.as_ref())?
            .iter()
            .next()?;
        Some((user.clone(), pass.clone()))
    }
}

/// The `ipfs_http` section: the IPFS daemon's RPC API and how it is called.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpfsHttpSection {
    /// The daemon's RPC API address.
    pub node_multiaddress: String,
    /// Limit of one ordinary request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Limit of one `pin/add`.
    #[serde(with = "humantime_serde")]
    pub pin_timeout: Duration,
    /// Limit of one `pin/rm`.
    #[serde(with = "humantime_serde")]
    pub unpin_timeout: Duration,
    /// Requests in flight to the daemon at once.
    pub concurrency: usize,
}

impl Default for IpfsHttpSection {
    fn default() -> Self {
        IpfsHttpSection {
            node_multiaddress: "/ip4/127.0.0.1/tcp/5001".to_string(),
            request_timeout: Duration::from_secs(5 * 60),
            pin_timeout: Duration::from_secs(2 * 60),
            unpin_timeout: Duration::from_secs(3 * 3600),
            concurrency: 10,
        }
    }
}

/// Which IPFS node a peer drives (`ipfs.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpfsMode {
    /// A node inside the peer's process (feature `embedded-ipfs`), its key,
    /// repo and record under `ipfs/` in the config directory. What `init`
    /// writes unless given `--ipfs-api`.
    Embedded,
    /// The Kubo-compatible daemon at `ipfs_http.node_multiaddress`. The
    /// default of a file without the `ipfs` section (written before
    /// embedded mode existed).
    #[default]
    External,
}

/// The `ipfs` section: an embedded node or an external daemon. The
/// embedded node keeps `ipfs_http`'s `pin_timeout`, `unpin_timeout` and
/// `request_timeout` as its deadlines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpfsSection {
    /// `"embedded"` or `"external"`.
    pub mode: IpfsMode,
    /// Where the embedded node's swarm listens (multiaddrs); the other
    /// peers learn the actual addresses from this peer's metrics.
    pub swarm_listen_multiaddress: Vec<String>,
    /// Size limit of the embedded node's repo in bytes (the `freespace`
    /// metric counts down from it); 0: the free space of its file system.
    pub storage_max: u64,
}

impl Default for IpfsSection {
    fn default() -> Self {
        IpfsSection {
            mode: IpfsMode::External,
            swarm_listen_multiaddress: vec!["/ip4/127.0.0.1/tcp/0".to_string()],
            storage_max: 0,
        }
    }
}

/// The `pin_tracker` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PinTrackerSection {
    /// Pin operations in flight at once.
    pub concurrent_pins: usize,
    /// Unpin operations in flight at once.
    pub concurrent_unpins: usize,
    /// Operations queued at most.
    pub max_queue_size: usize,
    /// Automatic attempts per operation before it waits for a recover.
    pub max_retries: u32,
    /// First retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_backoff_min: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_backoff_max: Duration,
    /// How often the IPFS daemon's pins are compared with the pinset.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// How often failed operations are retried (IPFS Cluster's
    /// `pin_recover_interval`).
    #[serde(with = "humantime_serde")]
    pub recover_interval: Duration,
}

impl Default for PinTrackerSection {
    fn default() -> Self {
        let d = TrackerConfig::default();
        PinTrackerSection {
            concurrent_pins: d.concurrent_pins,
            concurrent_unpins: d.concurrent_unpins,
            max_queue_size: d.queue_max,
            max_retries: d.attempts_max,
            retry_backoff_min: ms(d.backoff_base_ms),
            retry_backoff_max: ms(d.backoff_max_ms),
            reconcile_interval: ms(d.reconcile_interval_ms),
            recover_interval: Duration::from_secs(12 * 60),
        }
    }
}

/// The `metrics` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Pause between two publications.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long receivers keep one publication.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// This peer's tags (allocation by `tag:<key>`).
    pub tags: BTreeMap<String, String>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        let d = MetricsConfig::default();
        MetricsSection {
            interval: ms(d.interval_ms),
            ttl: ms(d.ttl_ms),
            tags: BTreeMap::from([("group".to_string(), "default".to_string())]),
        }
    }
}

/// The `repinning` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepinningSection {
    /// Whether the leader re-allocates pins of departed peers and of peers
    /// whose metrics expired while they hold fewer live allocations than
    /// their minimum (IPFS Cluster's `disable_repinning: false`; on by
    /// default, unlike IPFS Cluster: a lost peer's pins should not stay
    /// under-replicated until someone notices). The replaced peer stays
    /// allocated until its replacements report pinned.
    pub enabled: bool,
    /// Pause between two re-allocation rounds.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for RepinningSection {
    fn default() -> Self {
        RepinningSection {
            enabled: true,
            interval: ms(RepairConfig::default().interval_ms),
        }
    }
}

/// The `expiry` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpirySection {
    /// Pause between two rounds of the leader's expiry (how long past its
    /// `expire_at` a pin may still be there, at most).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for ExpirySection {
    fn default() -> Self {
        ExpirySection {
            interval: ms(ExpiryConfig::default().interval_ms),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            cluster: ClusterSection::default(),
            consensus: ConsensusSection::default(),
            rest_api: RestApiSection {
                listen_address: "127.0.0.1:9094".to_string(),
                basic_auth_credentials: None,
                max_add_bytes: default_max_add_bytes(),
            },
            ipfs_proxy: IpfsProxySection::default(),
            pinning_service: PinningServiceSection {
                listen_address: "127.0.0.1:9097".to_string(),
                enabled: true,
                basic_auth_credentials: None,
                access_tokens: Vec::new(),
            },
            ipfs_http: IpfsHttpSection::default(),
            ipfs: IpfsSection::default(),
            pin_tracker: PinTrackerSection::default(),
            metrics: MetricsSection::default(),
            repinning: RepinningSection::default(),
            expiry: ExpirySection::default(),
            observations: ObservationsSection::default(),
        }
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn to_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What is wrong with a configuration. The message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid JSON, has an unknown key or a value of the
    /// wrong type.
    #[error("{path}: {key}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The key at fault (dotted path; `.` for the document itself).
        key: String,
        /// What the parser said.
        reason: String,
    },
    /// A value is out of range or the values contradict each other.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key at fault.
        key: String,
        /// Why.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.to_string(),
    }
}

/// Time given to one membership attempt beyond the leader's wait (a round
/// trip and the leader's own scheduling).
const MEMBERSHIP_ATTEMPT_MARGIN_MS: u64 = 5_000;

impl ServerConfig {
    /// Parses `text` (the content of `path`, named in errors) and validates it.
    pub fn parse(text: &str, path: &Path) -> Result<ServerConfig, ConfigError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let config: ServerConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Parse {
                path: path.to_path_buf(),
                key,
                reason: e.into_inner().to_string(),
            }
        })?;
        de.end().map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            key: ".".to_string(),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates `server.json` of `config_dir`.
    pub fn load(config_dir: &Path) -> Result<ServerConfig, ConfigError> {
        let path = config_dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        ServerConfig::parse(&text, &path)
    }

    /// The configuration as written to `server.json` (pretty JSON).
    pub fn to_json(&self) -> String {
        // Every field is a plain value: serialising cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Checks every value, and the consensus and transport settings derived
    /// from them, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.secret()?;
        let c = &self.cluster;
        if c.identity_file.file_name() != Some(std::ffi::OsStr::new(cluster_net::p2p::KEY_FILE)) {
            return Err(invalid(
                "cluster.identity_file",
                format!(
                    "the key file must be named {} (its directory may differ)",
                    cluster_net::p2p::KEY_FILE
                ),
            ));
        }
        if c.listen_multiaddress.is_empty() {
            return Err(invalid(
                "cluster.listen_multiaddress",
                "at least one address is needed",
            ));
        }
        for (i, addr) in c.listen_multiaddress.iter().enumerate() {
            parse_multiaddr(addr, false)
                .map_err(|e| invalid(format!("cluster.listen_multiaddress[{i}]"), e))?;
        }
        self.peer_addresses(&[], "cluster.cluster_peers")?;
        cluster_core::pin::validate_replication(c.replication_factor_min, c.replication_factor_max)
            .map_err(|e| invalid("cluster.replication_factor_min/max", e))?;
        if let Some(credentials) = &self.rest_api.basic_auth_credentials {
            if credentials.len() != 1 {
                return Err(invalid(
                    "rest_api.basic_auth_credentials",
                    format!("expected one user, got {}", credentials.len()),
                ));
            }
        }
        self.validate_pinning_service()?;
        for (key, listen) in [
            ("rest_api", &self.rest_api.listen_address),
            ("ipfs_proxy", &self.ipfs_proxy.listen_address),
            ("pinning_service", &self.pinning_service.listen_address),
        ] {
            listen.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    format!("{key}.listen_address"),
                    format!("{e} (expected host:port, e.g. 127.0.0.1:9094)"),
                )
            })?;
        }
        // Checked by the connector's own parser: what passes here, it takes.
        crate::ipfs::kubo::api_url_from_multiaddr(&self.ipfs_http.node_multiaddress)
            .map_err(|e| invalid("ipfs_http.node_multiaddress", e))?;
        self.validate_ipfs()?;
        self.ipfs_proxy_node_url()?;
        for (i, name) in self.ipfs_proxy.extract_headers_extra.iter().enumerate() {
            let ok =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                return Err(invalid(
                    format!("ipfs_proxy.extract_headers_extra[{i}]"),
                    format!("{name:?} is not a header name"),
                ));
            }
        }
        let positive = [
            ("ipfs_http.request_timeout", self.ipfs_http.request_timeout),
            ("ipfs_http.pin_timeout", self.ipfs_http.pin_timeout),
            ("ipfs_http.unpin_timeout", self.ipfs_http.unpin_timeout),
            ("metrics.interval", self.metrics.interval),
            ("metrics.ttl", self.metrics.ttl),
            ("repinning.interval", self.repinning.interval),
            ("expiry.interval", self.expiry.interval),
            (
                "pin_tracker.recover_interval",
                self.pin_tracker.recover_interval,
            ),
        ];
        for (key, value) in positive {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than 0s"));
            }
        }
        if self.ipfs_http.concurrency == 0 {
            return Err(invalid("ipfs_http.concurrency", "must be positive"));
        }
        self.tracker_config()
            .validate()
            .map_err(|e| invalid("pin_tracker", e))?;
        let raft = self.raft_config();
        raft.validate().map_err(|e| invalid("consensus.raft", e))?;
        self.libp2p_config(Path::new(".")).and_then(|net| {
            net.validate(&raft)
                .map_err(|e| invalid("consensus.raft", format!("does not fit the transport: {e}")))
        })?;
        Ok(())
    }

    /// Checks the `ipfs` section: a mode this build has, parseable swarm
    /// addresses.
    fn validate_ipfs(&self) -> Result<(), ConfigError> {
        if self.ipfs.mode == IpfsMode::Embedded && !cfg!(feature = "embedded-ipfs") {
            return Err(invalid(
                "ipfs.mode",
                "this build has no embedded IPFS node (cluster-node feature `embedded-ipfs`): \
                 set \"external\" and ipfs_http.node_multiaddress",
            ));
        }
        for addr in &self.ipfs.swarm_listen_multiaddress {
            addr.parse::<libp2p::Multiaddr>()
                .map_err(|e| invalid("ipfs.swarm_listen_multiaddress", format!("{addr:?}: {e}")))?;
        }
        Ok(())
    }

    fn validate_pinning_service(&self) -> Result<(), ConfigError> {
        let section = &self.pinning_service;
        if let Some(credentials) = &section.basic_auth_credentials {
            let one = credentials.len() == 1
                && credentials
                    .iter()
                    .all(|(u, p)| !u.is_empty() && !p.is_empty());
            if !one {
                return Err(invalid(
                    "pinning_service.basic_auth_credentials",
                    "expected one user with a non-empty name and password",
                ));
            }
        }
        for (i, token) in section.access_tokens.iter().enumerate() {
            if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(
                    format!("pinning_service.access_tokens[{i}]"),
                    "a token must be non-empty, without whitespace",
                ));
            }
        }
        Ok(())
    }

    /// The parsed cluster secret, `None` when empty.
    pub fn secret(&self) -> Result<Option<ClusterSecret>, ConfigError> {
        let text = self.cluster.secret.trim();
        if text.is_empty() {
            return Ok(None);
        }
        if text.len() != 64 {
            return Err(invalid(
                "cluster.secret",
                format!(
                    "expected 64 hex characters (32 bytes), got {}",
                    text.chars().count()
                ),
            ));
        }
        ClusterSecret::parse(text)
            .map(Some)
            .map_err(|e| invalid("cluster.secret", format!("expected 64 hex characters: {e}")))
    }

    /// `cluster_peers` followed by `extra`, each split into the peer id and
    /// the address to dial (without `/p2p/`). `key` names the source in errors.
    pub fn peer_addresses(
        &self,
        extra: &[String],
        key: &str,
    ) -> Result<Vec<PeerAddress>, ConfigError> {
        let mut out = Vec::new();
        for (i, text) in self.cluster.cluster_peers.iter().enumerate() {
            let peer = PeerAddress::parse(text)
                .map_err(|e| invalid(format!("cluster.cluster_peers[{i}]"), e))?;
            out.push(peer);
        }
        for (i, text) in extra.iter().enumerate() {
            let peer = PeerAddress::parse(text).map_err(|e| invalid(format!("{key}[{i}]"), e))?;
            out.push(peer);
        }
        Ok(out)
    }

    /// The URL of the daemon the IPFS proxy forwards to:
    /// `ipfs_proxy.node_multiaddress`, else `ipfs_http.node_multiaddress`.
    pub fn ipfs_proxy_node_url(&self) -> Result<String, ConfigError> {
        let (key, addr) = match &self.ipfs_proxy.node_multiaddress {
            Some(addr) => ("ipfs_proxy.node_multiaddress", addr),
            None => (
                "ipfs_http.node_multiaddress",
                &self.ipfs_http.node_multiaddress,
            ),
        };
        crate::ipfs::kubo::api_url_from_multiaddr(addr).map_err(|e| invalid(key, e))
    }

    /// The consensus settings.
    pub fn raft_config(&self) -> RaftConfig {
        let r = &self.consensus.raft;
        let d = RaftConfig::default();
        let membership_timeout_ms = to_ms(r.membership_timeout);
        // The leader's wait and one attempt scale with the overall limit
        // (the defaults keep 120 s of 300 s), so a short limit stays valid.
        let leader_wait = (membership_timeout_ms.saturating_mul(2) / 5)
            .min(d.membership_leader_wait_ms)
            .max(1);
        let attempt = leader_wait.saturating_add(
            to_ms(r.rpc_timeout).max(MEMBERSHIP_ATTEMPT_MARGIN_MS.min(leader_wait)),
        );
        RaftConfig {
            heartbeat_interval_ms: to_ms(r.heartbeat_interval),
            election_timeout_min_ms: to_ms(r.election_timeout_min),
            election_timeout_max_ms: to_ms(r.election_timeout_max),
            rpc_timeout_ms: to_ms(r.rpc_timeout),
            write_timeout_ms: to_ms(r.write_timeout),
            membership_timeout_ms,
            membership_leader_wait_ms: leader_wait,
            membership_attempt_timeout_ms: attempt.min(membership_timeout_ms),
            snapshot_every_logs: r.snapshot_every_logs,
            snapshot_every_writes: r.snapshot_every_writes,
            snapshot_every_log_bytes: r.snapshot_every_log_bytes,
            logs_to_keep: r.logs_to_keep,
            ..d
        }
    }

    /// The libp2p host's settings, with the identity key in `config_dir`.
    pub fn libp2p_config(&self, config_dir: &Path) -> Result<Libp2pConfig, ConfigError> {
        let mut net = Libp2pConfig::new(config_dir, self.cluster.listen_multiaddress.clone());
        net.secret = self.secret()?;
        let raft = self.raft_config();
        // A forwarded membership attempt must not be cut on the wire.
        net.peer_rpc_timeout_ms = net
            .peer_rpc_timeout_ms
            .max(raft.membership_attempt_timeout_ms.saturating_add(1_000));
        Ok(net)
    }

    /// The pin tracker's settings.
    pub fn tracker_config(&self) -> TrackerConfig {
        let t = &self.pin_tracker;
        TrackerConfig {
            concurrent_pins: t.concurrent_pins,
            concurrent_unpins: t.concurrent_unpins,
            queue_max: t.max_queue_size,
            attempts_max: t.max_retries,
            backoff_base_ms: to_ms(t.retry_backoff_min),
            backoff_max_ms: to_ms(t.retry_backoff_max),
            reconcile_interval_ms: to_ms(t.reconcile_interval),
            // An operation counts as failed once the connector would have
            // given up on it.
            op_timeout_ms: to_ms(self.ipfs_http.pin_timeout.max(self.ipfs_http.unpin_timeout))
                .saturating_add(to_ms(self.ipfs_http.request_timeout)),
        }
    }

    /// How this peer allocates pins (new ones through the REST API, and
    /// re-allocations): metrics count for as long as their TTL.
    pub fn allocator_config(&self) -> AllocatorConfig {
        AllocatorConfig {
            metric_ttl_ms: to_ms(self.metrics.ttl),
            ..AllocatorConfig::default()
        }
    }

    /// Every driver's settings; `epoch` is unique per start of the peer.
    pub fn driver_settings(&self, epoch: u16) -> DriverSettings {
        let metrics = MetricsConfig {
            interval_ms: to_ms(self.metrics.interval),
            ttl_ms: to_ms(self.metrics.ttl),
            tags: self.metrics.tags.clone(),
            ..MetricsConfig::default()
        };
        let repair = self.repinning.enabled.then(|| RepairConfig {
            interval_ms: to_ms(self.repinning.interval),
            allocator: self.allocator_config(),
            ..RepairConfig::default()
        });
        DriverSettings {
            tracker: TrackerDriverConfig::new(self.tracker_config(), epoch),
            metrics,
            repair,
            expiry: ExpiryConfig {
                interval_ms: to_ms(self.expiry.interval),
                ..ExpiryConfig::default()
            },
        }
    }

    /// The consensus data directory of a peer whose config is in `config_dir`.
    pub fn data_dir(&self, config_dir: &Path) -> PathBuf {
        config_dir.join(&self.cluster.data_folder)
    }

    /// The identity key's directory (cluster-net keeps the key file under a
    /// fixed name in it).
    pub fn identity_dir(&self, config_dir: &Path) -> PathBuf {
        let file = config_dir.join(&self.cluster.identity_file);
        file.parent()
            .map_or_else(|| config_dir.to_path_buf(), Path::to_path_buf)
    }
}

/// Another peer's address, from a multiaddr with `/p2p/<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddress {
    /// Its peer id.
    pub peer_id: cluster_core::PeerId,
    /// The address to dial, without `/p2p/`.
    pub addr: String,
    /// The address as given.
    pub full: String,
}

impl PeerAddress {
    /// Parses a multiaddr that ends with `/p2p/<peer id>`.
    pub fn parse(text: &str) -> Result<PeerAddress, String> {
        let addr = parse_multiaddr(text, true)?;
        let mut dial = libp2p::Multiaddr::empty();
        let mut peer = None;
        for protocol in addr.iter() {
            match protocol {
                libp2p::multiaddr::Protocol::P2p(id) => peer = Some(id.to_string()),
                other => dial.push(other),
            }
        }
        let peer = peer.ok_or_else(|| format!("{text:?} has no /p2p/<peer id>"))?;
        let peer_id = cluster_core::PeerId::parse(&peer)
            .map_err(|e| format!("{text:?}: bad peer id: {e}"))?;
        Ok(PeerAddress {
            peer_id,
            addr: dial.to_string(),
            full: text.to_string(),
        })
    }
}

/// Checks `text` is a multiaddr (with `/p2p/` when `with_peer`).
fn parse_multiaddr(text: &str, with_peer: bool) -> Result<libp2p::Multiaddr, String> {
    let addr: libp2p::Multiaddr = text
        .parse()
        .map_err(|e| format!("{text:?} is not a multiaddress: {e}"))?;
    let has_peer = addr
        .iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)));
    if with_peer && !has_peer {
        return Err(format!("{text:?} has no /p2p/<peer id>"));
    }
    if addr.is_empty() {
        return Err("empty multiaddress".to_string());
    }
    Ok(addr)
}

#[cfg(test)]
mod tests;

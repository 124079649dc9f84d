//! The REST API server: IPFS Cluster v1.1's HTTP API over one running peer
//! (rest-api.md), on axum and hyper's HTTP/1.
//!
//! Build a [`RestApi`] from what a running peer has (its [`PeerContext`],
//! its [`Drivers`]) and a [`RestConfig`], then [`RestApi::serve`] it on a
//! listener (the daemon binds `RestConfig::listen`, `127.0.0.1:9094` by
//! default) or mount [`RestApi::router`] elsewhere.
//!
//! Deviations from upstream, on purpose:
//! - `POST /pins/{cid}?mode=direct` pins directly (upstream forces a
//!   recursive depth on this route only; a quirk), and a bad option is one
//!   400 answer (upstream writes a 400 then pins anyway).
//! - Listings stream page by page from the pinset (never gathered whole);
//!   `limit` and `after` (a CID cursor) page them. `GET /pins` asks every
//!   peer for each page's statuses.
//! - Writes without a leader answer 503, not 500.
//! - `POST /peers` asks the peer who it is before changing the membership
//!   and refuses one that would not take the cluster's traffic (of another
//!   cluster, or of none and not waiting to join): upstream's Raft
//!   `AddVoter` adds any id. It then waits up to `peer_call_timeout` for
//!   the new peer to answer (it starts serving once it sees it is a member).
//! - `GET /health/bandwidth` counts this peer's cluster protocols (Raft,
//!   peer RPC, node RPC) in their codec, rates over the last 10 s; upstream
//!   reports every libp2p protocol of the host with moving averages.
//! - `shard-size` is stored with the pin and otherwise ignored: the pinset
//!   refuses sharded pins until sharding exists.
//! - Peer names: ours from the settings, other peers by id;
//!   `ipfs_peer_addresses` are every address a peer's metrics announce,
//!   not only public ones.
//! - `GET /health/alerts` lists members without valid metrics now (no
//!   alert history is kept yet); `GET /health/graph` holds what this peer
//!   knows (it hears from the members whose metrics are fresh).
//! - `X-Stream-Error` trailers go to clients that send `TE: trailers`.
//! - `POST /add` stores the blocks on this peer's IPFS only (the allocated
//!   peers fetch them when they pin), emits no `progress` updates and
//!   answers 501 to `shard`, `nocopy` and `format=car` (see [`add`]).
//! - `POST /token` signs HS256 only; a token with `exp`/`nbf` claims is
//!   held to them, issued tokens carry none (as upstream).
//! - API requests refused before routing (401, 413, the slash redirect,
//!   unknown paths) are not counted in the Prometheus metrics.

pub mod add;
pub mod auth;
pub mod cors;
pub mod encode;
pub mod error;
pub mod jwt;
pub mod limits;
pub mod monitor;
pub mod observe;
pub mod options;
pub mod peers;
pub mod pins;
pub mod state;
pub mod status;
pub mod status_page;
pub mod stream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use cluster_core::allocator::AllocatorConfig;
use cluster_core::pin::validate_replication;

use crate::context::PeerContext;
use crate::drivers::Drivers;
pub use error::ApiError;
use state::ApiState;

/// Upstream's default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9094";
/// Default bound of a request body, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Default bound of a `POST /add` upload, in bytes (upstream has none).
pub const DEFAULT_MAX_ADD_BYTES: u64 = 1 << 40;

/// The API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestConfig {
    /// Where the daemon binds the API (`serve` takes a bound listener).
    pub listen: SocketAddr,
    /// The one user allowed in, with its password; `None`: no
    /// authentication (upstream's default).
    pub basic_auth: Option<(String, String)>,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest `POST /add` upload accepted, in bytes (streamed, never held
    /// whole: this bounds what one request can store in IPFS).
    pub max_add_bytes: u64,
    /// Origins allowed cross-origin (`*`: any; empty: none).
    pub cors_origins: Vec<String>,
    /// Replication factors used where a request says 0 (upstream: -1/-1).
    pub default_replication_min: i32,
    /// See `default_replication_min`.
    pub default_replication_max: i32,
    /// How new pins are allocated.
    pub allocator: AllocatorConfig,
    /// Deadline of one call to another peer (status, recover, liveness).
    pub peer_call_timeout: Duration,
    /// This peer's name in answers (`None`: its id).
    pub peername: Option<String>,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9094)),
            basic_auth: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_add_bytes: DEFAULT_MAX_ADD_BYTES,
            cors_origins: vec!["*".into()],
            default_replication_min: -1,
            default_replication_max: -1,
            allocator: AllocatorConfig::default(),
            peer_call_timeout: Duration::from_secs(15),
            peername: None,
        }
    }
}

/// Why the settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestConfigError {
    /// The default replication factors are invalid.
    #[error("rest api: default replication factors: {0}")]
    Replication(#[from] cluster_core::pin::PinValidationError),
    /// Basic auth with an empty user or password admits nobody.
    #[error("rest api: basic auth needs a non-empty user and password")]
    EmptyCredentials,
    /// The listen address does not parse.
    #[error("rest api: listen address {input:?}: {reason}")]
    Listen {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A zero body limit refuses every body, a zero timeout every peer.
    #[error("rest api: {0} must be above zero")]
    Zero(&'static str),
}

/// Parses a listen address given as upstream's configs do
/// (`/ip4/127.0.0.1/tcp/9094`, `/ip6/::1/tcp/9094`) or as `host:port`.
pub fn parse_listen(text: &str) -> Result<SocketAddr, RestConfigError> {
    let bad = |reason: &'static str| RestConfigError::Listen {
        input: text.chars().take(100).collect(),
        reason,
    };
    if !text.starts_with('/') {
        return text.parse().map_err(|_| bad("not an ip:port address"));
    }
    let parts: Vec<&str> = text.trim_end_matches('/').split('/').collect();
    let [_, family, ip, "tcp", port] = parts[..] else {
        return Err(bad("expected /ip4/<ip>/tcp/<port> or /ip6/<ip>/tcp/<port>"));
    };
    let port: u16 = port.parse().map_err(|_| bad("port is not a number"))?;
    let ip: std::net::IpAddr = match family {
        "ip4" => ip
            .parse::<std::net::Ipv4Addr>()
            .map_err(|_| bad("not an IPv4 address"))?
            .into(),
        "ip6" => ip
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address"))?
            .into(),
        _ => return Err(bad("only /ip4 and /ip6 listen addresses are supported")),
    };
    Ok(SocketAddr::new(ip, port))
}

impl RestConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), RestConfigError> {
        validate_replication(self.default_replication_min, self.default_replication_max)?;
        if let Some((user, pass)) = &self.basic_auth {
            if user.is_empty() || pass.is_empty() {
                return Err(RestConfigError::EmptyCredentials);
            }
        }
        if self.max_body_bytes == 0 {
            return Err(RestConfigError::Zero("max_body_bytes"));
        }
        if self.max_add_bytes == 0 {
            return Err(RestConfigError::Zero("max_add_bytes"));
        }
        if self.peer_call_timeout.is_zero() {
            return Err(RestConfigError::Zero("peer_call_timeout"));
        }
        Ok(())
    }
}

/// `POST /token`: a bearer token for the configured user (the request got
/// past authentication to be here); 401 when no credentials are set.
async fn token(
    axum::extract::State(state): axum::extract::State<Arc<ApiState>>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    match &state.config.basic_auth {
        Some((user, pass)) => error::json_response(
            StatusCode::OK,
            &serde_json::json!({ "token": jwt::issue(user, pass) }),
        ),
        None => error::error_response(StatusCode::UNAUTHORIZED, "unauthorized".into()),
    }
}

/// The REST API of one running peer.
#[derive(Clone)]
pub struct RestApi {
    state: Arc<ApiState>,
}

impl RestApi {
    /// The API over the peer `ctx` whose drivers are `drivers`.
    pub fn new(
        ctx: PeerContext,
        drivers: Drivers,
        config: RestConfig,
    ) -> Result<RestApi, RestConfigError> {
        config.validate()?;
        Ok(RestApi {
            state: Arc::new(ApiState::new(ctx, drivers, config)),
        })
    }

    /// The routes with their layers: authentication (when configured),
    /// CORS, the body bound and the trailing-slash redirect.
    pub fn router(self) -> Router {
        let config = &self.state.config;
        let max_body = config.max_body_bytes;
        let limits = limits::BodyLimits {
            max_body: max_body as u64,
            max_add: config.max_add_bytes,
        };
        let cors = Arc::new(cors::CorsPolicy::new(config.cors_origins.clone()));
        let credentials = config
            .basic_auth
            .clone()
            .map(|(user, pass)| Arc::new(auth::Credentials::new(user, pass)));
        let router = Router::new()
            .route("/id", get(peers::id))
            .route("/version", get(peers::version))
            .route("/peers", get(peers::peers).post(peers::add_peer))
            .route("/peers/{peer}", delete(peers::remove_peer))
            .route("/add", post(add::add))
            .route("/token", post(token))
            .route("/allocations", get(pins::allocations))
            .route("/allocations/{cid}", get(pins::allocation))
            .route("/pins", get(status::status_all))
            .route(
                "/pins/recover",
                post(status::recover_all)
                    .get(status::recover_is_no_cid)
                    .delete(status::recover_is_no_cid),
            )
            .route(
                "/pins/{cid}",
                get(status::status_one)
                    .post(pins::pin_cid)
                    .delete(pins::unpin_cid),
            )
            .route("/pins/{cid}/recover", post(status::recover_one))
            .route(
                "/pins/ipfs/{*path}",
                post(pins::pin_ipfs).delete(pins::unpin_ipfs),
            )
            .route(
                "/pins/ipns/{*path}",
                post(pins::pin_ipns).delete(pins::unpin_ipns),
            )
            .route(
                "/pins/ipld/{*path}",
                post(pins::pin_ipld).delete(pins::unpin_ipld),
            )
            .route("/monitor/metrics", get(monitor::metric_names))
            .route("/monitor/metrics/{name}", get(monitor::metrics))
            .route("/health", get(monitor::health))
            .route("/health/graph", get(monitor::graph))
            .route("/health/alerts", get(monitor::alerts))
            .route("/health/bandwidth", get(monitor::bandwidth))
            .route("/ipfs/gc", post(monitor::gc))
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(&self.state.observations),
                observe::count_requests,
            ))
            .fallback(|| async { ApiError::NoRoute })
            .with_state(Arc::clone(&self.state))
            .layer(DefaultBodyLimit::max(max_body))
            .layer(axum::middleware::from_fn(limits::strip_slash))
            .layer(axum::middleware::from_fn_with_state(
                limits,
                limits::body_size,
            ))
            .layer(axum::middleware::from_fn_with_state(cors, cors::apply));
        // The outermost layer runs first: authentication before anything.
        match credentials {
            Some(c) => router.layer(axum::middleware::from_fn_with_state(c, auth::require)),
            None => router,
        }
    }

    /// The Prometheus endpoint (`GET /metrics`) over this API's peer and
    /// what the API measured; serve it on its own listener
    /// ([`RestApi::serve_metrics`]).
    pub fn metrics_router(&self) -> Router {
        Router::new()
            .route("/metrics", get(observe::metrics))
            .with_state(Arc::clone(&self.state))
    }

    /// Serves [`RestApi::metrics_router`] on `listener` until `shutdown`.
    pub async fn serve_metrics(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "prometheus metrics listening");
        }
        axum::serve(listener, self.metrics_router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Serves the API on `listener` until `shutdown` completes, then lets
    /// requests in flight finish.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "rest api listening");
        }
        axum::serve(no_delay(listener, "rest api"), self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// `listener` with `TCP_NODELAY` on every connection it accepts. The APIs'
/// answers are small and written in pieces: without it, Nagle's algorithm
/// and delayed ACKs hold each one back ~40 ms. `api` names the server in
/// the log.
pub(crate) fn no_delay(
    listener: tokio::net::TcpListener,
    api: &'static str,
) -> axum::serve::TapIo<
    tokio::net::TcpListener,
    impl FnMut(&mut tokio::net::TcpStream) + Send + 'static,
> {
    use axum::serve::ListenerExt;
    listener.tap_io(move |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("{api}: TCP_NODELAY: {e}");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse_as_multiaddrs_or_socket_addresses() {
        let want = SocketAddr::from(([127, 0, 0, 1], 9094));
        assert_eq!(parse_listen("/ip4/127.0.0.1/tcp/9094"), Ok(want));
        assert_eq!(parse_listen("127.0.0.1:9094"), Ok(want));
        assert_eq!(parse_listen("/ip6/::1/tcp/80").map(|a| a.port()), Ok(80));
        for bad in [
            "/ip4/127.0.0.1/udp/1",
            "/dns4/localhost/tcp/1",
            "/ip4/1.2.3/tcp/1",
            "nope",
            "/ip4/127.0.0.1/tcp/99999",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(RestConfig::default().validate(), Ok(()));
        assert_eq!(RestConfig::default().listen.to_string(), DEFAULT_LISTEN);
        let empty = RestConfig {
            basic_auth: Some(("alice".into(), String::new())),
            ..RestConfig::default()
        };
        assert_eq!(empty.validate(), Err(RestConfigError::EmptyCredentials));
        let bad_rf = RestConfig {
            default_replication_min: 3,
            default_replication_max: 2,
            ..RestConfig::default()
        };
        assert!(bad_rf.validate().is_err());
        let zero = RestConfig {
            max_body_bytes: 0,
            ..RestConfig::default()
        };
        assert_eq!(
            zero.validate(),
            Err(RestConfigError::Zero("max_body_bytes"))
        );
    }
}

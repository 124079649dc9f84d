//! The IPFS Pinning Service API (pinning-service-api.md) as IPFS Cluster
//! serves it, on axum: what `ipfs pin remote` and other pinning-service
//! clients talk to. The daemon binds it on `127.0.0.1:9097` by default.
//!
//! It is an adapter over the REST API's cluster plumbing
//! ([`crate::api::rest::state::ApiState`], `rest::pins`, `rest::status`):
//! a request is a cluster pin, its id is the CID (one request per CID, as
//! upstream), and its status folds every peer's tracker status
//! ([`status::service_status`]).
//!
//! Deviations from upstream, on purpose (the spec's behaviour instead of
//! upstream's quirks):
//! - `POST /pins` and `POST /pins/{requestid}` answer 202 (upstream 200); a
//!   body without `cid` is a 400 (upstream: 200 and nothing done).
//! - Bad query parameters are 400 (upstream 500); `limit` is 1 to 1000;
//!   `status` defaults to `pinned` (upstream: every status) and an unknown
//!   status or `match` value is refused (upstream ignores them).
//! - `cid` combines with the other filters (upstream ignores them then),
//!   and the status filter applies to the folded status (upstream filters
//!   peers first, so a pin failed on one peer could list as pinned).
//! - Results are the newest first (the spec's paging by `before` relies on
//!   it; upstream's order is arbitrary).
//! - A replacement's `name`, `meta` and `origins` are the body's
//!   (upstream keeps the old pin's meta and origins).
//! - `delegates` are the IPFS addresses of the peers the pin is allocated
//!   to (every member for pin-everywhere), each ending in `/p2p/<id>`, at
//!   most 20; upstream lists every peer of the status for reads.
//! - Besides upstream's credentials (basic, or a JWT from `POST /token`),
//!   configured static access tokens are accepted as bearer tokens.

pub mod auth;
pub mod body;
pub mod error;
pub mod query;
pub mod routes;
pub mod status;
pub mod types;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::api::rest::cors::{self, CorsPolicy};
use crate::api::rest::state::ApiState;
use crate::api::rest::{limits, RestConfig, RestConfigError};
use crate::context::PeerContext;
use crate::drivers::Drivers;
pub use error::PinSvcError;

/// Upstream's default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9097";
/// Default bound of a request body, in bytes (a pin object is small).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// The API's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct PinSvcConfig {
    /// Where the daemon binds the API.
    pub listen: SocketAddr,
    /// The user allowed in with basic auth, whose password also signs the
    /// tokens of `POST /token`; `None`: no such user.
    pub basic_auth: Option<(String, String)>,
    /// Bearer tokens accepted as they are.
    pub access_tokens: Vec<String>,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Origins allowed cross-origin (`*`: any).
    pub cors_origins: Vec<String>,
}

impl std::fmt::Debug for PinSvcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a password or a token.
        f.debug_struct("PinSvcConfig")
            .field("listen", &self.listen)
            .field("user", &self.basic_auth.as_ref().map(|(u, _)| u))
            .field("access_tokens", &self.access_tokens.len())
            .field("max_body_bytes", &self.max_body_bytes)
            .field("cors_origins", &self.cors_origins)
            .finish()
    }
}

impl Default for PinSvcConfig {
    fn default() -> Self {
        PinSvcConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9097)),
            basic_auth: None,
            access_tokens: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            cors_origins: vec!["*".into()],
        }
    }
}

/// Why the settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinSvcConfigError {
    /// The cluster settings shared with the REST API are invalid.
    #[error(transparent)]
    Cluster(#[from] RestConfigError),
    /// Basic auth with an empty user or password admits nobody.
    #[error("pinning service: basic auth needs a non-empty user and password")]
    EmptyCredentials,
    /// An access token is empty or holds whitespace or control characters
    /// (it could not be sent in a header as it is).
    #[error("pinning service: access token #{0} is empty or holds whitespace")]
    BadToken(usize),
    /// A zero body bound refuses every body.
    #[error("pinning service: max_body_bytes must be above zero")]
    ZeroBody,
}

impl PinSvcConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), PinSvcConfigError> {
        if let Some((user, pass)) = &self.basic_auth {
            if user.is_empty() || pass.is_empty() {
                return Err(PinSvcConfigError::EmptyCredentials);
            }
        }
        for (i, token) in self.access_tokens.iter().enumerate() {
            if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(PinSvcConfigError::BadToken(i));
            }
        }
        if self.max_body_bytes == 0 {
            return Err(PinSvcConfigError::ZeroBody);
        }
        Ok(())
    }
}

/// What every handler works with.
pub struct PinSvcState {
    /// The cluster plumbing, as the REST API has it.
    pub api: Arc<ApiState>,
    /// Who is let in.
    pub gate: auth::Gate,
    /// Largest body read.
    pub max_body_bytes: usize,
}

/// The Pinning Service API of one running peer.
#[derive(Clone)]
pub struct PinSvcApi {
    state: Arc<PinSvcState>,
    cors: Arc<CorsPolicy>,
}

impl PinSvcApi {
    /// The API over the peer `ctx` whose drivers are `drivers`. `cluster`
    /// holds the settings pins are made with, the REST API's (default
    /// replication, allocator, peer call timeout, peer name); its listen
    /// address and credentials are not used here.
    pub fn new(
        ctx: PeerContext,
        drivers: Drivers,
        cluster: RestConfig,
        config: PinSvcConfig,
    ) -> Result<PinSvcApi, PinSvcConfigError> {
        cluster.validate()?;
        config.validate()?;
        let state = PinSvcState {
            api: Arc::new(ApiState::new(ctx, drivers, cluster)),
            gate: auth::Gate::new(config.basic_auth, config.access_tokens),
            max_body_bytes: config.max_body_bytes,
        };
        Ok(PinSvcApi {
            state: Arc::new(state),
            cors: Arc::new(CorsPolicy::new(config.cors_origins)),
        })
    }

    /// The routes with their layers: authentication (when configured),
    /// CORS and the trailing-slash redirect.
    pub fn router(self) -> Router {
        let router = Router::new()
            .route("/pins", get(routes::list).post(routes::add))
            .route(
                "/pins/{requestid}",
                get(routes::get)
                    .post(routes::replace)
                    .delete(routes::remove),
            )
            .route("/token", post(routes::token))
            .route("/health", get(routes::health))
            .fallback(routes::no_route)
            .with_state(Arc::clone(&self.state))
            .layer(axum::middleware::from_fn(limits::strip_slash))
            .layer(axum::middleware::from_fn_with_state(self.cors, cors::apply));
        // The outermost layer runs first: authentication before anything.
        if self.state.gate.is_open() {
            router
        } else {
            router.layer(axum::middleware::from_fn_with_state(
                Arc::clone(&self.state),
                auth::require,
            ))
        }
    }

    /// Serves the API on `listener` until `shutdown` completes, then lets
    /// requests in flight finish.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "pinning service api listening");
        }
        let listener = crate::api::rest::no_delay(listener, "pinning service api");
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// A served API: where it listens, and how to stop it.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Binds `api`'s listener on `listen` and serves it on a task.
    pub async fn start(api: PinSvcApi, listen: SocketAddr) -> std::io::Result<Running> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr().unwrap_or(listen);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(api.serve(listener, async move {
            let _ = stopped.await;
        }));
        Ok(Running { addr, stop, task })
    }

    /// Stops taking requests and waits up to `drain` for those in flight.
    pub async fn stop(self, drain: std::time::Duration) {
        let _ = self.stop.send(());
        match tokio::time::timeout(drain, self.task).await {
            Ok(Ok(Err(e))) => tracing::warn!("pinning service api stopped with an error: {e}"),
            Err(_) => tracing::warn!("pinning service api: requests still running after {drain:?}"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert_eq!(PinSvcConfig::default().validate(), Ok(()));
        assert_eq!(PinSvcConfig::default().listen.to_string(), DEFAULT_LISTEN);
        let empty = PinSvcConfig {
            basic_auth: Some(("alice".into(), String::new())),
            ..PinSvcConfig::default()
        };
        assert_eq!(empty.validate(), Err(PinSvcConfigError::EmptyCredentials));
        for bad in ["", "a b", "tab\t", "nl\n"] {
            let tokens = PinSvcConfig {
                access_tokens: vec!["good".into(), bad.into()],
                ..PinSvcConfig::default()
            };
            assert_eq!(tokens.validate(), Err(PinSvcConfigError::BadToken(1)));
        }
        let zero = PinSvcConfig {
            max_body_bytes: 0,
            ..PinSvcConfig::default()
        };
        assert_eq!(zero.validate(), Err(PinSvcConfigError::ZeroBody));
        let secret = PinSvcConfig {
            basic_auth: Some(("alice".into(), "s3cret".into())),
            access_tokens: vec!["tok-secret".into()],
            ..PinSvcConfig::default()
        };
        let shown = format!("{secret:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("tok-secret"));
    }
}

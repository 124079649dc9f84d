//! The IPFS API proxy: a Kubo-compatible RPC API (`/api/v0/…`, default
//! `127.0.0.1:9095`) in front of the peer's IPFS daemon. A few commands are
//! turned into cluster operations; everything else is forwarded to the
//! daemon unchanged, bodies streamed both ways (ipfs-proxy.md).
//!
//! | command | what the proxy does |
//! | --- | --- |
//! | `pin/add` | cluster pin with the cluster's replication defaults (`recursive=false` pins directly, `name` names it); `{"Pins":[…]}` |
//! | `pin/rm` | cluster unpin |
//! | `pin/update` | cluster pin-update (the new pin copies the old one), then unpin of the old unless `unpin=false` |
//! | `pin/ls` | the cluster pinset: `arg`, `type`, `stream`, `names`; direct pins listed as direct |
//! | `add` | forwarded (with `pin=false`), then the roots pinned in the cluster unless `pin=false`; `pin-name` and the REST pin options apply |
//! | `block/put`, `dag/put` with `pin=true` | forwarded (with `pin=false`), then each CID pinned in the cluster |
//! | `repo/stat` | `RepoSize`, `StorageMax` summed over the members' daemons (peer RPC) |
//! | `repo/gc` | every member's daemon collected in turn (peer RPC) |
//!
//! Deviations from upstream, on purpose: `pin/ls` shows direct pins as
//! direct and honours `type` (upstream lists everything as recursive);
//! `pin/add` honours Kubo's `recursive=false` and `name`; paths below a
//! CID and `/ipns/` are resolved by the daemon; `add`, `block/put` and
//! `dag/put` keep the daemon from pinning for itself; `add` is forwarded
//! to the local daemon (upstream adds through the cluster's own adder);
//! `repo/stat` also answers `NumObjects`, `RepoPath` and `Version` (the
//! local daemon's: js-ipfs' client needs them); `only-hash` adds are
//! forwarded and not pinned.

pub mod body;
pub mod collect;
pub mod error;
pub mod pins;
pub mod repo;
pub mod route;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderName, HeaderValue, Request, Response};
use axum::response::IntoResponse;
use axum::Router;
use cluster_core::allocator::AllocatorConfig;

use crate::api::rest::state::ApiState;
use crate::api::rest::{RestConfig, RestConfigError};
use crate::context::PeerContext;
use crate::drivers::Drivers;
use error::ProxyError;
use route::Route;
use upstream::Upstream;

/// Upstream's default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9095";
/// Where the proxy learns the daemon's headers by default.
pub const DEFAULT_EXTRACT_HEADERS_PATH: &str = "/api/v0/version";
/// How long learned headers are kept by default.
pub const DEFAULT_EXTRACT_HEADERS_TTL: Duration = Duration::from_secs(5 * 60);

/// The proxy's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Where the daemon binds the proxy.
    pub listen: SocketAddr,
    /// The IPFS daemon's RPC API (`http://host:port`).
    pub node_url: String,
    /// Replication factors of new pins (the cluster's defaults).
    pub default_replication_min: i32,
    /// See `default_replication_min`.
    pub default_replication_max: i32,
    /// How new pins are allocated.
    pub allocator: AllocatorConfig,
    /// Deadline of one call to another peer (`repo/stat`).
    pub peer_call_timeout: Duration,
    /// Extra header names copied from the daemon onto intercepted answers.
    pub extract_headers_extra: Vec<String>,
    /// The request that learns the daemon's headers.
    pub extract_headers_path: String,
    /// How long learned headers are kept (zero: learned once).
    pub extract_headers_ttl: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9095)),
            node_url: "http://127.0.0.1:5001".into(),
            default_replication_min: -1,
            default_replication_max: -1,
            allocator: AllocatorConfig::default(),
            peer_call_timeout: Duration::from_secs(15),
            extract_headers_extra: Vec::new(),
            extract_headers_path: DEFAULT_EXTRACT_HEADERS_PATH.into(),
            extract_headers_ttl: DEFAULT_EXTRACT_HEADERS_TTL,
        }
    }
}

/// What every request of the proxy works with: the REST API's state (its
/// cluster writes and reads) and the daemon.
pub struct ProxyState {
    /// The cluster side, shared with the REST API's code.
    pub api: ApiState,
    /// The IPFS daemon.
    pub upstream: Upstream,
}

/// The IPFS proxy of one running peer.
#[derive(Clone)]
pub struct IpfsProxy {
    state: Arc<ProxyState>,
}

impl IpfsProxy {
    /// The proxy over the peer `ctx` whose drivers are `drivers`.
    pub fn new(
        ctx: PeerContext,
        drivers: Drivers,
        config: ProxyConfig,
    ) -> Result<IpfsProxy, RestConfigError> {
        let rest = RestConfig {
            listen: config.listen,
            default_replication_min: config.default_replication_min,
            default_replication_max: config.default_replication_max,
            allocator: config.allocator.clone(),
            peer_call_timeout: config.peer_call_timeout,
            ..RestConfig::default()
        };
        rest.validate()?;
        let extra = config
            .extract_headers_extra
            .iter()
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes()).map_err(|_| RestConfigError::Listen {
                    input: h.chars().take(100).collect(),
                    reason: "ipfs_proxy.extract_headers_extra: not a header name",
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let upstream = Upstream::new(
            config.node_url.trim_end_matches('/').to_string(),
            extra,
            config.extract_headers_path.clone(),
            config.extract_headers_ttl,
        );
        Ok(IpfsProxy {
            state: Arc::new(ProxyState {
                api: ApiState::new(ctx, drivers, rest),
                upstream,
            }),
        })
    }

    /// Every request goes through [`handle`]; the routing is
    /// [`route::route`]'s.
    pub fn router(self) -> Router {
        Router::new().fallback(handle).with_state(self.state)
    }

    /// Serves the proxy on `listener` until `shutdown` completes, then lets
    /// requests in flight finish.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, daemon = self.state.upstream.base(), "ipfs proxy listening");
        }
        let listener = crate::api::rest::no_delay(listener, "ipfs proxy");
        let app = self.router();
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}

/// The `Server` header of intercepted answers.
fn server_header() -> HeaderValue {
    HeaderValue::from_str(&format!(
        "ipfs-cluster/ipfsproxy/{}",
        env!("CARGO_PKG_VERSION")
    ))
    .unwrap_or(HeaderValue::from_static("ipfs-cluster/ipfsproxy"))
}

/// One request: routed, then intercepted or forwarded.
async fn handle(State(state): State<Arc<ProxyState>>, request: Request<Body>) -> Response<Body> {
    // Present when served by `serve` (absent for a router mounted elsewhere).
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_string());
    let origin = request.headers().get(header::ORIGIN).cloned();
    let routed = route::route(method.as_str(), &path, request.uri().query());
    let answer = match routed {
        Ok(Route::Forward) => {
            return match state
                .upstream
                .forward(request, &path_and_query, client)
                .await
            {
                Ok(response) => response.map(Body::new),
                Err(e) => e.into_response(),
            };
        }
        Ok(Route::PinAfter {
            collect,
            query,
            name,
            options_query,
        }) => {
            // The daemon's own headers come with its answer.
            return collect::forward_and_pin(
                &state,
                request,
                &path,
                collect,
                &query,
                &name,
                &options_query,
                client,
            )
            .await
            .unwrap_or_else(IntoResponse::into_response);
        }
        Ok(route) => intercept(&state, route).await,
        Err(e) => Err(e),
    };
    let mut response = answer.unwrap_or_else(IntoResponse::into_response);
    let learned = state
        .upstream
        .answer_headers(&method, &path, origin.as_ref())
        .await;
    let headers = response.headers_mut();
    for (name, value) in &learned {
        headers.append(name, value.clone());
    }
    headers.insert(header::SERVER, server_header());
    response
}

async fn intercept(state: &Arc<ProxyState>, route: Route) -> Result<Response<Body>, ProxyError> {
    match route {
        Route::PinAdd {
            paths,
            mode,
            name,
            progress,
        } => pins::pin_add(state, &paths, mode, &name, progress).await,
        Route::PinRm { paths } => pins::pin_rm(state, &paths).await,
        Route::PinUpdate { from, to, unpin } => pins::pin_update(state, &from, &to, unpin).await,
        Route::PinLs {
            paths,
            kind,
            stream,
            names,
        } => pins::pin_ls(state, &paths, kind, stream, names).await,
        Route::RepoStat => repo::repo_stat(state).await,
        Route::RepoGc { stream_errors } => repo::repo_gc(state, stream_errors).await,
        Route::Forward | Route::PinAfter { .. } => Err(ProxyError::BadRequest(
            "internal routing error: not an intercepted command".into(),
        )),
    }
}

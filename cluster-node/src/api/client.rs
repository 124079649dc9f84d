//! A typed async client of the REST API (what the `ipfscluster` CLI
//! uses): one method per route, answers decoded into [`crate::api::types`],
//! failures typed as [`ClientError`].
//!
//! Listings stream: the `*_each` methods hand each item to a callback as it
//! arrives (nothing is gathered); the plain ones collect into a `Vec`. A
//! `204` is an empty listing; an `X-Stream-Error` trailer fails the call
//! after the items already handed over.
//!
//! ```no_run
//! use cluster_node::api::client::{Client, ClientConfig, ClientError};
//! use cluster_core::{Cid, PinOptions};
//!
//! # async fn demo() -> Result<(), ClientError> {
//! let client = Client::new(ClientConfig {
//!     base_url: "http://127.0.0.1:9094".into(),
//!     ..ClientConfig::default()
//! })?;
//! let cid = Cid::parse("QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq").expect("a CID");
//! let options = PinOptions { name: "backup".into(), ..PinOptions::default() };
//! let pin = client.pin(&cid, &options).await?;
//! println!("pinned on {:?}", pin.allocations);
//! let status = client.status(&cid, false).await?;
//! for (peer, info) in &status.peer_map {
//!     println!("{peer}: {}", info.status);
//! }
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use cluster_core::{Cid, PeerId, PinOptions, PinType, TrackerStatus};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use super::time::Timestamp;
use super::types::{
    AddedOutput, Alert, ApiPin, BandwidthByProtocol, ConnectGraph, ErrorBody, GlobalPinInfo,
    GlobalRepoGc, IdInfo, Metric, Version,
};
use super::upload::{AddFiles, UploadBody};
use crate::ipfs::IpfsPath;

/// Largest non-streamed answer read, in bytes.
pub const ANSWER_MAX_BYTES: usize = 64 << 20;
/// Longest line of a streamed answer, in bytes.
pub const LINE_MAX_BYTES: usize = 16 << 20;
/// Longest error body quoted in an error.
const QUOTED_MAX_CHARS: usize = 300;

/// Where the API is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `http://host:port` (no TLS support yet).
    pub base_url: String,
    /// User and password for basic authentication.
    pub basic_auth: Option<(String, String)>,
    /// Longest wait for an answer's head, and between two chunks of a body.
    pub timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            base_url: "http://127.0.0.1:9094".into(),
            basic_auth: None,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Why a call failed. [`ClientError::code`] is the HTTP status, 0 when
/// the API was not reached (the CLI's exit code depends on it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The settings are unusable.
    #[error("client configuration: {0}")]
    Config(String),
    /// The API could not be reached, or the connection broke.
    #[error("cannot reach the cluster API: {0}")]
    Transport(String),
    /// No answer (or no progress) within the timeout.
    #[error("the cluster API did not answer within {0:?}")]
    Timeout(Duration),
    /// The API answered an error.
    #[error("{code}: {message}")]
    Api {
        /// HTTP status.
        code: u16,
        /// The API's message.
        message: String,
    },
    /// A stream failed after `items` items were handed over.
    #[error("stream failed after {items} items: {message}")]
    Stream {
        /// Items received before the failure.
        items: usize,
        /// The `X-Stream-Error` trailer.
        message: String,
    },
    /// The answer is not what the API sends.
    #[error("answer not understood: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP status (500 for a failed stream), 0 when none.
    pub fn code(&self) -> u16 {
        match self {
            ClientError::Api { code, .. } => *code,
            ClientError::Stream { .. } => 500,
            _ => 0,
        }
    }
}

/// What `GET /pins` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusQuery {
    /// Only entries in these statuses (empty: all).
    pub filter: Vec<TrackerStatus>,
    /// Only this peer's tracker.
    pub local: bool,
    /// Only these CIDs (takes precedence over `filter`).
    pub cids: Vec<Cid>,
    /// At most this many items (this server's extra).
    pub limit: Option<usize>,
    /// Start after this CID (this server's extra).
    pub after: Option<Cid>,
}

/// A client of one cluster peer's REST API. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    base: String,
    authorization: Option<HeaderValue>,
    timeout: Duration,
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
    uploads: hyper_util::client::legacy::Client<HttpConnector, UploadBody>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("authenticated", &self.authorization.is_some())
            .finish()
    }
}

fn query_string(pairs: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// `error` and its causes (`client error (Connect): tcp connect error:
/// Connection refused`): hyper's own message alone does not say why.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let more = e.to_string();
        // Some layers repeat their cause's message in their own.
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = e.source();
    }
    text
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `/pins/<namespace>/<segments…>`, each segment percent-encoded.
pub fn pins_path(path: &IpfsPath) -> String {
    let mut out = format!("/pins/{}/{}", path.namespace.as_str(), segment(&path.root));
    for part in &path.rest {
        out.push('/');
        out.push_str(&segment(part));
    }
    out
}

/// One path segment with everything but unreserved characters escaped.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Pin options as query parameters (rest-api.md §6.1).
pub fn pin_query(options: &PinOptions) -> String {
    let mode = match options.mode {
        cluster_core::PinMode::Recursive => "recursive",
        cluster_core::PinMode::Direct => "direct",
    };
    let mut pairs: Vec<(&str, String)> = vec![
        (
            "replication-min",
            options.replication_factor_min.to_string(),
        ),
        (
            "replication-max",
            options.replication_factor_max.to_string(),
        ),
        ("name", options.name.clone()),
        ("mode", mode.to_string()),
        ("shard-size", options.shard_size.to_string()),
        ("user-allocations", join(&options.user_allocations)),
    ];
    if let Some(at) = options.expire_at {
        pairs.push(("expire-at", Timestamp::at(at).to_string()));
    }
    let meta: Vec<(String, String)> = options
        .metadata
        .iter()
        .map(|(k, v)| (format!("meta-{k}"), v.clone()))
        .collect();
    for (k, v) in &meta {
        pairs.push((k.as_str(), v.clone()));
    }
    if let Some(from) = &options.pin_update {
        pairs.push(("pin-update", from.to_string()));
    }
    if !options.origins.is_empty() {
        pairs.push(("origins", options.origins.join(",")));
    }
    query_string(&pairs)
}

/// `POST /add`'s parameters (rest-api.md §6.2) beyond the pin options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddParams {
    /// Wrap the files in a directory (implied by several paths in the CLI).
    pub wrap_with_directory: bool,
    /// Include hidden files.
    pub hidden: bool,
    /// Store without pinning.
    pub no_pin: bool,
    /// CID version (1 implies raw leaves unless `raw_leaves` says otherwise).
    pub cid_version: u32,
    /// Raw leaves; `None`: the server's default.
    pub raw_leaves: Option<bool>,
    /// `balanced` or `trickle` (`None`: balanced).
    pub layout: Option<String>,
    /// Chunker (`size-262144` by default).
    pub chunker: Option<String>,
    /// Hash function (`sha2-256` by default).
    pub hash: Option<String>,
    /// Blocks only to the contacted peer's IPFS.
    pub local: bool,
}

/// The `/add` query: the pin options then the add parameters, always with
/// `stream-channels=true` (the client reads NDJSON).
pub fn add_query(options: &PinOptions, params: &AddParams) -> String {
    let mut q = pin_query(options);
    let mut pairs: Vec<(&str, String)> = vec![
        ("stream-channels", "true".into()),
        (
            "wrap-with-directory",
            params.wrap_with_directory.to_string(),
        ),
        ("hidden", params.hidden.to_string()),
        ("no-pin", params.no_pin.to_string()),
        ("local", params.local.to_string()),
        ("cid-version", params.cid_version.to_string()),
    ];
    if let Some(raw) = params.raw_leaves {
        pairs.push(("raw-leaves", raw.to_string()));
    }
    for (name, value) in [
        ("layout", &params.layout),
        ("chunker", &params.chunker),
        ("hash", &params.hash),
    ] {
        if let Some(v) = value {
            pairs.push((name, v.clone()));
        }
    }
    let extra = query_string(&pairs);
    if !q.is_empty() {
        q.push('&');
    }
    q.push_str(&extra);
    q
}

impl Client {
    /// A client of the API described by `config`. Needs a tokio runtime
    /// when called.
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        let base = config.base_url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(ClientError::Config(format!(
                "base URL {base:?} must start with http:// (TLS is not supported yet)"
            )));
        }
        let authorization = match &config.basic_auth {
            None => None,
            Some((user, pass)) => {
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                let value = HeaderValue::from_str(&format!("Basic {token}"))
                    .map_err(|e| ClientError::Config(format!("credentials: {e}")))?;
                Some(value)
            }
        };
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout));
        // Requests are small: do not let Nagle's algorithm hold them back.
        connector.set_nodelay(true);
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build(connector.clone());
        let uploads =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Ok(Client {
            base,
            authorization,
            timeout: config.timeout,
            http,
            uploads,
        })
    }

    /// Sends one request; answers the response head (body unread).
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &str,
    ) -> Result<Response<Incoming>, ClientError> {
        self.send_body(method, path, query, None).await
    }

    /// Sends one request with an optional JSON `body`.
    async fn send_body(
        &self,
        method: Method,
        path: &str,
        query: &str,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>, ClientError> {
        let uri = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        };
        let mut request = Request::builder()
            .method(method)
            .uri(&uri)
            .header(header::TE, "trailers");
        if let Some(auth) = &self.authorization {
            request = request.header(header::AUTHORIZATION, auth.clone());
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::Config(format!("request {uri}: {e}")))?;
        match tokio::time::timeout(self.timeout, self.http.request(request)).await {
            Err(_) => Err(ClientError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(ClientError::Transport(format!(
                "{uri}: {}",
                with_causes(&e)
            ))),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// The next frame of `body`, within the timeout.
    async fn frame(
        &self,
        body: &mut Incoming,
    ) -> Result<Option<hyper::body::Frame<Bytes>>, ClientError> {
        match tokio::time::timeout(self.timeout, body.frame()).await {
            Err(_) => Err(ClientError::Timeout(self.timeout)),
            Ok(None) => Ok(None),
            Ok(Some(Err(e))) => Err(ClientError::Transport(format!("reading the answer: {e}"))),
            Ok(Some(Ok(frame))) => Ok(Some(frame)),
        }
    }

    /// The whole body, bounded.
    async fn read_all(&self, response: Response<Incoming>) -> Result<Bytes, ClientError> {
        let mut body = response.into_body();
        let mut buf = BytesMut::new();
        while let Some(frame) = self.frame(&mut body).await? {
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > ANSWER_MAX_BYTES {
                    return Err(ClientError::Decode(format!(
                        "answer larger than {ANSWER_MAX_BYTES} bytes"
                    )));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    }

    /// The error an error status carries.
    async fn api_error(&self, response: Response<Incoming>) -> ClientError {
        let code = response.status().as_u16();
        match self.read_all(response).await {
            Ok(bytes) => match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => ClientError::Api {
                    code,
                    message: body.message,
                },
                Err(_) => ClientError::Api {
                    code,
                    message: String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(QUOTED_MAX_CHARS)
                        .collect(),
                },
            },
            Err(e) => ClientError::Api {
                code,
                message: format!("(error body unreadable: {e})"),
            },
        }
    }

    /// A call answering one JSON document.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &str,
    ) -> Result<T, ClientError> {
        let response = self.send(method, path, query).await?;
        if !response.status().is_success() {
            return Err(self.api_error(response).await);
        }
        let bytes = self.read_all(response).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(format!("{path}: {e}")))
    }

    /// A call answering no document (204).
    async fn call_empty(&self, method: Method, path: &str) -> Result<(), ClientError> {
        let response = self.send(method, path, "").await?;
        if !response.status().is_success() {
            return Err(self.api_error(response).await);
        }
        Ok(())
    }

    /// A streamed call: each item to `each`; answers how many came.
    async fn stream<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &str,
        each: impl FnMut(T),
    ) -> Result<usize, ClientError> {
        let response = self.send(method, path, query).await?;
        self.read_stream(response, path, each).await
    }

    /// Reads a streamed answer: each item to `each`; answers how many came.
    async fn read_stream<T: DeserializeOwned>(
        &self,
        response: Response<Incoming>,
        path: &str,
        mut each: impl FnMut(T),
    ) -> Result<usize, ClientError> {
        match response.status() {
            StatusCode::NO_CONTENT => return Ok(0),
            StatusCode::OK => {}
            _ => return Err(self.api_error(response).await),
        }
        let mut body = response.into_body();
        let mut buf = BytesMut::new();
        let mut items = 0;
        let mut decode = |line: &[u8], items: &mut usize| -> Result<(), ClientError> {
            if line.iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
            let item = serde_json::from_slice(line)
                .map_err(|e| ClientError::Decode(format!("{path}: item {}: {e}", *items + 1)))?;
            *items += 1;
            each(item);
            Ok(())
        };
        while let Some(frame) = self.frame(&mut body).await? {
            let frame = match frame.into_data() {
                Ok(data) => {
                    buf.extend_from_slice(&data);
                    while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                        let line = buf.split_to(end + 1);
                        decode(&line, &mut items)?;
                    }
                    if buf.len() > LINE_MAX_BYTES {
                        return Err(ClientError::Decode(format!(
                            "{path}: a line longer than {LINE_MAX_BYTES} bytes"
                        )));
                    }
                    continue;
                }
                Err(frame) => frame,
            };
            if let Ok(trailers) = frame.into_trailers() {
                let errors: Vec<&str> = trailers
                    .get_all("x-stream-error")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())
                    .collect();
                if !errors.is_empty() {
                    return Err(ClientError::Stream {
                        items,
                        message: errors.join(", "),
                    });
                }
            }
        }
        if buf.has_remaining() {
            let rest = buf.split();
            decode(&rest, &mut items)?;
        }
        Ok(items)
    }

    /// `GET /id`.
    pub async fn id(&self) -> Result<IdInfo, ClientError> {
        self.call(Method::GET, "/id", "").await
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<Version, ClientError> {
        self.call(Method::GET, "/version", "").await
    }

    /// `GET /health`: `Ok` when the API answers.
    pub async fn health(&self) -> Result<(), ClientError> {
        self.call_empty(Method::GET, "/health").await
    }

    /// `GET /peers`, each peer to `each`.
    pub async fn peers_each(&self, each: impl FnMut(IdInfo)) -> Result<usize, ClientError> {
        self.stream(Method::GET, "/peers", "", each).await
    }

    /// `GET /peers`.
    pub async fn peers(&self) -> Result<Vec<IdInfo>, ClientError> {
        let mut all = Vec::new();
        self.peers_each(|p| all.push(p)).await?;
        Ok(all)
    }

    /// `POST /peers`: adds `peer` (running, and connected to the contacted
    /// peer) to the cluster; answers its ID.
    pub async fn add_peer(&self, peer: &PeerId) -> Result<IdInfo, ClientError> {
        let body = serde_json::json!({ "peer_id": peer.as_str() }).to_string();
        let response = self
            .send_body(Method::POST, "/peers", "", Some(Bytes::from(body)))
            .await?;
        if !response.status().is_success() {
            return Err(self.api_error(response).await);
        }
        let bytes = self.read_all(response).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(format!("/peers: {e}")))
    }

    /// `DELETE /peers/{peer}`.
    pub async fn remove_peer(&self, peer: &PeerId) -> Result<(), ClientError> {
        self.call_empty(Method::DELETE, &format!("/peers/{peer}"))
            .await
    }

    /// `POST /pins/{cid}` with `options`: the pin as submitted.
    pub async fn pin(&self, cid: &Cid, options: &PinOptions) -> Result<ApiPin, ClientError> {
        self.call(Method::POST, &format!("/pins/{cid}"), &pin_query(options))
            .await
    }

    /// `POST /pins/ipfs/{cid}` with `options` (the route the upstream CLI uses).
    pub async fn pin_path(&self, cid: &Cid, options: &PinOptions) -> Result<ApiPin, ClientError> {
        self.call(
            Method::POST,
            &format!("/pins/ipfs/{cid}"),
            &pin_query(options),
        )
        .await
    }

    /// `POST /pins/{ipfs|ipns|ipld}/{path}` with `options`: pins what the
    /// path resolves to.
    pub async fn pin_by_path(
        &self,
        path: &IpfsPath,
        options: &PinOptions,
    ) -> Result<ApiPin, ClientError> {
        self.call(Method::POST, &pins_path(path), &pin_query(options))
            .await
    }

    /// `DELETE /pins/{ipfs|ipns|ipld}/{path}`: unpins what the path
    /// resolves to; the pin as it was stored.
    pub async fn unpin_by_path(&self, path: &IpfsPath) -> Result<ApiPin, ClientError> {
        self.call(Method::DELETE, &pins_path(path), "").await
    }

    /// `DELETE /pins/{cid}`: the pin as it was stored.
    pub async fn unpin(&self, cid: &Cid) -> Result<ApiPin, ClientError> {
        self.call(Method::DELETE, &format!("/pins/{cid}"), "").await
    }

    /// `GET /allocations/{cid}`.
    pub async fn allocation(&self, cid: &Cid) -> Result<ApiPin, ClientError> {
        self.call(Method::GET, &format!("/allocations/{cid}"), "")
            .await
    }

    /// `GET /allocations?filter=…`, each pin to `each`.
    pub async fn allocations_each(
        &self,
        filter: &[PinType],
        each: impl FnMut(ApiPin),
    ) -> Result<usize, ClientError> {
        let names: Vec<&str> = filter
            .iter()
            .map(|t| match t {
                PinType::Data => "pin",
                PinType::Meta => "meta-pin",
                PinType::ClusterDag => "clusterdag-pin",
                PinType::Shard => "shard-pin",
            })
            .collect();
        let query = if names.is_empty() {
            String::new()
        } else {
            query_string(&[("filter", names.join(","))])
        };
        self.stream(Method::GET, "/allocations", &query, each).await
    }

    /// `GET /allocations?filter=…`.
    pub async fn allocations(&self, filter: &[PinType]) -> Result<Vec<ApiPin>, ClientError> {
        let mut all = Vec::new();
        self.allocations_each(filter, |p| all.push(p)).await?;
        Ok(all)
    }

    /// `GET /pins/{cid}` (`local`: this peer only).
    pub async fn status(&self, cid: &Cid, local: bool) -> Result<GlobalPinInfo, ClientError> {
        let query = query_string(&[("local", local.to_string())]);
        self.call(Method::GET, &format!("/pins/{cid}"), &query)
            .await
    }

    /// `GET /pins` as `query` says, each status to `each`.
    pub async fn status_all_each(
        &self,
        query: &StatusQuery,
        each: impl FnMut(GlobalPinInfo),
    ) -> Result<usize, ClientError> {
        let mut pairs = vec![("local", query.local.to_string())];
        if !query.filter.is_empty() {
            pairs.push(("filter", join(&query.filter)));
        }
        if !query.cids.is_empty() {
            pairs.push(("cids", join(&query.cids)));
        }
        if let Some(limit) = query.limit {
            pairs.push(("limit", limit.to_string()));
        }
        if let Some(after) = &query.after {
            pairs.push(("after", after.to_string()));
        }
        self.stream(Method::GET, "/pins", &query_string(&pairs), each)
            .await
    }

    /// `GET /pins` as `query` says.
    pub async fn status_all(&self, query: &StatusQuery) -> Result<Vec<GlobalPinInfo>, ClientError> {
        let mut all = Vec::new();
        self.status_all_each(query, |p| all.push(p)).await?;
        Ok(all)
    }

    /// `POST /pins/{cid}/recover`.
    pub async fn recover(&self, cid: &Cid, local: bool) -> Result<GlobalPinInfo, ClientError> {
        let query = query_string(&[("local", local.to_string())]);
        self.call(Method::POST, &format!("/pins/{cid}/recover"), &query)
            .await
    }

    /// `POST /pins/recover`: the statuses of what was re-queued.
    pub async fn recover_all(&self, local: bool) -> Result<Vec<GlobalPinInfo>, ClientError> {
        let query = query_string(&[("local", local.to_string())]);
        let mut all = Vec::new();
        self.stream(Method::POST, "/pins/recover", &query, |p| all.push(p))
            .await?;
        Ok(all)
    }

    /// `GET /monitor/metrics`: metric names.
    pub async fn metric_names(&self) -> Result<Vec<String>, ClientError> {
        self.call(Method::GET, "/monitor/metrics", "").await
    }

    /// `GET /monitor/metrics/{name}`.
    pub async fn metrics(&self, name: &str) -> Result<Vec<Metric>, ClientError> {
        let name: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
        self.call(Method::GET, &format!("/monitor/metrics/{name}"), "")
            .await
    }

    /// `GET /health/alerts`.
    pub async fn alerts(&self) -> Result<Vec<Alert>, ClientError> {
        self.call(Method::GET, "/health/alerts", "").await
    }

    /// `GET /health/bandwidth`: this peer's cluster traffic by protocol.
    pub async fn bandwidth(&self) -> Result<BandwidthByProtocol, ClientError> {
        self.call(Method::GET, "/health/bandwidth", "").await
    }

    /// `GET /health/graph`.
    pub async fn graph(&self) -> Result<ConnectGraph, ClientError> {
        self.call(Method::GET, "/health/graph", "").await
    }

    /// `POST /add`: uploads `files` (see [`AddFiles`]) with `query` (pin
    /// options and add parameters, [`add_query`]); each file added goes to
    /// `each` as the server reports it, the root last. `sent` counts the
    /// file bytes uploaded so far (for a progress display).
    pub async fn add(
        &self,
        files: AddFiles,
        query: &str,
        sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
        each: impl FnMut(AddedOutput),
    ) -> Result<usize, ClientError> {
        let uri = format!("{}/add?{query}", self.base);
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(&uri)
            .header(header::TE, "trailers")
            .header(header::CONTENT_TYPE, files.content_type());
        if let Some(auth) = &self.authorization {
            request = request.header(header::AUTHORIZATION, auth.clone());
        }
        let request = request
            .body(files.into_body(sent))
            .map_err(|e| ClientError::Config(format!("request {uri}: {e}")))?;
        // The answer's head comes once the server has started the add; a
        // large upload is still being sent then.
        let response = match tokio::time::timeout(self.timeout, self.uploads.request(request)).await
        {
            Err(_) => return Err(ClientError::Timeout(self.timeout)),
            Ok(Err(e)) => {
                return Err(ClientError::Transport(format!(
                    "{uri}: {}",
                    with_causes(&e)
                )))
            }
            Ok(Ok(response)) => response,
        };
        self.read_stream(response, "/add", each).await
    }

    /// `POST /token`: a bearer token for the user of the basic-auth
    /// credentials (send it as `Authorization: Bearer <token>`).
    pub async fn token(&self) -> Result<String, ClientError> {
        #[derive(serde::Deserialize)]
        struct Token {
            token: String,
        }
        let t: Token = self.call(Method::POST, "/token", "").await?;
        Ok(t.token)
    }

    /// `POST /ipfs/gc`.
    pub async fn ipfs_gc(&self, local: bool) -> Result<GlobalRepoGc, ClientError> {
        let query = query_string(&[("local", local.to_string())]);
        self.call(Method::POST, "/ipfs/gc", &query).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_core::Millis;

    #[test]
    fn pin_options_become_the_query_the_server_parses() {
        let mut options = PinOptions {
            replication_factor_min: 2,
            replication_factor_max: 3,
            name: "a b&c".into(),
            expire_at: Some(Millis(1_893_456_000_000)),
            ..PinOptions::default()
        };
        options.metadata.insert("owner".into(), "alice".into());
        let q = pin_query(&options);
        assert!(
            q.contains("replication-min=2&replication-max=3&name=a+b%26c"),
            "{q}"
        );
        assert!(q.contains("meta-owner=alice"), "{q}");
        assert!(q.contains("expire-at=2030-01-01T00%3A00%3A00Z"), "{q}");
    }

    #[test]
    fn only_plain_http_urls_are_accepted() {
        let bad = Client::new(ClientConfig {
            base_url: "https://example.org".into(),
            ..ClientConfig::default()
        });
        assert!(matches!(bad, Err(ClientError::Config(_))));
        assert_eq!(ClientError::Transport("x".into()).code(), 0);
    }
}

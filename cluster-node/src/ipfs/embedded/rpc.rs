//! The embedded node's RPC API: the part of Kubo's RPC API (`/api/v0/…`)
//! it can serve, on a loopback port, so the IPFS proxy forwards to it
//! exactly as it forwards to a Kubo daemon.
//!
//! Served: `add`, `cat`, `get`, `block/get|put|stat`, `dag/get|put`, `id`,
//! `version`, `swarm/peers|connect`, `repo/stat`, `repo/gc` and `resolve`.
//! (The proxy answers `pin/*` itself.) Every other command answers a
//! Kubo-shaped error (`{"Message","Code","Type"}`, HTTP 501) saying it needs
//! an external IPFS daemon. Requests from browsers (with an `Origin`) are
//! refused, as Kubo's default configuration does.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use ipld_core::ipld::Ipld;
use multihash_codetable::{Code, MultihashDigest};
use rust_ipfs::Block;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::import::{go_bool, import, ImportOptions};
use super::tar::{self, Kind};
use super::{EmbeddedConnector, IpfsConnector};
use crate::ipfs::{AddedFile, IpfsError};

/// Largest block `block/put` and `dag/put` take (Kubo's limit is 1 MiB for
/// blocks it will move over bitswap; the request may carry a bit more).
pub const MAX_PUT_BYTES: usize = 2 * 1024 * 1024;
/// Chunks buffered between a streamed answer's producer and the client.
const STREAM_BUFFER: usize = 16;

/// Multicodec codes the RPC API names.
const RAW: u64 = 0x55;
const DAG_PB: u64 = 0x70;
const DAG_CBOR: u64 = 0x71;
const DAG_JSON: u64 = 0x0129;

/// The commands served here, for the error every other one gets.
const SERVED: &str = "add, cat, get, block/get|put|stat, dag/get|put, id, version, \
                      swarm/peers|connect, repo/stat, repo/gc, resolve";

/// The query of one call: Kubo's parameters, `arg` possibly repeated.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: Option<&str>) -> Params {
        Params(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn arg(&self) -> Result<&str, RpcError> {
        self.get("arg")
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "argument \"arg\" is required"))
    }

    fn flag(&self, name: &str, default: bool) -> Result<bool, RpcError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => go_bool(name, v).map_err(|e| error(StatusCode::BAD_REQUEST, &e)),
        }
    }
}

/// A call that failed: its HTTP status and message.
#[derive(Debug)]
struct RpcError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for RpcError {
    /// Kubo's error answer.
    fn into_response(self) -> Response {
        let body = json!({"Message": self.message, "Code": 0, "Type": "error"});
        let mut r = Response::new(Body::from(body.to_string()));
        *r.status_mut() = self.status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

fn error(status: StatusCode, message: &str) -> RpcError {
    RpcError {
        status,
        message: message.to_string(),
    }
}

fn internal(e: impl std::fmt::Display) -> RpcError {
    error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
}

fn json_answer(value: &Value) -> Response {
    let mut r = Response::new(Body::from(format!("{value}\n")));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn bytes_answer(data: Bytes) -> Response {
    let mut r = Response::new(Body::from(data));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// A streamed answer fed by `producer` through a bounded channel.
fn streamed(content_type: &'static str, rx: mpsc::Receiver<Result<Bytes, String>>) -> Response {
    let mut rx = rx;
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("x-chunked-output", HeaderValue::from_static("1"));
    r
}

fn node_cid(text: &str) -> Result<::cid::Cid, RpcError> {
    let text = text.trim_start_matches("/ipfs/");
    let text = text.split('/').next().unwrap_or_default();
    text.parse::<::cid::Cid>().map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("invalid CID {text:?}: {e}"),
        )
    })
}

fn ipfs_path(text: &str) -> Result<rust_ipfs::IpfsPath, RpcError> {
    let full = if text.starts_with('/') {
        text.to_string()
    } else {
        format!("/ipfs/{text}")
    };
    full.parse().map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("invalid path {text:?}: {e}"),
        )
    })
}

/// The request body's chunks as a stream, each frame one chunk.
fn body_stream(body: Body) -> impl futures_util::Stream<Item = Result<Vec<u8>, String>> + Unpin {
    body.into_data_stream()
        .map(|r| r.map(|b| b.to_vec()).map_err(|e| e.to_string()))
}

fn content_type(request: &Request) -> String {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The first file of a small multipart body (`block/put`, `dag/put`).
async fn single_file(request: Request) -> Result<Vec<u8>, RpcError> {
    let ct = content_type(&request);
    let body = axum::body::to_bytes(request.into_body(), MAX_PUT_BYTES)
        .await
        .map_err(|e| error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string()))?;
    let parts = crate::ipfs::multipart::parts(&ct, &body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &e))?;
    parts
        .into_iter()
        .find(|p| !p.is_dir)
        .map(|p| p.data)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "file argument 'data' is required"))
}

/// Serves the RPC API of `node` on `listener` until the process ends.
pub async fn serve(node: EmbeddedConnector, listener: tokio::net::TcpListener) {
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "embedded ipfs rpc api listening");
    let app = router(node);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("embedded ipfs rpc api stopped: {e}");
    }
}

/// Binds the RPC API on `addr` (loopback, port 0 for any) and serves it in
/// the background; answers the base URL (`http://127.0.0.1:port`).
pub async fn start(node: EmbeddedConnector, addr: SocketAddr) -> Result<String, IpfsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| IpfsError::Config {
            reason: format!("embedded ipfs rpc api on {addr}: {e}"),
        })?;
    let bound = listener.local_addr().map_err(|e| IpfsError::Config {
        reason: format!("embedded ipfs rpc api: {e}"),
    })?;
    tokio::spawn(serve(node, listener));
    Ok(format!("http://{bound}"))
}

/// The API's router.
pub fn router(node: EmbeddedConnector) -> Router {
    Router::new().fallback(dispatch).with_state(node)
}

/// Routes one call (what the router does for every request).
pub(crate) async fn dispatch(
    State(node): State<EmbeddedConnector>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    // As Kubo's default API config: no browser page may call the node (a
    // cross-site request to a loopback port is a request all the same).
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not text)").to_string();
        return error(
            StatusCode::FORBIDDEN,
            &format!("cross-origin request from {origin} refused"),
        )
        .into_response();
    }
    if request.method() != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("method {} not allowed: use POST", request.method()),
        )
        .into_response();
    }
    let params = Params::parse(query.as_deref());
    let path = request.uri().path().trim_end_matches('/').to_string();
    let Some(command) = path.strip_prefix("/api/v0/") else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("{path}: not an RPC API path"),
        )
        .into_response();
    };
    let answer = match command {
        "add" => add(&node, &params, request).await,
        "cat" => cat(&node, &params).await,
        "get" => get(&node, &params).await,
        "block/get" => block_get(&node, &params).await,
        "block/stat" => block_stat(&node, &params).await,
        "block/put" => block_put(&node, &params, request).await,
        "dag/get" => dag_get(&node, &params).await,
        "dag/put" => dag_put(&node, &params, request).await,
        "id" => id(&node).await,
        "version" => Ok(version()),
        "swarm/peers" => swarm_peers(&node).await,
        "swarm/connect" => swarm_connect(&node, &params).await,
        "repo/stat" => repo_stat(&node, &params).await,
        "repo/gc" => repo_gc(&node).await,
        "resolve" => resolve(&node, &params).await,
        other => Err(error(
            StatusCode::NOT_IMPLEMENTED,
            &format!(
                "{other}: not served by the embedded IPFS node (it serves {SERVED}); \
                 this command needs an external IPFS daemon (ipfs.mode = \"external\")"
            ),
        )),
    };
    answer.unwrap_or_else(IntoResponse::into_response)
}

async fn add(
    node: &EmbeddedConnector,
    params: &Params,
    request: Request,
) -> Result<Response, RpcError> {
    let options =
        ImportOptions::from_params(params.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| error(StatusCode::BAD_REQUEST, &e))?;
    let pin = params.flag("pin", true)?;
    let only_hash = options.only_hash;
    let ct = content_type(&request);
    let body = body_stream(request.into_body());
    let (added_tx, mut added_rx) = mpsc::channel::<AddedFile>(STREAM_BUFFER);
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let importer = node.clone();
    tokio::spawn(async move {
        // No collection between storing the blocks and pinning the roots.
        let _no_gc = importer.hold_off_gc().await;
        let repo = importer.node().repo().clone();
        let work = async move {
            let r = import(&repo, &options, &ct, body, &added_tx).await;
            drop(added_tx); // Ends the forwarding below.
            r
        };
        let forward = async {
            let mut roots = Vec::new();
            while let Some(f) = added_rx.recv().await {
                let line =
                    json!({"Name": f.name, "Hash": f.cid.to_string(), "Size": f.size.to_string()});
                if !f.name.contains('/') {
                    roots.push(f.cid.clone());
                }
                let _ = tx.send(Ok(Bytes::from(format!("{line}\n")))).await;
            }
            roots
        };
        let (result, roots) = tokio::join!(work, forward);
        let result = match result {
            Ok(()) if pin && !only_hash => pin_roots(&importer, &roots).await,
            other => other,
        };
        if let Err(e) = result {
            let line = json!({"Message": e.to_string(), "Code": 0, "Type": "error"});
            let _ = tx.send(Ok(Bytes::from(format!("{line}\n")))).await;
        }
    });
    Ok(streamed("application/json", rx))
}

/// Kubo's `add` pins what it added unless told not to: the roots, as the
/// user's own pins (never marked as the cluster's).
async fn pin_roots(node: &EmbeddedConnector, roots: &[cluster_core::Cid]) -> Result<(), IpfsError> {
    let Some(root) = roots.last() else {
        return Ok(());
    };
    let cid = super::to_node_cid(root)?;
    node.node()
        .insert_pin(cid)
        .recursive()
        .local()
        .await
        .map_err(|e| super::daemon("add", e))
}

async fn cat(node: &EmbeddedConnector, params: &Params) -> Result<Response, RpcError> {
    let path = ipfs_path(params.arg()?)?;
    let offset: usize = params
        .get("offset")
        .map(str::parse)
        .transpose()
        .map_err(|_| error(StatusCode::BAD_REQUEST, "offset: not a number"))?
        .unwrap_or(0);
    let length: Option<usize> = params
        .get("length")
        .map(str::parse)
        .transpose()
        .map_err(|_| error(StatusCode::BAD_REQUEST, "length: not a number"))?;
    let timeout = node.config().request_timeout;
    let mut stream = node.node().cat_unixfs(path).timeout(timeout);
    // The first chunk tells a missing or non-file path from a good one.
    let first = match stream.next().await {
        Some(Ok(b)) => b,
        Some(Err(e)) => return Err(internal(e)),
        None => Bytes::new(),
    };
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut skip = offset;
        let mut left = length.unwrap_or(usize::MAX);
        let mut next = Some(Ok(first));
        while let Some(item) = next.take() {
            let chunk = match item {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(format!("{e}"))).await;
                    return;
                }
            };
            let start = skip.min(chunk.len());
            skip -= start;
            let end = chunk.len().min(start.saturating_add(left));
            left -= end - start;
            if end > start && tx.send(Ok(chunk.slice(start..end))).await.is_err() {
                return;
            }
            if left == 0 {
                return;
            }
            next = stream.next().await;
        }
    });
    Ok(streamed("text/plain", rx))
}

async fn get(node: &EmbeddedConnector, params: &Params) -> Result<Response, RpcError> {
    let arg = params.arg()?.to_string();
    let path = ipfs_path(&arg)?;
    if params.flag("compress", false)? || params.flag("C", false)? {
        return Err(error(
            StatusCode::NOT_IMPLEMENTED,
            "get: compression needs an external IPFS daemon",
        ));
    }
    // Kubo names the archive's root after the path's last component.
    let base = arg
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let timeout = node.config().request_timeout;
    let mut listing = node.node().ls_unixfs(path).timeout(timeout);
    // A path that does not exist fails before the answer starts.
    let first = listing.next().await;
    if let Some(rust_ipfs::unixfs::Entry::Error { error: e }) = &first {
        return Err(internal(e));
    }
    let root = futures_util::stream::iter(first).chain(listing).boxed();
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let node = node.clone();
    tokio::spawn(async move {
        if let Err(e) = send_tar(&node, root, base, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    Ok(streamed("application/x-tar", rx))
}

type Listing = futures_util::stream::BoxStream<'static, rust_ipfs::unixfs::Entry>;

/// Writes the tar archive of the tree listed by `root` (named `base`) to
/// `tx`: directories as they are met, each file's content after its
/// header. Subdirectories are listed in turn (one listing may or may not
/// reach below its directory; paths already written are skipped).
async fn send_tar(
    node: &EmbeddedConnector,
    root: Listing,
    base: String,
    tx: &mpsc::Sender<Result<Bytes, String>>,
) -> Result<(), String> {
    use rust_ipfs::unixfs::Entry;
    let timeout = node.config().request_timeout;
    let gone = || "the client went away".to_string();
    let send = |b: Vec<u8>| async move { tx.send(Ok(Bytes::from(b))).await.map_err(|_| gone()) };
    let mut written = std::collections::BTreeSet::new();
    let mut pending: Vec<(Listing, String)> = vec![(root, base)];
    while let Some((mut listing, prefix)) = pending.pop() {
        let mut in_dir = false;
        while let Some(entry) = listing.next().await {
            let (name, cid, kind) = match entry {
                Entry::Error { error } => return Err(error.to_string()),
                Entry::RootDirectory { cid, .. } => {
                    in_dir = true;
                    (prefix.clone(), cid, Kind::Dir)
                }
                Entry::Directory { cid, path } => {
                    let full = format!("{prefix}/{path}");
                    let sub = node.node().ls_unixfs(cid).timeout(timeout).boxed();
                    pending.push((sub, full.clone()));
                    (full, cid, Kind::Dir)
                }
                Entry::File { cid, file, size } if in_dir => {
                    (format!("{prefix}/{file}"), cid, Kind::File(size as u64))
                }
                Entry::File { cid, size, .. } => (prefix.clone(), cid, Kind::File(size as u64)),
            };
            if !written.insert(name.clone()) {
                continue;
            }
            send(tar::entry_header(&name, kind)).await?;
            let Kind::File(size) = kind else { continue };
            let mut got = 0u64;
            let mut content = node.node().cat_unixfs(cid).timeout(timeout);
            while let Some(chunk) = content.next().await {
                let chunk = chunk.map_err(|e| format!("{name}: {e}"))?;
                got += chunk.len() as u64;
                tx.send(Ok(chunk)).await.map_err(|_| gone())?;
            }
            if got != size {
                return Err(format!("{name}: {got} bytes read, {size} expected"));
            }
            send(vec![0u8; tar::padding(size)]).await?;
        }
    }
    send(tar::end()).await
}

async fn fetch_block(node: &EmbeddedConnector, arg: &str) -> Result<Block, RpcError> {
    let cid = node_cid(arg)?;
    let timeout = node.config().request_timeout;
    node.node()
        .get_block(cid)
        .timeout(timeout)
        .await
        .map_err(internal)
}

async fn block_get(node: &EmbeddedConnector, params: &Params) -> Result<Response, RpcError> {
    let block = fetch_block(node, params.arg()?).await?;
    Ok(bytes_answer(block.inner_data().clone()))
}

async fn block_stat(node: &EmbeddedConnector, params: &Params) -> Result<Response, RpcError> {
    let block = fetch_block(node, params.arg()?).await?;
    Ok(json_answer(
        &json!({"Key": block.cid().to_string(), "Size": block.data().len()}),
    ))
}

fn codec_named(name: &str) -> Result<u64, RpcError> {
    match name {
        "raw" => Ok(RAW),
        "dag-pb" | "protobuf" => Ok(DAG_PB),
        "dag-cbor" | "cbor" => Ok(DAG_CBOR),
        "dag-json" | "json" => Ok(DAG_JSON),
        other => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("codec {other:?} is not supported by the embedded IPFS node"),
        )),
    }
}

fn sha2_only(params: &Params, name: &str) -> Result<(), RpcError> {
    match params.get(name) {
        None | Some("sha2-256") => Ok(()),
        Some(other) => Err(error(
            StatusCode::NOT_IMPLEMENTED,
            &format!("hash {other:?} needs an external IPFS daemon (sha2-256 only)"),
        )),
    }
}

/// Stores `data` as a block of `codec` (CIDv0 for dag-pb when asked) and
/// pins it in the node when `pin`.
async fn put_block(
    node: &EmbeddedConnector,
    codec: u64,
    v0: bool,
    data: Vec<u8>,
    pin: bool,
) -> Result<::cid::Cid, RpcError> {
    let hash = Code::Sha2_256.digest(&data);
    let cid = if v0 {
        ::cid::Cid::new_v0(hash).map_err(internal)?
    } else {
        ::cid::Cid::new_v1(codec, hash)
    };
    let block = Block::new(cid, data).map_err(internal)?;
    let _no_gc = node.hold_off_gc().await;
    node.node().put_block(&block).await.map_err(internal)?;
    if pin {
        node.node()
            .insert_pin(cid)
            .recursive()
            .local()
            .await
            .map_err(internal)?;
    }
    Ok(cid)
}

async fn block_put(
    node: &EmbeddedConnector,
    params: &Params,
    request: Request,
) -> Result<Response, RpcError> {
    sha2_only(params, "mhtype")?;
    let (codec, v0) = match (params.get("format"), params.get("cid-codec")) {
        (Some("v0"), _) => (DAG_PB, true),
        (Some(f), _) => (codec_named(f)?, false),
        (None, Some(c)) => (codec_named(c)?, false),
        (None, None) => (RAW, false),
    };
    let pin = params.flag("pin", false)?;
    let data = single_file(request).await?;
    let size = data.len();
    let cid = put_block(node, codec, v0, data, pin).await?;
    Ok(json_answer(&json!({"Key": cid.to_string(), "Size": size})))
}

async fn dag_get(node: &EmbeddedConnector, params: &Params) -> Result<Response, RpcError> {
    let codec = params.get("output-codec").unwrap_or("dag-json");
    let path = ipfs_path(params.arg()?)?;
    let timeout = node.config().request_timeout;
    let ipld: Ipld = node
        .node()
        .get_dag(path)
        .timeout(timeout)
        .await
        .map_err(internal)?;
    let bytes = match codec {
        "dag-json" | "json" => serde_ipld_dagjson::to_vec(&ipld).map_err(internal)?,
        "dag-cbor" | "cbor" => serde_ipld_dagcbor::to_vec(&ipld).map_err(internal)?,
        other => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("output codec {other:?} is not supported by the embedded IPFS node"),
            ))
        }
    };
    let mut r = bytes_answer(Bytes::from(bytes));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

async fn dag_put(
    node: &EmbeddedConnector,
    params: &Params,
    request: Request,
) -> Result<Response, RpcError> {
    sha2_only(params, "hash")?;
    let store = codec_named(params.get("store-codec").unwrap_or("dag-cbor"))?;
    let input = codec_named(params.get("input-codec").unwrap_or("dag-json"))?;
    let pin = params.flag("pin", false)?;
    let data = single_file(request).await?;
    let bad = |e: String| error(StatusCode::BAD_REQUEST, &format!("dag/put: {e}"));
    let ipld: Ipld = match input {
        DAG_JSON => serde_ipld_dagjson::from_slice(&data).map_err(|e| bad(e.to_string()))?,
        DAG_CBOR => serde_ipld_dagcbor::from_slice(&data).map_err(|e| bad(e.to_string()))?,
        _ => return Err(bad("input codec must be dag-json or dag-cbor".into())),
    };
    let encoded = match store {
        DAG_JSON => serde_ipld_dagjson::to_vec(&ipld).map_err(internal)?,
        DAG_CBOR => serde_ipld_dagcbor::to_vec(&ipld).map_err(internal)?,
        _ => return Err(bad("store codec must be dag-json or dag-cbor".into())),
    };
    let cid = put_block(node, store, false, encoded, pin).await?;
    Ok(json_answer(&json!({"Cid": {"/": cid.to_string()}})))
}

async fn id(node: &EmbeddedConnector) -> Result<Response, RpcError> {
    let me = node.id().await.map_err(internal)?;
    let key = node.node().keypair().public().encode_protobuf();
    use base64::Engine as _;
    let addresses: Vec<String> = me
        .addresses
        .iter()
        .map(|a| format!("{a}/p2p/{}", me.peer_id))
        .collect();
    Ok(json_answer(&json!({
        "ID": me.peer_id,
        "PublicKey": base64::engine::general_purpose::STANDARD.encode(key),
        "Addresses": addresses,
        "AgentVersion": agent_version(),
        "ProtocolVersion": "ipfs/0.1.0",
        "Protocols": ["/ipfs/bitswap/1.2.0", "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"],
    })))
}

fn agent_version() -> String {
    format!(
        "ipfscluster-embedded/{} rust-ipfs/0.16.0",
        env!("CARGO_PKG_VERSION")
    )
}

fn version() -> Response {
    json_answer(&json!({
        "Version": format!("{}-embedded", env!("CARGO_PKG_VERSION")),
        "Commit": "",
        "Repo": "rust-ipfs-0.16.0",
        "System": format!("{}/{}", std::env::consts::ARCH, std::env::consts::OS),
        "Golang": "",
    }))
}

async fn swarm_peers(node: &EmbeddedConnector) -> Result<Response, RpcError> {
    let ipfs = node.node();
    let connected = ipfs.connected().await.map_err(internal)?;
    let book = ipfs.addrs().await.unwrap_or_default();
    let peers: Vec<Value> = connected
        .iter()
        .map(|peer| {
            let addr = book
                .iter()
                .find(|(p, _)| p == peer)
                .and_then(|(_, addrs)| addrs.first())
                .map(ToString::to_string)
                .unwrap_or_default();
            json!({"Addr": addr, "Peer": peer.to_string(), "Direction": 0,
                   "Latency": "", "Muxer": "", "Streams": null})
        })
        .collect();
    Ok(json_answer(&json!({ "Peers": peers })))
}

async fn swarm_connect(node: &EmbeddedConnector, params: &Params) -> Result<Response, RpcError> {
    let mut lines = Vec::new();
    for (_, addr) in params.0.iter().filter(|(k, _)| k == "arg") {
        node.swarm_connect(addr).await.map_err(internal)?;
        let peer = addr.rsplit("/p2p/").next().unwrap_or(addr);
        lines.push(format!("connect {peer} success"));
    }
    if lines.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "argument \"address\" is required",
        ));
    }
    Ok(json_answer(&json!({ "Strings": lines })))
}

async fn repo_stat(node: &EmbeddedConnector, params: &Params) -> Result<Response, RpcError> {
    let stat = node.repo_stat().await.map_err(internal)?;
    let objects = if params.flag("size-only", false)? {
        0
    } else {
        node.node().repo().list_blocks().await.count().await
    };
    Ok(json_answer(&json!({
        "RepoSize": stat.repo_size,
        "StorageMax": stat.storage_max,
        "NumObjects": objects,
        "RepoPath": node.dir().join(super::REPO_DIR).display().to_string(),
        "Version": "fs-repo@rust-ipfs-0.16.0",
    })))
}

async fn repo_gc(node: &EmbeddedConnector) -> Result<Response, RpcError> {
    let removed = node.repo_gc().await.map_err(internal)?;
    let mut out = String::new();
    for entry in removed {
        let line = match (entry.key, entry.error) {
            (_, Some(e)) => json!({ "Error": e }),
            (Some(k), None) => json!({"Key": {"/": k}}),
            (None, None) => continue,
        };
        out.push_str(&format!("{line}\n"));
    }
    let mut r = Response::new(Body::from(out));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

async fn resolve(node: &EmbeddedConnector, params: &Params) -> Result<Response, RpcError> {
    let arg = params.arg()?;
    let path = crate::ipfs::IpfsPath::parse(arg)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &e.to_string()))?;
    let cid = node.resolve(&path).await.map_err(internal)?;
    Ok(json_answer(&json!({ "Path": format!("/ipfs/{cid}") })))
}

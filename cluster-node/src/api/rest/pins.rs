//! Pinning and unpinning (`POST`/`DELETE /pins/{cid}`,
//! `/pins/{ipfs|ipns|ipld}/{path}`) and reading the shared state
//! (`GET /allocations[/{cid}]`).
//!
//! A path is resolved through this peer's IPFS daemon (`resolve`), except a
//! bare `/ipfs/<cid>`, and the CID it leads to is pinned or unpinned.
//!
//! A pin is allocated here, by the peer that took the request, from the
//! metrics its own drivers received (the simulator's client path does the
//! same), then replicated as one `Command::Pin`; the pinset's apply is the
//! judge of everything else.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use cluster_core::allocator::{allocate, AllocationRequest};
use cluster_core::pinset::Command;
use cluster_core::{Cid, PeerId, Pin, PinOptions, PinType};

use super::encode;
use super::error::{json_response, ApiError};
use super::options::{parse_cid, Query};
use super::state::ApiState;
use super::stream::ndjson;
use crate::api::types::ApiPin;
use crate::ipfs::{IpfsPath, Namespace};

/// Pins read from the pinset per lock of a listing.
pub const LIST_PAGE_PINS: usize = 256;

/// `POST /pins/{cid}`.
pub async fn pin_cid(
    State(state): State<Arc<ApiState>>,
    Path(cid): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let cid = parse_cid(&cid)?;
    let options = Query::parse(query.as_deref())?.pin_options(state.now())?;
    let pin = pin(&state, cid, options).await?;
    state.observations.pin.observe(started.elapsed());
    Ok(json_response(StatusCode::OK, &pin))
}

/// `POST /pins/ipfs/{path}`.
pub async fn pin_ipfs(
    state: State<Arc<ApiState>>,
    path: Path<String>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    pin_path(Namespace::Ipfs, state, path, query).await
}

/// `POST /pins/ipns/{path}`.
pub async fn pin_ipns(
    state: State<Arc<ApiState>>,
    path: Path<String>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    pin_path(Namespace::Ipns, state, path, query).await
}

/// `POST /pins/ipld/{path}`.
pub async fn pin_ipld(
    state: State<Arc<ApiState>>,
    path: Path<String>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    pin_path(Namespace::Ipld, state, path, query).await
}

/// Pins what the path in `namespace` resolves to (a bare `/ipfs/<cid>`,
/// what `ipfs-cluster-ctl pin add` sends, without asking IPFS).
async fn pin_path(
    namespace: Namespace,
    State(state): State<Arc<ApiState>>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let path = parse_path(namespace, &path)?;
    // Options first: a bad one is a 400 without a call to IPFS.
    let options = Query::parse(query.as_deref())?.pin_options(state.now())?;
    let cid = resolve(&state, &path).await?;
    let pin = pin(&state, cid, options).await?;
    state.observations.pin.observe(started.elapsed());
    Ok(json_response(StatusCode::OK, &pin))
}

/// `DELETE /pins/{cid}`.
pub async fn unpin_cid(
    State(state): State<Arc<ApiState>>,
    Path(cid): Path<String>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let pin = unpin(&state, parse_cid(&cid)?).await?;
    state.observations.unpin.observe(started.elapsed());
    Ok(json_response(StatusCode::OK, &pin))
}

/// `DELETE /pins/ipfs/{path}`.
pub async fn unpin_ipfs(
    state: State<Arc<ApiState>>,
    path: Path<String>,
) -> Result<Response, ApiError> {
    unpin_path(Namespace::Ipfs, state, path).await
}

/// `DELETE /pins/ipns/{path}`.
pub async fn unpin_ipns(
    state: State<Arc<ApiState>>,
    path: Path<String>,
) -> Result<Response, ApiError> {
    unpin_path(Namespace::Ipns, state, path).await
}

/// `DELETE /pins/ipld/{path}`.
pub async fn unpin_ipld(
    state: State<Arc<ApiState>>,
    path: Path<String>,
) -> Result<Response, ApiError> {
    unpin_path(Namespace::Ipld, state, path).await
}

/// Unpins what the path in `namespace` resolves to.
async fn unpin_path(
    namespace: Namespace,
    State(state): State<Arc<ApiState>>,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let path = parse_path(namespace, &path)?;
    let cid = resolve(&state, &path).await?;
    let pin = unpin(&state, cid).await?;
    state.observations.unpin.observe(started.elapsed());
    Ok(json_response(StatusCode::OK, &pin))
}

/// `GET /allocations/{cid}`.
pub async fn allocation(
    State(state): State<Arc<ApiState>>,
    Path(cid): Path<String>,
) -> Result<Response, ApiError> {
    let cid = parse_cid(&cid)?;
    let pin = state
        .ctx
        .raft
        .with_pinset(|p| p.get(&cid))
        .ok_or(ApiError::NotInPinset)?;
    Ok(json_response(StatusCode::OK, &ApiPin::stored(&pin)))
}

/// `GET /allocations` (`filter`, and the `limit`/`after` page).
pub async fn allocations(
    State(state): State<Arc<ApiState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(query.as_deref())?;
    let types = query.type_filter()?;
    let page = query.page()?;
    Ok(ndjson(move |sink| async move {
        let mut after = page.after;
        let mut left = page.limit.unwrap_or(usize::MAX);
        loop {
            let pins = state
                .ctx
                .raft
                .with_pinset(|p| p.page(after.as_ref(), LIST_PAGE_PINS));
            let last = pins.len() < LIST_PAGE_PINS;
            after = pins.last().map(|p| p.cid.clone());
            let wanted: Vec<Pin> = pins
                .into_iter()
                .filter(|pin| types.is_empty() || types.contains(&pin.pin_type))
                .take(left)
                .collect();
            left -= wanted.len();
            let write = |out: &mut Vec<u8>| {
                let mut times = encode::TimeText::default();
                for pin in &wanted {
                    encode::stored_pin(out, pin, &mut times);
                    out.push(b'\n');
                }
            };
            if !sink.send_lines(&write).await || left == 0 || last {
                return Ok(());
            }
        }
    })
    .await)
}

/// The path a route captured (what follows `/pins/<namespace>/`).
pub fn parse_path(namespace: Namespace, captured: &str) -> Result<IpfsPath, ApiError> {
    IpfsPath::parse(&format!("/{}/{captured}", namespace.as_str()))
        .map_err(|e| ApiError::BadPath(e.to_string()))
}

/// The CID `path` names: a bare CID directly, anything else through the
/// IPFS daemon's `resolve`.
async fn resolve(state: &ApiState, path: &IpfsPath) -> Result<Cid, ApiError> {
    if let Some(cid) = path.bare_cid() {
        return Ok(cid);
    }
    state
        .ctx
        .ipfs
        .resolve(path)
        .await
        .map_err(|source| ApiError::Resolve {
            path: path.to_string(),
            source,
        })
}

/// Allocates and replicates a pin of `cid` with `options`; answers the pin
/// as submitted.
pub async fn pin(state: &ApiState, cid: Cid, options: PinOptions) -> Result<ApiPin, ApiError> {
    if let Some(from) = options.pin_update.clone() {
        return pin_update(state, from, cid, options).await;
    }
    let options = with_defaults(state, options);
    // Re-pinning keeps the allocations that are still good (how
    // replication factors change without moving replicas).
    let current = state
        .ctx
        .raft
        .with_pinset(|p| p.get(&cid).map(|p| p.allocations))
        .unwrap_or_default();
    let allocations = allocate_for(state, &options, &current)?;
    commit(state, cid, options, allocations).await
}

/// `options` with the configured replication factors where they say 0.
pub fn with_defaults(state: &ApiState, mut options: PinOptions) -> PinOptions {
    let config = &state.config;
    if options.replication_factor_min == 0 {
        options.replication_factor_min = config.default_replication_min;
    }
    if options.replication_factor_max == 0 {
        options.replication_factor_max = config.default_replication_max;
    }
    options
}

/// The peers a pin with `options` goes to, keeping good `current` ones.
pub fn allocate_for(
    state: &ApiState,
    options: &PinOptions,
    current: &[PeerId],
) -> Result<Vec<PeerId>, ApiError> {
    let now = state.now();
    let members = state.members();
    let metrics: Vec<_> = state
        .drivers
        .board
        .current(now)
        .into_iter()
        .filter(|m| members.contains(&m.peer))
        .collect();
    let request = AllocationRequest {
        replication_factor_min: options.replication_factor_min,
        replication_factor_max: options.replication_factor_max,
        current,
        user_allocations: &options.user_allocations,
        blacklist: &[],
        members: &members,
    };
    Ok(allocate(&request, &metrics, now, &state.config.allocator)?)
}

/// Replicates the pin of `cid` with `options` on `allocations`.
pub async fn commit(
    state: &ApiState,
    cid: Cid,
    options: PinOptions,
    allocations: Vec<PeerId>,
) -> Result<ApiPin, ApiError> {
    let mut pin = Pin::new(cid, options, state.now());
    pin.allocations = allocations;
    state.write(Command::Pin(pin.clone())).await?;
    tracing::info!(cid = %pin.cid, allocations = pin.allocations.len(), "rest api: pinned");
    Ok(ApiPin::submitted(&pin))
}

/// `pin-update`: the new pin copies `from` (allocations and options), with
/// the name and a future expiry replaced when given.
async fn pin_update(
    state: &ApiState,
    from: Cid,
    to: Cid,
    options: PinOptions,
) -> Result<ApiPin, ApiError> {
    let timestamp = state.now();
    state
        .write(Command::Update {
            from,
            to: to.clone(),
            name: options.name,
            expire_at: options.expire_at,
            timestamp,
        })
        .await?;
    let pin = state
        .ctx
        .raft
        .with_pinset(|p| p.get(&to))
        .ok_or(ApiError::NotInPinset)?;
    Ok(ApiPin::submitted(&pin))
}

/// Removes `cid` from the pinset; answers the pin as it was stored.
pub async fn unpin(state: &ApiState, cid: Cid) -> Result<ApiPin, ApiError> {
    let stored = state
        .ctx
        .raft
        .with_pinset(|p| p.get(&cid))
        .ok_or(ApiError::NotInPinset)?;
    if stored.pin_type != PinType::Data {
        // The pinset refuses these kinds anyway; say why as upstream does.
        return Err(ApiError::Internal(format!(
            "cannot unpin a {:?} pin directly. Unpin content root CID instead",
            stored.pin_type
        )));
    }
    state.write(Command::Unpin { cid: cid.clone() }).await?;
    tracing::info!(cid = %cid, "rest api: unpinned");
    Ok(ApiPin::stored(&stored))
}

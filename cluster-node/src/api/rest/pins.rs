//! Pinning and unpinning (`POST`/`DELETE /pins/{cid}`, `/pins/ipfs/{path}`)
//! and reading the shared state (`GET /allocations[/{cid}]`).
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

use super::error::{json_response, ApiError};
use super::options::{parse_cid, Query};
use super::state::ApiState;
use super::stream::ndjson;
use crate::api::types::ApiPin;

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

/// `POST /pins/ipfs/{path}`: a bare `/ipfs/<cid>` (what `ipfs-cluster-ctl
/// pin add` sends); sub-paths need IPFS `resolve`, which the connector
/// does not offer yet.
pub async fn pin_path(
    State(state): State<Arc<ApiState>>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let cid = path_cid(&path)?;
    let options = Query::parse(query.as_deref())?.pin_options(state.now())?;
    let pin = pin(&state, cid, options).await?;
    state.observations.pin.observe(started.elapsed());
    Ok(json_response(StatusCode::OK, &pin))
}

/// `POST /pins/{ipns|ipld}/{path}`: needs resolving through IPFS.
pub async fn resolve_unsupported() -> ApiError {
    ApiError::NotImplemented(
        "resolving /ipns and /ipld paths needs IPFS resolve, which this node's IPFS \
         connector does not offer yet: pin the CID",
    )
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
pub async fn unpin_path(
    State(state): State<Arc<ApiState>>,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let pin = unpin(&state, path_cid(&path)?).await?;
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
            let wanted: Vec<ApiPin> = pins
                .into_iter()
                .filter(|pin| types.is_empty() || types.contains(&pin.pin_type))
                .take(left)
                .map(ApiPin::from_stored)
                .collect();
            left -= wanted.len();
            if !sink.send_page(&wanted).await || left == 0 || last {
                return Ok(());
            }
        }
    })
    .await)
}

/// The CID of an `/ipfs/<cid>` path (without the `/ipfs/`).
fn path_cid(path: &str) -> Result<Cid, ApiError> {
    let path = path.trim_end_matches('/');
    match path.split_once('/') {
        None => parse_cid(path),
        Some(_) => Err(ApiError::NotImplemented(
            "pinning a sub-path needs IPFS resolve, which this node's IPFS connector does not \
             offer yet: pin the CID",
        )),
    }
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

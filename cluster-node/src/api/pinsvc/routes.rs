//! The handlers: `/pins` (list, add), `/pins/{requestid}` (get, replace,
//! remove), `/token` and `/health`. Writes, reads and statuses go through
//! the REST API's code (`rest::pins`, `rest::status`): one way to pin.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cluster_core::pinset::Command;
use cluster_core::{Cid, Pin, PinType};

use super::body::{self, NewPin};
use super::error::{json_response, PinSvcError};
use super::query::ListQuery;
use super::status::{delegates, pin_status, service_status};
use super::types::{PinResults, PinStatus, ServiceStatus, TokenBody};
use super::PinSvcState;
use crate::api::rest::jwt;
use crate::api::rest::pins::{self, LIST_PAGE_PINS};
use crate::api::rest::state::ApiState;
use crate::api::rest::status::{status_of, statuses};
use crate::api::rest::ApiError;

/// `GET /pins`.
pub async fn list(
    State(state): State<Arc<PinSvcState>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PinSvcError> {
    let query = ListQuery::parse(raw.as_deref())?;
    Ok(json_response(
        StatusCode::OK,
        &list_pins(&state.api, &query).await,
    ))
}

/// `POST /pins`: pins the body's CID with the cluster's default
/// replication; answers 202 with the request `queued`.
pub async fn add(
    State(state): State<Arc<PinSvcState>>,
    request: Body,
) -> Result<Response, PinSvcError> {
    let new = body::parse(&read_body(request, state.max_body_bytes).await?)?;
    pins::pin(&state.api, new.cid.clone(), new.options()).await?;
    let pin = stored_or(&state.api, &new);
    tracing::info!(cid = %pin.cid, "pinning service: pin requested");
    Ok(accepted(&state.api, &pin))
}

/// `GET /pins/{requestid}`.
pub async fn get(
    State(state): State<Arc<PinSvcState>>,
    Path(id): Path<String>,
) -> Result<Response, PinSvcError> {
    let cid = request_id(&id)?;
    let pin = stored(&state.api, &cid).ok_or(PinSvcError::NotFound)?;
    let info = status_of(&state.api, cid, false).await;
    let status =
        service_status(info.peer_map.values().map(|p| p.status)).ok_or(PinSvcError::NotFound)?;
    let members = state.api.members();
    let delegates = delegates(&pin, &members, &state.api.received());
    Ok(json_response(
        StatusCode::OK,
        &pin_status(&pin, status, delegates),
    ))
}

/// `POST /pins/{requestid}`: the body's pin takes the place of the request
/// `requestid`, on the same peers (the cluster's pin update: they hold most
/// blocks already), then the old pin is removed. Answers 202 with the new
/// request, `queued`.
pub async fn replace(
    State(state): State<Arc<PinSvcState>>,
    Path(id): Path<String>,
    request: Body,
) -> Result<Response, PinSvcError> {
    let old_cid = request_id(&id)?;
    let new = body::parse(&read_body(request, state.max_body_bytes).await?)?;
    let api = &state.api;
    let old = stored(api, &old_cid).ok_or(PinSvcError::NotFound)?;
    if new.cid != old_cid {
        // Atomic copy of the old pin (allocations, factors, mode, expiry).
        api.write(Command::Update {
            from: old_cid.clone(),
            to: new.cid.clone(),
            name: new.name.clone(),
            expire_at: None,
            timestamp: api.now(),
        })
        .await?;
    }
    // The body is the whole new pin object: its name, meta and origins
    // replace the copied ones, on the same peers.
    let copied = stored(api, &new.cid).unwrap_or_else(|| old.clone());
    let o = &copied.options;
    if o.name != new.name || o.metadata != new.meta || o.origins != new.origins {
        let mut pin = copied.clone();
        pin.options.name = new.name.clone();
        pin.options.metadata = new.meta.clone();
        pin.options.origins = new.origins.clone();
        pin.timestamp = api.now();
        api.write(Command::Pin(pin)).await?;
    }
    if new.cid != old_cid {
        match pins::unpin(api, old_cid.clone()).await {
            // Removed meanwhile: the replacement is what was asked.
            Ok(_) | Err(ApiError::NotInPinset) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let pin = stored_or(api, &new);
    tracing::info!(from = %old_cid, to = %pin.cid, "pinning service: pin replaced");
    Ok(accepted(api, &pin))
}

/// `DELETE /pins/{requestid}`: 202, no body.
pub async fn remove(
    State(state): State<Arc<PinSvcState>>,
    Path(id): Path<String>,
) -> Result<Response, PinSvcError> {
    let cid = request_id(&id)?;
    pins::unpin(&state.api, cid).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `POST /token`: a JWT for the configured user (the request got past the
/// authentication already). Without a configured user there is none to
/// issue: 401.
pub async fn token(State(state): State<Arc<PinSvcState>>) -> Response {
    match state.gate.user() {
        Some((user, pass)) => json_response(
            StatusCode::OK,
            &TokenBody {
                token: jwt::issue(user, pass),
            },
        ),
        None => super::error::error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized".to_string(),
            Some("no basic_auth_credentials are configured to sign tokens with".to_string()),
        ),
    }
}

/// `GET /health`: 204.
pub async fn health() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Unknown paths.
pub async fn no_route() -> PinSvcError {
    PinSvcError::NoRoute
}

/// The pins that match `query`: counted in full, the newest `limit` of them
/// (ties by CID) with their status. Pins are read page by page and their
/// statuses asked a page at a time; at most `2 × limit` candidates are
/// held beside one page.
pub async fn list_pins(api: &Arc<ApiState>, query: &ListQuery) -> PinResults {
    let mut found = Found {
        count: 0,
        best: Vec::new(),
        limit: query.limit,
    };
    if !query.cids.is_empty() {
        let pins: Vec<Pin> = api.ctx.raft.with_pinset(|p| {
            query
                .cids
                .iter()
                .filter_map(|cid| p.get(cid))
                .filter(|pin| query.admits(pin))
                .collect()
        });
        found.add(api, query, pins).await;
    } else {
        let mut after: Option<Cid> = None;
        let mut batch: Vec<Pin> = Vec::new();
        loop {
            let page = api
                .ctx
                .raft
                .with_pinset(|p| p.page(after.as_ref(), LIST_PAGE_PINS));
            let last = page.len() < LIST_PAGE_PINS;
            after = page.last().map(|p| p.cid.clone());
            batch.extend(
                page.into_iter()
                    .filter(|p| p.pin_type == PinType::Data && query.admits(p)),
            );
            if batch.len() >= LIST_PAGE_PINS || last {
                found.add(api, query, std::mem::take(&mut batch)).await;
            }
            if last {
                break;
            }
        }
    }
    found.keep_best();
    let members = api.members();
    let received = api.received();
    let results = found
        .best
        .iter()
        .map(|(pin, status)| pin_status(pin, *status, delegates(pin, &members, &received)))
        .collect();
    PinResults {
        count: found.count,
        results,
    }
}

/// A listing's matches so far.
struct Found {
    count: u64,
    best: Vec<(Pin, ServiceStatus)>,
    limit: usize,
}

impl Found {
    /// Asks the statuses of `pins` and keeps those in a wanted status.
    async fn add(&mut self, api: &Arc<ApiState>, query: &ListQuery, pins: Vec<Pin>) {
        if pins.is_empty() {
            return;
        }
        let mut by_cid: BTreeMap<Cid, Pin> =
            pins.iter().map(|p| (p.cid.clone(), p.clone())).collect();
        let asked = pins.into_iter().map(|p| (p.cid.clone(), Some(p))).collect();
        for info in statuses(api, asked, false, &[]).await.into_infos() {
            let Some(status) = service_status(info.peer_map.values().map(|p| p.status)) else {
                continue;
            };
            if !query.statuses.contains(&status) {
                continue;
            }
            let Some(pin) = by_cid.remove(&info.cid) else {
                continue;
            };
            self.count += 1;
            self.best.push((pin, status));
            if self.best.len() >= 2 * self.limit {
                self.keep_best();
            }
        }
    }

    /// Keeps the newest `limit` (newest first; ties by CID).
    fn keep_best(&mut self) {
        self.best.sort_by(|(a, _), (b, _)| {
            b.timestamp
                .cmp(&a.timestamp)
                .then_with(|| a.cid.cmp(&b.cid))
        });
        self.best.truncate(self.limit);
    }
}

/// A request id: a CID.
fn request_id(text: &str) -> Result<Cid, PinSvcError> {
    Cid::parse(text).map_err(|e| PinSvcError::BadRequestId(e.to_string()))
}

fn stored(api: &ApiState, cid: &Cid) -> Option<Pin> {
    api.ctx.raft.with_pinset(|p| p.get(cid))
}

/// The stored pin of `new` (the pin as submitted if it was removed since).
fn stored_or(api: &ApiState, new: &NewPin) -> Pin {
    stored(api, &new.cid).unwrap_or_else(|| Pin::new(new.cid.clone(), new.options(), api.now()))
}

/// 202 with `pin` as a queued request.
fn accepted(api: &ApiState, pin: &Pin) -> Response {
    let delegates = delegates(pin, &api.members(), &api.received());
    let status: PinStatus = pin_status(pin, ServiceStatus::Queued, delegates);
    json_response(StatusCode::ACCEPTED, &status)
}

/// The whole body, at most `max` bytes (413 beyond).
async fn read_body(body: Body, max: usize) -> Result<bytes::Bytes, PinSvcError> {
    axum::body::to_bytes(body, max).await.map_err(|e| {
        let inner = e.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            PinSvcError::BodyTooLarge { max }
        } else {
            PinSvcError::BadBody(format!("reading the body: {inner}"))
        }
    })
}

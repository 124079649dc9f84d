//! Pin statuses across the cluster (`GET /pins`, `GET /pins/{cid}`) and
//! recovery (`POST /pins/{cid}/recover`, `POST /pins/recover`).
//!
//! Every peer's tracker is asked over the node RPC (this peer's directly),
//! all peers at once, for a page of CIDs at a time: a listing holds one
//! page of statuses per peer, never the whole cluster's. Peers not
//! allocated a pin show `remote` without being asked; a peer that does not
//! answer shows `cluster_error` with the reason, and the request succeeds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use cluster_core::tracker::PinStatus;
use cluster_core::{Cid, PeerId, Pin, TrackerStatus};
use cluster_net::NodeInfo;
use tokio::task::JoinSet;

use super::error::{json_response, ApiError};
use super::options::{parse_cid, Query};
use super::pins::LIST_PAGE_PINS;
use super::state::ApiState;
use super::stream::ndjson;
use crate::api::time::Timestamp;
use crate::api::types::{GlobalPinInfo, PinInfoShort};
use crate::rpc::{self, RecoverQuery, StatusAnswer, StatusQuery, TRACKER_RECOVER, TRACKER_STATUS};

/// `GET /pins/{cid}` (`local`).
pub async fn status_one(
    State(state): State<Arc<ApiState>>,
    Path(cid): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let cid = parse_cid(&cid)?;
    let local = Query::parse(query.as_deref())?.local();
    let info = status_of(&state, cid, local).await;
    Ok(json_response(StatusCode::OK, &info))
}

/// `GET|DELETE /pins/recover`: upstream parses `recover` as a CID there.
pub async fn recover_is_no_cid() -> ApiError {
    match parse_cid("recover") {
        Err(e) => e,
        Ok(_) => ApiError::BadCid("recover".into()),
    }
}

/// `GET /pins` (`local`, `filter`, `cids`, and the `limit`/`after` page).
pub async fn status_all(
    State(state): State<Arc<ApiState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(query.as_deref())?;
    let local = query.local();
    let cids = query.cids()?;
    // `cids` takes precedence over `filter` (upstream's rule).
    let filter = if cids.is_some() {
        Vec::new()
    } else {
        query.status_filter()?
    };
    let page = query.page()?;
    Ok(ndjson(move |sink| async move {
        let mut left = page.limit.unwrap_or(usize::MAX);
        if let Some(cids) = cids {
            for chunk in cids.chunks(LIST_PAGE_PINS) {
                let pins = with_pins(&state, chunk.to_vec());
                let mut infos = statuses(&state, pins, local, &filter).await;
                infos.truncate(left);
                left -= infos.len();
                if !sink.send_page(&infos).await || left == 0 {
                    return Ok(());
                }
            }
            return Ok(());
        }
        // The next page's statuses are asked for while this one is sent:
        // the trackers' answers, not the encoding, are the slow part.
        let filter = Arc::new(filter);
        let ahead = |after| {
            tokio::spawn(page_statuses(
                Arc::clone(&state),
                after,
                local,
                Arc::clone(&filter),
            ))
        };
        let mut next = Some(ahead(page.after));
        while let Some(asked) = next.take() {
            let (mut infos, after) = asked.await.map_err(|e| format!("status page: {e}"))?;
            let more = after.is_some();
            next = after.map(|a| ahead(Some(a)));
            infos.truncate(left);
            left -= infos.len();
            if !sink.send_page(&infos).await || left == 0 || !more {
                break;
            }
        }
        // A page asked ahead and no longer wanted is dropped unread.
        if let Some(asked) = next {
            asked.abort();
        }
        Ok(())
    })
    .await)
}

/// The statuses of the page of the pinset after `after`, and where the
/// next page starts (`None`: this was the last).
async fn page_statuses(
    state: Arc<ApiState>,
    after: Option<Cid>,
    local: bool,
    filter: Arc<Vec<TrackerStatus>>,
) -> (Vec<GlobalPinInfo>, Option<Cid>) {
    let page = state
        .ctx
        .raft
        .with_pinset(|p| p.page(after.as_ref(), LIST_PAGE_PINS));
    let next = (page.len() == LIST_PAGE_PINS)
        .then(|| page.last().map(|p| p.cid.clone()))
        .flatten();
    let pins = page.into_iter().map(|p| (p.cid.clone(), Some(p))).collect();
    (statuses(&state, pins, local, &filter).await, next)
}

/// `POST /pins/{cid}/recover` (`local`): asks the allocated peers' trackers
/// to retry, then answers the status.
pub async fn recover_one(
    State(state): State<Arc<ApiState>>,
    Path(cid): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let cid = parse_cid(&cid)?;
    let local = Query::parse(query.as_deref())?.local();
    let pin = state.ctx.raft.with_pinset(|p| p.get(&cid));
    let targets: Vec<NodeInfo> = targets(&state, local)
        .into_iter()
        .filter(|(peer, _)| pin.as_ref().is_some_and(|p| p.is_allocated_to(peer)))
        .map(|(_, info)| info)
        .collect();
    recover_on(&state, targets, Some(cid.clone())).await;
    Ok(json_response(
        StatusCode::OK,
        &status_of(&state, cid, local).await,
    ))
}

/// `POST /pins/recover` (`local`): every peer (or this one) retries its
/// failed operations; streams the status of each CID that was in error.
pub async fn recover_all(
    State(state): State<Arc<ApiState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let local = Query::parse(query.as_deref())?.local();
    Ok(ndjson(move |sink| async move {
        let targets: Vec<NodeInfo> = targets(&state, local).into_values().collect();
        // What is in error now is what the recovery re-queues.
        let mut failed = BTreeSet::new();
        let mut asks = JoinSet::new();
        for target in targets.clone() {
            asks.spawn(ask(Arc::clone(&state), target, None));
        }
        while let Some(joined) = asks.join_next().await {
            if let Ok((_, Ok(answer))) = joined {
                failed.extend(
                    answer
                        .into_iter()
                        .filter(|(_, s)| s.status.matches(TrackerStatus::Error))
                        .map(|(cid, _)| cid),
                );
            }
        }
        recover_on(&state, targets, None).await;
        let failed: Vec<Cid> = failed.into_iter().collect();
        for chunk in failed.chunks(LIST_PAGE_PINS) {
            let pins = with_pins(&state, chunk.to_vec());
            for info in statuses(&state, pins, local, &[]).await {
                if !sink.send(&info).await {
                    return Ok(());
                }
            }
        }
        Ok(())
    })
    .await)
}

/// The status of one CID on every member (or this peer).
pub async fn status_of(state: &Arc<ApiState>, cid: Cid, local: bool) -> GlobalPinInfo {
    let pins = with_pins(state, vec![cid.clone()]);
    let mut infos = statuses(state, pins, local, &[]).await;
    infos.pop().unwrap_or_else(|| empty_info(cid, None))
}

fn with_pins(state: &ApiState, cids: Vec<Cid>) -> Vec<(Cid, Option<Pin>)> {
    state.ctx.raft.with_pinset(|p| {
        cids.into_iter()
            .map(|cid| {
                let pin = p.get(&cid);
                (cid, pin)
            })
            .collect()
    })
}

/// The peers to ask: every voting member, or this peer alone.
pub(crate) fn targets(state: &ApiState, local: bool) -> BTreeMap<PeerId, NodeInfo> {
    if local {
        let me = state.ctx.raft.node_info().clone();
        return BTreeMap::from([(state.ctx.id.clone(), me)]);
    }
    let infos = state.member_infos();
    state
        .members()
        .into_iter()
        .filter_map(|p| infos.get(p.as_str()).cloned().map(|i| (p, i)))
        .collect()
}

/// Asks `target`'s tracker for `cids` (everything it knows for `None`).
async fn ask(
    state: Arc<ApiState>,
    target: NodeInfo,
    cids: Option<Vec<Cid>>,
) -> (String, Result<StatusAnswer, String>) {
    let answer = if state.is_me(&target.peer_id) {
        state
            .drivers
            .tracker
            .statuses(cids)
            .await
            .ok_or_else(|| "the peer's pin tracker is stopped".to_string())
    } else {
        let query = StatusQuery { cids };
        let limit = state.config.peer_call_timeout;
        rpc::call(
            state.ctx.rpc.as_ref(),
            &target,
            TRACKER_STATUS,
            &query,
            limit,
        )
        .await
        .map_err(|e| e.to_string())
    };
    (target.peer_id, answer)
}

/// Asks each target's tracker to retry (`cid`, or everything failed).
async fn recover_on(state: &Arc<ApiState>, targets: Vec<NodeInfo>, cid: Option<Cid>) {
    let mut calls = JoinSet::new();
    for target in targets {
        let (state, cid) = (Arc::clone(state), cid.clone());
        calls.spawn(async move {
            let done = if state.is_me(&target.peer_id) {
                Ok(state.drivers.tracker.recover(cid))
            } else {
                let query = RecoverQuery { cid };
                let limit = state.config.peer_call_timeout;
                rpc::call(state.ctx.rpc.as_ref(), &target, TRACKER_RECOVER, &query, limit)
                    .await
                    .map_err(|e| e.to_string())
            };
            match done {
                Ok(true) => {}
                Ok(false) => tracing::warn!(peer = %target.peer_id, "rest api: recover: the tracker is stopped"),
                Err(e) => tracing::warn!(peer = %target.peer_id, error = %e, "rest api: recover not delivered"),
            }
        });
    }
    while calls.join_next().await.is_some() {}
}

fn empty_info(cid: Cid, pin: Option<&Pin>) -> GlobalPinInfo {
    GlobalPinInfo {
        cid,
        name: pin.map(|p| p.options.name.clone()).unwrap_or_default(),
        allocations: pin.map(|p| p.allocations.clone()).unwrap_or_default(),
        origins: pin.map(|p| p.options.origins.clone()).unwrap_or_default(),
        created: Timestamp(pin.map(|p| p.timestamp)),
        metadata: pin
            .filter(|p| !p.options.metadata.is_empty())
            .map(|p| p.options.metadata.clone()),
        peer_map: BTreeMap::new(),
    }
}

/// The statuses of `pins` on every target, filtered by `filter` (empty:
/// everything). A CID left with no matching peer is left out.
pub async fn statuses(
    state: &Arc<ApiState>,
    pins: Vec<(Cid, Option<Pin>)>,
    local: bool,
    filter: &[TrackerStatus],
) -> Vec<GlobalPinInfo> {
    let targets = targets(state, local);
    let mut asks = JoinSet::new();
    for (peer, info) in &targets {
        // A pin not in the state is asked everywhere (a peer may still be
        // unpinning it); an allocated one only where it is allocated.
        let cids: Vec<Cid> = pins
            .iter()
            .filter(|(_, pin)| !matches!(pin, Some(p) if !p.is_allocated_to(peer)))
            .map(|(cid, _)| cid.clone())
            .collect();
        if !cids.is_empty() {
            asks.spawn(ask(Arc::clone(state), info.clone(), Some(cids)));
        }
    }
    let mut answers: BTreeMap<String, Result<BTreeMap<Cid, PinStatus>, String>> = BTreeMap::new();
    while let Some(joined) = asks.join_next().await {
        match joined {
            Ok((peer, answer)) => {
                answers.insert(peer, answer.map(|a| a.into_iter().collect()));
            }
            Err(e) => tracing::warn!("rest api: a status call panicked: {e}"),
        }
    }
    let now = Timestamp::at(state.now());
    let received = state.received();
    let mut out = Vec::with_capacity(pins.len());
    for (cid, pin) in pins {
        let mut info = empty_info(cid.clone(), pin.as_ref());
        for peer in targets.keys() {
            let short = |status, error: String, attempts, priority| {
                let ipfs = received.get(peer.as_str()).map(|r| &r.ipfs);
                PinInfoShort {
                    peername: state.peername(peer.as_str()),
                    ipfs_peer_id: ipfs.map(|i| i.peer_id.clone()).filter(|i| !i.is_empty()),
                    ipfs_peer_addresses: ipfs
                        .map(|i| i.addresses.clone())
                        .filter(|a| !a.is_empty()),
                    status,
                    timestamp: now,
                    error,
                    attempt_count: attempts,
                    priority_pin: priority,
                }
            };
            // Asked only where allocated (see above): elsewhere it is remote.
            let asked = !matches!(&pin, Some(p) if !p.is_allocated_to(peer));
            let entry = match answers.get(peer.as_str()).filter(|_| asked) {
                Some(Ok(statuses)) => match statuses.get(&cid) {
                    Some(s) => short(s.status, s.error.clone(), s.attempts, s.priority),
                    None => short(
                        TrackerStatus::ClusterError,
                        "the peer's answer left this CID out".into(),
                        0,
                        false,
                    ),
                },
                Some(Err(e)) => short(TrackerStatus::ClusterError, e.clone(), 0, false),
                None if asked => short(
                    TrackerStatus::ClusterError,
                    "the peer's status call failed".into(),
                    0,
                    false,
                ),
                None => short(TrackerStatus::Remote, String::new(), 0, false),
            };
            if filter.is_empty() || filter.iter().any(|f| entry.status.matches(*f)) {
                info.peer_map.insert(peer.to_string(), entry);
            }
        }
        if !info.peer_map.is_empty() || filter.is_empty() {
            out.push(info);
        }
    }
    out
}

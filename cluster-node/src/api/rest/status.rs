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
use super::status_page::{pin_part, PeerColumn, StatusPage};
use super::stream::ndjson;
use crate::api::types::GlobalPinInfo;
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
                let mut page = statuses(&state, pins, local, &filter).await;
                page.truncate(left);
                left -= page.len();
                if !sink.send_lines(&|out| page.write_lines(out)).await || left == 0 {
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
            let (mut page, after) = asked.await.map_err(|e| format!("status page: {e}"))?;
            let more = after.is_some();
            next = after.map(|a| ahead(Some(a)));
            page.truncate(left);
            left -= page.len();
            if !sink.send_lines(&|out| page.write_lines(out)).await || left == 0 || !more {
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
) -> (StatusPage, Option<Cid>) {
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
            for info in statuses(&state, pins, local, &[]).await.into_infos() {
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
    let mut infos = statuses(state, pins, local, &[]).await.into_infos();
    infos.pop().unwrap_or_else(|| pin_part(cid, None))
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

/// The statuses of `pins` on every target, filtered by `filter` (empty:
/// everything). A CID left with no matching peer is left out.
pub async fn statuses(
    state: &Arc<ApiState>,
    pins: Vec<(Cid, Option<Pin>)>,
    local: bool,
    filter: &[TrackerStatus],
) -> StatusPage {
    let targets = targets(state, local);
    // A pin not in the state is asked everywhere (a peer may still be
    // unpinning it); an allocated one only where it is allocated.
    let asked =
        |pin: &Option<Pin>, peer: &PeerId| !matches!(pin, Some(p) if !p.is_allocated_to(peer));
    let mut asks = JoinSet::new();
    for (peer, info) in &targets {
        let cids: Vec<Cid> = pins
            .iter()
            .filter(|(_, pin)| asked(pin, peer))
            .map(|(cid, _)| cid.clone())
            .collect();
        if !cids.is_empty() {
            asks.spawn(ask(Arc::clone(state), info.clone(), Some(cids)));
        }
    }
    let mut answers: BTreeMap<String, Result<StatusAnswer, String>> = BTreeMap::new();
    while let Some(joined) = asks.join_next().await {
        match joined {
            Ok((peer, answer)) => {
                answers.insert(peer, answer);
            }
            Err(e) => tracing::warn!("rest api: a status call panicked: {e}"),
        }
    }
    let received = state.received();
    let mut columns = Vec::with_capacity(targets.len());
    // Each peer's statuses in the pins' order (`None` where not asked).
    let mut by_peer: Vec<Result<Vec<Option<PinStatus>>, String>> = Vec::new();
    for peer in targets.keys() {
        let ipfs = received.get(peer.as_str()).map(|r| &r.ipfs);
        columns.push(PeerColumn {
            id: peer.clone(),
            peername: state.peername(peer.as_str()),
            ipfs_peer_id: ipfs.map(|i| i.peer_id.clone()).filter(|i| !i.is_empty()),
            ipfs_peer_addresses: ipfs.map(|i| i.addresses.clone()).filter(|a| !a.is_empty()),
        });
        let wanted: Vec<bool> = pins.iter().map(|(_, pin)| asked(pin, peer)).collect();
        by_peer.push(match answers.remove(peer.as_str()) {
            Some(Ok(answer)) => Ok(align(&pins, &wanted, answer)),
            Some(Err(e)) => Err(e),
            None if wanted.contains(&true) => Err("the peer's status call failed".into()),
            // Asked for nothing: every pin of the page is remote there.
            None => Ok(vec![None; pins.len()]),
        });
    }
    let mut page = StatusPage::new(pins, columns, state.now());
    let mut cells: Vec<Option<PinStatus>> = Vec::with_capacity(targets.len());
    for row in 0..page.rows().len() {
        let pin = &page.rows()[row].1;
        let mut any = false;
        cells.clear();
        cells.extend(targets.keys().zip(&mut by_peer).map(|(peer, answer)| {
            let short = |status, error: String| PinStatus {
                status,
                error,
                attempts: 0,
                priority: false,
            };
            let cell = if !asked(pin, peer) {
                short(TrackerStatus::Remote, String::new())
            } else {
                match answer {
                    Ok(statuses) => statuses[row].take().unwrap_or_else(|| {
                        short(
                            TrackerStatus::ClusterError,
                            "the peer's answer left this CID out".into(),
                        )
                    }),
                    Err(e) => short(TrackerStatus::ClusterError, e.clone()),
                }
            };
            let keep = filter.is_empty() || filter.iter().any(|f| cell.status.matches(*f));
            any |= keep;
            keep.then_some(cell)
        }));
        if any || filter.is_empty() {
            page.keep(row, cells.drain(..));
        }
    }
    page
}

/// A peer's `answer` for the pins marked `wanted`, in the pins' order.
/// Answers come in the order asked; any other order is looked up.
fn align(
    pins: &[(Cid, Option<Pin>)],
    wanted: &[bool],
    answer: StatusAnswer,
) -> Vec<Option<PinStatus>> {
    let asked = pins.iter().zip(wanted).filter(|(_, w)| **w);
    let in_order = answer.len() == wanted.iter().filter(|w| **w).count()
        && asked
            .zip(&answer)
            .all(|(((cid, _), _), (got, _))| cid == got);
    if in_order {
        let mut answer = answer.into_iter().map(|(_, s)| s);
        return wanted
            .iter()
            .map(|w| if *w { answer.next() } else { None })
            .collect();
    }
    let mut by_cid: BTreeMap<Cid, PinStatus> = answer.into_iter().collect();
    pins.iter()
        .zip(wanted)
        .map(|((cid, _), w)| if *w { by_cid.remove(cid) } else { None })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(attempts: u32) -> PinStatus {
        PinStatus {
            status: TrackerStatus::PinError,
            error: format!("attempt {attempts}"),
            attempts,
            priority: false,
        }
    }

    fn cid(n: u8) -> Cid {
        let mut bytes = vec![0x12, 0x20];
        bytes.extend([n; 32]);
        Cid::from_bytes(&bytes).expect("cid")
    }

    #[test]
    fn answers_are_aligned_with_the_pins_in_any_order() {
        let pins: Vec<(Cid, Option<Pin>)> = (0..4).map(|n| (cid(n), None)).collect();
        let wanted = [true, false, true, true];
        let expected = vec![Some(status(0)), None, Some(status(2)), Some(status(3))];
        let in_order = vec![
            (cid(0), status(0)),
            (cid(2), status(2)),
            (cid(3), status(3)),
        ];
        assert_eq!(align(&pins, &wanted, in_order.clone()), expected);
        let mut shuffled = in_order.clone();
        shuffled.reverse();
        assert_eq!(align(&pins, &wanted, shuffled), expected);
        // A CID left out, or one not asked for, leaves a hole.
        let short = vec![
            (cid(0), status(0)),
            (cid(1), status(1)),
            (cid(3), status(3)),
        ];
        assert_eq!(
            align(&pins, &wanted, short),
            vec![Some(status(0)), None, None, Some(status(3))]
        );
    }
}

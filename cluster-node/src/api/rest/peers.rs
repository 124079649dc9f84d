//! This peer and its cluster: `GET /id`, `GET /version`, `GET /peers`,
//! `POST /peers`, `DELETE /peers/{peer}`.
//!
//! Other peers are described from what this one knows (the membership and
//! the metrics they pushed) after a liveness call over the node RPC: a
//! peer that does not answer is listed with its `error`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cluster_core::PeerId;
use cluster_net::NodeInfo;
use tokio::task::JoinSet;

use super::error::{json_response, ApiError};
use super::state::ApiState;
use super::stream::ndjson;
use crate::api::types::{IdInfo, IpfsIdInfo, Version};
use crate::rpc::{self, StatusAnswer, StatusQuery, TRACKER_STATUS};

/// The upstream API level this server speaks.
pub const API_VERSION: &str = "1.1.6";
/// What `rpc_protocol_version` says: this node's peer-RPC protocol.
pub const RPC_PROTOCOL: &str = "/ipfs-cluster-rs/node-rpc/1";

/// The version string: the API level, this implementation as build metadata.
pub fn version_string() -> String {
    format!(
        "{API_VERSION}+ipfs-cluster-rs.{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// `GET /version`.
pub async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &Version {
            version: version_string(),
        },
    )
}

/// `GET /id`: never fails; problems go in `error` / `ipfs.error`.
pub async fn id(State(state): State<Arc<ApiState>>) -> Response {
    json_response(StatusCode::OK, &own_id(&state).await)
}

/// `GET /peers`: one ID per member, as each answers.
pub async fn peers(State(state): State<Arc<ApiState>>) -> Response {
    ndjson(move |sink| async move {
        let mut described = JoinSet::new();
        for info in state.member_infos().into_values() {
            described.spawn(describe(Arc::clone(&state), info));
        }
        while let Some(joined) = described.join_next().await {
            match joined {
                Ok(id) => {
                    if !sink.send(&id).await {
                        return Ok(());
                    }
                }
                Err(e) => return Err(format!("describing a peer failed: {e}")),
            }
        }
        Ok(())
    })
    .await
}

/// The body of `POST /peers`.
#[derive(Debug, serde::Deserialize)]
struct AddPeerBody {
    peer_id: String,
}

/// The peer a `POST /peers` body names; 400 errors as upstream words them.
pub fn parse_add_peer(body: &[u8]) -> Result<PeerId, ApiError> {
    let body: AddPeerBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadBody(format!("error decoding request body: {e}")))?;
    PeerId::parse(&body.peer_id)
        .map_err(|e| ApiError::BadBody(format!("error decoding peer_id: {e}")))
}

/// How often an added peer is asked whether it answers yet.
const ANSWER_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// `POST /peers` (`{"peer_id":…}`): adds a running peer to the cluster
/// (learner, then voter once caught up; see `ClusterRaft::add_peer` for
/// which peers take it), then answers its ID once it answers over the
/// node RPC (500 when it does not within the peer-call timeout), with
/// this peer in its `cluster_peers`.
pub async fn add_peer(
    State(state): State<Arc<ApiState>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let peer = parse_add_peer(&body)?;
    let node = state.ctx.raft.add_peer(&peer).await?;
    tracing::info!(peer = %peer, "rest api: peer added");
    // This peer's view of the membership may trail the leader's a little.
    let deadline = tokio::time::Instant::now() + state.config.peer_call_timeout;
    let info = loop {
        if let Some(info) = state.member_infos().remove(peer.as_str()) {
            break info;
        }
        if tokio::time::Instant::now() >= deadline {
            break node;
        }
        tokio::time::sleep(ANSWER_POLL).await;
    };
    let mut id = answered_id(&state, info, deadline).await.map_err(|e| {
        ApiError::Internal(format!("peer {peer} was added but did not answer: {e}"))
    })?;
    let me = state.ctx.id.to_string();
    if !id.cluster_peers.contains(&me) {
        id.cluster_peers.push(me);
    }
    Ok(json_response(StatusCode::OK, &id))
}

/// `info`'s ID once it answers a liveness call, asked again until
/// `deadline` (a peer just added starts serving node RPCs once it saw
/// that it is a member).
async fn answered_id(
    state: &Arc<ApiState>,
    info: NodeInfo,
    deadline: tokio::time::Instant,
) -> Result<IdInfo, String> {
    if state.is_me(&info.peer_id) {
        return Ok(own_id(state).await);
    }
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let id = describe(Arc::clone(state), info.clone()).await;
        if id.error.is_empty() {
            return Ok(id);
        }
        if left < ANSWER_POLL {
            return Err(id.error);
        }
        tokio::time::sleep(ANSWER_POLL).await;
    }
}

/// `DELETE /peers/{peer}`: removes a member (its pins are re-allocated by
/// the leader's repair driver).
pub async fn remove_peer(
    State(state): State<Arc<ApiState>>,
    Path(peer): Path<String>,
) -> Result<Response, ApiError> {
    let peer = PeerId::parse(&peer).map_err(|e| ApiError::BadPeer(e.to_string()))?;
    if !state.member_infos().contains_key(peer.as_str()) {
        return Err(ApiError::UnknownPeer(peer.to_string()));
    }
    state.ctx.raft.remove_peer(&peer).await?;
    tracing::info!(peer = %peer, "rest api: peer removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn cluster_addresses(info: &NodeInfo) -> Option<Vec<String>> {
    // Only multiaddresses are shown (an in-process transport's are not).
    if !info.addr.starts_with('/') {
        return None;
    }
    Some(vec![if info.addr.contains("/p2p/") {
        info.addr.clone()
    } else {
        format!("{}/p2p/{}", info.addr, info.peer_id)
    }])
}

/// The ID shape with the cluster-wide fields filled for `peer`.
fn base_id(state: &ApiState, info: &NodeInfo) -> IdInfo {
    let infos = state.member_infos();
    let cluster_peers = state.members().iter().map(|p| p.to_string()).collect();
    let cluster_peers_addresses = infos
        .values()
        .filter(|n| n.peer_id != info.peer_id)
        .filter_map(cluster_addresses)
        .flatten()
        .collect();
    IdInfo {
        id: info.peer_id.clone(),
        addresses: cluster_addresses(info),
        cluster_peers,
        cluster_peers_addresses,
        version: version_string(),
        commit: String::new(),
        rpc_protocol_version: RPC_PROTOCOL.into(),
        error: String::new(),
        ipfs: IpfsIdInfo::default(),
        peername: state.peername(&info.peer_id),
    }
}

async fn own_id(state: &ApiState) -> IdInfo {
    let mut id = base_id(state, state.ctx.raft.node_info());
    let limit = state.config.peer_call_timeout;
    id.ipfs = match tokio::time::timeout(limit, state.ctx.ipfs.id()).await {
        Ok(Ok(ipfs)) => IpfsIdInfo {
            id: Some(ipfs.peer_id),
            addresses: Some(ipfs.addresses),
            error: String::new(),
        },
        Ok(Err(e)) => IpfsIdInfo {
            id: None,
            addresses: None,
            error: e.to_string(),
        },
        Err(_) => IpfsIdInfo {
            id: None,
            addresses: None,
            error: format!("ipfs id timed out after {} ms", limit.as_millis()),
        },
    };
    id
}

/// A member's ID: ours directly; another's after it answered a liveness
/// call, with its IPFS daemon as its metrics announced it.
async fn describe(state: Arc<ApiState>, info: NodeInfo) -> IdInfo {
    if state.is_me(&info.peer_id) {
        return own_id(&state).await;
    }
    let mut id = base_id(&state, &info);
    let probe = StatusQuery {
        cids: Some(Vec::new()),
    };
    let limit = state.config.peer_call_timeout;
    let answer: Result<StatusAnswer, _> =
        rpc::call(state.ctx.rpc.as_ref(), &info, TRACKER_STATUS, &probe, limit).await;
    if let Err(e) = answer {
        id.error = e.to_string();
        return id;
    }
    id.ipfs = match state.received().remove(&info.peer_id) {
        Some(r) => IpfsIdInfo {
            id: Some(r.ipfs.peer_id).filter(|i| !i.is_empty()),
            addresses: Some(r.ipfs.addresses),
            error: String::new(),
        },
        None => IpfsIdInfo {
            id: None,
            addresses: None,
            error: "no recent metrics from this peer".into(),
        },
    };
    id
}

//! Metrics and health: `GET /monitor/metrics[/{name}]`, `GET /health`,
//! `GET /health/graph`, `GET /health/alerts`, `GET /health/bandwidth`,
//! `POST /ipfs/gc`.
//!
//! Everything comes from this peer's metrics board: the latest figures
//! every peer pushed, stamped on arrival, dropped when their TTL ran out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use cluster_core::Cid;
use cluster_net::NodeInfo;

use super::error::{json_response, ApiError};
use super::options::Query;
use super::state::ApiState;
use super::status::targets;
use crate::api::time::Timestamp;
use crate::api::types::{Alert, ConnectGraph, GlobalRepoGc, IpldKey, Metric, RepoGc};
use crate::drivers::metrics::Received;
use crate::ipfs::GcEntry;
use crate::rpc::{self, IPFS_REPO_GC};

/// `GET /health/bandwidth`: bytes in and out per protocol of this peer's
/// cluster transport since it started, and their rates over the last 10 s
/// (`{}` on a transport that does not measure, such as in-process ones).
pub async fn bandwidth(State(state): State<Arc<ApiState>>) -> Response {
    json_response(StatusCode::OK, &state.ctx.rpc.traffic())
}

/// The metric names every pushed report carries (tags come on top).
pub const METRIC_NAMES: [&str; 4] = ["ping", "freespace", "numpin", "pinqueue"];

const NS_PER_MS: i64 = 1_000_000;

fn ns(ms: u64) -> i64 {
    i64::try_from(ms)
        .unwrap_or(i64::MAX / NS_PER_MS)
        .saturating_mul(NS_PER_MS)
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The metric `name` of one report, if it has it.
fn metric(r: &Received, name: &str, peername: &str) -> Option<Metric> {
    let m = &r.metrics;
    let (value, weight, partitionable) = match name {
        "ping" => {
            let value = serde_json::json!({
                "peer_name": peername,
                "ipfs_id": r.ipfs.peer_id,
                "ipfs_addresses": r.ipfs.addresses,
            });
            (value.to_string(), 0, false)
        }
        "freespace" => (
            m.free_space_bytes.to_string(),
            saturating_i64(m.free_space_bytes),
            false,
        ),
        // Weights as the allocator ranks: fewer pins, shorter queue first.
        "numpin" => (m.pinned.to_string(), -saturating_i64(m.pinned), false),
        "pinqueue" => (m.queue_len.to_string(), -saturating_i64(m.queue_len), false),
        _ => {
            let key = name.strip_prefix("tag:")?;
            (m.tags.get(key)?.clone(), 0, true)
        }
    };
    Some(Metric {
        name: name.to_string(),
        peer: m.peer.to_string(),
        value,
        expire: ns(r.expires.0),
        valid: true,
        weight,
        partitionable,
        received_at: ns(m.last_seen.0),
    })
}

/// `GET /monitor/metrics`: the names of the metrics held now.
pub async fn metric_names(State(state): State<Arc<ApiState>>) -> Response {
    let received = state.received();
    let mut names: BTreeSet<String> = BTreeSet::new();
    if !received.is_empty() {
        names.extend(METRIC_NAMES.iter().map(|n| n.to_string()));
    }
    for r in received.values() {
        names.extend(r.metrics.tags.keys().map(|k| format!("tag:{k}")));
    }
    json_response(StatusCode::OK, &names)
}

/// `GET /monitor/metrics/{name}`: the latest valid metric per member,
/// sorted by peer; `[]` for an unknown name.
pub async fn metrics(State(state): State<Arc<ApiState>>, Path(name): Path<String>) -> Response {
    let members = state.member_infos();
    let list: Vec<Metric> = state
        .received()
        .iter()
        .filter(|(peer, _)| members.contains_key(peer.as_str()))
        .filter_map(|(peer, r)| metric(r, &name, &state.peername(peer)))
        .collect();
    json_response(StatusCode::OK, &list)
}

/// `GET /health`: 204, no authentication needed.
pub async fn health() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /health/alerts`: a `ping` alert for every member without valid
/// metrics now (this node keeps no alert history yet: the board forgets
/// expired reports).
pub async fn alerts(State(state): State<Arc<ApiState>>) -> Response {
    let received = state.received();
    let now = state.now();
    let alerts: Vec<Alert> = state
        .members()
        .into_iter()
        .filter(|p| !received.contains_key(p.as_str()))
        .map(|p| Alert {
            metric: Metric {
                name: "ping".into(),
                peer: p.to_string(),
                value: String::new(),
                expire: 0,
                valid: false,
                weight: 0,
                partitionable: false,
                received_at: 0,
            },
            triggered_at: Timestamp::at(now),
        })
        .collect();
    json_response(StatusCode::OK, &alerts)
}

/// `GET /health/graph`: as far as this peer knows: it hears from the
/// members whose metrics are fresh; each member's IPFS daemon is the one
/// its metrics announce. Links between other peers and between IPFS
/// daemons are not known here and left empty.
pub async fn graph(State(state): State<Arc<ApiState>>) -> Response {
    let me = state.ctx.id.to_string();
    let received = state.received();
    let mut graph = ConnectGraph {
        cluster_id: me.clone(),
        ..ConnectGraph::default()
    };
    let mut heard = Vec::new();
    for peer in state.members() {
        let peer = peer.to_string();
        graph
            .id_to_peername
            .insert(peer.clone(), state.peername(&peer));
        // Raft members are all trusted.
        graph.cluster_trust_links.insert(peer.clone(), true);
        if let Some(r) = received.get(&peer) {
            if !r.ipfs.peer_id.is_empty() {
                graph
                    .cluster_to_ipfs
                    .insert(peer.clone(), r.ipfs.peer_id.clone());
            }
            if peer != me {
                heard.push(peer);
            }
        }
    }
    graph.cluster_links.insert(me, heard);
    json_response(StatusCode::OK, &graph)
}

/// How long one peer's `repo/gc` may take (a large repo collects for long).
pub const GC_PEER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Runs `repo/gc` on `member`'s IPFS daemon: this peer's through its own
/// connector, another's over the node RPC. Shared with the IPFS proxy.
pub async fn gc_member(state: &ApiState, member: &NodeInfo) -> Result<Vec<GcEntry>, String> {
    if state.is_me(&member.peer_id) {
        return state.ctx.ipfs.repo_gc().await.map_err(|e| e.to_string());
    }
    rpc::call(
        state.ctx.rpc.as_ref(),
        member,
        IPFS_REPO_GC,
        &(),
        GC_PEER_TIMEOUT,
    )
    .await
    .map_err(|e| e.to_string())
}

/// `POST /ipfs/gc`: `repo/gc` on every member's daemon in turn (only this
/// peer's with `local=true`). A peer's failure goes in its `error`; the
/// request itself succeeds.
pub async fn gc(
    State(state): State<Arc<ApiState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let local = Query::parse(query.as_deref())?.local();
    let mut peer_map = BTreeMap::new();
    for (peer, member) in targets(&state, local) {
        let mut gc = RepoGc {
            peer: peer.to_string(),
            peername: state.peername(peer.as_str()),
            keys: Vec::new(),
            error: None,
        };
        match gc_member(&state, &member).await {
            Ok(entries) => gc.keys = entries.into_iter().map(ipld_key).collect(),
            Err(e) => gc.error = Some(e),
        }
        peer_map.insert(peer.to_string(), gc);
    }
    Ok(json_response(StatusCode::OK, &GlobalRepoGc { peer_map }))
}

/// One removed key as the API shows it; a key the daemon wrote that does
/// not parse as a CID becomes an entry with that error.
fn ipld_key(entry: GcEntry) -> IpldKey {
    match (entry.key, entry.error) {
        (_, Some(error)) => IpldKey {
            key: None,
            error: Some(error),
        },
        (Some(key), None) => match Cid::parse(&key) {
            Ok(cid) => IpldKey {
                key: Some(cid),
                error: None,
            },
            Err(e) => IpldKey {
                key: None,
                error: Some(e.to_string()),
            },
        },
        (None, None) => IpldKey {
            key: None,
            error: None,
        },
    }
}

//! `repo/stat` and `repo/gc` across the cluster. Other peers are asked over
//! the node's peer RPC (`ipfs/repo_stat/v1`, `ipfs/repo_gc/v1`): each calls
//! its own IPFS daemon through its connector; this peer's daemon is asked
//! directly.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Response, StatusCode};
use http_body::Frame;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use super::body::{self, error_trailers, line};
use super::error::ProxyError;
use super::ProxyState;
use crate::api::rest::monitor::gc_member;
use crate::ipfs::GcEntry;
use crate::rpc::{self, RepoStatAnswer, IPFS_REPO_STAT};

/// A number Kubo writes as a number and js-ipfs as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Num {
    N(u64),
    S(String),
}

impl Num {
    fn value(&self) -> u64 {
        match self {
            Num::N(n) => *n,
            Num::S(s) => s.trim().parse().unwrap_or(0),
        }
    }
}

/// The local daemon's full `repo/stat`.
#[derive(Deserialize)]
struct LocalStat {
    #[serde(rename = "RepoSize")]
    repo_size: Num,
    #[serde(rename = "StorageMax")]
    storage_max: Num,
    #[serde(rename = "NumObjects")]
    num_objects: Option<Num>,
    #[serde(rename = "RepoPath", default)]
    repo_path: String,
    #[serde(rename = "Version", default)]
    version: String,
}

/// `repo/stat`: `RepoSize` and `StorageMax` summed over every member's
/// daemon (members that fail are logged and left out); `NumObjects`,
/// `RepoPath` and `Version` are the local daemon's (Kubo clients need
/// them; upstream leaves them out).
pub async fn repo_stat(state: &Arc<ProxyState>) -> Result<Response<Body>, ProxyError> {
    let limit = state.api.config.peer_call_timeout;
    let mut asked = JoinSet::new();
    for info in state.api.member_infos().into_values() {
        if state.api.is_me(&info.peer_id) {
            continue;
        }
        let state = Arc::clone(state);
        asked.spawn(async move {
            let answer: Result<RepoStatAnswer, _> = rpc::call(
                state.api.ctx.rpc.as_ref(),
                &info,
                IPFS_REPO_STAT,
                &(),
                limit,
            )
            .await;
            (info.peer_id, answer)
        });
    }
    let local = match state.upstream.call("repo/stat", "").await {
        Ok(bytes) => serde_json::from_slice::<LocalStat>(&bytes)
            .map_err(|e| ProxyError::Daemon(format!("repo/stat answer not understood: {e}"))),
        Err(e) => Err(e),
    };
    let (mut size, mut max, mut answered) = (0u64, 0u64, 0usize);
    let (mut objects, mut path, mut version) = (0u64, String::new(), String::new());
    let mut first_error = None;
    match local {
        Ok(l) => {
            size = size.saturating_add(l.repo_size.value());
            max = max.saturating_add(l.storage_max.value());
            objects = l.num_objects.as_ref().map_or(0, Num::value);
            path = l.repo_path;
            version = l.version;
            answered += 1;
        }
        Err(e) => {
            tracing::warn!(error = %e, "ipfs proxy: repo/stat of the local daemon failed");
            first_error = Some(e);
        }
    }
    while let Some(done) = asked.join_next().await {
        match done {
            Ok((_, Ok(stat))) => {
                size = size.saturating_add(stat.repo_size);
                max = max.saturating_add(stat.storage_max);
                answered += 1;
            }
            Ok((peer, Err(e))) => {
                tracing::warn!(%peer, error = %e, "ipfs proxy: repo/stat of a peer failed, left out");
            }
            Err(e) => tracing::warn!("ipfs proxy: repo/stat task failed: {e}"),
        }
    }
    if answered == 0 {
        return Err(
            first_error.unwrap_or_else(|| ProxyError::Daemon("no peer answered repo/stat".into()))
        );
    }
    Ok(body::json(
        StatusCode::OK,
        &json!({
            "RepoSize": size,
            "StorageMax": max,
            "NumObjects": objects,
            "RepoPath": path,
            "Version": version,
        }),
    ))
}

/// One `repo/gc` line: a removed key (`{"Key":{"/":…}}`) or an error.
fn gc_line(entry: &GcEntry, stream_errors: bool) -> Value {
    match (&entry.key, &entry.error) {
        (_, Some(error)) if stream_errors => json!({"Key": null, "Error": error}),
        (Some(key), None) => json!({"Key": {"/": key}}),
        _ => json!({"Key": null}),
    }
}

/// `repo/gc`: every member's daemon in turn (this peer's first), each
/// removed key streamed as it is known. Errors are entries with
/// `stream-errors=true`, else joined into the `X-Stream-Error` trailer.
pub async fn repo_gc(
    state: &Arc<ProxyState>,
    stream_errors: bool,
) -> Result<Response<Body>, ProxyError> {
    let members = state.api.member_infos();
    let (tx, response) = body::streamed();
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let mut errors = String::new();
        let me = state.api.ctx.raft.node_info().clone();
        let others = members.into_values().filter(|i| i.peer_id != me.peer_id);
        for info in std::iter::once(me.clone()).chain(others) {
            let entries = gc_member(&state.api, &info).await;
            let entries = entries.unwrap_or_else(|e| {
                vec![GcEntry {
                    key: None,
                    error: Some(format!("peer {}: {e}", info.peer_id)),
                }]
            });
            for entry in &entries {
                if let Some(e) = &entry.error {
                    errors.push_str(e);
                    errors.push_str("; ");
                }
                if tx
                    .send(Frame::data(line(&gc_line(entry, stream_errors))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        if !errors.is_empty() && !stream_errors {
            let _ = tx.send(Frame::trailers(error_trailers(&errors))).await;
        }
    });
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_lines_have_kubos_shape() {
        let key = GcEntry {
            key: Some("QmX".into()),
            error: None,
        };
        let err = GcEntry {
            key: None,
            error: Some("boom".into()),
        };
        assert_eq!(gc_line(&key, false), json!({"Key": {"/": "QmX"}}));
        assert_eq!(gc_line(&err, true), json!({"Key": null, "Error": "boom"}));
        assert_eq!(gc_line(&err, false), json!({"Key": null}));
    }

    #[test]
    fn repo_figures_are_numbers_or_strings() {
        let s: LocalStat = serde_json::from_str(
            r#"{"RepoSize":"5017","StorageMax":9007199254740991,"NumObjects":"3","RepoPath":"/r","Version":"12"}"#,
        )
        .expect("js-ipfs shape");
        assert_eq!(s.repo_size.value(), 5017);
        assert_eq!(s.storage_max.value(), 9_007_199_254_740_991);
        assert_eq!(s.num_objects.as_ref().map(Num::value), Some(3));
    }
}

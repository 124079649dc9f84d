//! `pin/add`, `pin/rm`, `pin/update` and `pin/ls` on the cluster pinset,
//! answered in Kubo's shapes. Writes go through the REST API's own pin and
//! unpin (allocation with the cluster's defaults, request ids, retries).

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode};
use cluster_core::{Cid, Pin, PinMode, PinOptions, PinType};
use http_body::Frame;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::body::{self, line};
use super::error::ProxyError;
use super::route::{LsType, PinPath};
use super::ProxyState;
use crate::api::rest::pins::{pin, unpin, LIST_PAGE_PINS};

/// The CID of `path`: directly, or as the daemon resolves it.
pub async fn resolve(state: &ProxyState, path: &PinPath) -> Result<Cid, ProxyError> {
    let text = match path {
        PinPath::Cid(cid) => return Ok(cid.clone()),
        PinPath::Resolve(text) => text,
    };
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("arg", text)
        .finish();
    let answer = state.upstream.call("resolve", &query).await?;
    let resolved: Value = serde_json::from_slice(&answer)
        .map_err(|e| ProxyError::Daemon(format!("resolve {text}: answer not understood: {e}")))?;
    let got = resolved["Path"].as_str().unwrap_or_default();
    let cid = got.strip_prefix("/ipfs/").unwrap_or(got);
    Cid::parse(cid.trim_end_matches('/')).map_err(|e| {
        ProxyError::Daemon(format!("resolve {text}: the daemon answered {got:?}: {e}"))
    })
}

#[derive(Serialize)]
struct PinsAnswer {
    #[serde(rename = "Pins")]
    pins: Vec<String>,
}

/// `pin/add`: a cluster pin of each path with the cluster's replication
/// defaults.
pub async fn pin_add(
    state: &ProxyState,
    paths: &[PinPath],
    mode: PinMode,
    name: &str,
    progress: bool,
) -> Result<Response<Body>, ProxyError> {
    let mut pinned = Vec::with_capacity(paths.len());
    for path in paths {
        let cid = resolve(state, path).await?;
        let options = PinOptions {
            mode,
            name: name.to_string(),
            ..PinOptions::default()
        };
        pin(&state.api, cid.clone(), options).await?;
        pinned.push(cid.to_string());
    }
    let mut response = body::json(StatusCode::OK, &PinsAnswer { pins: pinned });
    if progress {
        // Kubo streams with progress=true; its last object is this one.
        response
            .headers_mut()
            .insert("x-chunked-output", HeaderValue::from_static("1"));
    }
    Ok(response)
}

/// `pin/rm`: cluster unpin of each path.
pub async fn pin_rm(state: &ProxyState, paths: &[PinPath]) -> Result<Response<Body>, ProxyError> {
    let mut removed = Vec::with_capacity(paths.len());
    for path in paths {
        let cid = resolve(state, path).await?;
        unpin(&state.api, cid.clone()).await?;
        removed.push(cid.to_string());
    }
    Ok(body::json(StatusCode::OK, &PinsAnswer { pins: removed }))
}

/// `pin/update`: `to` pinned as a copy of the cluster pin `from`
/// (allocations, factors, name), then `from` unpinned unless `unpin` is
/// false.
pub async fn pin_update(
    state: &ProxyState,
    from: &PinPath,
    to: &PinPath,
    unpin_from: bool,
) -> Result<Response<Body>, ProxyError> {
    let from = resolve(state, from).await?;
    let to = resolve(state, to).await?;
    let options = PinOptions {
        pin_update: Some(from.clone()),
        ..PinOptions::default()
    };
    pin(&state.api, to.clone(), options).await?;
    if unpin_from && from != to {
        unpin(&state.api, from.clone()).await?;
    }
    Ok(body::json(
        StatusCode::OK,
        &PinsAnswer {
            pins: vec![from.to_string(), to.to_string()],
        },
    ))
}

/// Kubo's name of a cluster pin's kind.
fn kind(pin: &Pin) -> &'static str {
    match pin.options.mode {
        PinMode::Recursive => "recursive",
        PinMode::Direct => "direct",
    }
}

/// One pin as a streamed `pin/ls` line's object.
fn stream_object(pin: &Pin, names: bool) -> Value {
    let mut o = Map::new();
    o.insert("Cid".into(), Value::String(pin.cid.to_string()));
    if names && !pin.options.name.is_empty() {
        o.insert("Name".into(), Value::String(pin.options.name.clone()));
    }
    o.insert("Type".into(), Value::String(kind(pin).into()));
    Value::Object(o)
}

/// One pin as a value of the `Keys` map.
fn keys_value(pin: &Pin, names: bool) -> Value {
    if names && !pin.options.name.is_empty() {
        json!({"Name": pin.options.name, "Type": kind(pin)})
    } else {
        json!({"Type": kind(pin)})
    }
}

fn listed(pin: &Pin, kind: LsType) -> bool {
    pin.pin_type == PinType::Data && kind.admits(pin.options.mode)
}

/// `pin/ls`: the cluster pinset (or the pins of the paths given), direct
/// pins as direct. Without paths it streams page by page, in either
/// shape, never holding the whole listing.
pub async fn pin_ls(
    state: &std::sync::Arc<ProxyState>,
    paths: &[PinPath],
    kind: LsType,
    stream: bool,
    names: bool,
) -> Result<Response<Body>, ProxyError> {
    if !paths.is_empty() {
        let mut found = Vec::with_capacity(paths.len());
        for path in paths {
            let cid = resolve(state, path).await?;
            let pin = state
                .api
                .ctx
                .raft
                .with_pinset(|p| p.get(&cid))
                .filter(|p| listed(p, kind));
            let Some(pin) = pin else {
                let shown = match path {
                    PinPath::Cid(c) => c.to_string(),
                    PinPath::Resolve(t) => t.clone(),
                };
                return Err(ProxyError::NotPinned(shown));
            };
            found.push(pin);
        }
        if stream {
            let mut out = Vec::new();
            for pin in &found {
                out.extend_from_slice(&line(&stream_object(pin, names)));
            }
            let mut response = Response::new(Body::from(out));
            response.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(response);
        }
        let keys: Map<String, Value> = found
            .iter()
            .map(|p| (p.cid.to_string(), keys_value(p, names)))
            .collect();
        return Ok(body::json(StatusCode::OK, &json!({ "Keys": keys })));
    }
    let (tx, mut response) = body::streamed();
    if !stream {
        // One JSON value, as Kubo answers without `stream`.
        response.headers_mut().remove("x-chunked-output");
        response.headers_mut().remove(axum::http::header::TRAILER);
    }
    let state = std::sync::Arc::clone(state);
    tokio::spawn(async move {
        let mut after: Option<Cid> = None;
        let mut first = true;
        if !stream && tx.send(Frame::data("{\"Keys\":{".into())).await.is_err() {
            return;
        }
        loop {
            let pins = state
                .api
                .ctx
                .raft
                .with_pinset(|p| p.page(after.as_ref(), LIST_PAGE_PINS));
            let last = pins.len() < LIST_PAGE_PINS;
            after = pins.last().map(|p| p.cid.clone());
            let mut chunk = Vec::new();
            for pin in pins.iter().filter(|p| listed(p, kind)) {
                if stream {
                    chunk.extend_from_slice(&line(&stream_object(pin, names)));
                } else {
                    if !first {
                        chunk.push(b',');
                    }
                    first = false;
                    let key = serde_json::to_vec(&pin.cid.to_string()).unwrap_or_default();
                    chunk.extend_from_slice(&key);
                    chunk.push(b':');
                    chunk.extend_from_slice(
                        &serde_json::to_vec(&keys_value(pin, names)).unwrap_or_default(),
                    );
                }
            }
            if !chunk.is_empty() && tx.send(Frame::data(chunk.into())).await.is_err() {
                return;
            }
            if last {
                break;
            }
        }
        if !stream {
            let _ = tx.send(Frame::data("}}\n".into())).await;
        }
    });
    Ok(response)
}

//! Writes that are forwarded and then pinned in the cluster: `add` (unless
//! `pin=false`), `block/put?pin=true` and `dag/put?pin=true`.
//!
//! The request goes to the local daemon with its own `pin` turned off (a
//! pin the daemon made for the user is one the cluster never removes); the
//! daemon's answer streams back to the client unchanged while a
//! [`Scanner`] reads the CIDs out of it, line by line, with a bounded line
//! buffer. When the daemon's answer ends, those CIDs are pinned in the
//! cluster *before* the client sees the end of the answer, so a client
//! that saw `add` finish finds the pin in the cluster. A failure to pin
//! ends the answer with an error object (Kubo's clients read it as the
//! command's error) and the `X-Stream-Error` trailer.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode};
use cluster_core::{Cid, PinOptions};
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::Value;

use super::body::{self, error_trailers, STREAM_ERROR};
use super::error::{error_body, ProxyError};
use super::route::Collect;
use super::ProxyState;
use crate::api::rest::options::Query;
use crate::api::rest::pins::pin;

/// Longest answer line the scanner reads, in bytes (longer lines are not
/// `add`/`put` output and are skipped).
pub const LINE_MAX_BYTES: usize = 64 * 1024;
/// Most top-level entries of one `add` remembered as roots to pin.
pub const ROOTS_MAX: usize = 10_000;

/// Reads CIDs out of a daemon's streamed answer.
#[derive(Debug)]
pub struct Scanner {
    collect: Collect,
    line: Vec<u8>,
    overlong: bool,
    /// `add`: top-level entries (no `/` in the name), by name.
    tops: Vec<(String, String)>,
    /// `block/put`, `dag/put`: every CID, in order.
    cids: Vec<String>,
    error: Option<String>,
}

impl Scanner {
    /// A scanner of `collect`'s answer shape.
    pub fn new(collect: Collect) -> Scanner {
        Scanner {
            collect,
            line: Vec::new(),
            overlong: false,
            tops: Vec::new(),
            cids: Vec::new(),
            error: None,
        }
    }

    /// Feeds the next bytes of the answer.
    pub fn feed(&mut self, mut data: &[u8]) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            self.push(&data[..nl]);
            self.end_line();
            data = &data[nl + 1..];
        }
        self.push(data);
    }

    fn push(&mut self, part: &[u8]) {
        if self.overlong {
            return;
        }
        if self.line.len() + part.len() > LINE_MAX_BYTES {
            self.overlong = true;
            self.line.clear();
            return;
        }
        self.line.extend_from_slice(part);
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let overlong = std::mem::replace(&mut self.overlong, false);
        if overlong || line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&line) else {
            return;
        };
        if v["Type"] == "error" {
            let message = v["Message"].as_str().unwrap_or("error").to_string();
            self.error.get_or_insert(message);
            return;
        }
        match self.collect {
            Collect::Add => {
                let (Some(name), Some(hash)) = (v["Name"].as_str(), v["Hash"].as_str()) else {
                    return;
                };
                if name.contains('/') {
                    return;
                }
                if self.tops.len() >= ROOTS_MAX {
                    self.error
                        .get_or_insert(format!("more than {ROOTS_MAX} top-level entries to pin"));
                    return;
                }
                self.tops.push((name.to_string(), hash.to_string()));
            }
            Collect::BlockPut => {
                if let Some(key) = v["Key"].as_str() {
                    self.push_cid(key);
                }
            }
            Collect::DagPut => {
                if let Some(cid) = v["Cid"]["/"].as_str() {
                    self.push_cid(cid);
                }
            }
        }
    }

    fn push_cid(&mut self, cid: &str) {
        if self.cids.len() >= ROOTS_MAX {
            self.error
                .get_or_insert(format!("more than {ROOTS_MAX} CIDs to pin"));
            return;
        }
        self.cids.push(cid.to_string());
    }

    /// The CIDs to pin once the answer ended: for `add` the wrapping
    /// directory when there is one (its name is empty), else every
    /// top-level entry; an error when the answer carried one.
    pub fn finish(mut self) -> Result<Vec<Cid>, String> {
        self.end_line();
        if let Some(e) = self.error {
            return Err(e);
        }
        let texts: Vec<String> = match self.collect {
            Collect::Add => match self.tops.iter().find(|(name, _)| name.is_empty()) {
                Some((_, wrapper)) => vec![wrapper.clone()],
                None => self.tops.into_iter().map(|(_, hash)| hash).collect(),
            },
            _ => self.cids,
        };
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for text in texts {
            let cid =
                Cid::parse(&text).map_err(|e| format!("the daemon answered CID {text:?}: {e}"))?;
            if seen.insert(cid.clone()) {
                out.push(cid);
            }
        }
        Ok(out)
    }
}

/// The cluster pin options of a forwarded write: for `add`, every REST
/// pin option in its query (`replication-min`, `meta-*`, …) and its
/// `pin-name`; defaults for the puts.
fn options(
    state: &ProxyState,
    collect: Collect,
    name: &str,
    raw: &str,
) -> Result<PinOptions, ProxyError> {
    let mut options = match collect {
        Collect::Add => Query::parse(Some(raw))
            .and_then(|q| q.pin_options(state.api.now()))
            .map_err(|e| ProxyError::BadRequest(format!("error parsing options: {e}")))?,
        _ => PinOptions::default(),
    };
    if !name.is_empty() {
        options.name = name.to_string();
    }
    // The cluster's pin is whole: a direct mode here would be a REST
    // option misread from Kubo's `mode` (a file mode).
    options.mode = cluster_core::PinMode::Recursive;
    Ok(options)
}

/// Forwards `request` as `path?query` and pins what the daemon answers
/// (see the module docs).
#[allow(clippy::too_many_arguments)]
pub async fn forward_and_pin(
    state: &Arc<ProxyState>,
    request: Request<Body>,
    path: &str,
    collect: Collect,
    query: &str,
    name: &str,
    options_query: &str,
    client: Option<SocketAddr>,
) -> Result<Response<Body>, ProxyError> {
    let options = options(state, collect, name, options_query)?;
    let path_and_query = format!("{path}?{query}");
    let answer = state
        .upstream
        .forward(request, &path_and_query, client)
        .await?;
    let (mut parts, mut incoming) = answer.into_parts();
    if parts.status != StatusCode::OK {
        return Ok(Response::from_parts(parts, Body::new(incoming)));
    }
    // The answer must end only once the pins are written: with the
    // daemon's length a client would stop reading at its last byte (a
    // chunked answer ends with our end).
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let (tx, body) = body::channel();
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let mut scanner = Scanner::new(collect);
        let mut daemon_trailers = None;
        while let Some(frame) = incoming.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    // The client sees the answer cut short, as it was.
                    tracing::warn!("ipfs proxy: the daemon's answer broke: {e}");
                    let message = format!("the daemon's answer broke: {e}");
                    let _ = tx.send(Frame::trailers(error_trailers(&message))).await;
                    return;
                }
            };
            if let Some(data) = frame.data_ref() {
                scanner.feed(data);
                if tx.send(Frame::data(data.clone())).await.is_err() {
                    return;
                }
            } else if let Ok(trailers) = frame.into_trailers() {
                daemon_trailers = Some(trailers);
            }
        }
        let daemon_failed = daemon_trailers
            .as_ref()
            .and_then(|t| t.get(STREAM_ERROR))
            .is_some_and(|v| !v.is_empty());
        let outcome = if daemon_failed {
            Ok(())
        } else {
            pin_all(&state, scanner.finish(), &options).await
        };
        let trailers = match outcome {
            Err(e) => {
                tracing::warn!(error = %e, "ipfs proxy: pinning what the daemon stored failed");
                let message = format!("cluster pin: {e}");
                // In the body too: hyper sends trailers only to clients that
                // asked (`TE: trailers`), and Kubo's client reads an error
                // object in a stream as the command's error.
                let line = Bytes::from(error_body(&message, 0));
                if tx.send(Frame::data(line)).await.is_err() {
                    return;
                }
                Some(error_trailers(&message))
            }
            Ok(()) => daemon_trailers,
        };
        if let Some(t) = trailers {
            let _ = tx.send(Frame::trailers(t)).await;
        }
    });
    Ok(Response::from_parts(parts, body))
}

async fn pin_all(
    state: &ProxyState,
    cids: Result<Vec<Cid>, String>,
    options: &PinOptions,
) -> Result<(), String> {
    for cid in cids? {
        pin(&state.api, cid.clone(), options.clone())
            .await
            .map_err(|e| format!("{cid}: {e}"))?;
        tracing::info!(%cid, "ipfs proxy: pinned what the daemon stored");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq";
    const B: &str = "QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo";

    fn scan(collect: Collect, text: &str, chunk: usize) -> Result<Vec<String>, String> {
        let mut s = Scanner::new(collect);
        for part in text.as_bytes().chunks(chunk) {
            s.feed(part);
        }
        s.finish()
            .map(|c| c.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn add_roots_are_the_wrapper_or_the_top_level_entries() {
        let dir = format!(
            "{{\"Name\":\"d/a\",\"Bytes\":5}}\n{{\"Name\":\"d/a\",\"Hash\":\"{B}\",\"Size\":\"5\"}}\n{{\"Name\":\"d\",\"Hash\":\"{A}\",\"Size\":\"60\"}}\n"
        );
        for chunk in [1, 7, 1000] {
            assert_eq!(scan(Collect::Add, &dir, chunk), Ok(vec![A.to_string()]));
        }
        let wrapped =
            format!("{{\"Name\":\"a\",\"Hash\":\"{B}\"}}\n{{\"Name\":\"\",\"Hash\":\"{A}\"}}");
        assert_eq!(scan(Collect::Add, &wrapped, 3), Ok(vec![A.to_string()]));
        let two =
            format!("{{\"Name\":\"a\",\"Hash\":\"{B}\"}}\n{{\"Name\":\"b\",\"Hash\":\"{A}\"}}\n");
        assert_eq!(
            scan(Collect::Add, &two, 5),
            Ok(vec![B.to_string(), A.to_string()])
        );
    }

    #[test]
    fn puts_yield_every_cid_and_errors_stop_the_pin() {
        let block = format!("{{\"Key\":\"{A}\",\"Size\":3}}\n{{\"Key\":\"{A}\",\"Size\":3}}\n");
        assert_eq!(scan(Collect::BlockPut, &block, 4), Ok(vec![A.to_string()]));
        let dag = format!("{{\"Cid\":{{\"/\":\"{B}\"}}}}\n");
        assert_eq!(scan(Collect::DagPut, &dag, 2), Ok(vec![B.to_string()]));
        let failed = format!(
            "{{\"Key\":\"{A}\"}}\n{{\"Message\":\"disk full\",\"Code\":0,\"Type\":\"error\"}}\n"
        );
        assert_eq!(scan(Collect::BlockPut, &failed, 9), Err("disk full".into()));
        let bad = "{\"Key\":\"notacid\"}\n";
        assert!(scan(Collect::BlockPut, bad, 9).is_err());
    }

    #[test]
    fn overlong_lines_are_skipped_not_buffered() {
        let mut s = Scanner::new(Collect::BlockPut);
        let junk = vec![b'x'; LINE_MAX_BYTES * 2];
        s.feed(&junk);
        assert!(s.line.len() <= LINE_MAX_BYTES);
        s.feed(format!("\n{{\"Key\":\"{A}\"}}\n").as_bytes());
        assert_eq!(s.finish().map(|c| c.len()), Ok(1));
    }
}

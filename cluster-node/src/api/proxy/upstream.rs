//! The IPFS daemon behind the proxy: the streaming pass-through of every
//! forwarded request, the few small calls intercepted commands make
//! (`resolve`, `repo/stat`), and the headers learned from the daemon.
//!
//! Forwarding never holds a body whole: the request body is handed to
//! hyper's client as the connection delivers it and the daemon's answer
//! body goes back to the client frame by frame (trailers included), so a
//! 100 MiB `cat` or `add` costs one frame of memory.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::error::ProxyError;

/// Largest answer of a small call the proxy reads whole, in bytes.
pub const SMALL_ANSWER_MAX_BYTES: usize = 1 << 20;
/// Deadline of a small call (`resolve`, `repo/stat`, learning headers).
pub const SMALL_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long idle connections to the daemon are kept.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Deadline of a connection attempt to the daemon.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1):
/// never passed on. `Trailer` is kept: the daemon's streamed answers
/// announce `X-Stream-Error` with it and the trailers pass through.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Headers copied from the daemon's CORS answer onto intercepted answers.
const CORS_COPIED: [&str; 3] = [
    "access-control-allow-origin",
    "vary",
    "access-control-allow-credentials",
];

struct Learned {
    headers: HeaderMap,
    at: Option<Instant>,
}

/// The daemon's RPC API.
pub struct Upstream {
    base: String,
    client: Client<HttpConnector, Body>,
    learned: Mutex<Learned>,
    extract_headers: Vec<HeaderName>,
    extract_path: String,
    extract_ttl: Duration,
}

/// Removes hop-by-hop headers and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    let keep_te_trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("trailers"));
    for name in HOP_BY_HOP.iter() {
        headers.remove(*name);
    }
    for name in named {
        headers.remove(name);
    }
    if keep_te_trailers {
        // Asking for trailers is end to end in practice (Go's proxy keeps it).
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

impl Upstream {
    /// The daemon at `base` (`http://host:port`). `extract_headers` are
    /// copied from the daemon's answer to `extract_path` onto intercepted
    /// answers (with `Access-Control-Expose-Headers`), re-learned after
    /// `extract_ttl` (zero: learned once).
    pub fn new(
        base: String,
        extract_headers: Vec<HeaderName>,
        extract_path: String,
        extract_ttl: Duration,
    ) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        Upstream {
            base,
            client,
            learned: Mutex::new(Learned {
                headers: HeaderMap::new(),
                at: None,
            }),
            extract_headers,
            extract_path,
            extract_ttl,
        }
    }

    /// The daemon's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn uri(&self, path_and_query: &str) -> Result<Uri, ProxyError> {
        format!("{}{}", self.base, path_and_query)
            .parse()
            .map_err(|e| ProxyError::BadRequest(format!("bad request path: {e}")))
    }

    /// Forwards `request` to the daemon as `path_and_query` (the client's
    /// own, or a rewritten one), streaming its body, and answers the
    /// daemon's status, headers and body as they come.
    pub async fn forward(
        &self,
        request: Request<Body>,
        path_and_query: &str,
        client: Option<SocketAddr>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let (mut parts, body) = request.into_parts();
        parts.uri = self.uri(path_and_query)?;
        parts.version = axum::http::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::HOST);
        if let Some(addr) = client {
            let ip = addr.ip().to_string();
            let value = match parts.headers.get("x-forwarded-for") {
                Some(prior) => format!("{}, {ip}", prior.to_str().unwrap_or_default()),
                None => ip,
            };
            if let Ok(v) = HeaderValue::from_str(&value) {
                parts.headers.insert("x-forwarded-for", v);
            }
        }
        let mut response = self
            .client
            .request(Request::from_parts(parts, body))
            .await
            .map_err(|e| {
                ProxyError::Daemon(format!("ipfs daemon at {}: {}", self.base, chain(&e)))
            })?;
        strip_hop_by_hop(response.headers_mut());
        Ok(response)
    }

    /// `POST /api/v0/<path>?<query>` with an empty body: the answer of a
    /// 200, read whole up to [`SMALL_ANSWER_MAX_BYTES`]; the daemon's error
    /// message otherwise.
    pub async fn call(&self, path: &str, query: &str) -> Result<Bytes, ProxyError> {
        let pq = if query.is_empty() {
            format!("/api/v0/{path}")
        } else {
            format!("/api/v0/{path}?{query}")
        };
        let request = Request::post(self.uri(&pq)?)
            .body(Body::empty())
            .map_err(|e| ProxyError::Daemon(e.to_string()))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                ProxyError::Daemon(format!("ipfs daemon at {}: {}", self.base, chain(&e)))
            })?;
            let status = response.status();
            let body = read_bounded(response.into_body(), SMALL_ANSWER_MAX_BYTES).await?;
            if !status.is_success() {
                let message = crate::ipfs::kubo::answers::error_body(&body)
                    .map(|e| e.message)
                    .unwrap_or_else(|| {
                        format!(
                            "HTTP {status}: {}",
                            String::from_utf8_lossy(&body)
                                .chars()
                                .take(200)
                                .collect::<String>()
                        )
                    });
                return Err(ProxyError::Daemon(message));
            }
            Ok(body)
        };
        tokio::time::timeout(SMALL_CALL_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(ProxyError::Daemon(format!(
                    "ipfs daemon: {path} timed out after {SMALL_CALL_TIMEOUT:?}"
                )))
            })
    }

    /// Headers for an intercepted answer, as upstream sets them: the CORS
    /// headers the daemon gives for the same request (asked with `OPTIONS`
    /// only when the client sent an `Origin`), and the learned ones.
    pub async fn answer_headers(
        &self,
        method: &Method,
        path: &str,
        origin: Option<&HeaderValue>,
    ) -> HeaderMap {
        let mut out = self.learned_headers().await;
        if let Some(origin) = origin {
            if let Some(cors) = self.cors(method, path, origin).await {
                for name in CORS_COPIED {
                    for v in cors.get_all(name) {
                        out.append(name, v.clone());
                    }
                }
            }
        }
        out
    }

    async fn cors(&self, method: &Method, path: &str, origin: &HeaderValue) -> Option<HeaderMap> {
        let request = Request::options(self.uri(path).ok()?)
            .header(header::ORIGIN, origin.clone())
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, method.as_str())
            .body(Body::empty())
            .ok()?;
        let response = tokio::time::timeout(SMALL_CALL_TIMEOUT, self.client.request(request))
            .await
            .ok()?
            .ok()?;
        let headers = response.headers().clone();
        // Drain the (empty) body so the connection is reused.
        let _ = read_bounded(response.into_body(), SMALL_ANSWER_MAX_BYTES).await;
        Some(headers)
    }

    async fn learned_headers(&self) -> HeaderMap {
        let fresh = {
            let learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
            match learned.at {
                Some(_) if self.extract_ttl.is_zero() => Some(learned.headers.clone()),
                Some(at) if at.elapsed() < self.extract_ttl => Some(learned.headers.clone()),
                _ => None,
            }
        };
        if let Some(headers) = fresh {
            return headers;
        }
        let Some(headers) = self.learn().await else {
            // The daemon is down: answer without them, try again next time.
            return HeaderMap::new();
        };
        let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        learned.headers = headers.clone();
        learned.at = Some(Instant::now());
        headers
    }

    async fn learn(&self) -> Option<HeaderMap> {
        let request = Request::post(self.uri(&self.extract_path).ok()?)
            .body(Body::empty())
            .ok()?;
        let response = tokio::time::timeout(SMALL_CALL_TIMEOUT, self.client.request(request))
            .await
            .ok()?
            .ok()?;
        let mut out = HeaderMap::new();
        let wanted = std::iter::once(header::ACCESS_CONTROL_EXPOSE_HEADERS)
            .chain(self.extract_headers.iter().cloned());
        for name in wanted {
            for v in response.headers().get_all(&name) {
                out.append(name.clone(), v.clone());
            }
        }
        let _ = read_bounded(response.into_body(), SMALL_ANSWER_MAX_BYTES).await;
        Some(out)
    }
}

/// Reads `body` whole, refusing more than `max` bytes.
pub async fn read_bounded(mut body: Incoming, max: usize) -> Result<Bytes, ProxyError> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ProxyError::Daemon(format!("reading the daemon's answer: {}", chain(&e)))
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                return Err(ProxyError::Daemon(format!(
                    "the daemon's answer is longer than {max} bytes"
                )));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// An error and its sources, as one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_not_passed_on() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::TRAILER, HeaderValue::from_static("X-Stream-Error"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        strip_hop_by_hop(&mut h);
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get("x-private").is_none());
        assert!(h.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(
            h.get(header::TE).map(|v| v.as_bytes()),
            Some(&b"trailers"[..])
        );
        assert!(h.get(header::TRAILER).is_some());
        assert!(h.get(header::CONTENT_TYPE).is_some());
    }
}

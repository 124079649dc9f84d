//! One RPC round trip to the daemon: `POST {api}/api/v0/{path}?{query}`,
//! with bounded concurrency, a deadline and typed failures.
//!
//! The client is hyper's pooled HTTP/1 client (no TLS: the daemon's API is
//! plain HTTP on a trusted address). Connections are kept alive between
//! calls; the pool drops idle ones before js-ipfs' 5 s keep-alive ends, so a
//! request is never sent on a connection the daemon is closing.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

use super::answers;

/// Largest answer body read; a bigger one is refused rather than
/// exhausting memory (a listing of 5 M pins is about 400 MB).
const ANSWER_MAX_BYTES: usize = 1 << 30;
/// Idle pooled connections are closed after this (js-ipfs closes at 5 s).
const POOL_IDLE: Duration = Duration::from_secs(4);
/// Longest wait for a TCP connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest error body quoted in an error message.
const QUOTED_MAX_CHARS: usize = 200;

/// How long a call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The whole call, from queueing to the last byte.
    Total(Duration),
    /// Between two signs of progress (the answer's head, each body chunk):
    /// upstream's `pin_timeout` semantics for long pins that stream progress.
    Idle(Duration),
}

/// Why one round trip failed, before it is named for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No connection, or it broke before the answer was complete.
    #[error("{0}")]
    Unreachable(String),
    /// The deadline passed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The daemon answered an error with the usual `{"Message":…}` body, or
    /// ended a streamed answer with an `X-Stream-Error` trailer.
    #[error("HTTP {status}: {message}")]
    Daemon {
        /// HTTP status.
        status: u16,
        /// The daemon's message.
        message: String,
    },
    /// The daemon answered an error status with some other body.
    #[error("HTTP {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer was unusable (too big, a streamed error, unparseable).
    #[error("{0}")]
    BadAnswer(String),
}

impl CallError {
    /// The HTTP status the daemon answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Daemon { status, .. } | CallError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// This failure named for the connector's caller.
    pub fn into_ipfs(self, path: &str) -> crate::ipfs::IpfsError {
        use crate::ipfs::IpfsError;
        let path = path.to_string();
        match self {
            CallError::Unreachable(reason) => IpfsError::Unreachable { path, reason },
            CallError::Timeout(after) => IpfsError::Timeout {
                path,
                after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
            },
            CallError::Daemon { message, .. } => IpfsError::Daemon { path, message },
            e @ CallError::Status { .. } => IpfsError::Daemon {
                path,
                message: e.to_string(),
            },
            CallError::BadAnswer(reason) => IpfsError::BadAnswer { path, reason },
        }
    }
}

/// A request body with its content type.
pub struct Upload {
    /// The `Content-Type` header.
    pub content_type: String,
    /// The bytes.
    pub bytes: Bytes,
}

/// The daemon's RPC endpoint.
pub struct Rpc {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    uploads: Client<HttpConnector, super::upload::UploadBody>,
    permits: Arc<Semaphore>,
}

impl Rpc {
    /// A client of the API at `base` (`http://host:port`, no trailing
    /// slash), at most `concurrency` calls at once. Needs a tokio runtime
    /// only when called.
    pub fn new(base: String, concurrency: usize) -> Rpc {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector.clone());
        let uploads = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        Rpc {
            base,
            client,
            uploads,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Calls `path` with `query` (values are percent-encoded here) and
    /// returns the answer body of a 200.
    pub async fn call(
        &self,
        path: &str,
        query: &[(&str, &str)],
        upload: Option<Upload>,
        limit: Limit,
    ) -> Result<Bytes, CallError> {
        let request = self.request(path, query, upload)?;
        match limit {
            Limit::Total(d) => tokio::time::timeout(d, self.exchange(request, None))
                .await
                .unwrap_or(Err(CallError::Timeout(d))),
            Limit::Idle(d) => self.exchange(request, Some(d)).await,
        }
    }

    fn request(
        &self,
        path: &str,
        query: &[(&str, &str)],
        upload: Option<Upload>,
    ) -> Result<Request<Full<Bytes>>, CallError> {
        let uri = format!("{}/api/v0/{}{}", self.base, path, query_string(query));
        let uri: Uri = uri
            .parse()
            .map_err(|e| CallError::Unreachable(format!("bad request URI {uri:?}: {e}")))?;
        let (content_type, body) = match upload {
            Some(u) => (u.content_type, u.bytes),
            None => (String::new(), Bytes::new()),
        };
        Request::post(uri)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|e| CallError::Unreachable(format!("bad request: {e}")))
    }

    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        idle: Option<Duration>,
    ) -> Result<Bytes, CallError> {
        let _permit = within(idle, self.permits.acquire())
            .await?
            .map_err(|_| CallError::Unreachable("connector closed".into()))?;
        let response = within(idle, self.client.request(request))
            .await?
            .map_err(|e| CallError::Unreachable(chain(&e)))?;
        let status = response.status();
        let body = read_body(response.into_body(), idle).await;
        if status != StatusCode::OK {
            // An error status with an unreadable body is still that error.
            let body = body.unwrap_or_default();
            return Err(match answers::error_body(&body) {
                Some(e) => CallError::Daemon {
                    status: status.as_u16(),
                    message: e.message,
                },
                None => CallError::Status {
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&body)
                        .chars()
                        .take(QUOTED_MAX_CHARS)
                        .collect(),
                },
            });
        }
        body
    }
}

impl Rpc {
    /// Calls `path` with a streamed `body`, handing each line of the
    /// answer to `on_line` as it arrives. The deadline `idle` restarts on
    /// every sign of progress: a chunk of the body sent, the answer's head,
    /// a chunk of the answer.
    pub async fn call_upload(
        &self,
        path: &str,
        query: &[(&str, &str)],
        content_type: &str,
        body: super::upload::UploadBody,
        idle: Duration,
        mut on_line: impl FnMut(&[u8]) -> Result<(), CallError>,
    ) -> Result<(), CallError> {
        let uri = format!("{}/api/v0/{}{}", self.base, path, query_string(query));
        let uri: Uri = uri
            .parse()
            .map_err(|e| CallError::Unreachable(format!("bad request URI {uri:?}: {e}")))?;
        let sent = body.progress();
        let request = Request::post(uri)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(body)
            .map_err(|e| CallError::Unreachable(format!("bad request: {e}")))?;
        let _permit = within(Some(idle), self.permits.acquire())
            .await?
            .map_err(|_| CallError::Unreachable("connector closed".into()))?;
        let response = self.uploads.request(request);
        tokio::pin!(response);
        let response = loop {
            let before = sent.load(std::sync::atomic::Ordering::Relaxed);
            match tokio::time::timeout(idle, &mut response).await {
                Ok(r) => break r.map_err(|e| CallError::Unreachable(chain(&e)))?,
                Err(_) if sent.load(std::sync::atomic::Ordering::Relaxed) != before => {}
                Err(_) => return Err(CallError::Timeout(idle)),
            }
        };
        let status = response.status();
        let mut body = response.into_body();
        if status != StatusCode::OK {
            let body = read_body(body, Some(idle)).await.unwrap_or_default();
            return Err(match answers::error_body(&body) {
                Some(e) => CallError::Daemon {
                    status: status.as_u16(),
                    message: e.message,
                },
                None => CallError::Status {
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&body)
                        .chars()
                        .take(QUOTED_MAX_CHARS)
                        .collect(),
                },
            });
        }
        let mut line = BytesMut::new();
        while let Some(frame) = within(Some(idle), body.frame()).await? {
            let frame = frame.map_err(|e| CallError::Unreachable(chain(&e)))?;
            match frame.into_data() {
                Ok(data) => {
                    line.extend_from_slice(&data);
                    while let Some(end) = line.iter().position(|b| *b == b'\n') {
                        let one = line.split_to(end + 1);
                        on_line(&one[..end])?;
                    }
                    if line.len() > LINE_MAX_BYTES {
                        return Err(CallError::BadAnswer(format!(
                            "answer line longer than {LINE_MAX_BYTES} bytes"
                        )));
                    }
                }
                Err(frame) => {
                    if let Some(message) = frame
                        .trailers_ref()
                        .and_then(|t| t.get("x-stream-error"))
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        .filter(|v| !v.is_empty())
                    {
                        return Err(CallError::Daemon {
                            status: StatusCode::OK.as_u16(),
                            message,
                        });
                    }
                }
            }
        }
        if !line.is_empty() {
            on_line(&line)?;
        }
        Ok(())
    }
}

/// Longest line of a streamed answer.
const LINE_MAX_BYTES: usize = 1 << 20;

/// Awaits `fut`, within `idle` when given.
async fn within<F: std::future::Future>(
    idle: Option<Duration>,
    fut: F,
) -> Result<F::Output, CallError> {
    match idle {
        Some(d) => tokio::time::timeout(d, fut)
            .await
            .map_err(|_| CallError::Timeout(d)),
        None => Ok(fut.await),
    }
}

/// Reads a whole answer body. A streaming daemon reports a failure that
/// happened after the 200 in an `X-Stream-Error` trailer.
async fn read_body(mut body: Incoming, idle: Option<Duration>) -> Result<Bytes, CallError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = within(idle, body.frame()).await? {
        let frame = frame.map_err(|e| CallError::Unreachable(chain(&e)))?;
        match frame.into_data() {
            Ok(data) => {
                if buf.len() + data.len() > ANSWER_MAX_BYTES {
                    return Err(CallError::BadAnswer(format!(
                        "answer longer than {ANSWER_MAX_BYTES} bytes"
                    )));
                }
                buf.extend_from_slice(&data);
            }
            Err(frame) => {
                let stream_error = frame
                    .trailers_ref()
                    .and_then(|t| t.get("x-stream-error"))
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .filter(|v| !v.is_empty());
                if let Some(message) = stream_error {
                    return Err(CallError::Daemon {
                        status: StatusCode::OK.as_u16(),
                        message,
                    });
                }
            }
        }
    }
    Ok(buf.freeze())
}

/// An error and its sources, as one line (hyper's top-level messages alone
/// say little, e.g. "client error (Connect)").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `?k=v&k=v` with values percent-encoded (empty for no parameters).
pub fn query_string(query: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in query.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(&percent_encode(k));
        out.push('=');
        out.push_str(&percent_encode(v));
    }
    out
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_string(&[]), "");
        assert_eq!(
            query_string(&[("arg", "/ip4/1.2.3.4/tcp/1/p2p/Qm"), ("x", "a b&c")]),
            "?arg=%2Fip4%2F1.2.3.4%2Ftcp%2F1%2Fp2p%2FQm&x=a%20b%26c"
        );
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn failures_keep_their_kind_for_the_caller() {
        use crate::ipfs::IpfsError;
        let e = CallError::Timeout(Duration::from_millis(1500)).into_ipfs("pin/add");
        assert_eq!(
            e,
            IpfsError::Timeout {
                path: "pin/add".into(),
                after_ms: 1500
            }
        );
        let e = CallError::Status {
            status: 404,
            body: "404 page not found".into(),
        };
        assert_eq!(e.status(), Some(404));
        assert!(
            matches!(e.into_ipfs("x"), IpfsError::Daemon { message, .. } if message.contains("404"))
        );
        let e = CallError::Daemon {
            status: 500,
            message: "boom".into(),
        };
        assert!(matches!(e.into_ipfs("x"), IpfsError::Daemon { message, .. } if message == "boom"));
    }
}

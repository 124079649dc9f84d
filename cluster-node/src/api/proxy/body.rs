//! Streamed answers the proxy writes itself: a task produces frames into a
//! small bounded channel and the connection writes them as they come (a
//! slow client slows the producer), ending with an `X-Stream-Error`
//! trailer when something failed after the status was sent.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body::Frame;
use tokio::sync::mpsc;

/// Frames buffered between a producer and the connection.
pub const STREAM_BUFFER_FRAMES: usize = 64;
/// The trailer naming a failure after the stream started.
pub const STREAM_ERROR: &str = "x-stream-error";

/// Where a producer writes its frames.
pub type Frames = mpsc::Sender<Frame<Bytes>>;

struct ChannelBody {
    rx: mpsc::Receiver<Frame<Bytes>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

/// A body fed by the returned sender; it ends when the sender drops.
pub fn channel() -> (Frames, Body) {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER_FRAMES);
    (tx, Body::new(ChannelBody { rx }))
}

/// A `200` streamed JSON answer (Kubo's headers for a streamed command)
/// and the sender its producer writes to.
pub fn streamed() -> (Frames, Response<Body>) {
    let (tx, body) = channel();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-chunked-output", HeaderValue::from_static("1"));
    h.insert(header::TRAILER, HeaderValue::from_static("X-Stream-Error"));
    (tx, response)
}

/// `value` as one NDJSON line.
pub fn line<T: serde::Serialize>(value: &T) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// The trailers of a stream that failed with `error`.
pub fn error_trailers(error: &str) -> HeaderMap {
    // A header value holds no control characters: blank them out.
    let clean: Vec<u8> = error
        .bytes()
        .map(|b| if b < 0x20 || b == 0x7f { b' ' } else { b })
        .take(1024)
        .collect();
    let value = HeaderValue::from_bytes(&clean).unwrap_or(HeaderValue::from_static("error"));
    let mut map = HeaderMap::new();
    map.insert(HeaderName::from_static(STREAM_ERROR), value);
    map
}

/// A complete JSON answer with `status`.
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let mut response = Response::new(Body::from(line(value)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

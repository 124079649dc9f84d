//! NDJSON streaming answers (rest-api.md §2): items are produced by a task
//! into a small bounded channel and written as they come, so a listing
//! never sits whole in memory and a slow client slows the producer down.
//!
//! The status follows the first message: an item → `200` and the stream;
//! nothing → `204`; an error before any item → `500` with the error body.
//! The stream ends with the `X-Stream-Error` trailer: `""` on success, the
//! error otherwise. hyper sends trailers only to clients that asked with
//! `TE: trailers` (RFC 9110 §6.5.1); the typed client does.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use http_body::Frame;
use serde::Serialize;
use tokio::sync::mpsc;

use super::error::error_response;

/// The trailer naming a failure after the stream started.
pub const STREAM_ERROR: &str = "x-stream-error";
/// Items buffered between the producer and the connection.
pub const STREAM_BUFFER_ITEMS: usize = 64;

enum Msg {
    Line(Bytes),
    End(Result<(), String>),
}

/// Where a producer puts its items.
pub struct Sink {
    tx: mpsc::Sender<Msg>,
    /// The largest page sent so far, in bytes: the next page's buffer
    /// starts that big instead of growing (and copying) to it.
    page_bytes: AtomicUsize,
}

impl Sink {
    fn new(tx: mpsc::Sender<Msg>) -> Sink {
        Sink {
            tx,
            page_bytes: AtomicUsize::new(0),
        }
    }

    /// Sends one item; false when the client went away (stop producing).
    pub async fn send<T: Serialize>(&self, item: &T) -> bool {
        match serde_json::to_vec(item) {
            Ok(mut line) => {
                line.push(b'\n');
                self.tx.send(Msg::Line(Bytes::from(line))).await.is_ok()
            }
            Err(e) => {
                tracing::warn!("rest api: stream item does not encode: {e}");
                false
            }
        }
    }
}

impl Sink {
    /// Sends a page of items as one message (their lines together): a
    /// listing costs one channel hand-over and one allocation per page
    /// rather than per item. False when the client went away.
    pub async fn send_page<T: Serialize>(&self, items: impl IntoIterator<Item = T>) -> bool {
        let mut lines = Vec::with_capacity(self.page_capacity());
        for item in items {
            if let Err(e) = serde_json::to_writer(&mut lines, &item) {
                tracing::warn!("rest api: stream item does not encode: {e}");
                return false;
            }
            lines.push(b'\n');
        }
        self.send_bytes(lines).await
    }

    /// Sends the lines `write` appends to a fresh page buffer (each ending
    /// in a newline), as one message. False when the client went away.
    pub async fn send_lines(&self, write: &(dyn Fn(&mut Vec<u8>) + Sync)) -> bool {
        let mut lines = Vec::with_capacity(self.page_capacity());
        write(&mut lines);
        self.send_bytes(lines).await
    }

    fn page_capacity(&self) -> usize {
        // A little over the largest page: pages of one listing differ a bit.
        let largest = self.page_bytes.load(Ordering::Relaxed);
        PAGE_BYTES_GUESS.max(largest + largest / 16)
    }

    async fn send_bytes(&self, lines: Vec<u8>) -> bool {
        if lines.is_empty() {
            return true;
        }
        self.page_bytes.fetch_max(lines.len(), Ordering::Relaxed);
        self.tx.send(Msg::Line(Bytes::from(lines))).await.is_ok()
    }
}

/// What a page of lines usually takes, so that its buffer grows rarely.
const PAGE_BYTES_GUESS: usize = 64 << 10;

/// Runs `produce` on its own task and answers with what it yields.
pub async fn ndjson<F, Fut>(produce: F) -> Response
where
    F: FnOnce(Sink) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel(STREAM_BUFFER_ITEMS);
    let end = tx.clone();
    let work = produce(Sink::new(tx));
    tokio::spawn(async move {
        let result = work.await;
        let _ = end.send(Msg::End(result)).await;
    });
    match rx.recv().await {
        Some(Msg::Line(first)) => {
            let body = NdjsonBody {
                first: Some(first),
                rx,
                ended: None,
                done: false,
            };
            let mut response = Response::new(Body::new(body));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(header::TRAILER, HeaderValue::from_static("X-Stream-Error"));
            response
        }
        Some(Msg::End(Ok(()))) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Some(Msg::End(Err(e))) => error_response(StatusCode::INTERNAL_SERVER_ERROR, e),
        None => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the stream's producer stopped without an answer".into(),
        ),
    }
}

/// Like [`ndjson`] but answers `200` at once, before the first item (as
/// upstream's `POST /add` does: its items come only as the upload is
/// processed); a failure is only ever the trailer.
pub fn ndjson_now<F, Fut>(produce: F) -> Response
where
    F: FnOnce(Sink) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_BUFFER_ITEMS);
    let end = tx.clone();
    let work = produce(Sink::new(tx));
    tokio::spawn(async move {
        let result = work.await;
        let _ = end.send(Msg::End(result)).await;
    });
    let body = NdjsonBody {
        first: None,
        rx,
        ended: None,
        done: false,
    };
    let mut response = Response::new(Body::new(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::TRAILER, HeaderValue::from_static("X-Stream-Error"));
    headers.insert("x-chunked-output", HeaderValue::from_static("1"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Lines already produced are sent together, up to this many bytes per
/// chunk: one chunk (and one write) per line costs more than the line.
const CHUNK_BYTES: usize = 64 << 10;

struct NdjsonBody {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Msg>,
    /// The producer's end, seen while gathering a chunk.
    ended: Option<Option<Result<(), String>>>,
    done: bool,
}

impl NdjsonBody {
    /// `line` with the lines already waiting, up to [`CHUNK_BYTES`]; an end
    /// met on the way is kept for the next frame.
    fn gather(&mut self, line: Bytes, cx: &mut Context<'_>) -> Bytes {
        // A page of lines is a chunk already: copying it again costs more
        // than the write it would save.
        if line.len() >= CHUNK_BYTES / 4 {
            return line;
        }
        let mut chunk: Option<Vec<u8>> = None;
        while chunk.as_ref().map_or(line.len(), Vec::len) < CHUNK_BYTES {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Msg::Line(more))) => chunk
                    .get_or_insert_with(|| {
                        let mut v = Vec::with_capacity(CHUNK_BYTES + 1024);
                        v.extend_from_slice(&line);
                        v
                    })
                    .extend_from_slice(&more),
                Poll::Ready(Some(Msg::End(result))) => {
                    self.ended = Some(Some(result));
                    break;
                }
                Poll::Ready(None) => {
                    self.ended = Some(None);
                    break;
                }
                Poll::Pending => break,
            }
        }
        chunk.map(Bytes::from).unwrap_or(line)
    }
}

fn trailers(error: &str) -> HeaderMap {
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

impl http_body::Body for NdjsonBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(first) = self.first.take() {
            let chunk = self.gather(first, cx);
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let next = match self.ended.take() {
            Some(end) => end.map(Msg::End),
            None => match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(msg) => msg,
            },
        };
        let frame = match next {
            Some(Msg::Line(line)) => Frame::data(self.gather(line, cx)),
            Some(Msg::End(result)) => {
                self.done = true;
                Frame::trailers(trailers(result.err().as_deref().unwrap_or("")))
            }
            None => {
                self.done = true;
                Frame::trailers(trailers("the stream's producer stopped early"))
            }
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.first.is_none()
    }
}

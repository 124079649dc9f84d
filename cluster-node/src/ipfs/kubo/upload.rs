//! Streamed uploads for `add`: the request body is fed chunk by chunk from
//! a channel (the REST API's incoming upload), never gathered whole.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::Frame;
use tokio::sync::mpsc;

/// A request body read from a channel of chunks; an `Err` chunk aborts the
/// request. Counts the bytes handed to the connection (progress, for the
/// call's no-progress deadline).
pub struct UploadBody {
    rx: mpsc::Receiver<Result<Vec<u8>, String>>,
    sent: Arc<AtomicU64>,
}

impl UploadBody {
    /// The body of the chunks `rx` yields.
    pub fn new(rx: mpsc::Receiver<Result<Vec<u8>, String>>) -> UploadBody {
        UploadBody {
            rx,
            sent: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The count of bytes handed over so far, shared.
    pub fn progress(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.sent)
    }
}

impl hyper::body::Body for UploadBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Ok(chunk))) => {
                self.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
            }
            Poll::Ready(Some(Err(reason))) => Poll::Ready(Some(Err(std::io::Error::other(reason)))),
        }
    }
}

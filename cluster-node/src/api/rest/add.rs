//! `POST /add` (rest-api.md §6.2, §6.3, §7.6): a multipart upload in
//! Kubo's `add` encoding, streamed through to this peer's IPFS daemon
//! (never gathered in memory, bounded by `max_add_bytes`), then the root
//! pinned in the cluster with the query's pin options.
//!
//! Deviations from upstream, on purpose: the blocks go to this peer's IPFS
//! only (upstream's `local=true` flow) and the allocated peers fetch them
//! from it when they pin (the daemons are connected by the cluster);
//! `shard`, `nocopy` and `format=car` answer 501; `progress` updates are
//! not emitted.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use cluster_core::{PeerId, PinOptions};
use http_body::Body as _;
use tokio::sync::mpsc;

use super::error::{error_response, json_response, ApiError};
use super::options::Query;
use super::pins::{allocate_for, commit, with_defaults};
use super::state::ApiState;
use super::stream::ndjson_now;
use crate::api::types::AddedOutput;
use crate::ipfs::multipart::boundary;
use crate::ipfs::{AddRequest, AddedFile};

/// Upload chunks buffered between the connection and the daemon.
const UPLOAD_BUFFER_CHUNKS: usize = 4;
/// Added files buffered between the daemon's answer and the client.
const ADDED_BUFFER: usize = 64;

/// What one `/add` request asks for.
#[derive(Debug, Clone)]
pub struct AddJob {
    /// Options for the daemon's `add`.
    pub ipfs_options: Vec<(String, String)>,
    /// How the root is pinned.
    pub pin: PinOptions,
    /// Do not pin the root.
    pub no_pin: bool,
    /// NDJSON as files come (true) or one JSON array at the end.
    pub stream_channels: bool,
}

/// Go's `strconv.ParseBool`.
fn go_bool(q: &Query, name: &str, default: bool) -> Result<bool, ApiError> {
    match q.get(name) {
        None => Ok(default),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(ApiError::param(name, format!("{other:?} is not a boolean"))),
    }
}

impl AddJob {
    /// Reads the add parameters and pin options of `query`.
    pub fn parse(query: &Query, pin: PinOptions) -> Result<AddJob, ApiError> {
        for (name, what) in [
            (
                "shard",
                "sharded adds are not supported: sharding does not exist here",
            ),
            ("nocopy", "nocopy needs a filestore, which is not supported"),
        ] {
            if go_bool(query, name, false)? {
                return Err(ApiError::NotImplemented(what));
            }
        }
        match query.get("format") {
            None | Some("unixfs") => {}
            Some("car") => {
                return Err(ApiError::NotImplemented(
                    "format=car is not supported: add the files",
                ))
            }
            Some(_) => return Err(ApiError::BadBody("format parameter is invalid".into())),
        }
        let trickle = match query.get("layout") {
            None | Some("balanced") => false,
            Some("trickle") => true,
            Some(_) => return Err(ApiError::BadBody("layout parameter is invalid".into())),
        };
        let cid_version: u32 = match query.get("cid-version") {
            None => 0,
            Some(v) => v
                .parse()
                .ok()
                .filter(|v| *v <= 1)
                .ok_or_else(|| ApiError::param("cid-version", "not 0 or 1"))?,
        };
        // CIDv1 implies raw leaves unless said otherwise (upstream's rule).
        let raw_leaves = go_bool(query, "raw-leaves", cid_version > 0)?;
        let mut ipfs_options = vec![
            ("cid-version".to_string(), cid_version.to_string()),
            ("raw-leaves".to_string(), raw_leaves.to_string()),
        ];
        for name in ["wrap-with-directory", "hidden"] {
            let value = go_bool(query, name, false)?;
            ipfs_options.push((name.to_string(), value.to_string()));
        }
        if trickle {
            ipfs_options.push(("trickle".into(), "true".into()));
        }
        for name in ["chunker", "hash"] {
            if let Some(v) = query.get(name) {
                ipfs_options.push((name.to_string(), v.to_string()));
            }
        }
        // Parsed so a bad value is a 400, as upstream; both are moot here
        // (blocks always go to this peer's IPFS; directories are always
        // walked by the client that encoded them).
        go_bool(query, "local", false)?;
        go_bool(query, "recursive", false)?;
        go_bool(query, "progress", false)?;
        Ok(AddJob {
            ipfs_options,
            pin,
            no_pin: go_bool(query, "no-pin", false)?,
            stream_channels: go_bool(query, "stream-channels", true)?,
        })
    }
}

/// `POST /add`.
pub async fn add(
    State(state): State<Arc<ApiState>>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if boundary(&content_type).is_none() {
        return Err(ApiError::BadBody(
            "request Content-Type isn't multipart/form-data".into(),
        ));
    }
    let query = Query::parse(query.as_deref())?;
    let job = AddJob::parse(&query, query.pin_options(state.now())?)?;
    let pin = with_defaults(&state, job.pin.clone());
    // Allocated first, as upstream: a pin that cannot be placed fails
    // before the upload is read.
    let allocations = if job.no_pin {
        Vec::new()
    } else {
        allocate_for(&state, &pin, &[])?
    };
    let job = AddJob { pin, ..job };
    let upload = Upload {
        content_type,
        body: request.into_body(),
        max_bytes: state.config.max_add_bytes,
    };
    if job.stream_channels {
        return Ok(ndjson_now(move |sink| async move {
            let (tx, mut rx) = mpsc::channel(ADDED_BUFFER);
            let work = tokio::spawn(run(state, job, allocations, upload, tx));
            while let Some(out) = rx.recv().await {
                // A client gone away is noticed by the upload failing.
                sink.send(&out).await;
            }
            work.await
                .map_err(|e| format!("add task failed: {e}"))
                .and_then(|r| r)
        }));
    }
    let (tx, mut rx) = mpsc::channel(ADDED_BUFFER);
    let work = tokio::spawn(run(state, job, allocations, upload, tx));
    let mut all = Vec::new();
    while let Some(out) = rx.recv().await {
        all.push(out);
    }
    match work.await {
        Ok(Ok(())) if all.is_empty() => Ok(json_response(StatusCode::OK, &())),
        Ok(Ok(())) => Ok(json_response(StatusCode::OK, &all)),
        Ok(Err(e)) => Ok(error_response(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => Ok(error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("add task failed: {e}"),
        )),
    }
}

/// The incoming upload.
struct Upload {
    content_type: String,
    body: Body,
    max_bytes: u64,
}

/// Moves the body's chunks into `tx`, at most `max_bytes` of them; a
/// failure (the limit, a broken connection) is recorded in `failed` and
/// sent on as the chunk that aborts the daemon's add.
async fn pump(
    mut body: Body,
    max_bytes: u64,
    tx: mpsc::Sender<Result<Vec<u8>, String>>,
    failed: Arc<Mutex<Option<String>>>,
) {
    let mut total = 0u64;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        let error = match frame {
            None => return,
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                total += data.len() as u64;
                if total <= max_bytes {
                    if tx.send(Ok(data.to_vec())).await.is_err() {
                        return;
                    }
                    continue;
                }
                format!("upload larger than the limit of {max_bytes} bytes")
            }
            Some(Err(e)) => format!("reading the upload: {e}"),
        };
        if let Ok(mut slot) = failed.lock() {
            *slot = Some(error.clone());
        }
        let _ = tx.send(Err(error)).await;
        return;
    }
}

/// Adds the upload to IPFS, reporting each file on `out`, then pins the
/// root (the last file the daemon reports).
async fn run(
    state: Arc<ApiState>,
    job: AddJob,
    allocations: Vec<PeerId>,
    upload: Upload,
    out: mpsc::Sender<AddedOutput>,
) -> Result<(), String> {
    let (body_tx, body_rx) = mpsc::channel(UPLOAD_BUFFER_CHUNKS);
    let (added_tx, mut added_rx) = mpsc::channel(ADDED_BUFFER);
    let failed = Arc::new(Mutex::new(None));
    tokio::spawn(pump(
        upload.body,
        upload.max_bytes,
        body_tx,
        Arc::clone(&failed),
    ));
    let adding = tokio::spawn(state.ctx.ipfs.add(AddRequest {
        content_type: upload.content_type,
        options: job.ipfs_options.clone(),
        body: body_rx,
        added: added_tx,
    }));
    let mut root: Option<AddedFile> = None;
    while let Some(file) = added_rx.recv().await {
        let line = AddedOutput {
            name: file.name.clone(),
            cid: Some(file.cid.clone()),
            bytes: 0,
            size: file.size,
            allocations: allocations.clone(),
        };
        let _ = out.send(line).await;
        root = Some(file);
    }
    let added = adding
        .await
        .map_err(|e| format!("add task failed: {e}"))
        .and_then(|r| r.map_err(|e| e.to_string()));
    if let Err(e) = added {
        // Our own reason (the limit) beats the daemon's view of it.
        let ours = failed.lock().ok().and_then(|s| s.clone());
        return Err(ours.unwrap_or(e));
    }
    let root = root.ok_or("the upload held no file")?;
    if job.no_pin {
        return Ok(());
    }
    let mut options = job.pin;
    if options.name.is_empty() {
        options.name = root.name.clone();
    }
    commit(&state, root.cid, options, allocations)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(raw: &str) -> Result<AddJob, ApiError> {
        let q = Query::parse(Some(raw)).expect("query");
        AddJob::parse(&q, PinOptions::default())
    }

    fn opt<'a>(job: &'a AddJob, name: &str) -> Option<&'a str> {
        job.ipfs_options
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn add_parameters_follow_upstream() {
        let j = job("").expect("defaults");
        assert!(j.stream_channels && !j.no_pin);
        assert_eq!(opt(&j, "cid-version"), Some("0"));
        assert_eq!(opt(&j, "raw-leaves"), Some("false"));
        let j = job("cid-version=1&layout=trickle&stream-channels=f&no-pin=1").expect("v1");
        assert_eq!(opt(&j, "raw-leaves"), Some("true"));
        assert_eq!(opt(&j, "trickle"), Some("true"));
        assert!(!j.stream_channels && j.no_pin);
        let j = job("cid-version=1&raw-leaves=false&chunker=size-1024").expect("explicit");
        assert_eq!(opt(&j, "raw-leaves"), Some("false"));
        assert_eq!(opt(&j, "chunker"), Some("size-1024"));
        for bad in ["layout=x", "format=zip", "hidden=maybe", "cid-version=7"] {
            let e = job(bad).expect_err(bad);
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        for unsupported in ["shard=true", "format=car", "nocopy=true"] {
            let e = job(unsupported).expect_err(unsupported);
            assert_eq!(e.status(), StatusCode::NOT_IMPLEMENTED, "{unsupported}");
        }
    }
}

//! The client's half of `POST /add`: files and directories on disk encoded
//! as Kubo's `add` body (`multipart/form-data`, one part per file with its
//! percent-encoded path as file name, directories as
//! `application/x-directory` parts), read and sent chunk by chunk.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::Frame;
use tokio::sync::mpsc;

use super::client::ClientError;

/// Bytes read from a file per chunk sent.
pub const CHUNK_BYTES: usize = 256 << 10;

/// One part of the upload.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir { name: String },
    File { name: String, path: PathBuf },
}

/// Files and directories to upload, listed (not read) up front.
#[derive(Debug, Clone)]
pub struct AddFiles {
    entries: Vec<Entry>,
    total: u64,
    boundary: String,
}

fn io_error(path: &Path, e: std::io::Error) -> ClientError {
    ClientError::Config(format!("{}: {e}", path.display()))
}

/// Percent-encodes a path as go-ipfs-files writes file names (`/` too).
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl AddFiles {
    /// Lists `paths`: files as themselves, directories with everything
    /// under them when `recursive` (refused otherwise, as `ipfs-cluster-ctl`
    /// does); names starting with `.` inside directories only when `hidden`.
    pub fn walk(paths: &[PathBuf], recursive: bool, hidden: bool) -> Result<AddFiles, ClientError> {
        let mut files = AddFiles {
            entries: Vec::new(),
            total: 0,
            boundary: random_boundary(),
        };
        for path in paths {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string());
            files.add(path, name, recursive, hidden)?;
        }
        if files.entries.is_empty() {
            return Err(ClientError::Config("nothing to add".into()));
        }
        Ok(files)
    }

    fn add(
        &mut self,
        path: &Path,
        name: String,
        recursive: bool,
        hidden: bool,
    ) -> Result<(), ClientError> {
        let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
        if meta.is_file() {
            self.total += meta.len();
            self.entries.push(Entry::File {
                name,
                path: path.to_path_buf(),
            });
            return Ok(());
        }
        if !meta.is_dir() {
            return Err(ClientError::Config(format!(
                "{}: not a file or directory",
                path.display()
            )));
        }
        if !recursive {
            return Err(ClientError::Config(format!(
                "{} is a directory: use -r to add it",
                path.display()
            )));
        }
        self.entries.push(Entry::Dir { name: name.clone() });
        let mut children: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| io_error(path, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| io_error(path, e))?;
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let child_name = child.file_name().to_string_lossy().into_owned();
            if child_name.starts_with('.') && !hidden {
                continue;
            }
            self.add(
                &child.path(),
                format!("{name}/{child_name}"),
                recursive,
                hidden,
            )?;
        }
        Ok(())
    }

    /// Bytes of file content to send.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// The upload's `Content-Type`.
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    /// The body: read on a blocking thread, chunk by chunk; `sent` counts
    /// the file bytes handed over.
    pub fn into_body(self, sent: Arc<AtomicU64>) -> UploadBody {
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || self.produce(&tx, &sent));
        UploadBody { rx }
    }

    fn produce(&self, tx: &mpsc::Sender<std::io::Result<Bytes>>, sent: &AtomicU64) {
        use std::io::Read;
        let b = &self.boundary;
        let send = |data: Bytes| tx.blocking_send(Ok(data)).is_ok();
        for entry in &self.entries {
            let (name, kind) = match entry {
                Entry::Dir { name } => (name, "application/x-directory"),
                Entry::File { name, .. } => (name, "application/octet-stream"),
            };
            let head = format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
                 Content-Type: {kind}\r\n\r\n",
                escape(name)
            );
            if !send(Bytes::from(head)) {
                return;
            }
            if let Entry::File { path, .. } = entry {
                let mut file = match std::fs::File::open(path) {
                    Ok(f) => f,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                loop {
                    let mut buf = vec![0; CHUNK_BYTES];
                    match file.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            buf.truncate(n);
                            sent.fetch_add(n as u64, Ordering::Relaxed);
                            if !send(Bytes::from(buf)) {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    }
                }
            }
            if !send(Bytes::from_static(b"\r\n")) {
                return;
            }
        }
        let _ = send(Bytes::from(format!("--{b}--\r\n")));
    }
}

/// A boundary long and random enough not to occur in the files (they are
/// streamed, so it cannot be checked against them).
fn random_boundary() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::from("ipfscluster-");
    for i in 0..3u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// The request body of an upload.
pub struct UploadBody {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
}

impl hyper::body::Body for UploadBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| c.map(Frame::data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_directory_becomes_kubo_add_parts() {
        use http_body_util::BodyExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let top = dir.path().join("site");
        std::fs::create_dir_all(top.join("sub")).expect("mkdir");
        std::fs::write(top.join("index.html"), "<p>hi</p>").expect("write");
        std::fs::write(top.join("sub/a b.txt"), "x").expect("write");
        std::fs::write(top.join(".hidden"), "h").expect("write");
        assert!(AddFiles::walk(std::slice::from_ref(&top), false, false).is_err());
        let files = AddFiles::walk(&[top], true, false).expect("walk");
        assert_eq!(files.total_bytes(), 10);
        let ct = files.content_type();
        let sent = Arc::new(AtomicU64::new(0));
        let body = files
            .into_body(Arc::clone(&sent))
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(sent.load(Ordering::Relaxed), 10);
        let parts = crate::ipfs::multipart::parts(&ct, &body).expect("parts");
        let names: Vec<_> = parts.iter().map(|p| (p.name.as_str(), p.is_dir)).collect();
        assert_eq!(
            names,
            [
                ("site", true),
                ("site/index.html", false),
                ("site/sub", true),
                ("site/sub/a b.txt", false)
            ]
        );
        assert_eq!(parts[1].data, b"<p>hi</p>");
    }
}

//! The cluster's mark: a durable record of the pins the cluster's pin
//! operations made on this daemon.
//!
//! Kubo ≥ 0.26 can name pins, but js-ipfs (and older Kubo) cannot, and a
//! pin's name is the user's to change anyway; so the connector keeps its own
//! record in `data_dir`, which works the same against every daemon. It is an
//! append-only log of `+ <cid> <max_depth>` and `- <cid>` lines, each synced
//! before the call that wrote it returns. Opening replays it; a torn last
//! line (a crash mid-write) is cut off; when the log holds many more lines
//! than live marks it is rewritten (temp file, fsync, rename, fsync of the
//! directory), so it stays proportional to the cluster's pins.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use cluster_core::Cid;

/// The log's file name inside `data_dir`.
pub const MARKS_FILE: &str = "ipfs-cluster-pins.log";
/// The first line of every log: names the format.
const HEADER: &str = "# ipfs-cluster-rs pins made by the cluster, v1";
/// Compaction runs when the log has this many lines beyond twice the marks
/// (few in unit tests, so compaction runs without thousands of fsyncs).
const COMPACT_SLACK_LINES: usize = if cfg!(test) { 16 } else { 4096 };

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A complete line of the log is not a record (not a crash artefact:
    /// crashes only tear the last line).
    #[error("{path} line {line}: not a pin record: {text:?}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line (clipped).
        text: String,
    },
}

impl From<MarkError> for crate::ipfs::IpfsError {
    fn from(e: MarkError) -> Self {
        crate::ipfs::IpfsError::Storage {
            reason: e.to_string(),
        }
    }
}

/// The record: which CIDs carry the cluster's mark, with the depth the
/// cluster pinned them with.
pub struct Marks {
    dir: PathBuf,
    path: PathBuf,
    log: File,
    marks: HashMap<Cid, i32>,
    lines: usize,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MarkError {
    let path = path.to_path_buf();
    move |source| MarkError::Io { what, path, source }
}

impl Marks {
    /// Opens (creating it if needed) the record in `dir`.
    pub fn open(dir: &Path) -> Result<Marks, MarkError> {
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let path = dir.join(MARKS_FILE);
        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        let mut text = Vec::new();
        log.read_to_end(&mut text).map_err(io("reading", &path))?;
        let (marks, lines, valid_len) = replay(&path, &text)?;
        if valid_len < text.len() {
            // A torn tail from a crash: cut it so the next line starts clean.
            log.set_len(valid_len as u64)
                .map_err(io("truncating", &path))?;
            log.sync_all().map_err(io("syncing", &path))?;
        }
        let mut marks = Marks {
            dir: dir.to_path_buf(),
            path,
            log,
            marks,
            lines,
        };
        if lines == 0 {
            marks.rewrite()?; // A new log: write the header durably.
        }
        Ok(marks)
    }

    /// The depth the cluster pinned `cid` with, if it carries the mark.
    pub fn get(&self, cid: &Cid) -> Option<i32> {
        self.marks.get(cid).copied()
    }

    /// How many CIDs carry the mark.
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    /// True when no CID carries the mark.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    /// Marks `cid` as the cluster's, durably.
    pub fn add(&mut self, cid: &Cid, max_depth: i32) -> Result<(), MarkError> {
        if self.marks.get(cid) == Some(&max_depth) {
            return Ok(());
        }
        self.append(&format!("+ {cid} {max_depth}\n"))?;
        self.marks.insert(cid.clone(), max_depth);
        Ok(())
    }

    /// Removes the cluster's mark from `cid`, durably.
    pub fn remove(&mut self, cid: &Cid) -> Result<(), MarkError> {
        if !self.marks.contains_key(cid) {
            return Ok(());
        }
        self.append(&format!("- {cid}\n"))?;
        self.marks.remove(cid);
        self.maybe_compact()
    }

    fn append(&mut self, line: &str) -> Result<(), MarkError> {
        self.log
            .write_all(line.as_bytes())
            .map_err(io("appending to", &self.path))?;
        self.log.sync_data().map_err(io("syncing", &self.path))?;
        self.lines += 1;
        Ok(())
    }

    fn maybe_compact(&mut self) -> Result<(), MarkError> {
        if self.lines > 2 * self.marks.len() + COMPACT_SLACK_LINES {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Replaces the log by one line per live mark, atomically.
    fn rewrite(&mut self) -> Result<(), MarkError> {
        let tmp = self.dir.join(format!("{MARKS_FILE}.tmp"));
        let file = File::create(&tmp).map_err(io("creating", &tmp))?;
        let mut w = BufWriter::new(file);
        let mut write = || -> std::io::Result<()> {
            writeln!(w, "{HEADER}")?;
            for (cid, depth) in &self.marks {
                writeln!(w, "+ {cid} {depth}")?;
            }
            w.flush()?;
            w.get_ref().sync_all()
        };
        write().map_err(io("writing", &tmp))?;
        drop(w);
        fs::rename(&tmp, &self.path).map_err(io("renaming onto", &self.path))?;
        // The rename is durable only once the directory is.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing", &self.dir))?;
        self.log = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io("opening", &self.path))?;
        self.lines = 1 + self.marks.len();
        Ok(())
    }
}

/// The record shared by a connector's tasks (a poisoned lock is still the
/// record: every change to it is one synced line).
pub fn lock(m: &std::sync::Mutex<Marks>) -> std::sync::MutexGuard<'_, Marks> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Marks `cid` (pinned to `max_depth`) off the async workers: the record
/// syncs to disk.
pub async fn add_off_thread(
    marks: &std::sync::Arc<std::sync::Mutex<Marks>>,
    cid: &Cid,
    max_depth: i32,
) -> Result<(), crate::ipfs::IpfsError> {
    let (marks, cid) = (std::sync::Arc::clone(marks), cid.clone());
    tokio::task::spawn_blocking(move || lock(&marks).add(&cid, max_depth))
        .await
        .map_err(|e| crate::ipfs::IpfsError::Storage {
            reason: format!("marking task failed: {e}"),
        })?
        .map_err(crate::ipfs::IpfsError::from)
}

/// Removes the mark of `cid` off the async workers.
pub async fn remove_off_thread(
    marks: &std::sync::Arc<std::sync::Mutex<Marks>>,
    cid: &Cid,
) -> Result<(), crate::ipfs::IpfsError> {
    let (marks, cid) = (std::sync::Arc::clone(marks), cid.clone());
    tokio::task::spawn_blocking(move || lock(&marks).remove(&cid))
        .await
        .map_err(|e| crate::ipfs::IpfsError::Storage {
            reason: format!("unmarking task failed: {e}"),
        })?
        .map_err(crate::ipfs::IpfsError::from)
}

/// Replays a log's bytes: the marks, the number of complete lines, and the
/// length of the valid prefix (everything up to the last newline).
/// Public for the fuzz targets in `fuzz/` (not an API).
#[doc(hidden)]
pub fn replay(path: &Path, text: &[u8]) -> Result<(HashMap<Cid, i32>, usize, usize), MarkError> {
    let valid_len = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut marks = HashMap::new();
    let mut lines = 0;
    for (i, raw) in text[..valid_len].split(|&b| b == b'\n').enumerate() {
        let corrupt = || MarkError::Corrupt {
            path: path.to_path_buf(),
            line: i + 1,
            text: String::from_utf8_lossy(raw).chars().take(100).collect(),
        };
        let line = std::str::from_utf8(raw).map_err(|_| corrupt())?;
        if line.is_empty() {
            continue; // What follows the last newline.
        }
        lines += 1;
        if line.starts_with('#') {
            continue;
        }
        let mut words = line.split(' ');
        let (op, cid, depth) = (words.next(), words.next(), words.next());
        let cid = cid.and_then(|c| Cid::parse(c).ok()).ok_or_else(corrupt)?;
        match (op, depth, words.next()) {
            (Some("+"), Some(depth), None) => {
                let depth = depth.parse().map_err(|_| corrupt())?;
                marks.insert(cid, depth);
            }
            (Some("-"), None, None) => {
                marks.remove(&cid);
            }
            _ => return Err(corrupt()),
        }
    }
    Ok((marks, lines, valid_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u8) -> Cid {
        // A CIDv1 raw sha2-256 with a made-up digest.
        let mut bytes = vec![0x01, 0x55, 0x12, 0x20];
        bytes.extend([n; 32]);
        Cid::from_bytes(&bytes).expect("valid CID")
    }

    #[test]
    fn marks_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut m = Marks::open(dir.path()).expect("open");
            assert!(m.is_empty());
            m.add(&cid(1), -1).expect("add");
            m.add(&cid(2), 0).expect("add");
            m.add(&cid(3), 5).expect("add");
            m.remove(&cid(2)).expect("remove");
        }
        let m = Marks::open(dir.path()).expect("reopen");
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&cid(1)), Some(-1));
        assert_eq!(m.get(&cid(2)), None);
        assert_eq!(m.get(&cid(3)), Some(5));
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut m = Marks::open(dir.path()).expect("open");
            m.add(&cid(1), -1).expect("add");
        }
        let path = dir.path().join(MARKS_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(format!("+ {}", cid(2)).as_bytes())
            .expect("write");
        drop(f);
        {
            let mut m = Marks::open(dir.path()).expect("reopen");
            assert_eq!(m.get(&cid(1)), Some(-1));
            assert_eq!(m.get(&cid(2)), None);
            m.add(&cid(3), 0).expect("add after the cut");
        }
        let m = Marks::open(dir.path()).expect("reopen again");
        assert_eq!((m.get(&cid(1)), m.get(&cid(3))), (Some(-1), Some(0)));
    }

    #[test]
    fn a_corrupt_complete_line_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join(MARKS_FILE),
            format!("{HEADER}\n+ nonsense 1\n"),
        )
        .expect("write");
        assert!(matches!(
            Marks::open(dir.path()),
            Err(MarkError::Corrupt { line: 2, .. })
        ));
        fs::write(dir.path().join(MARKS_FILE), format!("* {} 1\n", cid(1))).expect("write");
        assert!(matches!(
            Marks::open(dir.path()),
            Err(MarkError::Corrupt { line: 1, .. })
        ));
    }

    #[test]
    fn the_log_is_compacted_when_mostly_dead() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = Marks::open(dir.path()).expect("open");
        for round in 0..(COMPACT_SLACK_LINES * 2) {
            let n = (round % 200) as u8;
            m.add(&cid(n), -1).expect("add");
            m.remove(&cid(n)).expect("remove");
        }
        m.add(&cid(7), 0).expect("add");
        assert!(
            m.lines <= 2 + COMPACT_SLACK_LINES,
            "compacted: {} lines",
            m.lines
        );
        drop(m);
        let m = Marks::open(dir.path()).expect("reopen");
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(&cid(7)), Some(0));
    }
}

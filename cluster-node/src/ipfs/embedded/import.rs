//! UnixFS import into the embedded node: a multipart upload in Kubo's `add`
//! encoding, split as it streams in ([`crate::ipfs::multipart`]), each file
//! chunked and stored block by block, then the directories built. What
//! `POST /add` (REST API) and `add` (the node's RPC API, behind the proxy)
//! both run.
//!
//! Kubo's defaults are kept so the same file gives the same CID as a Kubo
//! daemon: CIDv0, 256 KiB chunks, dag-pb leaves for CIDv0 and raw leaves for
//! CIDv1, balanced layout (174 links per node), sha2-256. Not supported:
//! the trickle layout, rabin/buzhash chunkers and hashes other than
//! sha2-256 (refused, never silently changed).

use std::collections::BTreeMap;

use ::cid::Version;
use futures_util::{Stream, StreamExt};
use multihash_codetable::Code;
use rust_ipfs::repo::{DefaultStorage, Repo};
use rust_ipfs::Block;
use rust_unixfs::dir::builder::{BufferingTreeBuilder, TreeOptions};
use rust_unixfs::file::adder::{Chunker, FileAdder, FileAdderBuilder};
use rust_unixfs::Metadata;
use tokio::sync::mpsc;

use super::{from_node_cid, IpfsError};
use crate::ipfs::multipart::{Event, Splitter};
use crate::ipfs::AddedFile;

/// Largest chunk size `chunker=size-N` may ask for (Kubo's limit).
pub const MAX_CHUNK_SIZE: usize = 1024 * 1024;

/// How an import chunks, names and stores what it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// CID version of the nodes made.
    pub cid_version: Version,
    /// Raw leaves (`None`: Kubo's default for the version).
    pub raw_leaves: Option<bool>,
    /// Bytes per leaf.
    pub chunk_size: usize,
    /// Put every top-level entry in one unnamed directory.
    pub wrap: bool,
    /// Compute the CIDs without storing a block (`only-hash`).
    pub only_hash: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            cid_version: Version::V0,
            raw_leaves: None,
            chunk_size: 256 * 1024,
            wrap: false,
            only_hash: false,
        }
    }
}

/// Go's `strconv.ParseBool`, as Kubo reads its flags.
pub fn go_bool(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(format!("{name}: {other:?} is not a boolean")),
    }
}

impl ImportOptions {
    /// Reads Kubo's `add` parameters; unknown ones are ignored as Kubo's
    /// output-only flags (`quiet`, `progress`, `pin` …) are here.
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ImportOptions, String> {
        let mut out = ImportOptions::default();
        for (key, value) in params {
            match key {
                "cid-version" => {
                    out.cid_version = match value {
                        "0" => Version::V0,
                        "1" => Version::V1,
                        other => return Err(format!("unknown CID version {other:?}")),
                    }
                }
                "raw-leaves" => out.raw_leaves = Some(go_bool(key, value)?),
                "wrap-with-directory" | "w" => out.wrap = go_bool(key, value)?,
                "only-hash" | "n" => out.only_hash = go_bool(key, value)?,
                "trickle" | "t" if go_bool(key, value)? => {
                    return Err("the trickle layout needs an external IPFS daemon".into())
                }
                "hash" if value != "sha2-256" => {
                    return Err(format!(
                        "hash {value:?} needs an external IPFS daemon (sha2-256 only)"
                    ))
                }
                "chunker" | "s" => out.chunk_size = chunk_size(value)?,
                "inline" if go_bool(key, value)? => {
                    return Err("inline CIDs need an external IPFS daemon".into())
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn file_adder(&self) -> FileAdder {
        let mut builder = FileAdderBuilder::default()
            .with_chunker(Chunker::Size(self.chunk_size))
            .with_cid_version(self.cid_version)
            .with_hasher(Code::Sha2_256);
        if let Some(raw) = self.raw_leaves {
            builder = builder.with_raw_leaves(raw);
        }
        builder.build()
    }

    fn tree(&self) -> BufferingTreeBuilder {
        let mut opts = TreeOptions::default();
        opts.cid_version(self.cid_version);
        if self.wrap {
            opts.wrap_with_directory();
        }
        BufferingTreeBuilder::new(opts)
    }
}

/// `size-N` (or the default `size-262144`) as a byte count.
fn chunk_size(spec: &str) -> Result<usize, String> {
    let n = spec
        .strip_prefix("size-")
        .ok_or_else(|| format!("chunker {spec:?} needs an external IPFS daemon (size-N only)"))?
        .parse::<usize>()
        .map_err(|_| format!("chunker {spec:?}: not a size"))?;
    if n == 0 || n > MAX_CHUNK_SIZE {
        return Err(format!(
            "chunker {spec:?}: the size must be between 1 and {MAX_CHUNK_SIZE}"
        ));
    }
    Ok(n)
}

/// Where an import puts its blocks.
struct Store<'a> {
    repo: &'a Repo<DefaultStorage>,
    only_hash: bool,
}

impl Store<'_> {
    /// Stores `blocks`, returning the bytes they take (a DAG's cumulative size).
    async fn put(
        &self,
        blocks: impl Iterator<Item = (::cid::Cid, Vec<u8>)>,
    ) -> Result<(u64, Option<::cid::Cid>), IpfsError> {
        let mut size = 0u64;
        let mut last = None;
        let mut batch = Vec::new();
        for (cid, data) in blocks {
            size += data.len() as u64;
            last = Some(cid);
            if !self.only_hash {
                batch.push(Block::new(cid, data).map_err(|e| failed(e.to_string()))?);
            }
        }
        if !batch.is_empty() {
            self.repo
                .put_blocks(batch)
                .await
                .map_err(|e| failed(format!("storing blocks: {e}")))?;
        }
        Ok((size, last))
    }
}

fn failed(message: String) -> IpfsError {
    IpfsError::Daemon {
        path: "add".into(),
        message,
    }
}

/// A file being read: its path, its adder and the size of what it stored.
struct OpenFile {
    name: String,
    adder: FileAdder,
    dag_size: u64,
}

/// The directory trees of an import: one per top-level directory, or one
/// wrapping everything.
struct Trees {
    options: ImportOptions,
    trees: BTreeMap<String, BufferingTreeBuilder>,
}

impl Trees {
    fn tree_of(&mut self, path: &str) -> &mut BufferingTreeBuilder {
        let key = if self.options.wrap {
            String::new()
        } else {
            path.split('/').next().unwrap_or_default().to_string()
        };
        let options = &self.options;
        self.trees.entry(key).or_insert_with(|| options.tree())
    }

    fn add_file(&mut self, path: &str, cid: ::cid::Cid, size: u64) -> Result<(), IpfsError> {
        if !self.options.wrap && !path.contains('/') {
            return Ok(()); // A top-level file is a root of its own.
        }
        self.tree_of(path)
            .put_link(path, cid, size)
            .map_err(|e| failed(format!("{path}: {e}")))
    }

    fn add_dir(&mut self, path: &str) -> Result<(), IpfsError> {
        self.tree_of(path)
            .set_metadata(path, Metadata::default())
            .map_err(|e| failed(format!("{path}: {e}")))
    }
}

/// Cleans a part's name as Kubo does: no leading or trailing slash.
fn clean_name(name: &str) -> Result<String, IpfsError> {
    let name = name.trim_matches('/');
    if name.is_empty()
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(failed(format!("invalid file name {name:?} in the upload")));
    }
    Ok(name.to_string())
}

/// Imports the upload `body` (of `content_type`) into `repo`, sending every
/// file and directory made on `added` as it is done (files in upload
/// order, then directories deepest first, the root last). Nothing is
/// pinned.
pub async fn import<S>(
    repo: &Repo<DefaultStorage>,
    options: &ImportOptions,
    content_type: &str,
    mut body: S,
    added: &mpsc::Sender<AddedFile>,
) -> Result<(), IpfsError>
where
    S: Stream<Item = Result<Vec<u8>, String>> + Unpin,
{
    let mut splitter = Splitter::new(content_type).map_err(failed)?;
    let store = Store {
        repo,
        only_hash: options.only_hash,
    };
    // Blocks stored by an import are not collected before it ends.
    let _gc = repo.gc_guard().await;
    let mut trees = Trees {
        options: options.clone(),
        trees: BTreeMap::new(),
    };
    let mut file: Option<OpenFile> = None;
    let mut parts = 0usize;
    let mut events = Vec::new();
    let report = |f: AddedFile| async move {
        // A client that went away stops hearing; the import still completes.
        let _ = added.send(f).await;
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(failed)?;
        splitter.push(&chunk, &mut events).map_err(failed)?;
        for event in events.drain(..) {
            match event {
                Event::Start { name, is_dir } => {
                    parts += 1;
                    let name = clean_name(&name)?;
                    if is_dir {
                        trees.add_dir(&name)?;
                    } else {
                        file = Some(OpenFile {
                            name,
                            adder: options.file_adder(),
                            dag_size: 0,
                        });
                    }
                }
                Event::Data(mut data) => {
                    let Some(f) = file.as_mut() else { continue };
                    let mut at = 0;
                    while at < data.len() {
                        let (blocks, used) = f.adder.push(&data[at..]);
                        let blocks: Vec<_> = blocks.collect();
                        f.dag_size += store.put(blocks.into_iter()).await?.0;
                        at += used;
                    }
                    data.clear();
                }
                Event::End => {
                    let Some(f) = file.take() else { continue };
                    let (size, root) = store.put(f.adder.finish()).await?;
                    let root = root.ok_or_else(|| failed(format!("{}: no root", f.name)))?;
                    let size = f.dag_size + size;
                    trees.add_file(&f.name, root, size)?;
                    report(AddedFile {
                        name: f.name,
                        cid: from_node_cid("add", &root)?,
                        size,
                    })
                    .await;
                }
            }
        }
    }
    splitter.finish().map_err(failed)?;
    if parts == 0 {
        return Err(failed("the upload has no file".into()));
    }
    for (_, tree) in std::mem::take(&mut trees.trees) {
        let mut nodes = tree.build();
        while let Some(node) = nodes.next_borrowed() {
            let node = node.map_err(|e| failed(format!("building a directory: {e}")))?;
            let (cid, path, total) = (*node.cid, node.path.to_string(), node.total_size);
            store
                .put(std::iter::once((cid, node.block.to_vec())))
                .await?;
            report(AddedFile {
                name: path,
                cid: from_node_cid("add", &cid)?,
                size: total,
            })
            .await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubo_parameters_are_read_and_unsupported_ones_refused() {
        let o = ImportOptions::from_params([("cid-version", "1"), ("chunker", "size-1000")])
            .expect("options");
        assert_eq!(o.cid_version, Version::V1);
        assert_eq!(o.chunk_size, 1000);
        let o = ImportOptions::from_params([("wrap-with-directory", "true"), ("quiet", "1")])
            .expect("options");
        assert!(o.wrap);
        for bad in [
            ("chunker", "rabin-1-2-3"),
            ("chunker", "size-0"),
            ("chunker", "size-99999999"),
            ("hash", "blake2b-256"),
            ("trickle", "true"),
            ("cid-version", "7"),
            ("raw-leaves", "maybe"),
        ] {
            let err = ImportOptions::from_params([bad]).expect_err("refused");
            assert!(!err.is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_cleaned_and_escapes_refused() {
        assert_eq!(clean_name("/a/b/").expect("ok"), "a/b");
        for bad in ["", "/", "a//b", "a/../b", "./a"] {
            assert!(clean_name(bad).is_err(), "{bad:?}");
        }
    }
}

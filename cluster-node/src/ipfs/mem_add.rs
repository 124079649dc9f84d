//! An in-memory `add` for the connectors that have no daemon (the
//! simulator's, the tests'): it reads the whole upload, splits its
//! multipart parts and names every file and directory with a stand-in CID
//! derived from its content (deterministic, not what IPFS would compute).
//! It keeps the shape of a real add: files first in upload order, then
//! directories deepest first, the root last.

use std::collections::BTreeMap;
use std::hash::Hasher;

use cluster_core::Cid;

use super::multipart::{parts, Part};
use super::{AddRequest, AddedFile, IpfsError};

/// Multicodec of raw leaves.
const RAW: u8 = 0x55;
/// Multicodec of UnixFS directories (dag-pb).
const DAG_PB: u8 = 0x70;

/// A stand-in CIDv1 for `content` (sha2-256 shaped, std hashes inside).
fn stand_in_cid(codec: u8, content: &[u8]) -> Result<Cid, String> {
    let mut bytes = vec![0x01, codec, 0x12, 0x20];
    for seed in 0u64..4 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write_u64(seed);
        h.write(content);
        bytes.extend_from_slice(&h.finish().to_be_bytes());
    }
    Cid::from_bytes(&bytes).map_err(|e| e.to_string())
}

/// Names every file and directory of a whole upload, in a real add's order.
pub fn add_parts(parts: &[Part], wrap: bool) -> Result<Vec<AddedFile>, String> {
    let mut files = Vec::new();
    // Directory path → its entries (name, cid bytes, size).
    let mut dirs: BTreeMap<String, Vec<(String, Vec<u8>, u64)>> = BTreeMap::new();
    let parent = |path: &str| -> String {
        path.rsplit_once('/')
            .map(|(p, _)| p.to_string())
            .unwrap_or_default()
    };
    for p in parts {
        let path = p.name.trim_matches('/').to_string();
        if p.is_dir {
            dirs.entry(path.clone()).or_default();
        } else {
            let cid = stand_in_cid(RAW, &p.data)?;
            let size = p.data.len() as u64;
            dirs.entry(parent(&path)).or_default().push((
                path.clone(),
                cid.as_bytes().to_vec(),
                size,
            ));
            files.push(AddedFile {
                name: path,
                cid,
                size,
            });
        }
    }
    // Directories deepest first, so children are named before parents.
    let mut order: Vec<String> = dirs.keys().filter(|d| !d.is_empty()).cloned().collect();
    order.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
    let mut out = files;
    for dir in order {
        let entries = dirs.get(&dir).cloned().unwrap_or_default();
        let (cid, size) = dir_cid(&entries)?;
        dirs.entry(parent(&dir))
            .or_default()
            .push((dir.clone(), cid.as_bytes().to_vec(), size));
        out.push(AddedFile {
            name: dir,
            cid,
            size,
        });
    }
    if wrap {
        let entries = dirs.get("").cloned().unwrap_or_default();
        let (cid, size) = dir_cid(&entries)?;
        out.push(AddedFile {
            name: String::new(),
            cid,
            size,
        });
    }
    Ok(out)
}

fn dir_cid(entries: &[(String, Vec<u8>, u64)]) -> Result<(Cid, u64), String> {
    let mut content = Vec::new();
    let mut size = 0;
    for (name, cid, s) in entries {
        content.extend_from_slice(name.as_bytes());
        content.push(0);
        content.extend_from_slice(cid);
        size += s;
    }
    Ok((stand_in_cid(DAG_PB, &content)?, size))
}

/// Runs a whole in-memory add: reads the body (at most `max_bytes`),
/// names its files, reports them on `request.added` and returns them.
pub async fn add_in_memory(
    mut request: AddRequest,
    max_bytes: usize,
) -> Result<Vec<AddedFile>, IpfsError> {
    let failed = |reason: String| IpfsError::Daemon {
        path: "add".into(),
        message: reason,
    };
    let mut body = Vec::new();
    while let Some(chunk) = request.body.recv().await {
        let chunk = chunk.map_err(failed)?;
        if body.len() + chunk.len() > max_bytes {
            return Err(failed(format!("upload larger than {max_bytes} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let parts = parts(&request.content_type, &body).map_err(failed)?;
    let wrap = request
        .options
        .iter()
        .any(|(k, v)| k == "wrap-with-directory" && v == "true");
    let added = add_parts(&parts, wrap).map_err(failed)?;
    for file in &added {
        if request.added.send(file.clone()).await.is_err() {
            break;
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(boundary: &str, parts: &[(&str, bool, &str)]) -> Vec<u8> {
        let mut out = String::new();
        for (name, dir, data) in parts {
            let kind = if *dir {
                "application/x-directory"
            } else {
                "application/octet-stream"
            };
            out.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"{name}\"\r\nContent-Type: {kind}\r\n\r\n{data}\r\n"
            ));
        }
        out.push_str(&format!("--{boundary}--\r\n"));
        out.into_bytes()
    }

    #[test]
    fn files_come_first_and_the_root_last() {
        let ps = parts(
            "multipart/form-data; boundary=B",
            &body(
                "B",
                &[
                    ("top", true, ""),
                    ("top/sub", true, ""),
                    ("top/sub/x", false, "x"),
                    ("top/y", false, "yy"),
                ],
            ),
        )
        .expect("parts");
        let added = add_parts(&ps, false).expect("add");
        let names: Vec<_> = added.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["top/sub/x", "top/y", "top/sub", "top"]);
        assert_eq!(added[3].size, 3);
        // Same content, same CID; different content, different CID.
        let again = add_parts(&ps, false).expect("add");
        assert_eq!(added, again);
        assert_ne!(added[0].cid, added[1].cid);
        let wrapped = add_parts(&ps, true).expect("add");
        assert_eq!(wrapped.last().map(|a| a.name.as_str()), Some(""));
    }
}

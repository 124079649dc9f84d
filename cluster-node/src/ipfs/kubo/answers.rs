//! Parsing the daemon's answer bodies into typed values.
//!
//! Pure functions over bytes, so every shape seen from Kubo and js-ipfs is
//! unit-tested with recorded bodies. Differences tolerated on purpose:
//! numbers sent as JSON strings (js-ipfs' `repo/stat`), CIDs in any multibase
//! (js-ipfs answers base58btc, Kubo base32), `pin/ls` as a stream of objects
//! (with or without newlines between them) or as one `{"Keys":{…}}` map, and
//! `null` for empty lists. Nothing here panics on any input.

use cluster_core::tracker::IpfsPinType;
use cluster_core::Cid;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

/// Why an answer body was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The body is not the JSON expected.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// A stream carried an error object in place of data.
    #[error("{0}")]
    StreamedError(String),
}

fn malformed(what: impl std::fmt::Display) -> AnswerError {
    AnswerError::Malformed(what.to_string())
}

/// Every JSON value of a body holding one value or a stream of them
/// (newline-separated or simply concatenated).
fn values(body: &[u8]) -> Result<Vec<Value>, AnswerError> {
    let mut out = Vec::new();
    for value in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        let value = value.map_err(malformed)?;
        // Kubo ends a failed stream with an error object instead of data.
        if let Some(message) = streamed_error(&value) {
            return Err(AnswerError::StreamedError(message));
        }
        out.push(value);
    }
    Ok(out)
}

fn streamed_error(value: &Value) -> Option<String> {
    let obj = value.as_object()?;
    if obj.get("Type").and_then(Value::as_str) == Some("error") {
        let message = obj.get("Message").and_then(Value::as_str).unwrap_or("");
        return Some(message.to_string());
    }
    None
}

fn one<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, AnswerError> {
    let mut all = values(body)?;
    if all.len() != 1 {
        return Err(malformed(format!(
            "{} JSON values, expected one",
            all.len()
        )));
    }
    let value = all.remove(0);
    // Every one-value answer is an object (serde would take `[]` for a
    // struct whose fields all have defaults).
    if !value.is_object() {
        return Err(malformed("answer is not a JSON object"));
    }
    serde_json::from_value(value).map_err(malformed)
}

fn cid_of(text: &str) -> Result<Cid, AnswerError> {
    Cid::parse(text).map_err(malformed)
}

/// An error answer's body: `{"Message":…,"Code":…,"Type":"error"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    /// The daemon's message.
    #[serde(rename = "Message")]
    pub message: String,
    /// The daemon's error code (0 normal, 1 client error, …).
    #[serde(rename = "Code", default)]
    pub code: i64,
}

/// The error body of a failed call, if it has the usual shape.
pub fn error_body(body: &[u8]) -> Option<ErrorBody> {
    serde_json::from_slice(body).ok()
}

/// True when a daemon's error message says the CID is simply not pinned
/// (Kubo: `not pinned or pinned indirectly`, `path '…' is not pinned`;
/// js-ipfs: `… is not pinned`).
pub fn says_not_pinned(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("not pinned") || m.contains("pinned indirectly")
}

/// A `u64` sent as a JSON number or as a string of digits.
fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| de::Error::custom(format!("not a u64: {n}"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("not a u64: {s:?}"))),
        other => Err(de::Error::custom(format!("not a number: {other}"))),
    }
}

#[derive(Deserialize)]
struct RepoStatBody {
    #[serde(rename = "RepoSize", deserialize_with = "number_or_string")]
    repo_size: u64,
    #[serde(rename = "StorageMax", deserialize_with = "number_or_string")]
    storage_max: u64,
}

/// `repo/stat`: `{"RepoSize":…,"StorageMax":…}` with numbers or strings.
pub fn repo_stat(body: &[u8]) -> Result<crate::ipfs::RepoStat, AnswerError> {
    let b: RepoStatBody = one(body)?;
    Ok(crate::ipfs::RepoStat {
        repo_size: b.repo_size,
        storage_max: b.storage_max,
    })
}

/// `repo/gc?stream-errors=true`: one `{"Key":{"/":…}}` per removed block,
/// `{"Error":…}` per error.
pub fn repo_gc(body: &[u8]) -> Result<Vec<crate::ipfs::GcEntry>, AnswerError> {
    values(body)?
        .into_iter()
        .map(|v| {
            let obj = v
                .as_object()
                .ok_or_else(|| malformed("gc entry is not a JSON object"))?;
            let key = match obj.get("Key") {
                Some(Value::Object(link)) => {
                    link.get("/").and_then(Value::as_str).map(str::to_string)
                }
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            };
            let error = obj
                .get("Error")
                .and_then(Value::as_str)
                .filter(|e| !e.is_empty())
                .map(str::to_string);
            Ok(crate::ipfs::GcEntry { key, error })
        })
        .collect()
}

#[derive(Deserialize)]
struct IdBody {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Addresses", default)]
    addresses: Option<Vec<Value>>,
}

/// True for text that can be a peer id (base58btc `Qm…`/`12D3…`, or a
/// CIDv1 `k…`/`b…` form): non-empty, letters and digits only.
fn looks_like_peer_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= 128 && text.chars().all(|c| c.is_ascii_alphanumeric())
}

/// `id`: the peer id (checked) and its multiaddrs (anything that is not a
/// multiaddr string is skipped, as upstream does).
pub fn id(body: &[u8]) -> Result<crate::ipfs::IpfsId, AnswerError> {
    let b: IdBody = one(body)?;
    if !looks_like_peer_id(&b.id) {
        return Err(malformed(format!("not a peer id: {:?}", b.id)));
    }
    let addresses = b
        .addresses
        .unwrap_or_default()
        .into_iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .filter(|a| a.starts_with('/'))
        .collect();
    Ok(crate::ipfs::IpfsId {
        peer_id: b.id,
        addresses,
    })
}

/// The daemon's version (`version`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct DaemonVersion {
    /// The version, e.g. `0.29.0` (Kubo) or `0.18.1` (js-ipfs' core).
    #[serde(rename = "Version")]
    pub version: String,
    /// The source commit, when reported.
    #[serde(rename = "Commit", default)]
    pub commit: String,
    /// The repo format version, when reported.
    #[serde(rename = "Repo", default)]
    pub repo: String,
}

/// `version`: `{"Version":…,"Commit":…,"Repo":…,…}`.
pub fn version(body: &[u8]) -> Result<DaemonVersion, AnswerError> {
    let v: DaemonVersion = one(body)?;
    if v.version.is_empty() {
        return Err(malformed("empty Version"));
    }
    Ok(v)
}

/// How a `pin/ls` line's `Type` maps to the core's pin types: prefix
/// `recursive`, `direct`, prefix `indirect` (e.g. `indirect through Qm…`).
pub fn pin_type(text: &str) -> Result<IpfsPinType, AnswerError> {
    if text.starts_with("recursive") {
        Ok(IpfsPinType::Recursive { max_depth: None })
    } else if text == "direct" {
        Ok(IpfsPinType::Direct)
    } else if text.starts_with("indirect") {
        Ok(IpfsPinType::Indirect)
    } else {
        Err(malformed(format!("unknown pin type {text:?}")))
    }
}

#[derive(Deserialize)]
struct KeysEntry {
    #[serde(rename = "Type")]
    kind: String,
}

/// `pin/ls`: every `(cid, type)` listed, from a stream of
/// `{"Cid":…,"Type":…}` objects or from `{"Keys":{"<cid>":{"Type":…}}}`.
pub fn pin_list(body: &[u8]) -> Result<Vec<(Cid, IpfsPinType)>, AnswerError> {
    let mut out = Vec::new();
    for value in values(body)? {
        let Value::Object(mut obj) = value else {
            return Err(malformed("pin/ls line is not an object"));
        };
        if let Some(keys) = obj.remove("Keys") {
            if keys.is_null() {
                continue; // An empty pinset, as some versions print it.
            }
            let keys: std::collections::BTreeMap<String, KeysEntry> =
                serde_json::from_value(keys).map_err(malformed)?;
            for (cid, entry) in keys {
                out.push((cid_of(&cid)?, pin_type(&entry.kind)?));
            }
            continue;
        }
        let cid = obj.get("Cid").and_then(Value::as_str);
        let kind = obj.get("Type").and_then(Value::as_str);
        match (cid, kind) {
            (Some(cid), Some(kind)) => out.push((cid_of(cid)?, pin_type(kind)?)),
            _ => return Err(malformed("pin/ls line without Cid and Type")),
        }
    }
    Ok(out)
}

/// `pin/add` (and `pin/update`): a stream of `{"Progress":n}` objects ending
/// with `{"Pins":[…]}`; the CIDs in the last `Pins`.
pub fn pins_done(body: &[u8]) -> Result<Vec<Cid>, AnswerError> {
    let mut pins = None;
    for value in values(body)? {
        if let Some(list) = value.get("Pins") {
            let list: Option<Vec<String>> =
                serde_json::from_value(list.clone()).map_err(malformed)?;
            pins = Some(
                list.unwrap_or_default()
                    .iter()
                    .map(|c| cid_of(c))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        } else if value.get("Progress").is_none() {
            return Err(malformed("pin answer with neither Pins nor Progress"));
        }
    }
    pins.ok_or_else(|| malformed("pin answer without Pins"))
}

#[derive(Deserialize)]
struct PeerEntry {
    #[serde(rename = "Peer")]
    peer: String,
}

/// `swarm/peers`: the connected peers' ids (`"Peers":null` is none).
pub fn swarm_peers(body: &[u8]) -> Result<Vec<String>, AnswerError> {
    let mut b: serde_json::Map<String, Value> = one(body)?;
    // `"Peers":null` is none; no `Peers` at all is not this answer.
    let list = b
        .remove("Peers")
        .ok_or_else(|| malformed("swarm/peers answer without Peers"))?;
    let list: Option<Vec<PeerEntry>> = serde_json::from_value(list).map_err(malformed)?;
    let peers: Vec<String> = list
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.peer)
        .collect();
    if let Some(bad) = peers.iter().find(|p| !looks_like_peer_id(p)) {
        return Err(malformed(format!("not a peer id: {bad:?}")));
    }
    Ok(peers)
}

#[derive(Deserialize)]
struct BlockPutBody {
    #[serde(rename = "Key")]
    key: String,
}

/// `block/put`: `{"Key":"<cid>","Size":n}`; the block's CID.
pub fn block_put(body: &[u8]) -> Result<Cid, AnswerError> {
    let b: BlockPutBody = one(body)?;
    cid_of(&b.key)
}

/// `add`: a stream of `{"Name":…,"Hash":…,"Size":…}` objects (progress
/// objects carry no `Hash`); the root is the last one with a `Hash`.
pub fn added_root(body: &[u8]) -> Result<Cid, AnswerError> {
    let mut root = None;
    for value in values(body)? {
        if let Some(hash) = value.get("Hash") {
            let hash = hash
                .as_str()
                .ok_or_else(|| malformed("add: Hash is not a string"))?;
            root = Some(cid_of(hash)?);
        }
    }
    root.ok_or_else(|| malformed("add answer without Hash"))
}

/// One line of a streamed `add` answer: a file or directory stored
/// (`{"Name","Hash","Size"}`, sizes as numbers or strings), or `None` for
/// a progress line (`{"Name","Bytes"}`).
pub fn added_line(line: &[u8]) -> Result<Option<crate::ipfs::AddedFile>, AnswerError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(line).map_err(malformed)?;
    if let Some(message) = streamed_error(&value) {
        return Err(AnswerError::StreamedError(message));
    }
    let Some(hash) = value.get("Hash") else {
        return Ok(None);
    };
    let hash = hash
        .as_str()
        .ok_or_else(|| malformed("add: Hash is not a string"))?;
    let size = match value.get("Size") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().map_err(malformed)?,
        _ => 0,
    };
    let name = value
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(Some(crate::ipfs::AddedFile {
        name,
        cid: cid_of(hash)?,
        size,
    }))
}

#[derive(Deserialize)]
struct ResolveBody {
    #[serde(rename = "Path")]
    path: String,
}

/// `resolve`: `{"Path":"/ipfs/<cid>[/…]"}`; the path's root CID.
pub fn resolved(body: &[u8]) -> Result<Cid, AnswerError> {
    let b: ResolveBody = one(body)?;
    crate::ipfs::path::resolved_root(&b.path).map_err(malformed)
}

#[cfg(test)]
mod tests;

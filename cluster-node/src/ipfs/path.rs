//! IPFS paths (`/ipfs/<cid>/…`, `/ipns/<name>/…`, `/ipld/<cid>/…`): what
//! the REST API's path routes take and [`IpfsConnector::resolve`] resolves.
//!
//! Parsed as boxo's `path.NewPath` does for IPFS Cluster: a known
//! namespace, a root that is a CID for the immutable namespaces and any
//! non-empty name for `/ipns`, then any number of segments. Empty segments
//! (`a//b`, a trailing `/`) are dropped.
//!
//! [`IpfsConnector::resolve`]: super::IpfsConnector::resolve

use cluster_core::Cid;

/// Longest path accepted, in bytes (a path travels in a URL and in a query
/// string to the daemon).
pub const PATH_MAX_BYTES: usize = 4096;

/// The namespace of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// `/ipfs/<cid>/…`: immutable, UnixFS path segments.
    Ipfs,
    /// `/ipns/<name>/…`: a name (key or DNSLink domain) to look up first.
    Ipns,
    /// `/ipld/<cid>/…`: immutable, IPLD data-model path segments.
    Ipld,
}

impl Namespace {
    /// The namespace's name, as in the path.
    pub fn as_str(self) -> &'static str {
        match self {
            Namespace::Ipfs => "ipfs",
            Namespace::Ipns => "ipns",
            Namespace::Ipld => "ipld",
        }
    }
}

/// Why a path does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The first segment is not `ipfs`, `ipns` or `ipld`.
    #[error("path {0:?}: unknown namespace (want /ipfs, /ipns or /ipld)")]
    Namespace(String),
    /// Nothing after the namespace.
    #[error("path {0:?}: no root after the namespace")]
    NoRoot(String),
    /// The root of an immutable path is not a CID.
    #[error("path {path:?}: {reason}")]
    BadCid {
        /// The path (clipped).
        path: String,
        /// What the CID parser said.
        reason: String,
    },
    /// Longer than [`PATH_MAX_BYTES`].
    #[error("path of {0} bytes exceeds the limit of {PATH_MAX_BYTES} bytes")]
    TooLong(usize),
}

/// A parsed IPFS path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpfsPath {
    /// Its namespace.
    pub namespace: Namespace,
    /// The root: a CID's text for `/ipfs` and `/ipld`, a name for `/ipns`.
    pub root: String,
    /// The segments after the root.
    pub rest: Vec<String>,
}

fn clip(text: &str) -> String {
    text.chars().take(100).collect()
}

impl IpfsPath {
    /// Parses `/ns/root/seg/…` (the leading `/` may be missing, as in the
    /// REST API's route captures).
    pub fn parse(text: &str) -> Result<IpfsPath, PathError> {
        if text.len() > PATH_MAX_BYTES {
            return Err(PathError::TooLong(text.len()));
        }
        let mut segments = text.split('/').filter(|s| !s.is_empty());
        let namespace = match segments.next() {
            Some("ipfs") => Namespace::Ipfs,
            Some("ipns") => Namespace::Ipns,
            Some("ipld") => Namespace::Ipld,
            _ => return Err(PathError::Namespace(clip(text))),
        };
        let root = segments
            .next()
            .ok_or_else(|| PathError::NoRoot(clip(text)))?
            .to_string();
        if namespace != Namespace::Ipns {
            Cid::parse(&root).map_err(|e| PathError::BadCid {
                path: clip(text),
                reason: e.to_string(),
            })?;
        }
        Ok(IpfsPath {
            namespace,
            root,
            rest: segments.map(str::to_string).collect(),
        })
    }

    /// The CID a path names without asking IPFS: a bare `/ipfs/<cid>` (or
    /// `/ipld/<cid>`), which upstream pins without resolving.
    pub fn bare_cid(&self) -> Option<Cid> {
        if self.namespace == Namespace::Ipns || !self.rest.is_empty() {
            return None;
        }
        Cid::parse(&self.root).ok()
    }

    /// The same path in another namespace.
    pub fn with_namespace(&self, namespace: Namespace) -> IpfsPath {
        IpfsPath {
            namespace,
            ..self.clone()
        }
    }
}

impl std::fmt::Display for IpfsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}/{}", self.namespace.as_str(), self.root)?;
        for segment in &self.rest {
            write!(f, "/{segment}")?;
        }
        Ok(())
    }
}

/// The root CID of a resolved path as a daemon writes it
/// (`/ipfs/<cid>[/…]`). js-ipfs writes a CIDv0 with a base58 multibase
/// prefix (`zQm…`), which is read as the CIDv0 it names.
pub fn resolved_root(text: &str) -> Result<Cid, String> {
    let path = IpfsPath::parse(text).map_err(|e| e.to_string());
    let root = match path {
        Ok(p) if p.namespace == Namespace::Ipfs => p.root,
        Ok(p) => return Err(format!("resolved to a mutable path {p}")),
        // `zQm…` is no CID the parser takes: undo the prefix and retry.
        Err(e) => {
            let root = text
                .strip_prefix("/ipfs/z")
                .and_then(|r| r.split('/').next())
                .filter(|r| r.starts_with("Qm"))
                .ok_or(e)?;
            root.to_string()
        }
    };
    match Cid::parse(&root) {
        Ok(cid) => Ok(cid),
        Err(_) if root.starts_with("zQm") => Cid::parse(&root[1..]).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V0: &str = "QmXeTAQMkiEmcLsgQMeMmqZb9BNks8UymiFiAn2d6rVYw8";

    #[test]
    fn paths_parse_with_their_namespace_root_and_segments() {
        let p = IpfsPath::parse(&format!("/ipfs/{V0}/sub/a.txt")).expect("parse");
        assert_eq!(p.namespace, Namespace::Ipfs);
        assert_eq!(p.root, V0);
        assert_eq!(p.rest, vec!["sub".to_string(), "a.txt".to_string()]);
        assert_eq!(p.to_string(), format!("/ipfs/{V0}/sub/a.txt"));
        assert_eq!(p.bare_cid(), None);
        // Route captures come without the leading slash; trailing ones go.
        let bare = IpfsPath::parse(&format!("ipld/{V0}/")).expect("parse");
        assert_eq!(bare.bare_cid().map(|c| c.to_string()), Some(V0.into()));
        let name = IpfsPath::parse("/ipns/example.com/x").expect("ipns");
        assert_eq!(name.namespace, Namespace::Ipns);
        assert_eq!(name.bare_cid(), None);
    }

    #[test]
    fn bad_paths_say_why() {
        assert!(matches!(
            IpfsPath::parse("/foo/bar"),
            Err(PathError::Namespace(_))
        ));
        assert!(matches!(
            IpfsPath::parse("/ipns/"),
            Err(PathError::NoRoot(_))
        ));
        assert!(matches!(
            IpfsPath::parse("/ipfs/notacid/x"),
            Err(PathError::BadCid { .. })
        ));
        let long = format!("/ipfs/{V0}/{}", "a".repeat(PATH_MAX_BYTES));
        assert!(matches!(IpfsPath::parse(&long), Err(PathError::TooLong(_))));
    }

    #[test]
    fn resolved_roots_parse_in_every_form_daemons_write() {
        let v0 = Cid::parse(V0).expect("cid");
        assert_eq!(resolved_root(&format!("/ipfs/{V0}")), Ok(v0.clone()));
        assert_eq!(resolved_root(&format!("/ipfs/z{V0}")), Ok(v0.clone()));
        assert_eq!(resolved_root(&format!("/ipfs/{V0}/rest")), Ok(v0));
        assert!(resolved_root("/ipns/example.com").is_err());
        assert!(resolved_root("garbage").is_err());
        assert!(resolved_root("/ipfs/zzz").is_err());
    }
}

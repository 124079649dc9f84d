//! Request line → what the proxy does with it: one of the intercepted Kubo
//! RPC commands with its arguments parsed, or a plain forward to the IPFS
//! daemon. Pure (no IO), so the fuzz target `proxy_route` runs it as is.
//!
//! Only `GET`, `POST` and `PUT` under `/api/v0/` are intercepted (as
//! upstream); every other method or path is forwarded unchanged. The
//! legacy `/api/v0/pin/add/<arg>` forms copy the last segment into `arg`.

use cluster_core::{Cid, PinMode};

use super::error::ProxyError;

/// Most query parameters one intercepted request may carry.
pub const QUERY_PAIRS_MAX: usize = 1_024;
/// Most `arg` values one intercepted request may carry.
pub const ARGS_MAX: usize = 1_000;
/// Longest pin name accepted, in bytes (the pinset's own bound).
pub const NAME_MAX_BYTES: usize = cluster_core::pin::NAME_MAX_BYTES;
/// Longest path argument accepted, in bytes.
pub const PATH_MAX_BYTES: usize = 4_096;

/// A path argument of a pin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinPath {
    /// A bare CID or `/ipfs/<cid>`: no resolution needed.
    Cid(Cid),
    /// Anything else (`/ipfs/<cid>/sub/path`, `/ipns/…`, `/ipld/…`): the
    /// daemon resolves it first.
    Resolve(String),
}

/// Which pins `pin/ls` lists (Kubo's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LsType {
    /// Every pin (the default).
    All,
    /// Recursive pins only.
    Recursive,
    /// Direct pins only.
    Direct,
    /// Indirect pins: the cluster keeps none (always empty).
    Indirect,
}

impl LsType {
    /// True when a cluster pin of `mode` is listed.
    pub fn admits(self, mode: PinMode) -> bool {
        match self {
            LsType::All => true,
            LsType::Recursive => mode == PinMode::Recursive,
            LsType::Direct => mode == PinMode::Direct,
            LsType::Indirect => false,
        }
    }
}

/// Which answer collector a forwarded write with pinning uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collect {
    /// `add`: the roots of what was added.
    Add,
    /// `block/put`: each `Key`.
    BlockPut,
    /// `dag/put`: each `Cid./`.
    DagPut,
}

/// What the proxy does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `pin/add`: a cluster pin of each path.
    PinAdd {
        /// The paths, in order.
        paths: Vec<PinPath>,
        /// Recursive unless `recursive=false` (or upstream's `type=direct`).
        mode: PinMode,
        /// The pin's name (`name`).
        name: String,
        /// `progress=true`: answered as a stream, as Kubo does.
        progress: bool,
    },
    /// `pin/rm`: cluster unpin of each path.
    PinRm {
        /// The paths, in order.
        paths: Vec<PinPath>,
    },
    /// `pin/update`: cluster pin-update.
    PinUpdate {
        /// The pin replaced.
        from: PinPath,
        /// Its replacement.
        to: PinPath,
        /// Whether `from` is unpinned afterwards (default true).
        unpin: bool,
    },
    /// `pin/ls`: the cluster pinset.
    PinLs {
        /// Only these (empty: every pin).
        paths: Vec<PinPath>,
        /// Which kinds.
        kind: LsType,
        /// One object per line rather than one `Keys` map.
        stream: bool,
        /// Show the pins' names.
        names: bool,
    },
    /// A forwarded write whose resulting CIDs are pinned in the cluster.
    /// `query` is what goes to the daemon (its `pin` turned off: the
    /// cluster pins, not the daemon).
    PinAfter {
        /// Which answer shape to collect CIDs from.
        collect: Collect,
        /// The query forwarded, without the leading `?`.
        query: String,
        /// The cluster pin's name (`add --pin-name`).
        name: String,
        /// The raw query, for the cluster's pin options (`replication-min`, …).
        options_query: String,
    },
    /// `repo/stat`: summed over the cluster's peers.
    RepoStat,
    /// `repo/gc`: on every peer's daemon.
    RepoGc {
        /// `stream-errors=true`: errors as entries rather than a trailer.
        stream_errors: bool,
    },
    /// Everything else: forwarded unchanged.
    Forward,
}

/// The decoded query string, in order.
#[derive(Debug, Default)]
struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    fn parse(raw: &str) -> Result<Query, ProxyError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
            .take(QUERY_PAIRS_MAX + 1)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if pairs.len() > QUERY_PAIRS_MAX {
            return Err(ProxyError::BadRequest(format!(
                "more than {QUERY_PAIRS_MAX} query parameters"
            )));
        }
        Ok(Query { pairs })
    }

    /// The last value of `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A Kubo boolean option: `true`/`false` (Go's `strconv.ParseBool`
    /// forms), absent → `default`; an option given without a value is
    /// true, as the go-ipfs-cmds HTTP parser reads it.
    fn flag(&self, names: &[&str], default: bool) -> Result<bool, ProxyError> {
        let Some((name, value)) = names.iter().find_map(|n| self.get(n).map(|v| (*n, v))) else {
            return Ok(default);
        };
        match value {
            "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            other => Err(ProxyError::BadRequest(format!(
                "option \"{name}\": could not parse {:?} as a boolean",
                truncate(other)
            ))),
        }
    }

    /// The query with every `drop` key removed and `extra` appended.
    fn rewrite(&self, drop: &[&str], extra: &[(&str, &str)]) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.pairs {
            if !drop.contains(&k.as_str()) {
                out.append_pair(k, v);
            }
        }
        for (k, v) in extra {
            out.append_pair(k, v);
        }
        out.finish()
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(100).collect()
}

/// Parses one path argument: a bare CID or `/ipfs/<cid>` directly, any
/// other IPFS path for the daemon to resolve.
pub fn parse_path(text: &str) -> Result<PinPath, ProxyError> {
    let bad = |reason: String| ProxyError::BadPath {
        path: truncate(text),
        reason,
    };
    if text.is_empty() {
        return Err(bad("empty path".into()));
    }
    if text.len() > PATH_MAX_BYTES {
        return Err(bad(format!("longer than {PATH_MAX_BYTES} bytes")));
    }
    if !text.starts_with('/') {
        // Kubo accepts `<cid>` and `<cid>/sub/path`.
        return match text.split_once('/') {
            None => Cid::parse(text)
                .map(PinPath::Cid)
                .map_err(|e| bad(e.to_string())),
            Some((root, rest)) => {
                Cid::parse(root).map_err(|e| bad(e.to_string()))?;
                Ok(if rest.trim_matches('/').is_empty() {
                    PinPath::Cid(Cid::parse(root).map_err(|e| bad(e.to_string()))?)
                } else {
                    PinPath::Resolve(format!("/ipfs/{text}"))
                })
            }
        };
    }
    let mut parts = text[1..].splitn(2, '/');
    let namespace = parts.next().unwrap_or_default();
    let rest = parts.next().unwrap_or_default();
    let (root, sub) = rest.split_once('/').unwrap_or((rest, ""));
    if root.is_empty() {
        return Err(bad("path has no root after the namespace".into()));
    }
    match namespace {
        "ipfs" | "ipld" => {
            let cid = Cid::parse(root).map_err(|e| bad(e.to_string()))?;
            if sub.trim_matches('/').is_empty() {
                Ok(PinPath::Cid(cid))
            } else {
                Ok(PinPath::Resolve(text.to_string()))
            }
        }
        "ipns" => Ok(PinPath::Resolve(text.to_string())),
        _ => Err(bad(format!(
            "unknown namespace {:?} (expected /ipfs, /ipns or /ipld)",
            truncate(namespace)
        ))),
    }
}

/// What `method`, `path` and `query` (without `?`) ask of the proxy. A
/// request that is not intercepted is `Route::Forward`; an intercepted one
/// with bad arguments is an error in Kubo's shape.
pub fn route(method: &str, path: &str, query: Option<&str>) -> Result<Route, ProxyError> {
    if !matches!(method, "GET" | "POST" | "PUT") {
        return Ok(Route::Forward);
    }
    // Matched as the daemon will read it: a `pin%2Fadd` or `//pin/add`
    // forwarded as is would pin on the daemon behind the cluster's back.
    let clean = clean_path(path);
    let path = clean.as_str();
    let Some(command) = path.strip_prefix("/api/v0/") else {
        return Ok(Route::Forward);
    };
    let command = command.trim_end_matches('/');
    let raw = query.unwrap_or("");
    // `pin/add/<arg>`, `pin/rm/<arg>`, `pin/ls/<arg>`: legacy clients.
    let (command, legacy_arg) = match command.split_once('/') {
        Some(("pin", rest)) => match rest.split_once('/') {
            Some((sub @ ("add" | "rm" | "ls"), arg)) if !arg.is_empty() => {
                (sub, Some(arg.to_string()))
            }
            _ => (rest, None),
        },
        _ => (command, None),
    };
    let intercepted = matches!(
        (path.starts_with("/api/v0/pin/"), command),
        (true, "add" | "rm" | "ls" | "update")
    ) || matches!(
        command,
        "add" | "repo/stat" | "repo/gc" | "block/put" | "dag/put"
    );
    if !intercepted {
        return Ok(Route::Forward);
    }
    let is_pin = path.starts_with("/api/v0/pin/");
    let q = Query::parse(raw)?;
    let mut args: Vec<String> = q.all("arg").into_iter().map(str::to_string).collect();
    if let Some(arg) = legacy_arg {
        args.push(arg);
    }
    if args.len() > ARGS_MAX {
        return Err(ProxyError::BadRequest(format!(
            "more than {ARGS_MAX} arguments"
        )));
    }
    let paths = |args: &[String]| -> Result<Vec<PinPath>, ProxyError> {
        args.iter().map(|a| parse_path(a)).collect()
    };
    match (is_pin, command) {
        (true, "add") => {
            if args.is_empty() {
                return Err(ProxyError::MissingArgument("ipfs-path"));
            }
            let recursive = q.flag(&["recursive", "r"], true)?;
            let direct = !recursive || q.get("type") == Some("direct");
            let name = q.get("name").unwrap_or_default();
            if name.len() > NAME_MAX_BYTES {
                return Err(ProxyError::BadRequest(format!(
                    "pin name longer than {NAME_MAX_BYTES} bytes"
                )));
            }
            Ok(Route::PinAdd {
                paths: paths(&args)?,
                mode: if direct {
                    PinMode::Direct
                } else {
                    PinMode::Recursive
                },
                name: name.to_string(),
                progress: q.flag(&["progress"], false)?,
            })
        }
        (true, "rm") => {
            if args.is_empty() {
                return Err(ProxyError::MissingArgument("ipfs-path"));
            }
            Ok(Route::PinRm {
                paths: paths(&args)?,
            })
        }
        (true, "update") => {
            let (from, to) = match args.as_slice() {
                [] => return Err(ProxyError::MissingArgument("from-path")),
                [_] => return Err(ProxyError::MissingArgument("to-path")),
                [from, to, ..] => (from, to),
            };
            let from = parse_path(from).map_err(|e| e.in_argument("from-path"))?;
            let to = parse_path(to).map_err(|e| e.in_argument("to-path"))?;
            Ok(Route::PinUpdate {
                from,
                to,
                unpin: q.flag(&["unpin"], true)?,
            })
        }
        (true, "ls") => {
            let kind = match q.get("type").unwrap_or("all") {
                "" | "all" => LsType::All,
                "recursive" => LsType::Recursive,
                "direct" => LsType::Direct,
                "indirect" => LsType::Indirect,
                other => {
                    return Err(ProxyError::BadRequest(format!(
                        "invalid type '{}', must be one of {{direct, indirect, recursive, all}}",
                        truncate(other)
                    )))
                }
            };
            Ok(Route::PinLs {
                paths: paths(&args)?,
                kind,
                stream: q.flag(&["stream", "s"], false)?,
                names: q.flag(&["names", "n"], false)?,
            })
        }
        (false, "add") => {
            // `only-hash` stores nothing: nothing to pin either.
            let pin = q.flag(&["pin"], true)? && !q.flag(&["only-hash", "n"], false)?;
            let name = q.get("pin-name").unwrap_or_default();
            if !pin {
                return Ok(Route::Forward);
            }
            if name.len() > NAME_MAX_BYTES {
                return Err(ProxyError::BadRequest(format!(
                    "pin name longer than {NAME_MAX_BYTES} bytes"
                )));
            }
            Ok(Route::PinAfter {
                collect: Collect::Add,
                query: q.rewrite(&["pin", "pin-name"], &[("pin", "false")]),
                name: name.to_string(),
                options_query: raw.to_string(),
            })
        }
        (false, put @ ("block/put" | "dag/put")) => {
            if !q.flag(&["pin"], false)? {
                return Ok(Route::Forward);
            }
            Ok(Route::PinAfter {
                collect: if put == "block/put" {
                    Collect::BlockPut
                } else {
                    Collect::DagPut
                },
                query: q.rewrite(&["pin"], &[("pin", "false")]),
                name: String::new(),
                options_query: String::new(),
            })
        }
        (false, "repo/stat") => Ok(Route::RepoStat),
        (false, "repo/gc") => Ok(Route::RepoGc {
            stream_errors: q.flag(&["stream-errors"], false)?,
        }),
        _ => Ok(Route::Forward),
    }
}

/// `path` percent-decoded (invalid UTF-8 replaced), without empty or `.`
/// segments; a trailing slash is kept.
pub fn clean_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                decoded.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&decoded);
    let mut out = String::with_capacity(text.len());
    for segment in text.split('/').filter(|s| !s.is_empty() && *s != ".") {
        out.push('/');
        out.push_str(segment);
    }
    if text.ends_with('/') || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const V0: &str = "QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq";
    const V1: &str = "bafkreih2grj7p2gjvdyfzqzmsyhk2d4m5lg5qxcbzr6ycrzgxi6ekyqqca";

    fn cid(text: &str) -> PinPath {
        PinPath::Cid(Cid::parse(text).expect("cid"))
    }

    #[test]
    fn paths_are_cids_or_resolved_by_the_daemon() {
        assert_eq!(parse_path(V0), Ok(cid(V0)));
        assert_eq!(parse_path(&format!("/ipfs/{V1}")), Ok(cid(V1)));
        assert_eq!(parse_path(&format!("/ipfs/{V1}/")), Ok(cid(V1)));
        assert_eq!(
            parse_path(&format!("/ipfs/{V0}/a/b")),
            Ok(PinPath::Resolve(format!("/ipfs/{V0}/a/b")))
        );
        assert_eq!(
            parse_path(&format!("{V0}/a")),
            Ok(PinPath::Resolve(format!("/ipfs/{V0}/a")))
        );
        assert_eq!(
            parse_path("/ipns/example.org"),
            Ok(PinPath::Resolve("/ipns/example.org".into()))
        );
        for bad in [
            "",
            "nope",
            "/ipfs/",
            "/ipfs/nope",
            "/foo/bar",
            "/",
            "nope/a",
        ] {
            let e = parse_path(bad).expect_err(bad);
            assert!(matches!(e, ProxyError::BadPath { .. }), "{bad}: {e:?}");
        }
    }

    #[test]
    fn only_the_documented_commands_are_intercepted() {
        for (method, path) in [
            ("POST", "/api/v0/version"),
            ("POST", "/api/v0/cat"),
            ("POST", "/api/v0/pin/verify"),
            ("POST", "/api/v0/pin/remote/add"),
            ("POST", "/api/v0/dag/import"),
            ("OPTIONS", "/api/v0/pin/add"),
            ("DELETE", "/api/v0/pin/rm"),
            ("POST", "/api/v1/pin/add"),
            ("POST", "/pin/add"),
            ("POST", "/api/v0/repo/stat/x"),
        ] {
            assert_eq!(route(method, path, None), Ok(Route::Forward), "{path}");
        }
        // Encoded or doubled slashes are read as the daemon reads them.
        assert!(matches!(
            route("POST", "/api/v0/pin%2Fadd", Some(&format!("arg={V0}"))),
            Ok(Route::PinAdd { .. })
        ));
        assert!(matches!(
            route("POST", "//api/v0//pin/./rm/", Some(&format!("arg={V0}"))),
            Ok(Route::PinRm { .. })
        ));
        assert_eq!(clean_path("/a%2"), "/a%2");
        assert_eq!(clean_path(""), "/");
        // Without pin=true, puts are plain forwards.
        assert_eq!(route("POST", "/api/v0/block/put", None), Ok(Route::Forward));
        assert_eq!(
            route("POST", "/api/v0/dag/put", Some("pin=false")),
            Ok(Route::Forward)
        );
        assert_eq!(
            route("POST", "/api/v0/add", Some("pin=false")),
            Ok(Route::Forward)
        );
        assert_eq!(route("GET", "/api/v0/repo/stat", None), Ok(Route::RepoStat));
    }

    #[test]
    fn pin_add_reads_kubo_options() {
        let r = route(
            "POST",
            "/api/v0/pin/add",
            Some(&format!(
                "arg={V0}&arg=/ipfs/{V1}&recursive=false&name=my%20pin&progress"
            )),
        );
        assert_eq!(
            r,
            Ok(Route::PinAdd {
                paths: vec![cid(V0), cid(V1)],
                mode: PinMode::Direct,
                name: "my pin".into(),
                progress: true,
            })
        );
        // Upstream's `type=direct`, and the legacy path form.
        let r = route(
            "POST",
            &format!("/api/v0/pin/add/{V0}"),
            Some("type=direct"),
        );
        assert!(
            matches!(r, Ok(Route::PinAdd { mode: PinMode::Direct, ref paths, .. }) if paths == &vec![cid(V0)])
        );
        assert_eq!(
            route("POST", "/api/v0/pin/add", None),
            Err(ProxyError::MissingArgument("ipfs-path"))
        );
        let bad = route("POST", "/api/v0/pin/add", Some("arg=notacid")).expect_err("bad cid");
        assert!(bad.to_string().contains("notacid"), "{bad}");
        let bad = route(
            "POST",
            "/api/v0/pin/add",
            Some(&format!("arg={V0}&recursive=maybe")),
        );
        assert!(matches!(bad, Err(ProxyError::BadRequest(_))));
    }

    #[test]
    fn pin_update_needs_two_paths() {
        assert_eq!(
            route("POST", "/api/v0/pin/update", None),
            Err(ProxyError::MissingArgument("from-path"))
        );
        assert_eq!(
            route("POST", "/api/v0/pin/update", Some(&format!("arg={V0}"))),
            Err(ProxyError::MissingArgument("to-path"))
        );
        let r = route(
            "POST",
            "/api/v0/pin/update",
            Some(&format!("arg={V0}&arg={V1}&unpin=false")),
        );
        assert_eq!(
            r,
            Ok(Route::PinUpdate {
                from: cid(V0),
                to: cid(V1),
                unpin: false
            })
        );
        let bad = route(
            "POST",
            "/api/v0/pin/update",
            Some(&format!("arg=x&arg={V1}")),
        );
        assert!(bad.expect_err("bad from").to_string().contains("from-path"));
    }

    #[test]
    fn pin_ls_reads_type_stream_and_names() {
        assert_eq!(
            route(
                "POST",
                "/api/v0/pin/ls",
                Some("type=direct&stream=true&names=true")
            ),
            Ok(Route::PinLs {
                paths: vec![],
                kind: LsType::Direct,
                stream: true,
                names: true
            })
        );
        assert!(matches!(
            route("POST", "/api/v0/pin/ls", Some("type=bogus")),
            Err(ProxyError::BadRequest(_))
        ));
        assert!(LsType::All.admits(PinMode::Direct));
        assert!(!LsType::Recursive.admits(PinMode::Direct));
        assert!(!LsType::Indirect.admits(PinMode::Recursive));
    }

    #[test]
    fn add_forwards_without_the_daemons_pin() {
        let r = route(
            "POST",
            "/api/v0/add",
            Some("pin=true&pin-name=site&cid-version=1&replication-min=1"),
        );
        let Ok(Route::PinAfter {
            collect,
            query,
            name,
            options_query,
        }) = r
        else {
            panic!("{r:?}");
        };
        assert_eq!(collect, Collect::Add);
        assert_eq!(query, "cid-version=1&replication-min=1&pin=false");
        assert_eq!(name, "site");
        assert!(options_query.contains("replication-min=1"));
        let r = route("POST", "/api/v0/block/put", Some("pin=true&format=raw"));
        assert!(matches!(
            r,
            Ok(Route::PinAfter { collect: Collect::BlockPut, ref query, .. }) if query == "format=raw&pin=false"
        ));
    }
}

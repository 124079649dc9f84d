//! The IPFS proxy's request parsers (cluster-node `api::proxy`): a request
//! line (method, path, query) routed to an intercepted command or a
//! forward, path arguments, and the scanner that reads CIDs out of the
//! daemon's streamed `add`/`block/put`/`dag/put` answers.
//!
//! Input: the first byte picks the method, the rest is `path?query`. Checks
//! besides "no panic": parsed CIDs re-parse to themselves; a rewritten
//! query the proxy forwards (its `pin` turned off) is never intercepted
//! again; the scanner's result does not depend on how the answer is cut
//! into chunks.

use cluster_core::Cid;
use cluster_node::api::proxy::collect::Scanner;
use cluster_node::api::proxy::route::{parse_path, route, Collect, PinPath, Route};

const METHODS: [&str; 5] = ["POST", "GET", "PUT", "DELETE", "OPTIONS"];

fn check_path(path: &PinPath) {
    match path {
        PinPath::Cid(cid) => {
            let again = Cid::parse(&cid.to_string()).expect("a parsed CID re-parses");
            assert_eq!(&again, cid, "a CID's text parses back to it");
        }
        PinPath::Resolve(text) => assert!(text.starts_with('/'), "resolved paths are absolute"),
    }
}

fn scan(collect: Collect, data: &[u8], chunk: usize) -> Result<Vec<Cid>, String> {
    let mut s = Scanner::new(collect);
    for part in data.chunks(chunk.max(1)) {
        s.feed(part);
    }
    s.finish()
}

/// Routes `data` as a request line and scans it as a daemon's answer.
pub fn run(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    for collect in [Collect::Add, Collect::BlockPut, Collect::DagPut] {
        let whole = scan(collect, rest, rest.len());
        let cut = scan(collect, rest, usize::from(first % 7) + 1);
        assert_eq!(whole, cut, "the scanner depends on chunking");
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(path) = parse_path(text) {
        check_path(&path);
    }
    let method = METHODS[usize::from(first) % METHODS.len()];
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text, None),
    };
    let Ok(routed) = route(method, path, query) else {
        return;
    };
    match routed {
        Route::PinAdd { paths, .. } | Route::PinRm { paths } => {
            assert!(!paths.is_empty(), "pin/add and pin/rm need an argument");
            paths.iter().for_each(check_path);
        }
        Route::PinLs { paths, .. } => paths.iter().for_each(check_path),
        Route::PinUpdate { from, to, .. } => {
            check_path(&from);
            check_path(&to);
        }
        Route::PinAfter { query, .. } => {
            // What the proxy sends the daemon is a plain forward (were the
            // daemon another proxy, it would not pin again).
            assert_eq!(
                route(method, path, Some(&query)),
                Ok(Route::Forward),
                "the forwarded query {query:?} would be intercepted again"
            );
        }
        Route::RepoStat | Route::RepoGc { .. } | Route::Forward => {}
    }
}

/// Words the stable runner splices into inputs.
pub const DICTIONARY: &[&[u8]] = &[
    b"/api/v0/pin/add",
    b"/api/v0/pin/rm",
    b"/api/v0/pin/ls",
    b"/api/v0/pin/update",
    b"/api/v0/add",
    b"/api/v0/block/put",
    b"/api/v0/dag/put",
    b"/api/v0/repo/gc",
    b"?arg=",
    b"&arg=",
    b"/ipfs/",
    b"/ipns/",
    b"QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq",
    b"bafkreih2grj7p2gjvdyfzqzmsyhk2d4m5lg5qxcbzr6ycrzgxi6ekyqqca",
    b"pin=true",
    b"pin=false",
    b"only-hash=true",
    b"recursive=false",
    b"type=direct",
    b"stream=true",
    b"names=true",
    b"pin-name=",
    b"{\"Name\":\"\",\"Hash\":\"",
    b"{\"Key\":\"",
    b"{\"Cid\":{\"/\":\"",
    b"\"Type\":\"error\"",
    b"\n",
    b"%2F",
];

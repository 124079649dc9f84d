//! The REST API's query strings (cluster-node `api::rest::options`): every
//! reading of a query a route makes, on arbitrary text. Each either answers
//! or refuses with an error naming what was wrong; none panics. Also the
//! other request inputs read from text: the IPFS path of the
//! `/pins/{ipfs|ipns|ipld}/…` routes and the `POST /peers` body.

use cluster_core::Millis;
use cluster_node::api::rest::add::AddJob;
use cluster_node::api::rest::options::{parse_cid, Query};
use cluster_node::api::rest::peers::parse_add_peer;
use cluster_node::api::rest::pins::parse_path;
use cluster_node::ipfs::multipart::boundary;
use cluster_node::ipfs::{IpfsPath, Namespace};

/// Parses `data` as a query string and reads it every way a route does.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_cid(text);
    paths(text);
    if let Ok(peer) = parse_add_peer(data) {
        assert!(!peer.as_str().is_empty());
    }
    // `POST /add` reads its body's boundary from the Content-Type header.
    if let Some(b) = boundary(text) {
        assert!(text.contains(b), "the boundary {b:?} comes from the header");
    }
    let Ok(query) = Query::parse(Some(text)) else {
        return;
    };
    let _ = query.local();
    let _ = query.status_filter();
    let _ = query.type_filter();
    let _ = query.cids();
    let _ = query.page();
    if let Ok(options) = query.pin_options(Millis(1_700_000_000_000)) {
        // The route puts the configured defaults where a factor is 0 and
        // leaves the rest to the state machine's validation (a 400 then):
        // that validation must judge whatever the parser lets through.
        let or_default = |f: i32| if f == 0 { -1 } else { f };
        let _ = cluster_core::pin::validate_replication(
            or_default(options.replication_factor_min),
            or_default(options.replication_factor_max),
        );
        let _ = format!("{options:?}");
        // `POST /add` reads the same query for its add parameters.
        if let Ok(job) = AddJob::parse(&query, options) {
            for (name, value) in &job.ipfs_options {
                assert!(!name.is_empty(), "an add option without a name: {value:?}");
            }
        }
    }
}

/// A route's captured path in each namespace: a parsed path prints as a
/// path that parses back to itself, and a bare one names its root CID.
fn paths(text: &str) {
    for namespace in [Namespace::Ipfs, Namespace::Ipns, Namespace::Ipld] {
        let Ok(path) = parse_path(namespace, text) else {
            continue;
        };
        assert_eq!(path.namespace, namespace);
        let printed = path.to_string();
        assert_eq!(IpfsPath::parse(&printed).as_ref(), Ok(&path), "{printed}");
        assert!(path.rest.iter().all(|s| !s.is_empty() && !s.contains('/')));
        if let Some(cid) = path.bare_cid() {
            assert!(path.rest.is_empty() && namespace != Namespace::Ipns);
            assert!(!cid.to_string().is_empty());
        }
    }
}

/// Words the stable runner splices into inputs.
pub const DICTIONARY: &[&[u8]] = &[
    b"replication-min=",
    b"replication-max=",
    b"name=",
    b"mode=direct",
    b"mode=recursive",
    b"user-allocations=",
    b"expire-at=",
    b"meta-",
    b"pin-update=",
    b"shard-size=",
    b"filter=pinned,pin_error",
    b"local=true",
    b"cids=",
    b"limit=",
    b"after=",
    b"&",
    b"%",
    b"cid-version=1",
    b"raw-leaves=true",
    b"stream-channels=false",
    b"no-pin=true",
    b"wrap-with-directory=true",
    b"multipart/form-data; boundary=",
    b"QmXeTAQMkiEmcLsgQMeMmqZb9BNks8UymiFiAn2d6rVYw8/sub/a.txt",
    b"/ipfs/",
    b"/ipns/",
    b"/ipld/",
    b"{\"peer_id\":\"12D3KooWFBFCDQzAkQSwPZLV883pKdsmb6urQ3sMjfJHUxn5GCVv\"}",
];

//! The REST API's query strings (cluster-node `api::rest::options`): every
//! reading of a query a route makes, on arbitrary text. Each either answers
//! or refuses with an error naming what was wrong; none panics. Pin options
//! that are accepted must validate as a pin would.

use cluster_core::Millis;
use cluster_node::api::rest::options::{parse_cid, Query};

/// Parses `data` as a query string and reads it every way a route does.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_cid(text);
    let Ok(query) = Query::parse(Some(text)) else {
        return;
    };
    let _ = query.local();
    let _ = query.status_filter();
    let _ = query.type_filter();
    let _ = query.cids();
    let _ = query.page();
    if let Ok(options) = query.pin_options(Millis(1_700_000_000_000)) {
        // What the API accepts is a pin the state machine would take.
        let min = options.replication_factor_min;
        let max = options.replication_factor_max;
        assert!(
            cluster_core::pin::validate_replication(min, max).is_ok(),
            "accepted factors {min}/{max} do not validate"
        );
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
];

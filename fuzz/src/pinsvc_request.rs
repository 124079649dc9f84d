//! The Pinning Service API's requests (cluster-node `api::pinsvc`): the
//! same bytes as a `GET /pins` query string (`query::ListQuery`), as a
//! `POST /pins` JSON body (`body::parse`) and as a request id.
//!
//! Besides "no panic": an accepted query is within the spec's bounds; an
//! accepted body becomes a pin the pinset's own validation accepts (with
//! the cluster's default factors), and written back as JSON it parses to
//! the same request.

use cluster_core::{Cid, Millis, Pin, PinOptions};
use cluster_node::api::pinsvc::body;
use cluster_node::api::pinsvc::query::{ListQuery, CIDS_MAX, LIMIT_MAX, NAME_MAX_CHARS};

/// Feeds `data` to both parsers.
pub fn run(data: &[u8]) {
    run_body(data);
    if let Ok(text) = std::str::from_utf8(data) {
        run_query(text);
        let _ = Cid::parse(text);
    }
}

fn run_query(text: &str) {
    let Ok(query) = ListQuery::parse(Some(text)) else {
        return;
    };
    assert!(
        (1..=LIMIT_MAX).contains(&query.limit),
        "limit {}",
        query.limit
    );
    assert!(!query.statuses.is_empty(), "a status filter is never empty");
    assert!(query.cids.len() <= CIDS_MAX, "{} CIDs", query.cids.len());
    if let Some(name) = &query.name {
        assert!(name.chars().count() <= NAME_MAX_CHARS);
        assert!(!name.is_empty(), "an empty name is no filter");
    }
    // Every filter runs against pins without panicking.
    let cid = Cid::parse("QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq").expect("cid");
    let mut pin = Pin::new(cid, PinOptions::default(), Millis(1_700_000_000_000));
    let _ = query.admits(&pin);
    pin.options.name = query.name.clone().unwrap_or_default();
    pin.options.metadata = query.meta.clone();
    if let Some(first) = query.cids.first() {
        pin.cid = first.clone();
    }
    let wanted = query.before.is_none_or(|b| pin.timestamp < b)
        && query.after.is_none_or(|a| pin.timestamp > a);
    assert_eq!(
        query.admits(&pin),
        wanted,
        "a pin built from the filters passes all but the time filters"
    );
}

fn run_body(data: &[u8]) {
    let Ok(new) = body::parse(data) else {
        return;
    };
    let mut options = new.options();
    // The route puts the cluster's default factors in place of 0.
    options.replication_factor_min = -1;
    options.replication_factor_max = -1;
    let pin = Pin::new(new.cid.clone(), options, Millis(1_700_000_000_000));
    if let Err(e) = pin.validate() {
        panic!("an accepted body makes a pin the pinset refuses: {e}: {new:?}");
    }
    let again = serde_json::json!({
        "cid": new.cid.to_string(),
        "name": new.name,
        "origins": new.origins,
        "meta": new.meta,
    });
    let reparsed = body::parse(again.to_string().as_bytes()).expect("written back, it parses");
    assert_eq!(reparsed, new, "round trip");
}

/// Words the stable runner splices into inputs.
pub const DICTIONARY: &[&[u8]] = &[
    b"cid=",
    b"name=",
    b"match=ipartial",
    b"match=iexact",
    b"status=queued,pinning,pinned,failed",
    b"before=2024-05-06T10:12:45Z",
    b"after=2024-05-06T10:12:45.5+01:00",
    b"limit=1000",
    b"meta=%7B%22owner%22%3A%22alice%22%7D",
    b"&",
    b"%",
    b"{\"cid\":\"",
    b"\"name\":",
    b"\"origins\":[\"/ip4/203.0.113.9/tcp/4001/p2p/12D3KooWKuJ8LPTyHbyX4nt4C7uWmUobzFsiceTVoFw7HpmoNakM\"]",
    b"\"meta\":{\"owner\":\"alice\"}",
    b"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
    b"QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq",
    b"null",
    b"}",
];

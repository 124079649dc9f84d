//! Answers of the IPFS daemon's Kubo RPC API as cluster-node's connector
//! parses them (`pin/ls` stream or map, `repo/stat`, `id`, `version`,
//! `pin/add` progress, `add` output, `swarm/peers`, `block/put`, error
//! bodies), the connector's on-disk record of its pins (the marks log), and
//! the daemon address from configuration. Every parser runs on the same
//! bytes. Besides "never panics": what is accepted is well-formed, and a
//! stream parser reads two copies of a body as the body twice.

use cluster_core::Cid;
use cluster_node::ipfs::kubo::answers;
use cluster_node::ipfs::kubo::api_url_from_multiaddr;
use cluster_node::ipfs::kubo::marks::replay;

/// JSON fields and values of the daemon's answers.
pub const DICTIONARY: &[&[u8]] = &[
    b"{\"Cid\":\"",
    b"\",\"Type\":\"recursive\"}",
    b"\"Type\":\"indirect through ",
    b"\"direct\"",
    b"{\"Keys\":{",
    b"{\"Pins\":[",
    b"{\"Progress\":",
    b"\"Hash\":\"",
    b"\"RepoSize\":",
    b"\"StorageMax\":\"",
    b"{\"ID\":\"",
    b"\"Addresses\":[\"/ip4/127.0.0.1/tcp/4001\"",
    b"{\"Peers\":[{\"Peer\":\"",
    b"{\"Message\":\"",
    b"\"Type\":\"error\"}",
    b"{\"Version\":\"",
    b"{\"Key\":\"",
    b"QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo",
    b"bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq",
    b"null",
    b"+ ",
    b"- ",
    b"/ip4/",
    b"/dns4/",
    b"/tcp/",
];

/// Runs every parser on `data`.
pub fn run(data: &[u8]) {
    streams(data);
    let _ = answers::repo_stat(data);
    if let Ok(id) = answers::id(data) {
        assert!(!id.peer_id.is_empty() && id.peer_id.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(
            id.addresses.iter().all(|a| a.starts_with('/')),
            "{:?}",
            id.addresses
        );
    }
    if let Ok(v) = answers::version(data) {
        assert!(!v.version.is_empty());
    }
    if let Ok(peers) = answers::swarm_peers(data) {
        assert!(peers.iter().all(|p| !p.is_empty()));
    }
    if let Ok(cid) = answers::block_put(data) {
        reparses(&cid);
    }
    if let Ok(cid) = answers::resolved(data) {
        reparses(&cid);
    }
    if let Some(e) = answers::error_body(data) {
        let _ = answers::says_not_pinned(&e.message);
    }
    let text = String::from_utf8_lossy(data);
    let _ = answers::says_not_pinned(&text);
    let _ = answers::pin_type(&text);
    if let Ok(url) = api_url_from_multiaddr(&text) {
        assert!(url.starts_with("http://"), "{url}");
    }
    marks_log(data);
}

/// The stream answers, on the body and on the body twice.
fn streams(data: &[u8]) {
    let twice = [data, b"\n", data].concat();
    if let Ok(pins) = answers::pin_list(data) {
        pins.iter().for_each(|(cid, _)| reparses(cid));
        let both = answers::pin_list(&twice).expect("a body twice is a longer stream");
        assert_eq!(both, [pins.clone(), pins].concat(), "stream of two bodies");
    }
    if let Ok(pins) = answers::pins_done(data) {
        pins.iter().for_each(reparses);
        assert_eq!(
            answers::pins_done(&twice).expect("twice"),
            pins,
            "last Pins wins"
        );
    }
    if let Ok(root) = answers::added_root(data) {
        reparses(&root);
        assert_eq!(
            answers::added_root(&twice).expect("twice"),
            root,
            "last Hash wins"
        );
    }
}

/// The marks log: what replays is a valid prefix, and writing the marks
/// back as the connector does replays to the same marks.
fn marks_log(data: &[u8]) {
    let path = std::path::Path::new("fuzz-marks.log");
    let Ok((marks, lines, valid_len)) = replay(path, data) else {
        return;
    };
    assert!(valid_len <= data.len());
    assert!(
        !data[valid_len..].contains(&b'\n'),
        "a complete line was cut"
    );
    assert!(marks.len() <= lines);
    let mut rewritten = String::new();
    for (cid, depth) in &marks {
        rewritten.push_str(&format!("+ {cid} {depth}\n"));
    }
    let (again, _, _) = replay(path, rewritten.as_bytes()).expect("written marks replay");
    assert_eq!(again, marks, "marks round trip");
}

fn reparses(cid: &Cid) {
    assert_eq!(&Cid::parse(&cid.to_string()).expect("reparses"), cid);
}

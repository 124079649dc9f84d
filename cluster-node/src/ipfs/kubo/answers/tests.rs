//! Every parser against answers recorded from js-ipfs 0.66.1 (on this
//! machine) and Kubo (the shapes in the connector reference), plus garbage.

use super::*;

const V0: &str = "QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo";
/// One raw CIDv1 in base58btc (as js-ipfs answers) and base32 (as Kubo).
const RAW_B58: &str = "zb2rhZfjRh2FHHB2RkHVEvL2vJnCTcu7kwRqgVsf9gpkLgteo";
const RAW_B32: &str = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq";

fn cid(s: &str) -> Cid {
    Cid::parse(s).expect("test CID")
}

const GARBAGE: &[&[u8]] = &[
    b"",
    b"   ",
    b"not json",
    b"{",
    b"[]",
    b"null",
    b"42",
    b"\xff\xfe",
    b"{\"Cid\":1,\"Type\":2}",
    b"{\"Keys\":[1,2]}",
    b"<html>502 Bad Gateway</html>",
];

#[test]
fn the_same_cid_in_two_bases_is_one_value() {
    assert_eq!(cid(RAW_B58), cid(RAW_B32));
}

#[test]
fn error_bodies() {
    let js = br#"{"Message":"path 'bafk' is not pinned","Code":0,"Type":"error"}"#;
    let e = error_body(js).expect("error body");
    assert_eq!(
        (e.message.as_str(), e.code),
        ("path 'bafk' is not pinned", 0)
    );
    let e = error_body(br#"{"Message":"Invalid request query input","Code":1,"Type":"error"}"#)
        .expect("error body");
    assert_eq!(e.code, 1);
    assert_eq!(error_body(b"404 page not found"), None);
    assert_eq!(error_body(b""), None);
}

#[test]
fn not_pinned_messages_of_both_daemons() {
    for m in [
        "not pinned or pinned indirectly",
        "path 'QmX' is not pinned",
        "Failed to remove pin: bafk is not pinned",
        "Failed to remove pin: Qm is pinned indirectly under indirect",
    ] {
        assert!(says_not_pinned(m), "{m}");
    }
    for m in [
        "context deadline exceeded",
        "Invalid request query input",
        "",
    ] {
        assert!(!says_not_pinned(m), "{m}");
    }
}

#[test]
fn repo_stat_numbers_or_strings() {
    let js = br#"{"NumObjects":"1","RepoSize":"3165","RepoPath":"/tmp/x","Version":"12","StorageMax":"9007199254740991"}"#;
    let s = repo_stat(js).expect("js-ipfs repo/stat");
    assert_eq!((s.repo_size, s.storage_max), (3165, 9007199254740991));
    let kubo = br#"{"RepoSize":123456789,"StorageMax":10000000000}"#;
    let s = repo_stat(kubo).expect("kubo repo/stat");
    assert_eq!((s.repo_size, s.storage_max), (123456789, 10000000000));
    for bad in [
        &br#"{"RepoSize":-1,"StorageMax":1}"#[..],
        br#"{"RepoSize":"12x","StorageMax":1}"#,
        br#"{"RepoSize":1.5,"StorageMax":1}"#,
        br#"{"RepoSize":null,"StorageMax":1}"#,
        br#"{"StorageMax":1}"#,
        br#"{"RepoSize":1,"StorageMax":1}{"RepoSize":1,"StorageMax":1}"#,
    ] {
        assert!(
            matches!(repo_stat(bad), Err(AnswerError::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn id_of_both_daemons() {
    let js = br#"{"ID":"12D3KooWGFx3Awy1JSiPs3QonrFXCW62pdXtFjLdxwAn7NVyvBY5","PublicKey":"CAESIF+z","Addresses":["/ip4/127.0.0.1/tcp/16902/p2p/12D3KooWGFx3Awy1JSiPs3QonrFXCW62pdXtFjLdxwAn7NVyvBY5"],"AgentVersion":"js-ipfs/0.18.1","ProtocolVersion":"ipfs/0.1.0","Protocols":["/ipfs/id/1.0.0"]}"#;
    let id = id(js).expect("id");
    assert_eq!(
        id.peer_id,
        "12D3KooWGFx3Awy1JSiPs3QonrFXCW62pdXtFjLdxwAn7NVyvBY5"
    );
    assert_eq!(id.addresses.len(), 1);
    let mock = br#"{"ID":"QmXZrtE5jQwXNqCJMfHUTQkvhQ4ZAnqMnmzFMJfLewuabc","Addresses":["/ip4/0.0.0.0/tcp/1234","garbage",7,"/ip6/::/tcp/1234"]}"#;
    assert_eq!(
        super::id(mock).expect("mock id").addresses.len(),
        2,
        "non-multiaddrs skipped"
    );
    let none = br#"{"ID":"QmXZrtE5jQwXNqCJMfHUTQkvhQ4ZAnqMnmzFMJfLewuabc","Addresses":null}"#;
    assert!(super::id(none)
        .expect("null addresses")
        .addresses
        .is_empty());
    for bad in [
        &br#"{"ID":""}"#[..],
        br#"{"ID":"not a/peer"}"#,
        br#"{"Addresses":[]}"#,
    ] {
        assert!(
            matches!(super::id(bad), Err(AnswerError::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn version_of_both_daemons() {
    let js = br#"{"Version":"0.18.1","Commit":"","Repo":"12","ipfs-core":"0.18.1","interface-ipfs-core":"^0.158.1","ipfs-http-client":"^60.0.1"}"#;
    let v = version(js).expect("js version");
    assert_eq!((v.version.as_str(), v.repo.as_str()), ("0.18.1", "12"));
    let kubo = br#"{"Version":"0.29.0","Commit":"3f0947b","Repo":"15","System":"amd64/linux","Golang":"go1.22.4"}"#;
    assert_eq!(version(kubo).expect("kubo version").commit, "3f0947b");
    assert!(version(br#"{"Version":"m.o.c.k"}"#).is_ok());
    assert!(matches!(
        version(br#"{"Version":""}"#),
        Err(AnswerError::Malformed(_))
    ));
}

#[test]
fn pin_types() {
    assert_eq!(
        pin_type("recursive"),
        Ok(IpfsPinType::Recursive { max_depth: None })
    );
    assert_eq!(pin_type("direct"), Ok(IpfsPinType::Direct));
    assert_eq!(
        pin_type("indirect through QmWcX6S261oc3QuLdVqqhPRzGuSNCwKpdKqgVhYt597F9n"),
        Ok(IpfsPinType::Indirect)
    );
    assert!(pin_type("all").is_err());
    assert!(pin_type("").is_err());
}

#[test]
fn pin_ls_streams_of_both_daemons() {
    // js-ipfs: newline-separated, Type before Cid, v1 CIDs in base58btc.
    let js = format!(
        "{{\"Type\":\"recursive\",\"Cid\":\"{V0}\"}}\n{{\"Type\":\"direct\",\"Cid\":\"{RAW_B58}\"}}\n"
    );
    let pins = pin_list(js.as_bytes()).expect("js stream");
    assert_eq!(
        pins,
        vec![
            (cid(V0), IpfsPinType::Recursive { max_depth: None }),
            (cid(RAW_B32), IpfsPinType::Direct)
        ]
    );
    // Kubo: with Name; the upstream mock: objects with no separator at all.
    let kubo = format!(
        "{{\"Cid\":\"{V0}\",\"Name\":\"\",\"Type\":\"recursive\"}}{{\"Cid\":\"{RAW_B32}\",\"Name\":\"x\",\"Type\":\"indirect through {V0}\"}}"
    );
    let pins = pin_list(kubo.as_bytes()).expect("kubo stream");
    assert_eq!(pins[1], (cid(RAW_B58), IpfsPinType::Indirect));
    assert_eq!(pin_list(b"").expect("empty stream"), vec![]);
}

#[test]
fn pin_ls_keys_map() {
    let js = format!(
        "{{\"Keys\":{{\"{V0}\":{{\"Type\":\"recursive\"}},\"{RAW_B58}\":{{\"Type\":\"direct\"}}}}}}"
    );
    let mut pins = pin_list(js.as_bytes()).expect("keys");
    pins.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(pins.len(), 2);
    assert!(pins.contains(&(cid(RAW_B32), IpfsPinType::Direct)));
    assert_eq!(pin_list(br#"{"Keys":{}}"#).expect("empty"), vec![]);
    assert_eq!(pin_list(br#"{"Keys":null}"#).expect("null"), vec![]);
}

#[test]
fn pin_ls_refuses_what_is_not_a_listing() {
    for bad in [
        &br#"{"Cid":"notacid","Type":"recursive"}"#[..],
        br#"{"Cid":"QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo","Type":"sideways"}"#,
        br#"{"Cid":"QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo"}"#,
        br#"{"Keys":{"nope":{"Type":"recursive"}}}"#,
        br#"{"Keys":{"QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo":{}}}"#,
        br#"["QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo"]"#,
        br#"{"Cid":"QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo","Type":"recursive"}{"Cid":"#,
    ] {
        assert!(
            matches!(pin_list(bad), Err(AnswerError::Malformed(_))),
            "{bad:?}"
        );
    }
    // Kubo ends a failed stream with an error object.
    let failed = format!(
        "{{\"Cid\":\"{V0}\",\"Type\":\"recursive\"}}\n{{\"Message\":\"context deadline exceeded\",\"Code\":0,\"Type\":\"error\"}}\n"
    );
    assert_eq!(
        pin_list(failed.as_bytes()),
        Err(AnswerError::StreamedError(
            "context deadline exceeded".into()
        ))
    );
}

#[test]
fn pin_add_answers() {
    let js = format!("{{\"Pins\":[\"{RAW_B58}\"]}}");
    assert_eq!(pins_done(js.as_bytes()).expect("js"), vec![cid(RAW_B32)]);
    let kubo = format!("{{\"Progress\":12}}\n{{\"Progress\":57}}\n{{\"Pins\":[\"{V0}\"]}}\n");
    assert_eq!(pins_done(kubo.as_bytes()).expect("kubo"), vec![cid(V0)]);
    let update = format!("{{\"Pins\":[\"{V0}\",\"{RAW_B32}\"]}}");
    assert_eq!(pins_done(update.as_bytes()).expect("update").len(), 2);
    for bad in [
        &b""[..],
        br#"{"Progress":1}"#,
        br#"{"Pins":["nope"]}"#,
        br#"{"Pins":"QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo"}"#,
        br#"{"Other":1}"#,
    ] {
        assert!(
            matches!(pins_done(bad), Err(AnswerError::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn swarm_peers_answers() {
    let js = br#"{"Peers":[{"Peer":"12D3KooWA5tyqTw6EY4QgA2eZAWxQQji6qWfdsc849ShaVUjyTkD","Addr":"/ip4/127.0.0.1/tcp/49760"}]}"#;
    assert_eq!(
        swarm_peers(js).expect("js"),
        vec!["12D3KooWA5tyqTw6EY4QgA2eZAWxQQji6qWfdsc849ShaVUjyTkD".to_string()]
    );
    let kubo = br#"{"Peers":[{"Addr":"/ip4/1.2.3.4/tcp/4001","Peer":"QmZ8naDy5mEz4GLuQwjWt9MPYqHTBbsm8tQBrNSjiq6zBc","Latency":"","Muxer":"","Direction":0,"Streams":null}]}"#;
    assert_eq!(swarm_peers(kubo).expect("kubo").len(), 1);
    assert!(swarm_peers(br#"{"Peers":null}"#).expect("null").is_empty());
    assert!(swarm_peers(br#"{}"#).is_err());
    assert!(swarm_peers(br#"{"Peers":[{"Peer":"bad peer"}]}"#).is_err());
    assert!(swarm_peers(br#"{"Peers":[{"Addr":"/ip4/1.2.3.4"}]}"#).is_err());
}

#[test]
fn block_put_and_add_answers() {
    let js = br#"{"Key":"bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq","Size":5}"#;
    assert_eq!(block_put(js).expect("block/put"), cid(RAW_B58));
    assert!(block_put(br#"{"Key":"x"}"#).is_err());
    assert!(block_put(br#"{"Size":5}"#).is_err());
    let js_add = br#"{"Name":"a.txt","Hash":"QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo","Size":17,"Mode":"0644"}
"#;
    assert_eq!(added_root(js_add).expect("add"), cid(V0));
    let kubo_add = format!(
        "{{\"Name\":\"a\",\"Bytes\":100}}\n{{\"Name\":\"a/b\",\"Hash\":\"{RAW_B32}\",\"Size\":\"5\"}}\n{{\"Name\":\"a\",\"Hash\":\"{V0}\",\"Size\":\"60\"}}\n"
    );
    assert_eq!(added_root(kubo_add.as_bytes()).expect("kubo add"), cid(V0));
    assert!(added_root(br#"{"Name":"a","Bytes":1}"#).is_err());
    assert!(added_root(br#"{"Hash":7}"#).is_err());
}

#[test]
fn garbage_is_malformed_and_never_panics() {
    for body in GARBAGE {
        assert!(repo_stat(body).is_err(), "repo_stat {body:?}");
        assert!(id(body).is_err(), "id {body:?}");
        assert!(version(body).is_err(), "version {body:?}");
        assert!(pins_done(body).is_err(), "pins_done {body:?}");
        assert!(swarm_peers(body).is_err(), "swarm_peers {body:?}");
        assert!(block_put(body).is_err(), "block_put {body:?}");
        assert!(added_root(body).is_err(), "added_root {body:?}");
        assert_eq!(
            error_body(body).map(|e| e.message),
            None,
            "error_body {body:?}"
        );
        // An empty or blank body is an empty listing; the rest is malformed.
        if !body.iter().all(u8::is_ascii_whitespace) {
            assert!(pin_list(body).is_err(), "pin_list {body:?}");
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A small deterministic fuzz: prefixes and byte flips of real answers.
    let seeds: [&[u8]; 4] = [
        br#"{"Type":"recursive","Cid":"QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo"}"#,
        br#"{"RepoSize":"3165","StorageMax":"9007199254740991"}"#,
        br#"{"Keys":{"QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo":{"Type":"direct"}}}"#,
        br#"{"Pins":["zb2rhZfjRh2FHHB2RkHVEvL2vJnCTcu7kwRqgVsf9gpkLgteo"]}"#,
    ];
    for seed in seeds {
        for cut in 0..seed.len() {
            let mut body = seed.to_vec();
            body[cut] = body[cut].wrapping_add(1);
            for b in [&seed[..cut], &body[..]] {
                let _ = (
                    pin_list(b),
                    repo_stat(b),
                    pins_done(b),
                    id(b),
                    added_root(b),
                );
            }
        }
    }
}

#[test]
fn gc_entries_are_keys_or_errors() {
    let body = br#"{"Key":{"/":"QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo"}}
{"Error":"block in use","Key":null}
"#;
    let entries = repo_gc(body).expect("gc");
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries[0].key.as_deref(),
        Some("QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo")
    );
    assert_eq!(entries[0].error, None);
    assert_eq!(entries[1].key, None);
    assert_eq!(entries[1].error.as_deref(), Some("block in use"));
    assert_eq!(repo_gc(b""), Ok(Vec::new()));
    assert!(repo_gc(b"[1]").is_err());
}

#[test]
fn resolve_answers_give_the_root_cid_in_either_daemons_form() {
    let v0 = "QmXeTAQMkiEmcLsgQMeMmqZb9BNks8UymiFiAn2d6rVYw8";
    // Kubo, and js-ipfs for a sub-path.
    let body = format!(r#"{{"Path":"/ipfs/{v0}"}}"#);
    assert_eq!(resolved(body.as_bytes()), Ok(cid(v0)));
    // js-ipfs for a bare CIDv0: base58 with a multibase prefix.
    let body = format!(r#"{{"Path":"/ipfs/z{v0}"}}"#);
    assert_eq!(resolved(body.as_bytes()), Ok(cid(v0)));
    assert!(resolved(br#"{"Path":"/ipns/example.com"}"#).is_err());
    assert!(resolved(br#"{"Path":7}"#).is_err());
    assert!(matches!(
        resolved(br#"{"Message":"no link named \"x\"","Code":0,"Type":"error"}"#),
        Err(AnswerError::StreamedError(_))
    ));
}

//! Seed inputs made from real values by the code that writes them (the
//! pinset's snapshots, postcard entries, the store's records, the wire
//! encodings), for the corpora under `corpus/<target>/`. The stable runner
//! writes them with `--write-seeds`; the text seeds (Kubo answers, CIDs
//! from the reference docs) are checked in as files.

use std::collections::BTreeMap;

use cluster_core::pinset::{Command, Entry, PinVersion, Pinset, RequestId};
use cluster_core::tracker::PinStatus;
use cluster_core::{Cid, Millis, PeerId, Pin, PinOptions, TrackerStatus};
use cluster_net::fuzzing::{sample_messages, sample_records};
use cluster_node::rpc::{MetricsPush, StatusQuery};

use crate::runner::Rng;

/// The generated seeds of `target`, if it has any.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "cid" => cid_seeds(),
        "pinset_entries" => vec![entries_bytes(&entries()), entries_bytes(&entries()[..2])],
        "snapshot_restore" => snapshots(),
        "snapshot_body" => snapshots()
            .iter()
            .map(|s| s[1..s.len() - 8].to_vec())
            .collect(),
        "state_machine" => (0..6u64)
            .map(|n| {
                let mut rng = Rng::new(n);
                (0..64 << n).map(|_| rng.next_u64() as u8).collect()
            })
            .collect(),
        "raft_store" => sample_records().into_iter().map(|(_, b)| b).collect(),
        "p2p_wire" => wire_seeds(),
        "node_rpc" => node_rpc_seeds(),
        _ => Vec::new(),
    }
}

fn cid(n: u8) -> Cid {
    let mut bytes = vec![0x01, 0x71, 0x12, 0x20];
    bytes.extend([n; 32]);
    Cid::from_bytes(&bytes).expect("a well-formed CIDv1")
}

fn cid_seeds() -> Vec<Vec<u8>> {
    let v0 = Cid::parse("QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq").expect("v0");
    let mut long = vec![0x01, 0x55, 0x13, 0x40];
    long.extend([7u8; 64]);
    let long = Cid::from_bytes(&long).expect("sha2-512");
    let mut out = Vec::new();
    for c in [v0, cid(1), long] {
        out.push(c.as_bytes().to_vec());
        out.push(postcard::to_allocvec(&c).expect("encodes"));
    }
    out
}

fn pin(n: u8, allocations: &[u64], ts: u64) -> Pin {
    let options = PinOptions {
        replication_factor_min: 1,
        replication_factor_max: 3,
        name: format!("pin-{n}"),
        ..Default::default()
    };
    let mut pin = Pin::new(cid(n), options, Millis(ts));
    pin.allocations = allocations.iter().copied().map(PeerId::synthetic).collect();
    pin
}

fn entries() -> Vec<Entry> {
    let mut expiring = pin(3, &[1, 2], 10);
    expiring.options.expire_at = Some(Millis(5_000));
    expiring
        .options
        .metadata
        .insert("owner".into(), "alice".into());
    let mut everywhere = pin(4, &[], 10);
    everywhere.options.replication_factor_min = -1;
    everywhere.options.replication_factor_max = -1;
    vec![
        Entry::new(Command::Pin(pin(1, &[1], 10))),
        Entry {
            request: Some(RequestId {
                client: 9,
                serial: 1,
            }),
            command: Command::Pin(pin(2, &[1, 2], 11)),
        },
        Entry::new(Command::Pin(expiring)),
        Entry::new(Command::Pin(everywhere)),
        Entry::new(Command::Update {
            from: cid(1),
            to: cid(5),
            name: "renamed".into(),
            expire_at: None,
            timestamp: Millis(20),
        }),
        Entry::new(Command::Reallocate {
            cid: cid(2),
            allocations: vec![PeerId::synthetic(3)],
            version: PinVersion(2),
        }),
        Entry::new(Command::RemovePeer {
            peer: PeerId::synthetic(1),
        }),
        Entry::new(Command::Expire {
            cid: cid(3),
            version: PinVersion(7),
        }),
        Entry::new(Command::Unpin { cid: cid(4) }),
    ]
}

fn entries_bytes(entries: &[Entry]) -> Vec<u8> {
    entries
        .iter()
        .flat_map(|e| postcard::to_allocvec(e).expect("encodes"))
        .collect()
}

/// Snapshots of pinsets after a few entries each (extras, sessions and
/// under-replicated pins included).
fn snapshots() -> Vec<Vec<u8>> {
    let all = entries();
    [0, 1, 3, 7, all.len()]
        .iter()
        .map(|&n| {
            let mut pinset = Pinset::new();
            for (i, e) in all[..n].iter().enumerate() {
                let _ = pinset.apply(i as u64 + 1, e);
            }
            pinset.snapshot()
        })
        .collect()
}

fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

fn wire_seeds() -> Vec<Vec<u8>> {
    let mut messages = sample_messages();
    // Node RPCs: a request (method and body) and answers, as the swarm sends them.
    let push = postcard::to_allocvec(&metrics()).expect("encodes");
    messages.push(postcard::to_allocvec(&("metrics/push/v1", push)).expect("encodes"));
    let ok: Result<Vec<u8>, String> = Ok(vec![1, 2, 3]);
    let failed: Result<Vec<u8>, String> = Err("unknown node method".into());
    messages.push(postcard::to_allocvec(&ok).expect("encodes"));
    messages.push(postcard::to_allocvec(&failed).expect("encodes"));
    messages.iter().map(|m| frame(m)).collect()
}

fn metrics() -> MetricsPush {
    MetricsPush {
        peer: PeerId::synthetic(1),
        free_space_bytes: 10 << 30,
        pinned: 12,
        queue_len: 3,
        tags: BTreeMap::from([("region".to_string(), "eu".to_string())]),
        ipfs_peer_id: "12D3KooWGFx3Awy1JSiPs3QonrFXCW62pdXtFjLdxwAn7NVyvBY5".into(),
        ipfs_addresses: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        ttl_ms: 30_000,
    }
}

fn node_rpc_seeds() -> Vec<Vec<u8>> {
    let status = |status, error: &str| PinStatus {
        status,
        error: error.into(),
        attempts: 1,
        priority: false,
    };
    let answer = vec![
        (cid(1), status(TrackerStatus::Pinned, "")),
        (cid(2), status(TrackerStatus::PinError, "ipfs said no")),
    ];
    vec![
        postcard::to_allocvec(&metrics()).expect("encodes"),
        postcard::to_allocvec(&StatusQuery {
            cids: Some(vec![cid(1), cid(2)]),
        })
        .expect("encodes"),
        postcard::to_allocvec(&StatusQuery { cids: None }).expect("encodes"),
        postcard::to_allocvec(&answer).expect("encodes"),
        postcard::to_allocvec(&41u64).expect("encodes"),
    ]
}

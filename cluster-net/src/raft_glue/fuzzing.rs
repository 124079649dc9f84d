//! Hooks for the fuzz targets in `fuzz/` (not an API; hidden from the
//! docs): the stored-record decoders exactly as the store's readers call
//! them, and real records and wire messages to seed the fuzz corpora. The
//! record and message types stay private; callers see `Debug` text, bytes
//! and the pinset entries a log entry carries.

use std::collections::{BTreeMap, BTreeSet};

use cluster_core::pinset::{Applied, ApplyError, Command, Entry, PinChange};
use cluster_core::{Cid, Millis, PeerId, Pin, PinOptions};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::{CommittedLeaderId, EntryPayload, Membership, StoredMembership, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec::{decode, encode};
use super::identity::StoreIdentity;
use super::rpc::{RefusedReason, RequestBody, ResponseBody, RpcRequest, RpcResponse};
use super::types::{LogId, NodeId, NodeInfo, RaftEntry, SnapshotMeta};
use crate::store::StoreError;

/// The records a store holds, each named after the reader that decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// One Raft log entry.
    LogEntry,
    /// The vote (`MetaKey::Vote`).
    Vote,
    /// A log id (`MetaKey::Committed`, `MetaKey::LastPurged`).
    LogId,
    /// The snapshot's metadata (`MetaKey::SnapshotMeta`).
    SnapshotMeta,
    /// The store's owner (`MetaKey::Identity`).
    Identity,
    /// The cluster id (`MetaKey::ClusterId`).
    ClusterId,
    /// The joining flag (`MetaKey::Joining`).
    Joining,
}

impl Record {
    /// Every record kind.
    pub const ALL: [Record; 7] = [
        Record::LogEntry,
        Record::Vote,
        Record::LogId,
        Record::SnapshotMeta,
        Record::Identity,
        Record::ClusterId,
        Record::Joining,
    ];
}

/// What a stored record decoded to.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The value's `Debug` text (round trips compare it).
    pub debug: String,
    /// The value as the store's writer encodes it.
    pub reencoded: Vec<u8>,
    /// A log entry's index and the pinset entries it carries (empty for a
    /// blank or membership entry).
    pub entries: Option<(u64, Vec<Entry>)>,
}

fn decoded<T: Serialize + DeserializeOwned + std::fmt::Debug>(
    bytes: &[u8],
    what: &str,
) -> Result<(T, Decoded), StoreError> {
    let value: T = decode(bytes, what)?;
    let decoded = Decoded {
        debug: format!("{value:?}"),
        reencoded: encode(&value, what)?,
        entries: None,
    };
    Ok((value, decoded))
}

/// Decodes `bytes` as the store's reader of `record` does.
pub fn decode_record(record: Record, bytes: &[u8]) -> Result<Decoded, StoreError> {
    Ok(match record {
        Record::LogEntry => {
            let (entry, mut out) = decoded::<RaftEntry>(bytes, "log entry")?;
            let entries = match entry.payload {
                EntryPayload::Normal(batch) => batch,
                EntryPayload::Blank | EntryPayload::Membership(_) => Vec::new(),
            };
            out.entries = Some((entry.log_id.index, entries));
            out
        }
        Record::Vote => decoded::<Vote<NodeId>>(bytes, "vote")?.1,
        Record::LogId => decoded::<LogId>(bytes, "last purged")?.1,
        Record::SnapshotMeta => decoded::<SnapshotMeta>(bytes, "snapshot meta")?.1,
        Record::Identity => decoded::<StoreIdentity>(bytes, "store identity")?.1,
        // Read as `u128::from_be_bytes(decode(..))` by the cluster id cell.
        Record::ClusterId => decoded::<[u8; 16]>(bytes, "cluster id")?.1,
        Record::Joining => decoded::<()>(bytes, "joining flag")?.1,
    })
}

fn cid(n: u8) -> Cid {
    let mut bytes = vec![0x01, 0x55, 0x12, 0x20];
    bytes.extend([n; 32]);
    Cid::from_bytes(&bytes).expect("invariant: a well-formed CIDv1")
}

fn pin(n: u8, allocations: &[u64]) -> Pin {
    let options = PinOptions {
        replication_factor_min: 1,
        replication_factor_max: 2,
        name: format!("pin-{n}"),
        ..Default::default()
    };
    let mut pin = Pin::new(cid(n), options, Millis(1_700_000_000_000));
    pin.allocations = allocations.iter().copied().map(PeerId::synthetic).collect();
    pin
}

fn batch() -> Vec<Entry> {
    vec![
        Entry::new(Command::Pin(pin(1, &[1]))),
        Entry {
            request: Some(cluster_core::pinset::RequestId {
                client: 7,
                serial: 3,
            }),
            command: Command::Unpin { cid: cid(2) },
        },
        Entry::new(Command::RemovePeer {
            peer: PeerId::synthetic(2),
        }),
    ]
}

fn node(n: u64) -> NodeInfo {
    NodeInfo {
        peer_id: PeerId::synthetic(n).to_string(),
        addr: format!("/ip4/127.0.0.1/tcp/{}", 9000 + n),
        incarnation: u128::from(n) << 64 | 1,
    }
}

fn membership() -> Membership<NodeId, NodeInfo> {
    let nodes: BTreeMap<NodeId, NodeInfo> = (1..=3).map(|n| (n, node(n))).collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn snapshot_meta() -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(log_id(2, 40)),
        last_membership: StoredMembership::new(Some(log_id(1, 1)), membership()),
        snapshot_id: "2-40-7".to_string(),
    }
}

/// Real records as the store's writers encode them, to seed a corpus.
pub fn sample_records() -> Vec<(Record, Vec<u8>)> {
    let entry = |payload| RaftEntry {
        log_id: log_id(2, 41),
        payload,
    };
    let records: Vec<(Record, Result<Vec<u8>, StoreError>)> = vec![
        (
            Record::LogEntry,
            encode(&entry(EntryPayload::Normal(batch())), "log entry"),
        ),
        (
            Record::LogEntry,
            encode(&entry(EntryPayload::Blank), "log entry"),
        ),
        (
            Record::LogEntry,
            encode(&entry(EntryPayload::Membership(membership())), "log entry"),
        ),
        (Record::Vote, encode(&Vote::new_committed(2, 1u64), "vote")),
        (Record::LogId, encode(&log_id(2, 40), "last purged")),
        (Record::SnapshotMeta, encode(&snapshot_meta(), "meta")),
        (
            Record::Identity,
            encode(
                &StoreIdentity {
                    peer_id: node(1).peer_id,
                    incarnation: 0x1234,
                },
                "identity",
            ),
        ),
        (
            Record::ClusterId,
            encode(&0xfeed_u128.to_be_bytes(), "cluster id"),
        ),
        (Record::Joining, encode(&(), "joining flag")),
    ];
    records
        .into_iter()
        .map(|(r, bytes)| (r, bytes.expect("invariant: samples encode")))
        .collect()
}

/// Real wire messages (requests of the Raft and peer-RPC protocols, then
/// responses) in their transport encoding, to seed a corpus.
pub fn sample_messages() -> Vec<Vec<u8>> {
    let vote = Vote::new(2, 1u64);
    let request = |body| RpcRequest {
        cluster_id: Some(0xfeed),
        target_incarnation: node(2).incarnation,
        body,
    };
    let append = AppendEntriesRequest {
        vote,
        prev_log_id: Some(log_id(2, 40)),
        entries: vec![RaftEntry {
            log_id: log_id(2, 41),
            payload: EntryPayload::Normal(batch()),
        }],
        leader_commit: Some(log_id(2, 40)),
    };
    let requests = [
        request(RequestBody::Vote(VoteRequest::new(
            vote,
            Some(log_id(1, 9)),
        ))),
        request(RequestBody::AppendEntries(append)),
        request(RequestBody::Forward(batch())),
        request(RequestBody::Join(node(4))),
        request(RequestBody::Remove(node(3).peer_id)),
        request(RequestBody::Identify),
        request(RequestBody::Add(node(5))),
    ];
    let response = |body| RpcResponse { body };
    let responses = [
        response(ResponseBody::AppendEntries(Ok(
            AppendEntriesResponse::Success,
        ))),
        response(ResponseBody::Vote(Ok(VoteResponse::new(
            vote,
            Some(log_id(1, 9)),
            true,
        )))),
        response(ResponseBody::Applied {
            index: 41,
            results: vec![
                Ok(Applied::Pinned {
                    cid: cid(1),
                    change: PinChange::Created,
                }),
                Err(ApplyError::NotFound(cid(2))),
            ],
        }),
        response(ResponseBody::NotLeader {
            leader: Some(node(1)),
        }),
        response(ResponseBody::Refused(RefusedReason::WrongIncarnation {
            ours: 1,
            addressed: 2,
        })),
        response(ResponseBody::Failed("undecodable request".into())),
    ];
    let mut out: Vec<Vec<u8>> = requests
        .iter()
        .map(|r| r.to_bytes().expect("invariant: samples encode"))
        .collect();
    out.extend(
        responses
            .iter()
            .map(|r| r.to_bytes().expect("invariant: samples encode")),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_decode_with_the_readers_and_round_trip() {
        for (record, bytes) in sample_records() {
            let d = decode_record(record, &bytes).expect("sample decodes");
            assert_eq!(d.reencoded, bytes, "{record:?}");
            if record == Record::LogEntry {
                assert!(d.entries.is_some());
            }
        }
        let messages = sample_messages();
        assert!(RpcRequest::from_bytes(&messages[0]).is_ok());
        assert!(RpcResponse::from_bytes(messages.last().expect("some")).is_ok());
    }
}

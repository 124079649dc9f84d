//! The node layer's peer RPC messages (cluster-node's `rpc`): requests as
//! the router decodes them and answers as the caller decodes them. Accepted
//! messages must re-encode to the same value.

use cluster_node::rpc::{
    decode, MetricsPush, StatusAnswer, StatusQuery, METRICS_PUSH, TRACKER_STATUS,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decodes `data` as every request and answer body.
pub fn run(data: &[u8]) {
    if let Ok(push) = decode::<MetricsPush>(METRICS_PUSH, data) {
        round_trip(&push);
    }
    if let Ok(query) = decode::<StatusQuery>(TRACKER_STATUS, data) {
        round_trip(&query);
    }
    if let Ok(answer) = postcard::from_bytes::<StatusAnswer>(data) {
        round_trip(&answer);
        for (cid, status) in &answer {
            let _ = (cid.to_string(), status.status.to_string());
        }
    }
    if let Ok(applied) = postcard::from_bytes::<u64>(data) {
        round_trip(&applied);
    }
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let bytes = postcard::to_allocvec(value).expect("a decoded message encodes");
    let again: T = postcard::from_bytes(&bytes).expect("a re-encoded message decodes");
    assert_eq!(&again, value, "round trip");
}

//! libp2p wire messages: the size-capped framing of cluster-net's codec,
//! then the messages of the Raft and peer-RPC protocols (`RpcRequest`,
//! `RpcResponse`) and of the node-RPC protocol (method and body, answer).
//! Decoders run on the framed message and on the raw bytes (so the fuzzer
//! reaches them without learning the frame first).

use cluster_net::p2p::{decode_node_request, decode_node_response, read_frame};
use cluster_net::{RpcRequest, RpcResponse};

/// The cap the frame reader gets (the default limit is larger; what matters
/// is that it is enforced).
const CAP_BYTES: usize = 64 * 1024;

/// Reads a frame off `data`, then decodes it as every message type.
pub fn run(data: &[u8]) {
    decode_all(data);
    let Ok(message) = read_frame(data, CAP_BYTES) else {
        return;
    };
    assert!(message.len() <= CAP_BYTES, "a frame over the cap was read");
    assert_eq!(
        &data[4..4 + message.len()],
        &message[..],
        "frame body as sent"
    );
    // The cap is exact: one byte less refuses the same frame.
    if let Some(smaller) = message.len().checked_sub(1) {
        assert!(read_frame(data, smaller).is_err(), "cap not enforced");
    }
    decode_all(&message);
}

fn decode_all(bytes: &[u8]) {
    if let Ok(request) = RpcRequest::from_bytes(bytes) {
        let again = RpcRequest::from_bytes(&request.to_bytes().expect("a request encodes"))
            .expect("a re-encoded request decodes");
        assert_eq!(
            format!("{again:?}"),
            format!("{request:?}"),
            "request round trip"
        );
        let _ = (request.kind(), request.is_raft_protocol());
    }
    if let Ok(response) = RpcResponse::from_bytes(bytes) {
        let again = RpcResponse::from_bytes(&response.to_bytes().expect("a response encodes"))
            .expect("a re-encoded response decodes");
        assert_eq!(
            format!("{again:?}"),
            format!("{response:?}"),
            "response round trip"
        );
    }
    let _ = decode_node_request(bytes);
    let _ = decode_node_response(bytes);
}

//! Node RPCs (tracker status, metrics) between two libp2p hosts on
//! 127.0.0.1: answers, remote errors, and the secret gate.

use std::sync::Arc;

use cluster_net::p2p::{ClusterSecret, Libp2pConfig, Libp2pTransport};
use cluster_net::transport::BoxFuture;
use cluster_net::{NodeInfo, NodeRpc, NodeRpcError, NodeRpcHandler};

const SECRET: &str = "0a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223242526272829";

/// Answers `status` with the caller's id and the body reversed.
struct Status;

impl NodeRpcHandler for Status {
    fn handle(
        &self,
        from: &str,
        method: &str,
        body: Vec<u8>,
    ) -> BoxFuture<Result<Vec<u8>, String>> {
        let answer = match method {
            "status" => {
                let mut out = from.as_bytes().to_vec();
                out.push(b':');
                out.extend(body.iter().rev());
                Ok(out)
            }
            other => Err(format!("unknown method {other}")),
        };
        Box::pin(async move { answer })
    }
}

async fn host(dir: &std::path::Path, secret: &str) -> Libp2pTransport {
    let mut config = Libp2pConfig::fast_for_tests(dir);
    config.secret = Some(ClusterSecret::parse(secret).expect("secret"));
    Libp2pTransport::start(config).await.expect("start")
}

fn info(net: &Libp2pTransport) -> NodeInfo {
    NodeInfo {
        peer_id: net.peer_id().to_string(),
        addr: net.addr(),
        incarnation: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_rpcs_are_answered_with_the_callers_id() {
    let root = tempfile::tempdir().expect("temp dir");
    let a = host(&root.path().join("a"), SECRET).await;
    let b = host(&root.path().join("b"), SECRET).await;

    // No handler yet: a remote error, not a hang.
    let answer = b.node_call(&info(&a), "status", b"abc".to_vec()).await;
    assert!(
        matches!(&answer, Err(NodeRpcError::Remote { reason, .. }) if reason.contains("no node rpcs")),
        "{answer:?}"
    );

    a.register_node_rpc(Arc::new(Status));
    let answer = b
        .node_call(&info(&a), "status", b"abc".to_vec())
        .await
        .expect("answer");
    assert_eq!(answer, format!("{}:cba", b.peer_id()).into_bytes());
    let answer = b.node_call(&info(&a), "metrics", Vec::new()).await;
    assert!(
        matches!(&answer, Err(NodeRpcError::Remote { reason, .. }) if reason == "unknown method metrics"),
        "{answer:?}"
    );
    let answer = b.node_call(&info(&a), &"m".repeat(65), Vec::new()).await;
    assert!(
        matches!(answer, Err(NodeRpcError::Transport(_))),
        "{answer:?}"
    );

    // A host with another secret cannot ask.
    let stranger = host(&root.path().join("c"), &SECRET.replace('0', "f")).await;
    let answer = stranger.node_call(&info(&a), "status", Vec::new()).await;
    assert!(
        matches!(&answer, Err(NodeRpcError::Transport(t)) if t.not_delivered()),
        "{answer:?}"
    );
    for h in [a, b, stranger] {
        h.shutdown().await;
    }
}

//! In-process tests of the embedded node: two nodes on loopback in one
//! test process (the cross-process scenarios are in `tests/e2e_embedded.rs`).

use super::*;

fn config(dir: &Path) -> EmbeddedConfig {
    let mut c = EmbeddedConfig::new(dir);
    c.pin_timeout = Duration::from_secs(20);
    c
}

async fn started(dir: &Path) -> EmbeddedConnector {
    EmbeddedConnector::start(config(dir)).await.expect("start")
}

fn mine(pins: &[ListedPin], cid: &Cid) -> Option<(IpfsPinType, bool)> {
    pins.iter()
        .find(|p| &p.cid == cid)
        .map(|p| (p.pin_type, p.by_cluster))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_and_marks_survive_a_restart_under_a_new_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = started(dir.path()).await;
    let first = node.id().await.expect("id");
    assert!(!first.addresses.is_empty(), "listens: {first:?}");
    assert!(first
        .addresses
        .iter()
        .all(|a| a.starts_with("/ip4/127.0.0.1/tcp/")));
    let cid = node
        .add_bytes("a.txt", b"kept across restarts")
        .await
        .expect("add");
    node.pin(&cid, -1).await.expect("pin");
    node.shutdown().await;
    drop(node);

    let node = started(dir.path()).await;
    // A new peer id at each start (why: the module docs).
    assert_ne!(node.id().await.expect("id").peer_id, first.peer_id);
    let pins = node.list_pins().await.expect("list");
    assert_eq!(
        mine(&pins, &cid),
        Some((IpfsPinType::Recursive { max_depth: None }, true))
    );
    node.unpin(&cid).await.expect("unpin");
    assert_eq!(mine(&node.list_pins().await.expect("list"), &cid), None);
    assert!(!node.is_marked(&cid));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_pin_is_not_the_clusters_and_unpin_leaves_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = started(dir.path()).await;
    let cid = node.add_bytes("u.txt", b"the user's").await.expect("add");
    node.inner
        .node
        .insert_pin(to_node_cid(&cid).expect("cid"))
        .recursive()
        .await
        .expect("user pin");
    node.pin(&cid, -1)
        .await
        .expect("cluster pin on a user's pin");
    let pins = node.list_pins().await.expect("list");
    assert_eq!(
        mine(&pins, &cid),
        Some((IpfsPinType::Recursive { max_depth: None }, false))
    );
    node.unpin(&cid).await.expect("unpin");
    let pins = node.list_pins().await.expect("list");
    assert!(mine(&pins, &cid).is_some(), "the user's pin stays");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_pins_and_repo_stat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = started(dir.path()).await;
    let cid = node.add_bytes("d.txt", &[7u8; 1000]).await.expect("add");
    node.pin(&cid, 0).await.expect("direct pin");
    let pins = node.list_pins().await.expect("list");
    assert_eq!(mine(&pins, &cid), Some((IpfsPinType::Direct, true)));
    // A recursive pin serves a later direct request, not the other way.
    node.pin(&cid, -1).await.expect("deepen");
    let pins = node.list_pins().await.expect("list");
    assert_eq!(
        mine(&pins, &cid),
        Some((IpfsPinType::Recursive { max_depth: None }, true))
    );
    let stat = node.repo_stat().await.expect("stat");
    assert!(stat.repo_size >= 1000, "{stat:?}");
    assert!(stat.free_space() > 0, "{stat:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_moves_between_two_nodes_by_bitswap() {
    let (da, db) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let (a, b) = (started(da.path()).await, started(db.path()).await);
    // Bigger than one chunk: a DAG of several blocks.
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let cid = a.add_bytes("big.bin", &data).await.expect("add");
    let ida = a.id().await.expect("id");
    let target = format!("{}/p2p/{}", ida.addresses[0], ida.peer_id);
    b.swarm_connect(&target).await.expect("connect");
    b.pin(&cid, -1).await.expect("pin fetched from a");
    let pins = b.list_pins().await.expect("list");
    assert_eq!(
        mine(&pins, &cid),
        Some((IpfsPinType::Recursive { max_depth: None }, true))
    );
    assert!(b.repo_stat().await.expect("stat").repo_size >= data.len() as u64);
    assert_eq!(b.swarm_peers().await.expect("peers"), vec![ida.peer_id]);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_nobody_can_serve_times_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.pin_timeout = Duration::from_millis(500);
    let node = EmbeddedConnector::start(c).await.expect("start");
    let absent =
        Cid::parse("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy").expect("cid");
    let err = node
        .pin(&absent, -1)
        .await
        .expect_err("nothing to fetch from");
    assert!(matches!(err, IpfsError::Timeout { .. }), "{err}");
    assert!(
        node.is_marked(&absent),
        "a timed-out pin keeps its mark for the retry"
    );
    node.shutdown().await;
}

#[test]
fn a_swarm_address_without_a_peer_id_is_refused() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = started(dir.path()).await;
        let err = node
            .swarm_connect("/ip4/127.0.0.1/tcp/1")
            .await
            .expect_err("no peer id");
        assert!(matches!(err, IpfsError::Daemon { .. }), "{err}");
        node.shutdown().await;
    });
}

/// `node`'s swarm address with its peer id, as the metrics carry it.
async fn contact(node: &EmbeddedConnector) -> String {
    let id = node.id().await.expect("id");
    format!("{}/p2p/{}", id.addresses[0], id.peer_id)
}

/// Regression: with the identity kept across restarts, the node that
/// stayed up ignored every bitswap message of the restarted one (see the
/// module docs of `embedded`), and this pin timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_fetches_new_content_from_a_node_it_knew() {
    let (da, db) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let a = started(da.path()).await;
    let before = a
        .add_bytes("before", b"held before the restart")
        .await
        .expect("add");
    let after = a
        .add_bytes("after", b"asked after the restart")
        .await
        .expect("add");
    let b = started(db.path()).await;
    // Both sides dial, as the peers' metrics drivers do.
    b.swarm_connect(&contact(&a).await)
        .await
        .expect("b dials a");
    a.swarm_connect(&contact(&b).await)
        .await
        .expect("a dials b");
    b.pin(&before, -1)
        .await
        .expect("fetched before the restart");
    b.shutdown().await;
    drop(b);

    let b = started(db.path()).await;
    b.swarm_connect(&contact(&a).await)
        .await
        .expect("b dials a again");
    a.swarm_connect(&contact(&b).await)
        .await
        .expect("a dials b again");
    b.pin(&after, -1).await.expect("fetched after the restart");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_what_no_pin_holds_and_keeps_pinned_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = started(dir.path()).await;
    let kept = node.add_bytes("kept", &[1u8; 300_000]).await.expect("add");
    let loose = node.add_bytes("loose", &[2u8; 300_000]).await.expect("add");
    node.pin(&kept, -1).await.expect("pin");
    let removed = node.repo_gc().await.expect("gc");
    // The repo keys blocks by multihash: removed keys come as CIDv1.
    let loose_v1 = to_node_cid(&loose).expect("cid").into_v1().expect("v1");
    let keys: Vec<String> = removed.iter().filter_map(|e| e.key.clone()).collect();
    assert!(
        keys.iter().any(|k| k
            .parse::<NodeCid>()
            .ok()
            .map(|c| c.hash() == loose_v1.hash())
            == Some(true)),
        "gc kept {loose}: {keys:?}"
    );
    let has = |cid: &Cid| {
        let cid = to_node_cid(cid).expect("cid");
        let repo = node.node().repo().clone();
        async move { repo.contains(&cid).await.expect("contains") }
    };
    assert!(has(&kept).await);
    assert!(!has(&loose).await);
    // Every block of the pinned file is still there.
    let content: Vec<u8> = node
        .node()
        .cat_unixfs(to_node_cid(&kept).expect("cid"))
        .local()
        .map(|chunk| chunk.expect("a kept block").to_vec())
        .concat()
        .await;
    assert_eq!(content, vec![1u8; 300_000]);
    // A sub-path resolves to the CID it names; the root to itself.
    let path = IpfsPath::parse(&format!("/ipfs/{kept}")).expect("path");
    assert_eq!(node.resolve(&path).await.expect("resolve"), kept);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpc_api_refuses_browsers_other_methods_and_unserved_commands() {
    use axum::body::Body;
    use axum::extract::{RawQuery, State};
    use axum::http::{Request, StatusCode};
    let dir = tempfile::tempdir().expect("tempdir");
    let node = started(dir.path()).await;
    let call = |method: &str, path: &str, origin: Option<&str>| {
        let mut r = Request::builder().method(method).uri(path);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        let request = r.body(Body::empty()).expect("request");
        let query = request.uri().query().map(String::from);
        rpc::dispatch(State(node.clone()), RawQuery(query), request)
    };
    let body = |r: axum::response::Response| async move {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        serde_json::from_slice::<serde_json::Value>(&bytes).expect("json")
    };
    let ok = call("POST", "/api/v0/version", None).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let from_a_page = call("POST", "/api/v0/version", Some("http://evil.example")).await;
    assert_eq!(from_a_page.status(), StatusCode::FORBIDDEN);
    assert_eq!(body(from_a_page).await["Type"], "error");
    let get = call("GET", "/api/v0/version", None).await;
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    let unserved = call("POST", "/api/v0/key/list", None).await;
    assert_eq!(unserved.status(), StatusCode::NOT_IMPLEMENTED);
    let said = body(unserved).await;
    assert!(
        said["Message"]
            .as_str()
            .is_some_and(|m| m.contains("needs an external IPFS daemon")),
        "{said}"
    );
    let bad = call("POST", "/api/v0/block/stat?arg=not-a-cid", None).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    node.shutdown().await;
}

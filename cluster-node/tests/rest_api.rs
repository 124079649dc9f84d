//! The REST API end to end: a real single-peer (and a three-peer)
//! consensus in process, the node's drivers over an in-memory IPFS, the
//! API served on 127.0.0.1:0, and real HTTP requests through the typed
//! client and raw hyper requests. Shapes are checked against the examples
//! of rest-api.md.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_core::{Cid, PeerId, PinMode, PinOptions, PinType, TrackerStatus};
use cluster_net::inproc::InProcRouter;
use cluster_node::api::client::{Client, ClientConfig, ClientError, StatusQuery};
use cluster_node::api::rest::{RestApi, RestConfig};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::oneshot;

mod inproc;
use inproc::*;

/// Polls the API until `cid`'s status on every peer it lists is `want`.
async fn wait_status(client: &Client, cid: &Cid, want: TrackerStatus) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let info = client.status(cid, false).await.expect("status");
        if !info.peer_map.is_empty() && info.peer_map.values().all(|p| p.status == want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{cid} never {want}: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// A raw answer: status, headers, body and trailers.
struct Raw {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn raw(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Raw {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut request = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(Full::new(Bytes::from(body))).expect("request");
    let response = client.request(request).await.expect("answer");
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("body");
    let trailers = collected.trailers().cloned();
    Raw {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}

async fn get(url: &str) -> Raw {
    raw("GET", url, &[("te", "trailers")], Vec::new()).await
}

/// `json`'s keys are exactly `keys`, and `text` prints them in this order.
fn assert_fields(json: &Value, text: &str, keys: &[&str]) {
    let object = json
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {json}"));
    let got: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = keys.iter().copied().collect();
    assert_eq!(got, want, "fields of {json}");
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).expect("key in text"))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "fields out of order in {text}"
    );
}

const PIN_FIELDS: [&str; 16] = [
    "replication_factor_min",
    "replication_factor_max",
    "name",
    "mode",
    "shard_size",
    "user_allocations",
    "expire_at",
    "metadata",
    "pin_update",
    "origins",
    "cid",
    "type",
    "allocations",
    "max_depth",
    "reference",
    "timestamp",
];

fn first_line(raw: &Raw) -> (Value, String) {
    let text = raw.text();
    let line = text.lines().next().expect("a line").to_string();
    let json = serde_json::from_str(&line).expect("json line");
    (json, line)
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_status_unpin_round_trip_through_the_typed_client() {
    let peer = lone_peer(|_| {}).await;
    let client = peer.client();
    let c = cid(1);
    let mut options = PinOptions {
        name: "backup".into(),
        ..PinOptions::default()
    };
    options.metadata.insert("owner".into(), "alice".into());
    let pin = client.pin(&c, &options).await.expect("pin");
    assert_eq!(pin.cid, c);
    // 0/0 became the cluster default (everywhere).
    assert_eq!(
        (pin.replication_factor_min, pin.replication_factor_max),
        (-1, -1)
    );
    assert!(pin.allocations.is_empty());
    assert_eq!(pin.pin_type, PinType::Data);
    assert_eq!(pin.max_depth, -1);
    wait_status(&client, &c, TrackerStatus::Pinned).await;
    assert!(peer.ipfs.pins.lock().expect("lock").contains_key(&c));

    let status = client.status(&c, false).await.expect("status");
    assert_eq!(status.name, "backup");
    assert_eq!(
        status
            .metadata
            .as_ref()
            .and_then(|m| m.get("owner"))
            .map(String::as_str),
        Some("alice")
    );
    let entry = status
        .peer_map
        .get(peer.ctx.id.as_str())
        .expect("own entry");
    assert!(entry.peername.starts_with("node-"));
    assert_eq!(
        entry.ipfs_peer_id.as_deref(),
        Some("12D3KooWKuJ8LPTyHbyX4nt4C7uWmUobzFsiceTVoFw7HpmoNakM")
    );
    let local = client.status(&c, true).await.expect("local status");
    assert_eq!(local.peer_map.len(), 1);

    let stored = client.allocation(&c).await.expect("allocation");
    assert_eq!(stored.name, "backup");
    assert_eq!(stored.user_allocations, None);
    assert_eq!(stored.origins, Some(Vec::new()));
    let all = client.allocations(&[]).await.expect("allocations");
    assert_eq!(all.len(), 1);
    let listed = client
        .status_all(&StatusQuery::default())
        .await
        .expect("all");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].cid, c);

    let removed = client.unpin(&c).await.expect("unpin");
    assert_eq!(removed.cid, c);
    wait_status(&client, &c, TrackerStatus::Unpinned).await;
    assert!(!peer.ipfs.pins.lock().expect("lock").contains_key(&c));
    match client.allocation(&c).await {
        Err(ClientError::Api { code: 404, message }) => {
            assert_eq!(message, "pin is not part of the pinset")
        }
        other => panic!("expected 404, got {other:?}"),
    }
    match client.unpin(&c).await {
        Err(e) => assert_eq!(e.code(), 404, "{e}"),
        Ok(p) => panic!("unpinned twice: {p:?}"),
    }
    // Nothing left: an empty listing is 204, which the client reads as [].
    assert!(client.allocations(&[]).await.expect("empty").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_shapes_and_headers_follow_the_reference() {
    let peer = lone_peer(|_| {}).await;
    let c = cid(2);
    let post = raw(
        "POST",
        &peer.url(&format!(
            "/pins/{c}?replication-min=1&replication-max=1&name=backup&meta-owner=alice"
        )),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(post.status, StatusCode::OK, "{}", post.text());
    assert_eq!(post.header("content-type"), Some("application/json"));
    assert!(post.text().ends_with("}\n"));
    let json = post.json();
    assert_fields(&json, &post.text(), &PIN_FIELDS);
    assert_eq!(json["cid"], c.to_string());
    assert_eq!(json["type"], "pin");
    assert_eq!(json["mode"], "recursive");
    assert_eq!(json["metadata"]["owner"], "alice");
    assert_eq!(json["origins"], Value::Null);
    assert_eq!(json["user_allocations"], Value::Null);
    assert_eq!(json["pin_update"], Value::Null);
    assert_eq!(json["expire_at"], "0001-01-01T00:00:00Z");
    assert_eq!(
        json["allocations"],
        serde_json::json!([peer.ctx.id.as_str()])
    );
    assert!(json["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));

    // Read back: the state's form.
    let back = get(&peer.url(&format!("/allocations/{c}"))).await;
    let json = back.json();
    assert_fields(&json, &back.text(), &PIN_FIELDS);
    assert_eq!(json["user_allocations"], Value::Null);
    assert_eq!(json["origins"], serde_json::json!([]));

    // A stream: JSON lines, the trailer announced and sent empty.
    let listing = get(&peer.url("/allocations")).await;
    assert_eq!(listing.status, StatusCode::OK);
    assert_eq!(listing.header("content-type"), Some("application/json"));
    assert_eq!(listing.header("trailer"), Some("X-Stream-Error"));
    let trailers = listing.trailers.as_ref().expect("trailers sent");
    assert_eq!(
        trailers.get("x-stream-error").map(|v| v.as_bytes()),
        Some(&b""[..])
    );
    let (line, text) = first_line(&listing);
    assert_fields(&line, &text, &PIN_FIELDS);

    let client = peer.client();
    wait_status(&client, &c, TrackerStatus::Pinned).await;
    let status = get(&peer.url(&format!("/pins/{c}"))).await;
    let json = status.json();
    assert_fields(
        &json,
        &status.text(),
        &[
            "cid",
            "name",
            "allocations",
            "origins",
            "created",
            "metadata",
            "peer_map",
        ],
    );
    let entry = &json["peer_map"][peer.ctx.id.as_str()];
    let entry_text = serde_json::to_string(entry).expect("text");
    assert_fields(
        entry,
        &status.text(),
        &[
            "peername",
            "ipfs_peer_id",
            "ipfs_peer_addresses",
            "status",
            "timestamp",
            "error",
            "attempt_count",
            "priority_pin",
        ],
    );
    assert!(entry_text.contains("\"status\":\"pinned\""), "{entry_text}");
    let (line, text) = first_line(&get(&peer.url("/pins")).await);
    assert_eq!(line["cid"], c.to_string());
    assert!(text.contains("\"peer_map\""));

    let id = get(&peer.url("/id")).await;
    assert_eq!(id.status, StatusCode::OK);
    assert_fields(
        &id.json(),
        &id.text(),
        &[
            "id",
            "addresses",
            "cluster_peers",
            "cluster_peers_addresses",
            "version",
            "commit",
            "rpc_protocol_version",
            "error",
            "ipfs",
            "peername",
        ],
    );
    let id = id.json();
    assert_eq!(id["id"], peer.ctx.id.as_str());
    assert_eq!(
        id["cluster_peers"],
        serde_json::json!([peer.ctx.id.as_str()])
    );
    assert_eq!(
        id["ipfs"]["id"],
        "12D3KooWKuJ8LPTyHbyX4nt4C7uWmUobzFsiceTVoFw7HpmoNakM"
    );
    assert_eq!(id["ipfs"]["error"], "");
    let version = get(&peer.url("/version")).await.json();
    assert!(version["version"]
        .as_str()
        .is_some_and(|v| v.starts_with("1.1.6+")));

    let peers = get(&peer.url("/peers")).await;
    assert_eq!(peers.status, StatusCode::OK);
    let (line, _) = first_line(&peers);
    assert_eq!(line["id"], peer.ctx.id.as_str());

    // Metrics.
    let names = get(&peer.url("/monitor/metrics")).await.json();
    for name in ["freespace", "ping", "tag:group", "numpin", "pinqueue"] {
        assert!(
            names
                .as_array()
                .is_some_and(|a| a.contains(&Value::from(name))),
            "{name} missing from {names}"
        );
    }
    let free = get(&peer.url("/monitor/metrics/freespace")).await;
    let list = free.json();
    let metric = &list[0];
    assert_fields(
        metric,
        &free.text(),
        &[
            "name",
            "peer",
            "value",
            "expire",
            "valid",
            "weight",
            "partitionable",
            "received_at",
        ],
    );
    assert_eq!(metric["value"], "900");
    assert_eq!(metric["weight"], 900);
    assert_eq!(metric["peer"], peer.ctx.id.as_str());
    assert!(metric["expire"].as_i64() > metric["received_at"].as_i64());
    let tag = get(&peer.url("/monitor/metrics/tag:group")).await.json();
    assert_eq!(tag[0]["value"], "a");
    assert_eq!(tag[0]["partitionable"], true);
    assert_eq!(
        get(&peer.url("/monitor/metrics/nope")).await.json(),
        serde_json::json!([])
    );
    assert_eq!(peer.client().metrics("ping").await.expect("ping").len(), 1);

    // Health.
    let health = raw("GET", &peer.url("/health"), &[], Vec::new()).await;
    assert_eq!(health.status, StatusCode::NO_CONTENT);
    assert!(health.body.is_empty());
    assert_eq!(
        get(&peer.url("/health/alerts")).await.json(),
        serde_json::json!([])
    );
    let graph = get(&peer.url("/health/graph")).await;
    assert_fields(
        &graph.json(),
        &graph.text(),
        &[
            "cluster_id",
            "id_to_peername",
            "ipfs_links",
            "cluster_links",
            "cluster_trust_links",
            "cluster_to_ipfs",
        ],
    );
    let graph = peer.client().graph().await.expect("graph");
    assert_eq!(graph.cluster_id, peer.ctx.id.as_str());
    assert_eq!(graph.cluster_trust_links.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_problem_and_changes_nothing() {
    let peer = lone_peer(|c| c.max_body_bytes = 1_024).await;
    let expect = |raw: &Raw, status: StatusCode, needle: &str| {
        assert_eq!(raw.status, status, "{}", raw.text());
        let json = raw.json();
        assert_eq!(json["code"], status.as_u16());
        let message = json["message"].as_str().expect("message");
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        assert_eq!(raw.header("content-type"), Some("application/json"));
    };
    let c = cid(3);
    let post = |path: String| async move { raw("POST", &path, &[], Vec::new()).await };

    let bad_cid = post(peer.url("/pins/not-a-cid")).await;
    expect(&bad_cid, StatusCode::BAD_REQUEST, "not-a-cid");
    assert!(bad_cid.json()["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("error decoding Cid")));
    expect(
        &get(&peer.url("/allocations/zzz")).await,
        StatusCode::BAD_REQUEST,
        "zzz",
    );
    expect(
        &get(&peer.url("/pins/recover")).await,
        StatusCode::BAD_REQUEST,
        "recover",
    );
    for (query, name) in [
        ("replication-min=two", "replication-min"),
        ("replication-max=9999999999", "replication-max"),
        ("expire-at=soon", "expire-at"),
        ("pin-update=xyz", "pin-update"),
        ("user-allocations=bob", "user-allocations"),
        ("shard-size=big", "shard-size"),
    ] {
        let answer = post(peer.url(&format!("/pins/{c}?{query}"))).await;
        expect(&answer, StatusCode::BAD_REQUEST, name);
    }
    expect(
        &get(&peer.url("/pins?filter=bogus")).await,
        StatusCode::BAD_REQUEST,
        "invalid filter value",
    );
    expect(
        &get(&peer.url("/allocations?filter=bogus")).await,
        StatusCode::BAD_REQUEST,
        "invalid filter value",
    );
    expect(
        &get(&peer.url("/pins?limit=0")).await,
        StatusCode::BAD_REQUEST,
        "limit",
    );
    // Refusals of the cluster itself (upstream answers 500 for these).
    expect(
        &post(peer.url(&format!("/pins/{c}?replication-min=2&replication-max=3"))).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "not enough peers to allocate",
    );
    expect(
        &post(peer.url(&format!("/pins/{c}?replication-min=3&replication-max=1"))).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "min is larger than max",
    );
    expect(
        &post(peer.url(&format!("/pins/{c}?expire-at=2001-01-01T00:00:00Z"))).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "ExpireAt set before current time",
    );
    expect(
        &post(peer.url(&format!("/pins/{}?pin-update={c}", cid(4)))).await,
        StatusCode::NOT_FOUND,
        "pin is not part of the pinset",
    );
    // Peers.
    let stranger = PeerId::synthetic(99);
    expect(
        &raw(
            "DELETE",
            &peer.url(&format!("/peers/{stranger}")),
            &[],
            Vec::new(),
        )
        .await,
        StatusCode::NOT_FOUND,
        stranger.as_str(),
    );
    expect(
        &raw("DELETE", &peer.url("/peers/nobody"), &[], Vec::new()).await,
        StatusCode::BAD_REQUEST,
        "error decoding Peer ID",
    );
    // Bounds and routing.
    let big = raw(
        "POST",
        &peer.url(&format!("/pins/{c}")),
        &[],
        vec![b'x'; 4_096],
    )
    .await;
    expect(
        &big,
        StatusCode::PAYLOAD_TOO_LARGE,
        "exceeds the limit of 1024 bytes",
    );
    expect(
        &get(&peer.url("/nowhere")).await,
        StatusCode::NOT_FOUND,
        "not found",
    );
    let wrong = raw("PUT", &peer.url("/id"), &[], Vec::new()).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    let slash = get(&peer.url("/id/?x=1")).await;
    assert_eq!(slash.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(slash.header("location"), Some("/id?x=1"));
    // The in-memory daemon cannot collect: the request succeeds and the
    // peer's entry says why (as a peer whose daemon fails would).
    let gc = post(peer.url("/ipfs/gc?local=true")).await;
    assert_eq!(gc.status, StatusCode::OK, "{}", gc.text());
    let gc: cluster_node::api::types::GlobalRepoGc =
        serde_json::from_value(gc.json()).expect("GlobalRepoGC");
    let mine = gc
        .peer_map
        .get(peer.ctx.id.as_str())
        .expect("this peer's entry");
    assert!(mine.keys.is_empty());
    assert!(
        mine.error.as_deref().is_some_and(|e| e.contains("repo/gc")),
        "{mine:?}"
    );
    // Paths: unparsable (400), or unknown to IPFS (500, as upstream).
    expect(
        &post(peer.url(&format!("/pins/ipns/{c}"))).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "error resolving",
    );
    expect(
        &post(peer.url("/pins/ipfs/notacid/sub")).await,
        StatusCode::BAD_REQUEST,
        "error parsing path",
    );
    // Peers to add.
    let add = |body: &'static str| {
        let url = peer.url("/peers");
        async move { raw("POST", &url, &[], body.as_bytes().to_vec()).await }
    };
    expect(
        &add("{").await,
        StatusCode::BAD_REQUEST,
        "error decoding request body",
    );
    expect(
        &add(r#"{"peer_id":"nobody"}"#).await,
        StatusCode::BAD_REQUEST,
        "error decoding peer_id",
    );
    // Nothing of that reached the pinset.
    assert!(peer.raft.with_pinset(|p| p.is_empty()));

    // A direct pin through the path route, then a refused re-pin.
    let client = peer.client();
    let direct = PinOptions {
        mode: PinMode::Direct,
        ..PinOptions::default()
    };
    let pin = client.pin_path(&c, &direct).await.expect("direct pin");
    assert_eq!((pin.mode, pin.max_depth), (PinMode::Direct, 0));
    let recursive = client
        .pin(&cid(5), &PinOptions::default())
        .await
        .expect("pin");
    assert_eq!(recursive.max_depth, -1);
    match client.pin(&cid(5), &direct).await {
        Err(ClientError::Api { code: 500, message }) => {
            assert!(
                message.contains("already pinned in recursive mode"),
                "{message}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(peer.raft.with_pinset(|p| p.len()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_cors_guard_the_api() {
    let peer = lone_peer(|c| c.basic_auth = Some(("alice".into(), "s3cret".into()))).await;
    let none = get(&peer.url("/id")).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let challenges: Vec<&str> = none
        .headers
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(
        challenges,
        [
            "Bearer realm=\"Restricted IPFS Cluster API\"",
            "Basic realm=\"Restricted IPFS Cluster API\""
        ]
    );
    assert_eq!(none.json()["message"], "unauthorized: no auth provided");
    // alice:wrong
    let wrong = raw(
        "GET",
        &peer.url("/id"),
        &[("authorization", "Basic YWxpY2U6d3Jvbmc=")],
        Vec::new(),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.header("www-authenticate"),
        Some("Basic realm=\"Restricted IPFS Cluster API\"")
    );
    assert_eq!(wrong.json()["code"], 401);
    let bearer = raw(
        "GET",
        &peer.url("/id"),
        &[("authorization", "bearer abc")],
        Vec::new(),
    )
    .await;
    assert_eq!(bearer.json()["message"], "unauthorized: invalid token");
    // alice:s3cret
    let right = raw(
        "GET",
        &peer.url("/id"),
        &[("authorization", "Basic YWxpY2U6czNjcmV0")],
        Vec::new(),
    )
    .await;
    assert_eq!(right.status, StatusCode::OK);
    // Health and preflights need no credentials.
    assert_eq!(
        raw("GET", &peer.url("/health"), &[], Vec::new())
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let preflight = raw(
        "OPTIONS",
        &peer.url("/pins"),
        &[
            ("origin", "http://example.org"),
            ("access-control-request-method", "GET"),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(preflight.status, StatusCode::NO_CONTENT);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET")
    );
    let cross = raw(
        "GET",
        &peer.url("/version"),
        &[
            ("origin", "http://example.org"),
            ("authorization", "Basic YWxpY2U6czNjcmV0"),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(cross.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        cross.header("access-control-allow-credentials"),
        Some("true")
    );

    let typed = |auth: Option<(&str, &str)>| {
        Client::new(ClientConfig {
            base_url: peer.url(""),
            basic_auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            ..ClientConfig::default()
        })
        .expect("client")
    };
    assert!(typed(Some(("alice", "s3cret"))).id().await.is_ok());
    match typed(Some(("alice", "nope"))).id().await {
        Err(e) => assert_eq!(e.code(), 401, "{e}"),
        Ok(id) => panic!("let in with a wrong password: {id:?}"),
    }
    assert!(typed(None).health().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_by_cursor_and_recover_retries_failed_pins() {
    let peer = lone_peer(|_| {}).await;
    let client = peer.client();
    for n in 10..15 {
        client
            .pin(&cid(n), &PinOptions::default())
            .await
            .expect("pin");
    }
    let all: Vec<Cid> = client
        .allocations(&[])
        .await
        .expect("all")
        .into_iter()
        .map(|p| p.cid)
        .collect();
    assert_eq!(all.len(), 5);
    let first = get(&peer.url("/allocations?limit=2")).await;
    assert_eq!(first.text().lines().count(), 2);
    let rest = get(&peer.url(&format!("/allocations?after={}", all[1]))).await;
    let rest: Vec<String> = rest
        .text()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("line")["cid"].to_string())
        .collect();
    assert_eq!(rest.len(), 3);
    let page = client
        .status_all(&StatusQuery {
            limit: Some(2),
            after: Some(all[2].clone()),
            ..StatusQuery::default()
        })
        .await
        .expect("page");
    assert_eq!(
        page.iter().map(|p| p.cid.clone()).collect::<Vec<_>>(),
        all[3..5].to_vec()
    );
    let picked = client
        .status_all(&StatusQuery {
            cids: vec![all[0].clone(), cid(99)],
            ..StatusQuery::default()
        })
        .await
        .expect("cids");
    assert_eq!(picked.len(), 2);
    assert!(picked[1]
        .peer_map
        .values()
        .all(|p| p.status == TrackerStatus::Unpinned));

    // A pin IPFS refuses ends in pin_error; once IPFS can, recover pins it.
    let bad = cid(20);
    peer.ipfs.failing.lock().expect("lock").insert(bad.clone());
    client.pin(&bad, &PinOptions::default()).await.expect("pin");
    let deadline = Instant::now() + WAIT;
    loop {
        let failed = client
            .status_all(&StatusQuery {
                filter: vec![TrackerStatus::Error],
                ..StatusQuery::default()
            })
            .await
            .expect("errors");
        if failed.iter().any(|p| p.cid == bad) {
            let entry = failed[0].peer_map.values().next().expect("entry");
            assert_eq!(entry.status, TrackerStatus::PinError);
            assert!(entry.error.contains("block not found"), "{entry:?}");
            break;
        }
        assert!(Instant::now() < deadline, "never pin_error: {failed:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pinned_only = client
        .status_all(&StatusQuery {
            filter: vec![TrackerStatus::Pinned],
            ..StatusQuery::default()
        })
        .await
        .expect("pinned");
    assert!(pinned_only.iter().all(|p| p.cid != bad));
    peer.ipfs.failing.lock().expect("lock").clear();
    let recovered = client.recover_all(false).await.expect("recover all");
    assert!(recovered.iter().any(|p| p.cid == bad), "{recovered:?}");
    let one = client.recover(&bad, false).await.expect("recover one");
    assert_eq!(one.cid, bad);
    wait_status(&client, &bad, TrackerStatus::Pinned).await;
    // Nothing failed any more: an empty stream (204).
    let none = raw("POST", &peer.url("/pins/recover"), &[], Vec::new()).await;
    assert_eq!(none.status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_first_item_ends_the_stream_with_its_trailer() {
    use axum::routing::get as route_get;
    use cluster_node::api::rest::stream::ndjson;

    let app = axum::Router::new()
        .route(
            "/broken",
            route_get(|| async {
                ndjson(|sink| async move {
                    sink.send(&serde_json::json!({"n": 1})).await;
                    Err("the pinset went away".to_string())
                })
                .await
            }),
        )
        .route(
            "/failed",
            route_get(|| async {
                ndjson(|_sink| async move { Err("nothing to list: no state".to_string()) }).await
            }),
        )
        // What the typed client makes of both, on routes it knows.
        .route(
            "/peers",
            route_get(|| async {
                ndjson(|sink| async move {
                    sink.send(&fake_id()).await;
                    Err("peer listing broke".to_string())
                })
                .await
            }),
        )
        .route(
            "/allocations",
            route_get(|| async {
                ndjson(|_sink| async move { Err("no state".to_string()) }).await
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let answer = get(&format!("http://{addr}/broken")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text(), "{\"n\":1}\n");
    let trailers = answer.trailers.expect("trailers");
    assert_eq!(
        trailers.get("x-stream-error").and_then(|v| v.to_str().ok()),
        Some("the pinset went away")
    );
    // Failing before the first item: a plain error answer.
    let failed = get(&format!("http://{addr}/failed")).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        failed.json(),
        serde_json::json!({"code": 500, "message": "nothing to list: no state"})
    );

    let client = Client::new(ClientConfig {
        base_url: format!("http://{addr}"),
        ..ClientConfig::default()
    })
    .expect("client");
    let mut seen = Vec::new();
    match client.peers_each(|id| seen.push(id)).await {
        Err(ClientError::Stream { items: 1, message }) => assert_eq!(message, "peer listing broke"),
        other => panic!("expected a stream error, got {other:?}"),
    }
    assert_eq!(seen, vec![fake_id()]);
    match client.allocations(&[]).await {
        Err(ClientError::Api { code: 500, message }) => assert_eq!(message, "no state"),
        other => panic!("expected a 500, got {other:?}"),
    }
}

fn fake_id() -> cluster_node::api::types::IdInfo {
    cluster_node::api::types::IdInfo {
        id: PeerId::synthetic(8).to_string(),
        addresses: None,
        cluster_peers: Vec::new(),
        cluster_peers_addresses: Vec::new(),
        version: "1.1.6".into(),
        commit: String::new(),
        rpc_protocol_version: String::new(),
        error: String::new(),
        ipfs: Default::default(),
        peername: "fake".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_status_shows_an_unreachable_peer_as_cluster_error() {
    let router = InProcRouter::new();
    let net = Arc::new(NodeNet::default());
    let peers = start_cluster(3, &router, &net).await;
    eventually("every peer's metrics on the first board", || {
        peers[0]
            .drivers
            .board
            .current(peers[0].ctx.clock.now())
            .len()
            == 3
    })
    .await;
    let client = peers[0].client();
    let everywhere = cid(30);
    client
        .pin(&everywhere, &PinOptions::default())
        .await
        .expect("pin");
    wait_status(&client, &everywhere, TrackerStatus::Pinned).await;
    let info = client.status(&everywhere, false).await.expect("status");
    assert_eq!(info.peer_map.len(), 3);

    // Two replicas out of three, asked of a follower (its write goes to
    // the leader; it allocates from its own board): the third peer shows
    // remote, unasked.
    eventually("every peer's metrics on the second board", || {
        peers[1]
            .drivers
            .board
            .current(peers[1].ctx.clock.now())
            .len()
            == 3
    })
    .await;
    let two = cid(31);
    let pin = peers[1]
        .client()
        .pin(
            &two,
            &PinOptions {
                replication_factor_min: 2,
                replication_factor_max: 2,
                ..PinOptions::default()
            },
        )
        .await
        .expect("pin 2");
    assert_eq!(pin.allocations.len(), 2);
    let deadline = Instant::now() + WAIT;
    loop {
        let info = client.status(&two, false).await.expect("status");
        let count = |s| info.peer_map.values().filter(|p| p.status == s).count();
        if count(TrackerStatus::Pinned) == 2 && count(TrackerStatus::Remote) == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{info:?}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    // The third peer's node RPC goes down: its entry, not the request, fails.
    let third = peers[2].ctx.id.to_string();
    net.down.lock().expect("lock").insert(third.clone());
    let info = client.status(&everywhere, false).await.expect("status");
    let entry = info.peer_map.get(&third).expect("third peer listed");
    assert_eq!(entry.status, TrackerStatus::ClusterError);
    assert!(entry.error.contains(&third), "{entry:?}");
    assert_eq!(
        info.peer_map
            .values()
            .filter(|p| p.status == TrackerStatus::Pinned)
            .count(),
        2
    );
    let listed = client
        .status_all(&StatusQuery::default())
        .await
        .expect("all");
    assert_eq!(listed.len(), 2);
    let errors = client
        .status_all(&StatusQuery {
            filter: vec![TrackerStatus::ClusterError],
            ..StatusQuery::default()
        })
        .await
        .expect("errors");
    assert!(
        errors
            .iter()
            .all(|i| i.peer_map.len() == 1 && i.peer_map.contains_key(&third)),
        "{errors:#?}"
    );
    let ids = client.peers().await.expect("peers");
    assert_eq!(ids.len(), 3);
    let down = ids.iter().find(|i| i.id == third).expect("third in /peers");
    assert!(!down.error.is_empty());
    assert!(ids
        .iter()
        .filter(|i| i.id != third)
        .all(|i| i.error.is_empty()));
    assert_eq!(ids[0].cluster_peers.len(), 3);

    // Removing the unreachable peer.
    client
        .remove_peer(&peers[2].ctx.id)
        .await
        .expect("remove peer");
    eventually("two members", || peers[0].raft.members().len() == 2).await;
    let info = client.status(&everywhere, false).await.expect("status");
    assert_eq!(info.peer_map.len(), 2);
}

/// Random mixes of good and bad parameters on the write routes: every
/// answer is a JSON error or a pin, and the pinset stays valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_never_corrupt_the_pinset() {
    let peer = lone_peer(|c| c.max_body_bytes = 512).await;
    let values: [(&str, &[&str]); 10] = [
        (
            "replication-min",
            &["-1", "0", "1", "2", "-7", "x", "99999999999"],
        ),
        ("replication-max", &["-1", "0", "1", "3", "", "1e3"]),
        ("name", &["a", "", "%00%ff", "%E5%90%8D%E5%89%8D"]),
        ("mode", &["direct", "recursive", "weird"]),
        (
            "expire-at",
            &["2099-01-01T00:00:00Z", "2000-01-01T00:00:00Z", "soon"],
        ),
        ("expire-in", &["1h", "0s", "-5m", "10"]),
        ("meta-k", &["v", "", "%0A"]),
        (
            "pin-update",
            &["QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq", "x"],
        ),
        (
            "user-allocations",
            &[
                "",
                "nobody",
                "12D3KooWGHTKzeT4KaLGLrbKKyT8zKrBPXAUBRzCAN6ZMDMo4M6M",
            ],
        ),
        (
            "origins",
            &[
                "/ip4/1.2.3.4/tcp/1/p2p/12D3KooWGHTKzeT4KaLGLrbKKyT8zKrBPXAUBRzCAN6ZMDMo4M6M",
                "/x",
            ],
        ),
    ];
    // A fixed linear congruential sequence: the same requests every run.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((x >> 33) as usize) % n
    };
    for _ in 0..300 {
        let mut query = Vec::new();
        for (name, options) in &values {
            if next(3) == 0 {
                query.push(format!("{name}={}", options[next(options.len())]));
            }
        }
        let target = match next(4) {
            0 => "not-a-cid".to_string(),
            _ => cid(40 + next(8) as u8).to_string(),
        };
        let method = ["POST", "POST", "DELETE"][next(3)];
        let body = if next(10) == 0 {
            vec![b'x'; 1_000]
        } else {
            Vec::new()
        };
        let url = peer.url(&format!("/pins/{target}?{}", query.join("&")));
        let answer = raw(method, &url, &[], body).await;
        let json = answer.json();
        if answer.status.is_success() {
            assert!(json["cid"].is_string(), "{json}");
        } else {
            assert_eq!(json["code"], answer.status.as_u16(), "{json}");
            assert!(
                [400, 404, 413, 500].contains(&answer.status.as_u16()),
                "{} {url}: {json}",
                answer.status
            );
        }
    }
    peer.raft
        .with_pinset(|p| p.check_invariants())
        .expect("pinset invariants");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_gracefully_when_told() {
    let peer = lone_peer(|_| {}).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let api = RestApi::new(
        peer.ctx.clone(),
        peer.drivers.clone(),
        RestConfig::default(),
    )
    .expect("api");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(api.serve(listener, async move {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}/health");
    assert_eq!(
        raw("GET", &url, &[], Vec::new()).await.status,
        StatusCode::NO_CONTENT
    );
    stop.send(()).expect("server running");
    let result = tokio::time::timeout(WAIT, served)
        .await
        .expect("serve returned")
        .expect("task");
    assert!(result.is_ok(), "{result:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// `cargo test -p cluster-node --profile sim --test rest_api bench -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints pins/s through the API and straight to raft"]
async fn bench_pins_through_the_api_vs_raft_write() {
    const CLIENTS: usize = 64;
    const PINS_PER_CLIENT: usize = 200;
    let peer = lone_peer(|_| {}).await;
    let cid_of = |base: u64, i: usize, j: usize| {
        let mut bytes = vec![0x12, 0x20];
        bytes.extend_from_slice(&(base + (i * 10_000 + j) as u64).to_be_bytes());
        bytes.extend_from_slice(&[7; 24]);
        Cid::from_bytes(&bytes).expect("cid")
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let client = peer.client();
        tasks.push(tokio::spawn(async move {
            for j in 0..PINS_PER_CLIENT {
                client
                    .pin(&cid_of(1 << 40, i, j), &PinOptions::default())
                    .await
                    .expect("pin");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let api = (CLIENTS * PINS_PER_CLIENT) as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let raft = peer.raft.clone();
        let now = peer.ctx.clock.now();
        tasks.push(tokio::spawn(async move {
            for j in 0..PINS_PER_CLIENT {
                let options = PinOptions {
                    replication_factor_min: -1,
                    replication_factor_max: -1,
                    ..PinOptions::default()
                };
                let pin = cluster_core::Pin::new(cid_of(2 << 40, i, j), options, now);
                raft.write(cluster_core::pinset::Entry::new(
                    cluster_core::pinset::Command::Pin(pin),
                ))
                .await
                .expect("write")
                .expect("pin");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let direct = (CLIENTS * PINS_PER_CLIENT) as f64 / started.elapsed().as_secs_f64();
    println!(
        "rest api: {CLIENTS} clients x {PINS_PER_CLIENT} pins: {api:.0} pins/s through the API, \
         {direct:.0} pins/s straight to raft.write"
    );
}

// ---------------------------------------------------------------- POST /add

fn multipart(boundary: &str, parts: &[(&str, bool, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, dir, data) in parts {
        let kind = if *dir {
            "application/x-directory"
        } else {
            "application/octet-stream"
        };
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"{name}\"\r\nContent-Type: {kind}\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_uploads_a_directory_then_pins_its_root_with_the_options() {
    use cluster_node::api::client::{add_query, AddParams};
    use cluster_node::api::upload::AddFiles;
    let peer = lone_peer(|_| {}).await;
    let client = peer.client();
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("img")).expect("mkdir");
    std::fs::write(site.join("index.html"), "<p>hello</p>").expect("write");
    std::fs::write(site.join("img/a.gif"), vec![7u8; 300_000]).expect("write");

    let files = AddFiles::walk(std::slice::from_ref(&site), true, false).expect("walk");
    let options = PinOptions {
        metadata: [("owner".to_string(), "alice".to_string())].into(),
        ..PinOptions::default()
    };
    let query = add_query(&options, &AddParams::default());
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut outputs = Vec::new();
    let n = client
        .add(files, &query, Arc::clone(&sent), |o| outputs.push(o))
        .await
        .expect("add");
    assert_eq!(n, 4);
    assert_eq!(sent.load(std::sync::atomic::Ordering::Relaxed), 300_012);
    let names: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        ["site/img/a.gif", "site/index.html", "site/img", "site"]
    );
    assert!(outputs.iter().all(|o| o.cid.is_some() && o.size > 0));
    let root = outputs[3].cid.clone().expect("root cid");
    assert_eq!(outputs[3].size, 300_012);

    let pin = client.allocation(&root).await.expect("root pinned");
    assert_eq!(pin.name, "site", "the root's name when none is given");
    assert_eq!(
        pin.metadata
            .as_ref()
            .and_then(|m| m.get("owner"))
            .map(String::as_str),
        Some("alice")
    );
    wait_status(&client, &root, TrackerStatus::Pinned).await;
    assert!(peer.ipfs.pins.lock().expect("lock").contains_key(&root));
    // Only the root is pinned in the cluster, not every file.
    let all = client.allocations(&[]).await.expect("allocations");
    assert_eq!(all.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_answers_an_array_without_stream_channels_and_refuses_bad_uploads() {
    let peer = lone_peer(|c| c.max_add_bytes = 1_000).await;
    let ct = "multipart/form-data; boundary=XyZ";
    let body = multipart("XyZ", &[("a.txt", false, b"aaa"), ("b.txt", false, b"bb")]);

    // Buffered: one JSON array, the wrapping directory last; not pinned.
    let url = peer.url("/add?stream-channels=false&wrap-with-directory=true&no-pin=true");
    let r = raw("POST", &url, &[("content-type", ct)], body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let items = r.json();
    let items = items.as_array().expect("array");
    assert_eq!(items.len(), 3);
    assert_eq!(items[2]["name"], "");
    assert!(items[0]["cid"].is_string() && items[0].get("allocations").is_none());
    let client = peer.client();
    assert!(client.allocations(&[]).await.expect("list").is_empty());

    // Streamed: 200 at once, X-Chunked-Output, one line per file.
    let r = raw(
        "POST",
        &peer.url("/add?name=two"),
        &[("content-type", ct), ("te", "trailers")],
        body.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-chunked-output"), Some("1"));
    assert_eq!(r.text().lines().count(), 2);
    let (last, _) = (r.text().lines().last().map(str::to_string), ());
    let last: Value = serde_json::from_str(&last.expect("line")).expect("json");
    let root = Cid::parse(last["cid"].as_str().expect("cid")).expect("cid");
    assert_eq!(client.allocation(&root).await.expect("pinned").name, "two");

    // Not multipart; bad parameters; unsupported features.
    for (url, ctype, status, needle) in [
        ("/add", "application/json", 400, "isn't multipart/form-data"),
        ("/add?layout=zigzag", ct, 400, "layout parameter is invalid"),
        ("/add?hidden=perhaps", ct, 400, "parameter hidden invalid"),
        ("/add?replication-min=x", ct, 400, "replication-min"),
        ("/add?format=car", ct, 501, "car"),
    ] {
        let r = raw(
            "POST",
            &peer.url(url),
            &[("content-type", ctype)],
            body.clone(),
        )
        .await;
        assert_eq!(r.status.as_u16(), status, "{url}: {}", r.text());
        assert!(r.text().contains(needle), "{url}: {}", r.text());
    }

    // Over the upload bound: announced → 413 before reading; streamed
    // without a length → the add fails with the trailer naming the limit.
    let big = multipart("XyZ", &[("big", false, &[1u8; 5_000])]);
    let r = raw("POST", &peer.url("/add"), &[("content-type", ct)], big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big");
    std::fs::write(&path, vec![1u8; 5_000]).expect("write");
    let files = cluster_node::api::upload::AddFiles::walk(&[path], false, false).expect("walk");
    let e = client
        .add(files, "", Arc::new(Default::default()), |_| {})
        .await
        .expect_err("over the limit");
    assert!(e.to_string().contains("limit of 1000 bytes"), "{e}");
    assert_eq!(client.allocations(&[]).await.expect("list").len(), 1);
}

// ---------------------------------------------------------------- POST /token

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_issued_to_the_user_and_accepted_as_bearer_until_tampered() {
    use cluster_node::api::rest::jwt;
    let peer = lone_peer(|c| c.basic_auth = Some(("alice".into(), "s3cret".into()))).await;
    let client = Client::new(ClientConfig {
        base_url: peer.url(""),
        basic_auth: Some(("alice".into(), "s3cret".into())),
        ..ClientConfig::default()
    })
    .expect("client");
    let token = client.token().await.expect("token");
    assert_eq!(token.split('.').count(), 3);

    let id_url = peer.url("/id");
    let with = |t: String| {
        let url = id_url.clone();
        async move {
            let auth = format!("Bearer {t}");
            raw("GET", &url, &[("authorization", &auth)], Vec::new()).await
        }
    };
    let ok = with(token.clone()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    // A bearer token may also ask for another token.
    let auth = format!("bearer {token}");
    let again = raw(
        "POST",
        &peer.url("/token"),
        &[("authorization", &auth)],
        Vec::new(),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.json()["token"].is_string());

    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let expired = jwt::sign_claims(&serde_json::json!({"iss": "alice", "exp": 1_000}), "s3cret");
    let refused = [
        ("tampered", tampered),
        ("wrong secret", jwt::issue("alice", "not-the-password")),
        ("other user", jwt::issue("bob", "s3cret")),
        ("expired", expired),
        ("garbage", "abc".to_string()),
    ];
    for (what, t) in refused {
        let r = with(t).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(r.json()["message"], "unauthorized: invalid token", "{what}");
        let challenge = r.header("www-authenticate").unwrap_or("");
        assert!(challenge.contains("invalid_token"), "{what}: {challenge}");
    }
    // No token without credentials.
    let r = raw("POST", &peer.url("/token"), &[], Vec::new()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // A server without credentials issues none.
    let open = lone_peer(|_| {}).await;
    let r = raw("POST", &open.url("/token"), &[], Vec::new()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json(),
        serde_json::json!({"code": 401, "message": "unauthorized"})
    );
}

// ---------------------------------------------------------------- /metrics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_show_pins_raft_peers_latencies_and_requests() {
    let router = InProcRouter::new();
    let raft = start_raft(1, &router).await;
    raft.initialize(CLUSTER_ID).await.expect("initialize");
    raft.wait_for_leader(WAIT).await.expect("leader");
    let net = Arc::new(NodeNet::default());
    let peer = start_peer(raft.clone(), &net, |_| {}).await;
    eventually("own metrics", || {
        !peer.drivers.board.current(peer.ctx.clock.now()).is_empty()
    })
    .await;
    // The same API instance serves both listeners (what it measured).
    let api = RestApi::new(
        peer.ctx.clone(),
        peer.drivers.clone(),
        RestConfig::default(),
    )
    .expect("api");
    let (api_addr, _stop_api) = serve_api(api.clone()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let metrics_url = format!("http://{}/metrics", listener.local_addr().expect("addr"));
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        api.serve_metrics(listener, async move {
            let _ = stopped.await;
        })
        .await
    });
    let client = Client::new(ClientConfig {
        base_url: format!("http://{api_addr}"),
        ..ClientConfig::default()
    })
    .expect("client");
    for n in 1..=3 {
        client
            .pin(&cid(n), &PinOptions::default())
            .await
            .expect("pin");
    }
    client.unpin(&cid(3)).await.expect("unpin");
    assert!(client.allocation(&cid(9)).await.is_err());
    wait_status(&client, &cid(1), TrackerStatus::Pinned).await;
    wait_status(&client, &cid(2), TrackerStatus::Pinned).await;

    let scrape = get(&metrics_url).await;
    assert_eq!(scrape.status, StatusCode::OK);
    assert!(scrape
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let text = scrape.text();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .expect("number")
    };
    for family in [
        "ipfscluster_pins gauge",
        "ipfscluster_tracker_queue_length gauge",
        "ipfscluster_pin_duration_seconds histogram",
        "ipfscluster_unpin_duration_seconds histogram",
        "ipfscluster_raft_term gauge",
        "ipfscluster_raft_leader gauge",
        "ipfscluster_raft_applied_index gauge",
        "ipfscluster_peers_seen gauge",
        "ipfscluster_api_requests_total counter",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}\n")),
            "{family}\n{text}"
        );
    }
    assert_eq!(value("ipfscluster_pins{state=\"pinned\"}"), 2.0);
    assert_eq!(value("ipfscluster_pinset_size"), 2.0);
    assert_eq!(value("ipfscluster_pin_duration_seconds_count"), 3.0);
    assert_eq!(value("ipfscluster_unpin_duration_seconds_count"), 1.0);
    assert!(value("ipfscluster_pin_duration_seconds_sum") > 0.0);
    assert!(value("ipfscluster_raft_term") >= 1.0);
    assert_eq!(value("ipfscluster_raft_is_leader"), 1.0);
    let leader = format!("ipfscluster_raft_leader{{peer=\"{}\"}}", peer.ctx.id);
    assert_eq!(value(&leader), 1.0);
    assert!(value("ipfscluster_raft_applied_index") >= 4.0);
    assert_eq!(value("ipfscluster_peers"), 1.0);
    assert_eq!(value("ipfscluster_peers_seen"), 1.0);
    let requests = |route: &str, method: &str, code: u16| {
        value(&format!(
            "ipfscluster_api_requests_total{{method=\"{method}\",route=\"{route}\",code=\"{code}\"}}"
        ))
    };
    assert_eq!(requests("/pins/{cid}", "POST", 200), 3.0);
    assert_eq!(requests("/pins/{cid}", "DELETE", 200), 1.0);
    assert_eq!(requests("/allocations/{cid}", "GET", 404), 1.0);
    assert!(requests("/pins/{cid}", "GET", 200) >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_routes_pin_and_unpin_what_ipfs_resolves() {
    use cluster_node::ipfs::IpfsPath;
    let peer = lone_peer(|_| {}).await;
    let client = peer.client();
    let root = cid(40);
    let paths = [
        (format!("/ipfs/{root}/sub/a.txt"), cid(41)),
        ("/ipns/example.com/dir".to_string(), cid(42)),
        (format!("/ipld/{root}/a/b"), cid(43)),
    ];
    for (path, target) in &paths {
        peer.ipfs
            .resolved
            .lock()
            .expect("lock")
            .insert(path.clone(), target.clone());
    }
    let direct = PinOptions {
        mode: PinMode::Direct,
        name: "by-path".into(),
        ..PinOptions::default()
    };
    for (path, target) in &paths {
        let parsed = IpfsPath::parse(path).expect("path");
        let pin = client.pin_by_path(&parsed, &direct).await.expect(path);
        assert_eq!(&pin.cid, target, "{path}");
        // The options apply (`mode=direct` is honoured on path routes).
        assert_eq!((pin.mode, pin.max_depth), (PinMode::Direct, 0), "{path}");
        let stored = client.allocation(target).await.expect("stored");
        assert_eq!(stored.name, "by-path");
    }
    // The root itself was never pinned: only what the paths lead to.
    assert!(matches!(
        client.allocation(&root).await,
        Err(ClientError::Api { code: 404, .. })
    ));
    assert_eq!(peer.raft.with_pinset(|p| p.len()), 3);
    for (path, target) in &paths {
        let parsed = IpfsPath::parse(path).expect("path");
        let removed = client.unpin_by_path(&parsed).await.expect(path);
        assert_eq!(&removed.cid, target);
        // Unpinned already: 404, as for a CID.
        match client.unpin_by_path(&parsed).await {
            Err(ClientError::Api { code: 404, message }) => {
                assert_eq!(message, "pin is not part of the pinset")
            }
            other => panic!("{path}: expected 404, got {other:?}"),
        }
    }
    assert!(peer.raft.with_pinset(|p| p.is_empty()));

    // Unresolvable (500 naming the path) and unparsable (400) paths, both
    // ways, change nothing.
    let unknown = format!("/ipfs/{root}/nope");
    for method in ["POST", "DELETE"] {
        let answer = raw(
            method,
            &peer.url(&format!("/pins{unknown}")),
            &[],
            Vec::new(),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            answer.text()
        );
        let message = answer.json()["message"].as_str().unwrap_or("").to_string();
        assert!(
            message.contains("error resolving") && message.contains(&unknown),
            "{message}"
        );
        for bad in ["/pins/ipld/zzz", "/pins/ipfs/Qm", "/pins/ipns/%2F"] {
            let answer = raw(method, &peer.url(bad), &[], Vec::new()).await;
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{bad}: {}",
                answer.text()
            );
            assert!(
                answer.text().contains("error parsing path"),
                "{}",
                answer.text()
            );
        }
    }
    assert!(peer.raft.with_pinset(|p| p.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_peers_adds_back_a_removed_peer_and_names_one_it_cannot_reach() {
    let router = InProcRouter::new();
    let net = Arc::new(NodeNet::default());
    let peers = start_cluster(3, &router, &net).await;
    let third = peers[2].ctx.id.clone();
    peers[0]
        .client()
        .remove_peer(&third)
        .await
        .expect("remove the third peer");
    // (The removed peer itself may never hear of it.)
    eventually("the third peer removed on the others", || {
        peers[..2]
            .iter()
            .all(|p| !p.raft.members().contains(&third))
    })
    .await;

    // Added back through a follower: its ID, this peer among its peers.
    let via = &peers[1];
    let id = via.client().add_peer(&third).await.expect("add it back");
    assert_eq!(id.id, third.as_str());
    assert!(id.error.is_empty(), "{}", id.error);
    assert!(id.cluster_peers.contains(&via.ctx.id.to_string()), "{id:?}");
    assert!(id.cluster_peers.contains(&third.to_string()), "{id:?}");
    eventually("the third peer a voter again", || {
        peers.iter().all(|p| p.raft.members().contains(&third))
    })
    .await;
    let listed = peers[0].client().peers().await.expect("peers");
    assert_eq!(listed.len(), 3);
    // Adding a member again changes nothing and answers its ID.
    let again = peers[0].client().add_peer(&third).await.expect("again");
    assert_eq!(again.id, third.as_str());

    // A peer nobody can reach: a clear error naming it, soon.
    let ghost = PeerId::synthetic(77);
    let started = Instant::now();
    match via.client().add_peer(&ghost).await {
        Err(ClientError::Api { code: 500, message }) => {
            assert!(message.contains(ghost.as_str()), "{message}")
        }
        other => panic!("expected a 500 naming the peer, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(peers[0].raft.members().len(), 3);

    // Bandwidth: in-process transports measure nothing: an empty object.
    let bandwidth = get(&via.url("/health/bandwidth")).await;
    assert_eq!(bandwidth.status, StatusCode::OK);
    assert_eq!(bandwidth.text(), "{}\n");
    assert!(via
        .client()
        .bandwidth()
        .await
        .expect("bandwidth")
        .is_empty());
}

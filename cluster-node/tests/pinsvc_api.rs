//! The Pinning Service API end to end: in-process clusters (tests/inproc:
//! real consensus, the node's drivers over an in-memory IPFS), the API
//! served on 127.0.0.1:0, raw HTTP requests. Every route and filter, the
//! errors and the authentication (pinning-service-api.md).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cluster_core::Cid;
use cluster_net::inproc::InProcRouter;
use cluster_node::api::pinsvc::{PinSvcConfig, Running};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

mod inproc;
use inproc::*;

const IPFS_ID: &str = "12D3KooWKuJ8LPTyHbyX4nt4C7uWmUobzFsiceTVoFw7HpmoNakM";
const ORIGIN: &str =
    "/ip4/203.0.113.9/tcp/4001/p2p/12D3KooWGHTKzeT4KaLGLrbKKyT8zKrBPXAUBRzCAN6ZMDMo4M6M";

/// A raw answer.
struct Raw {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The pinning service error body's reason (checks the shape).
    fn reason(&self) -> String {
        let json = self.json();
        let error = json["error"]
            .as_object()
            .unwrap_or_else(|| panic!("not an error body: {json}"));
        assert!(
            error.keys().all(|k| k == "reason" || k == "details"),
            "{json}"
        );
        error["reason"].as_str().expect("reason").to_string()
    }
}

/// One service on one peer, and how to call it.
struct Service {
    peer: Peer,
    api: Running,
    auth: Option<String>,
}

impl Service {
    async fn lone(config: PinSvcConfig) -> Service {
        let peer = lone_peer(|_| {}).await;
        let api = serve_pinsvc(&peer, config).await;
        Service {
            peer,
            api,
            auth: None,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api.addr)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Raw {
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(auth) = &self.auth {
            headers.push(("authorization", auth.clone()));
        }
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        raw(method, &self.url(path), &headers, body).await
    }

    async fn add(&self, pin: Value) -> Value {
        let answer = self.call("POST", "/pins", Some(pin)).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
        answer.json()
    }

    async fn list(&self, query: &str) -> Value {
        let answer = self.call("GET", &format!("/pins?{query}"), None).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {:?}", answer.body);
        answer.json()
    }

    /// The request ids `list` answers, in order, and the count.
    async fn ids(&self, query: &str) -> (u64, Vec<String>) {
        let json = self.list(query).await;
        let ids = json["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["requestid"].as_str().expect("id").to_string())
            .collect();
        (json["count"].as_u64().expect("count"), ids)
    }

    /// Polls `GET /pins/{id}` until its status is `want`.
    async fn wait_status(&self, id: &str, want: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let answer = self.call("GET", &format!("/pins/{id}"), None).await;
            if answer.status == StatusCode::OK && answer.json()["status"] == want {
                return answer.json();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never {want}: {} {:?}",
                answer.status,
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn raw(method: &str, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Raw {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut request = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        request = request.header(*k, v.as_str());
    }
    let request = request.body(Full::new(Bytes::from(body))).expect("request");
    let response = client.request(request).await.expect("answer");
    let (parts, body) = response.into_parts();
    Raw {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("body").to_bytes(),
    }
}

fn enc(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn cids(from: u8, n: u8) -> Vec<Cid> {
    (from..from + n).map(cid).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_added_read_listed_replaced_and_removed() {
    let svc = Service::lone(PinSvcConfig::default()).await;
    let c = cid(1);
    let added = svc
        .add(json!({"cid": c.to_string(), "name": "backup", "origins": [ORIGIN], "meta": {"owner": "alice"}}))
        .await;
    assert_eq!(
        added["requestid"],
        c.to_string(),
        "the CID is the request id"
    );
    assert_eq!(added["status"], "queued");
    assert_eq!(
        added["pin"],
        json!({"cid": c.to_string(), "name": "backup", "origins": [ORIGIN], "meta": {"owner": "alice"}})
    );
    assert_eq!(
        added["delegates"],
        json!([format!("/ip4/127.0.0.1/tcp/4001/p2p/{IPFS_ID}")]),
        "this cluster's IPFS addresses, dialable"
    );
    assert_eq!(added["info"]["source"], "IPFS cluster API");
    let created = added["created"].as_str().expect("created").to_string();
    assert!(created.ends_with('Z'), "{created}");

    // The cluster pin behind it.
    let stored = svc
        .peer
        .raft
        .with_pinset(|p| p.get(&c))
        .expect("a cluster pin");
    assert_eq!(stored.options.name, "backup");
    assert_eq!(stored.options.origins, [ORIGIN]);
    assert_eq!(
        stored.options.metadata.get("owner").map(String::as_str),
        Some("alice")
    );

    let got = svc.wait_status(&c.to_string(), "pinned").await;
    assert_eq!(got["created"], created.as_str());
    assert_eq!(got["pin"], added["pin"]);
    assert_eq!(got["delegates"], added["delegates"]);
    let listed = svc.list("").await;
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["results"][0], got);

    // Replace: a new request in its place, the body's fields.
    let d = cid(2);
    let replaced = svc
        .call(
            "POST",
            &format!("/pins/{c}"),
            Some(json!({"cid": d.to_string(), "name": "backup-v2", "meta": {"owner": "bob"}})),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::ACCEPTED, "{:?}", replaced.body);
    let replaced = replaced.json();
    assert_eq!(replaced["requestid"], d.to_string());
    assert_eq!(replaced["status"], "queued");
    assert_eq!(
        replaced["pin"],
        json!({"cid": d.to_string(), "name": "backup-v2", "meta": {"owner": "bob"}})
    );
    let old = svc.call("GET", &format!("/pins/{c}"), None).await;
    assert_eq!(old.status, StatusCode::NOT_FOUND);
    assert_eq!(old.reason(), "pin not found");
    let new_pin = svc
        .peer
        .raft
        .with_pinset(|p| p.get(&d))
        .expect("replacement");
    assert_eq!(new_pin.options.pin_update, Some(c.clone()));
    assert!(new_pin.options.origins.is_empty(), "the body had none");
    svc.wait_status(&d.to_string(), "pinned").await;
    assert_eq!(svc.ids("").await, (1, vec![d.to_string()]));

    // Replacing a request with its own CID changes its fields only.
    let same = svc
        .call(
            "POST",
            &format!("/pins/{d}"),
            Some(json!({"cid": d.to_string(), "name": "renamed"})),
        )
        .await;
    assert_eq!(same.status, StatusCode::ACCEPTED);
    assert_eq!(
        same.json()["pin"],
        json!({"cid": d.to_string(), "name": "renamed"})
    );
    assert!(svc.peer.raft.with_pinset(|p| p.get(&d)).is_some());

    // Remove: 202 without a body, then gone.
    let removed = svc.call("DELETE", &format!("/pins/{d}"), None).await;
    assert_eq!(removed.status, StatusCode::ACCEPTED);
    assert!(removed.body.is_empty());
    assert!(svc.peer.raft.with_pinset(|p| p.get(&d)).is_none());
    let gone = svc.call("GET", &format!("/pins/{d}"), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let again = svc.call("DELETE", &format!("/pins/{d}"), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.reason(), "pin is not part of the pinset");
    let replace_gone = svc
        .call(
            "POST",
            &format!("/pins/{d}"),
            Some(json!({"cid": c.to_string()})),
        )
        .await;
    assert_eq!(replace_gone.status, StatusCode::NOT_FOUND);
    assert_eq!(svc.list("").await, json!({"count": 0, "results": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_the_specs_shape_and_status() {
    let svc = Service::lone(PinSvcConfig::default()).await;
    let c = cid(1);
    for (method, path, body, want) in [
        ("GET", "/pins/notacid", None, StatusCode::BAD_REQUEST),
        ("DELETE", "/pins/notacid", None, StatusCode::BAD_REQUEST),
        (
            "POST",
            "/pins/notacid",
            Some(json!({"cid": c.to_string()})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/pins",
            Some(json!({"cid": "notacid"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/pins",
            Some(json!({"name": "no cid"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/pins",
            Some(json!([1, 2])),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/pins",
            Some(json!({"cid": c.to_string(), "name": "n".repeat(256)})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/pins",
            Some(json!({"cid": c.to_string(), "origins": ["/ip4/1.2.3.4/tcp/1"]})),
            StatusCode::BAD_REQUEST,
        ),
        ("GET", &format!("/pins/{c}"), None, StatusCode::NOT_FOUND),
        ("DELETE", &format!("/pins/{c}"), None, StatusCode::NOT_FOUND),
        ("GET", "/nothing/here", None, StatusCode::NOT_FOUND),
        ("GET", "/pins?limit=0", None, StatusCode::BAD_REQUEST),
    ] {
        let answer = svc.call(method, path, body.clone()).await;
        assert_eq!(answer.status, want, "{method} {path} {body:?}");
        let reason = answer.reason();
        assert!(!reason.is_empty(), "{method} {path}");
    }
    let bad_cid = svc.call("GET", "/pins/notacid", None).await;
    assert!(
        bad_cid.reason().starts_with("error decoding requestID"),
        "{}",
        bad_cid.reason()
    );
    let no_cid = svc.call("POST", "/pins", Some(json!({}))).await;
    assert!(no_cid.reason().starts_with("error decoding request body"));
    assert_eq!(
        svc.call("GET", &format!("/pins/{c}"), None).await.reason(),
        "pin not found"
    );
    // Nothing was pinned by any of them.
    assert_eq!(svc.peer.raft.with_pinset(|p| p.len()), 0);

    // A body over the bound: 413 before it is read.
    let big = json!({"cid": c.to_string(), "meta": {"x": "y".repeat(70_000)}});
    let too_large = svc.call("POST", "/pins", Some(big)).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(too_large.reason().contains("limit"));
    // Wrong method: 405; trailing slash: 307 to the path without it.
    assert_eq!(
        svc.call("PUT", "/pins", None).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let slash = svc.call("GET", "/pins/?limit=5", None).await;
    assert_eq!(slash.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        slash.headers.get("location").and_then(|v| v.to_str().ok()),
        Some("/pins?limit=5")
    );
    assert_eq!(
        svc.call("GET", "/health", None).await.status,
        StatusCode::NO_CONTENT
    );
    // Without credentials configured there is nothing to sign tokens with.
    assert_eq!(
        svc.call("POST", "/token", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_limits_and_order() {
    let svc = Service::lone(PinSvcConfig::default()).await;
    let all = cids(10, 12);
    let mut created = Vec::new();
    for (i, c) in all.iter().enumerate() {
        let (name, owner) = match i % 3 {
            0 => (format!("Backup-{i}"), "alice"),
            1 => (format!("photos-{i}"), "bob"),
            _ => (format!("backup-{i}"), "alice"),
        };
        let added = svc
            .add(json!({"cid": c.to_string(), "name": name, "meta": {"owner": owner, "n": i.to_string()}}))
            .await;
        created.push(added["created"].as_str().expect("created").to_string());
        // Distinct creation times (millisecond precision).
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for c in &all {
        svc.wait_status(&c.to_string(), "pinned").await;
    }
    let newest_first: Vec<String> = all.iter().rev().map(Cid::to_string).collect();

    // Default: 10 results of 12, newest first.
    let (count, ids) = svc.ids("").await;
    assert_eq!(count, 12);
    assert_eq!(ids, newest_first[..10]);
    // Limit bounds.
    assert_eq!(svc.ids("limit=1").await, (12, newest_first[..1].to_vec()));
    assert_eq!(svc.ids("limit=1000").await, (12, newest_first.clone()));
    for bad in ["limit=0", "limit=1001", "limit=-3", "limit=x"] {
        let answer = svc.call("GET", &format!("/pins?{bad}"), None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(answer.reason().contains("'limit'"), "{}", answer.reason());
    }

    // cid: only those, at most 10.
    let two = format!("{},{}", all[0], all[4]);
    assert_eq!(
        svc.ids(&format!("cid={two}")).await,
        (2, vec![all[4].to_string(), all[0].to_string()])
    );
    let ten: Vec<String> = all[..10].iter().map(Cid::to_string).collect();
    assert_eq!(
        svc.ids(&format!("cid={}&limit=100", ten.join(","))).await.0,
        10
    );
    let eleven: Vec<String> = all[..11].iter().map(Cid::to_string).collect();
    let answer = svc
        .call("GET", &format!("/pins?cid={}", eleven.join(",")), None)
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let answer = svc.call("GET", "/pins?cid=notacid", None).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    // A CID that is not pinned matches nothing.
    assert_eq!(svc.ids(&format!("cid={}", cid(99))).await.0, 0);

    // name, with each match mode.
    let count = |q: &str| {
        let q = q.to_string();
        let svc = &svc;
        async move { svc.ids(&format!("{q}&limit=1000")).await.0 }
    };
    assert_eq!(count("name=Backup-0").await, 1);
    assert_eq!(count("name=backup-0").await, 0);
    assert_eq!(count("name=backup-0&match=exact").await, 0);
    assert_eq!(count("name=backup-0&match=iexact").await, 1);
    assert_eq!(
        count("name=backup&match=partial").await,
        4,
        "backup-2,5,8,11"
    );
    assert_eq!(count("name=BACKUP&match=ipartial").await, 8);
    assert_eq!(count("name=hot&match=partial").await, 4);
    assert_eq!(
        svc.call("GET", "/pins?name=x&match=fuzzy", None)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // meta: every pair given must be there.
    let meta = |m: Value| format!("meta={}", enc(&m.to_string()));
    assert_eq!(count(&meta(json!({"owner": "alice"}))).await, 8);
    assert_eq!(count(&meta(json!({"owner": "bob"}))).await, 4);
    assert_eq!(count(&meta(json!({"owner": "bob", "n": "4"}))).await, 1);
    assert_eq!(count(&meta(json!({"owner": "carol"}))).await, 0);
    assert_eq!(count(&meta(json!({}))).await, 12);
    for bad in [json!(["owner"]), json!({"n": 4}), json!("owner")] {
        let answer = svc
            .call("GET", &format!("/pins?{}", meta(bad.clone())), None)
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let answer = svc.call("GET", "/pins?meta=%7Bbroken", None).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    // before / after: strictly, on `created`.
    let before = |i: usize| format!("before={}", enc(&created[i]));
    let after = |i: usize| format!("after={}", enc(&created[i]));
    assert_eq!(
        svc.ids(&before(2)).await,
        (2, vec![all[1].to_string(), all[0].to_string()])
    );
    assert_eq!(
        svc.ids(&after(9)).await,
        (2, vec![all[11].to_string(), all[10].to_string()])
    );
    assert_eq!(
        svc.ids(&format!("{}&{}", after(3), before(6))).await,
        (2, vec![all[5].to_string(), all[4].to_string()])
    );
    assert_eq!(count(&before(0)).await, 0);
    assert_eq!(
        count("after=2000-01-01T00:00:00Z").await,
        12,
        "another offset and format"
    );
    assert_eq!(count("before=2000-01-01T00:00:00%2B01:00").await, 0);
    for bad in ["before=yesterday", "after=2024-02-30T00:00:00Z"] {
        let answer = svc.call("GET", &format!("/pins?{bad}"), None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // Paging the spec's way (`before` = the oldest `created` seen) walks
    // every pin once.
    let mut seen = Vec::new();
    let mut query = "limit=5".to_string();
    loop {
        let page = svc.list(&query).await;
        let results = page["results"].as_array().expect("results").clone();
        if results.is_empty() {
            break;
        }
        for r in &results {
            seen.push(r["requestid"].as_str().expect("id").to_string());
        }
        let oldest = results.last().expect("a result")["created"]
            .as_str()
            .expect("created")
            .to_string();
        query = format!("limit=5&before={}", enc(&oldest));
    }
    assert_eq!(seen, newest_first);

    // Filters combine, `cid` included.
    assert_eq!(
        svc.ids(&format!(
            "cid={two}&{}&status=pinned",
            meta(json!({"owner": "alice"}))
        ))
        .await
        .0,
        1,
        "cid 0 is alice's, cid 4 bob's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_filters_and_failed_pins() {
    let svc = Service::lone(PinSvcConfig::default()).await;
    let good = cid(1);
    let bad = cid(2);
    svc.peer
        .ipfs
        .failing
        .lock()
        .expect("lock")
        .insert(bad.clone());
    svc.add(json!({"cid": good.to_string()})).await;
    svc.add(json!({"cid": bad.to_string()})).await;
    svc.wait_status(&good.to_string(), "pinned").await;
    let failed = svc.wait_status(&bad.to_string(), "failed").await;
    assert_eq!(failed["requestid"], bad.to_string());

    // `pinned` by default; `status` lists any of the four.
    assert_eq!(svc.ids("").await, (1, vec![good.to_string()]));
    assert_eq!(svc.ids("status=failed").await, (1, vec![bad.to_string()]));
    assert_eq!(svc.ids("status=pinned,failed").await.0, 2);
    assert_eq!(svc.ids("status=queued,pinning").await.0, 0);
    assert_eq!(
        svc.ids(&format!("status=failed&cid={good}")).await.0,
        0,
        "cid combines with status"
    );
    for bad_status in [
        "status=done",
        "status=pinned,done",
        "status=PINNED",
        "status=,",
    ] {
        let answer = svc.call("GET", &format!("/pins?{bad_status}"), None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad_status}");
        assert!(answer.reason().contains("'status'"), "{}", answer.reason());
    }

    // The IPFS daemon recovers: the next retry pins it.
    svc.peer.ipfs.failing.lock().expect("lock").clear();
    svc.peer.drivers.tracker.recover(None);
    svc.wait_status(&bad.to_string(), "pinned").await;
    assert_eq!(svc.ids("").await.0, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_and_pinning_requests_list_by_status() {
    // A slow IPFS: the tracker has 10 pins in flight at most (its default),
    // so of 12 requests 10 are pinning and 2 wait queued for a while.
    let svc = Service::lone(PinSvcConfig::default()).await;
    *svc.peer.ipfs.pin_delay.lock().expect("lock") = Some(Duration::from_secs(4));
    let all = cids(40, 12);
    for c in &all {
        let added = svc.add(json!({"cid": c.to_string()})).await;
        assert_eq!(added["status"], "queued");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pinning = svc.ids("status=pinning&limit=100").await.0;
        let queued = svc.ids("status=queued&limit=100").await.0;
        if (pinning, queued) == (10, 2) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never 10 pinning and 2 queued: {pinning} and {queued}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(svc.ids("").await.0, 0, "nothing pinned yet");
    assert_eq!(
        svc.ids("status=queued,pinning,pinned,failed&limit=100")
            .await
            .0,
        12
    );
    let one = svc.call("GET", &format!("/pins/{}", all[0]), None).await;
    assert!(
        ["queued", "pinning"].contains(&one.json()["status"].as_str().expect("status")),
        "{:?}",
        one.body
    );
    *svc.peer.ipfs.pin_delay.lock().expect("lock") = None;
    for c in &all {
        svc.wait_status(&c.to_string(), "pinned").await;
    }
    assert_eq!(svc.ids("limit=100").await.0, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_by_token_jwt_or_basic() {
    let config = PinSvcConfig {
        basic_auth: Some(("alice".into(), "s3cret".into())),
        access_tokens: vec!["tok-0123456789".into()],
        ..PinSvcConfig::default()
    };
    let mut svc = Service::lone(config).await;

    let missing = svc.call("GET", "/pins", None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.reason(), "unauthorized: no auth provided");
    assert_eq!(
        missing.headers.get_all("www-authenticate").iter().count(),
        2
    );
    for bad in [
        "Bearer tok-wrong",
        "Bearer ",
        "Basic YWxpY2U6d3Jvbmc=",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.AAAA",
    ] {
        svc.auth = Some(bad.to_string());
        for (method, path) in [
            ("GET", "/pins"),
            ("POST", "/pins"),
            ("GET", "/pins/x"),
            ("DELETE", "/pins/x"),
            ("POST", "/token"),
            ("GET", "/nowhere"),
        ] {
            let answer = svc.call(method, path, None).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{bad} {method} {path}"
            );
            assert!(answer.reason().starts_with("unauthorized"), "{bad}");
        }
    }
    svc.auth = Some("Bearer tok-wrong".to_string());
    let wrong = svc.call("GET", "/pins", None).await;
    assert_eq!(wrong.reason(), "unauthorized: invalid token");
    let challenge = wrong.headers.get("www-authenticate").expect("challenge");
    assert!(challenge.to_str().expect("text").contains("invalid_token"));

    // No credentials needed for the health check and CORS preflights.
    svc.auth = None;
    assert_eq!(
        svc.call("GET", "/health", None).await.status,
        StatusCode::NO_CONTENT
    );
    let preflight = raw(
        "OPTIONS",
        &svc.url("/pins"),
        &[
            ("origin", "http://example.com".to_string()),
            ("access-control-request-method", "GET".to_string()),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(preflight.status, StatusCode::NO_CONTENT);

    // A configured access token.
    svc.auth = Some("Bearer tok-0123456789".to_string());
    assert_eq!(svc.list("").await["count"], 0);
    svc.add(json!({"cid": cid(1).to_string()})).await;

    // Basic credentials, and a JWT from POST /token (upstream's way).
    svc.auth = Some("Basic YWxpY2U6czNjcmV0".to_string()); // alice:s3cret
    assert_eq!(svc.list("status=queued,pinning,pinned").await["count"], 1);
    let token = svc.call("POST", "/token", None).await;
    assert_eq!(token.status, StatusCode::OK);
    let token = token.json()["token"].as_str().expect("token").to_string();
    svc.auth = Some(format!("Bearer {token}"));
    let removed = svc.call("DELETE", &format!("/pins/{}", cid(1)), None).await;
    assert_eq!(removed.status, StatusCode::ACCEPTED);
    // A token minted with another password is refused.
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[2] = "c2lnbmF0dXJl";
    svc.auth = Some(format!("Bearer {}", parts.join(".")));
    assert_eq!(
        svc.call("GET", "/pins", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_ask_every_peer_and_delegates_are_the_holders() {
    let router = InProcRouter::new();
    let net = Arc::new(NodeNet::default());
    let mut peers = start_cluster(3, &router, &net).await;
    eventually("every peer's metrics on the first board", || {
        peers[0]
            .drivers
            .board
            .current(peers[0].ctx.clock.now())
            .len()
            == 3
    })
    .await;
    let api = serve_pinsvc(&peers[0], PinSvcConfig::default()).await;
    let svc = Service {
        peer: peers.remove(0),
        api,
        auth: None,
    };
    let c = cid(7);
    let added = svc.add(json!({"cid": c.to_string()})).await;
    // Pinned everywhere: every peer's IPFS (the fake gives each the same
    // id and address, so one delegate).
    assert_eq!(
        added["delegates"],
        json!([format!("/ip4/127.0.0.1/tcp/4001/p2p/{IPFS_ID}")])
    );
    svc.wait_status(&c.to_string(), "pinned").await;
    eventually("pinned on every peer's IPFS", || {
        peers
            .iter()
            .all(|p| p.ipfs.pins.lock().expect("lock").contains_key(&c))
    })
    .await;

    // One peer unreachable: its status is a cluster error, so the request
    // shows failed (upstream's fold), and lists under `failed` only.
    let down = peers[1].ctx.id.to_string();
    net.down.lock().expect("lock").insert(down.clone());
    svc.wait_status(&c.to_string(), "failed").await;
    assert_eq!(svc.ids("status=failed").await, (1, vec![c.to_string()]));
    assert_eq!(svc.ids("").await.0, 0);
    net.down.lock().expect("lock").remove(&down);
    svc.wait_status(&c.to_string(), "pinned").await;

    // A peer whose IPFS cannot pin: failed while the others pinned it.
    let d = cid(8);
    peers[0]
        .ipfs
        .failing
        .lock()
        .expect("lock")
        .insert(d.clone());
    svc.add(json!({"cid": d.to_string()})).await;
    svc.wait_status(&d.to_string(), "failed").await;
}

/// `cargo test -p cluster-node --test pinsvc_api bench -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints the time of GET /pins over a large pinset"]
async fn bench_listing_a_large_pinset() {
    const PINS: usize = 5_000;
    let svc = Service::lone(PinSvcConfig::default()).await;
    let now = svc.peer.ctx.clock.now();
    let cid_of = |i: usize| {
        let mut bytes = vec![0x12, 0x20];
        bytes.extend_from_slice(&(i as u64).to_be_bytes());
        bytes.extend_from_slice(&[9; 24]);
        Cid::from_bytes(&bytes).expect("cid")
    };
    let mut writes = Vec::new();
    for chunk in 0..PINS / 500 {
        let raft = svc.peer.raft.clone();
        writes.push(tokio::spawn(async move {
            for i in chunk * 500..(chunk + 1) * 500 {
                let options = cluster_core::PinOptions {
                    replication_factor_min: -1,
                    replication_factor_max: -1,
                    name: format!("item-{i}"),
                    metadata: [("owner".to_string(), format!("user-{}", i % 7))].into(),
                    ..cluster_core::PinOptions::default()
                };
                let pin = cluster_core::Pin::new(cid_of(i), options, now.plus(i as u64));
                raft.write(cluster_core::pinset::Entry::new(
                    cluster_core::pinset::Command::Pin(pin),
                ))
                .await
                .expect("write")
                .expect("pin");
            }
        }));
    }
    for w in writes {
        w.await.expect("writer");
    }
    let started = std::time::Instant::now();
    while svc.peer.ipfs.pins.lock().expect("lock").len() < PINS {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "pins never all in IPFS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rest_listing(&svc, "before").await;
    let meta = format!("meta={}", enc(r#"{"owner":"user-3"}"#));
    let cids: Vec<String> = (0..10).map(|i| cid_of(i * 97).to_string()).collect();
    let cid_list = format!("cid={}", cids.join(","));
    for query in [
        "limit=1000",
        "limit=10",
        "name=ITEM-42&match=ipartial",
        meta.as_str(),
        cid_list.as_str(),
    ] {
        // Until the tracker reports every pin pinned, the count is lower.
        let mut runs = Vec::new();
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let json = svc.list(query).await;
            runs.push((started.elapsed(), json["count"].as_u64().unwrap_or(0)));
        }
        runs.sort();
        let (median, count) = runs[2];
        println!(
            "pinsvc: GET /pins?{query} over {PINS} pins: count {count}, median of 5 {median:?}"
        );
    }
    rest_listing(&svc, "after").await;
}

/// The REST API's global status of every pin (NDJSON), for comparison: the
/// same trackers asked page by page.
async fn rest_listing(svc: &Service, when: &str) {
    let mut runs = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let answer = raw("GET", &svc.peer.url("/pins"), &[], Vec::new()).await;
        assert_eq!(answer.status, StatusCode::OK);
        let lines = answer
            .body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        runs.push((started.elapsed(), lines));
    }
    runs.sort();
    let (median, lines) = runs[2];
    println!("rest ({when}): GET /pins: {lines} lines, median of 5 {median:?}");
}

//! The Kubo connector against real IPFS daemons (js-ipfs, started from the
//! project's `e2e/ipfs/`; install with `scripts/ipfs-install.sh`), and
//! against a fake HTTP server for answers no real daemon gives.
//!
//! Ports: daemons on 16100, 16110 and 16120 (this file only; other test
//! files use other bases, as test binaries may run at the same time).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use cluster_core::tracker::{IpfsPinType, ListedPin};
use cluster_core::Cid;
use cluster_node::ipfs::kubo::{api_url_from_multiaddr, KuboConfig, KuboConnector};
use cluster_node::ipfs::{IpfsConnector, IpfsError};
use common::{runtime, Daemons};

const BASE_A: u16 = 16100;
const BASE_B: u16 = 16110;
const BASE_RESOLVE: u16 = 16120;

fn connector(api: &str, data_dir: &std::path::Path) -> KuboConnector {
    let mut config = KuboConfig::new(api, data_dir);
    config.request_timeout = Duration::from_secs(20);
    config.pin_timeout = Duration::from_secs(20);
    KuboConnector::new(config).expect("connector")
}

fn listed(pins: &[ListedPin], cid: &Cid) -> Option<(IpfsPinType, bool)> {
    pins.iter()
        .find(|p| &p.cid == cid)
        .map(|p| (p.pin_type, p.by_cluster))
}

const RECURSIVE: IpfsPinType = IpfsPinType::Recursive { max_depth: None };

/// Everything that needs a real daemon, in one run so two daemons serve it
/// all (each start costs seconds and 150 MB).
#[test]
fn against_real_daemons() {
    // Two separate recipes so the daemons start unconnected and
    // swarm_connect has something to do.
    let a = Daemons::start(1, BASE_A);
    let b = Daemons::start(1, BASE_B);
    let data = tempfile::tempdir().expect("data dir");
    let user_data = tempfile::tempdir().expect("user's data dir");
    let rt = runtime();
    rt.block_on(async {
        // The API given as a multiaddr, as config files give it.
        let ipfs = connector(&a.multiaddr(0), data.path());
        assert_eq!(ipfs.api_url(), a.url(0));
        // The user's own tool: pins it makes are not the cluster's.
        let user = connector(&a.url(0), user_data.path());

        // id and version.
        let id = ipfs.id().await.expect("id");
        assert!(id.peer_id.starts_with("12D3Koo"), "{id:?}");
        assert!(id.addresses.iter().any(|a| a.contains("/tcp/16102")), "{id:?}");
        let version = ipfs.version().await.expect("version");
        assert_eq!(version.version, "0.18.1");

        // add and block_put.
        let file = ipfs.add("hello.txt", b"hello from the connector").await.expect("add");
        assert!(file.is_v0(), "js-ipfs adds CIDv0 by default: {file}");
        let block = ipfs.block_put(b"a raw block").await.expect("block_put");
        assert!(!block.is_v0());
        assert_eq!(block.as_bytes()[1], 0x55, "raw codec: {block}");

        // Pin recursive and direct; both listed with the cluster's mark.
        ipfs.pin(&file, -1).await.expect("pin recursive");
        ipfs.pin(&block, 0).await.expect("pin direct");
        ipfs.pin(&file, -1).await.expect("pinning again is fine");
        ipfs.pin(&block, 0).await.expect("pinning again is fine");
        let pins = ipfs.list_pins().await.expect("list");
        assert_eq!(listed(&pins, &file), Some((RECURSIVE, true)), "{pins:?}");
        // The daemon answers the raw CID in base58btc; it still matches.
        assert_eq!(listed(&pins, &block), Some((IpfsPinType::Direct, true)), "{pins:?}");
        assert_eq!(pins.len(), 2, "{pins:?}");
        let one = ipfs.pin_ls_one(&block).await.expect("pin_ls_one").expect("pinned");
        assert_eq!((one.pin_type, one.by_cluster), (IpfsPinType::Direct, true));

        // A direct pin deepened to recursive by the cluster stays its own.
        ipfs.pin(&block, -1).await.expect("deepen");
        let pins = ipfs.list_pins().await.expect("list");
        assert_eq!(listed(&pins, &block), Some((RECURSIVE, true)), "{pins:?}");

        // Unpin: gone, mark gone; again, and of a CID never pinned: fine.
        ipfs.unpin(&block).await.expect("unpin");
        assert!(!ipfs.is_marked(&block));
        assert_eq!(ipfs.pin_ls_one(&block).await.expect("ls"), None);
        ipfs.unpin(&block).await.expect("unpin of an unpinned CID");
        let never = ipfs.block_put(b"never pinned").await.expect("block_put");
        ipfs.unpin(&never).await.expect("unpin of a CID never pinned");

        // The user's pin made before the cluster's pin op stays the user's.
        let users = ipfs.block_put(b"the user's block").await.expect("block_put");
        user.pin(&users, -1).await.expect("user's pin");
        let pins = ipfs.list_pins().await.expect("list");
        assert_eq!(listed(&pins, &users), Some((RECURSIVE, false)), "{pins:?}");
        ipfs.pin(&users, -1).await.expect("cluster pins the user's CID");
        ipfs.pin(&users, 0).await.expect("and direct");
        assert!(!ipfs.is_marked(&users));
        let pins = ipfs.list_pins().await.expect("list");
        assert_eq!(listed(&pins, &users), Some((RECURSIVE, false)), "{pins:?}");
        ipfs.unpin(&users).await.expect("cluster unpins");
        let still = ipfs.pin_ls_one(&users).await.expect("ls").expect("still pinned");
        assert_eq!((still.pin_type, still.by_cluster), (RECURSIVE, false));
        // The user's direct pin, asked recursive by the cluster: deepened, still the user's.
        let users_direct = ipfs.block_put(b"the user's direct block").await.expect("put");
        user.pin(&users_direct, 0).await.expect("user's direct pin");
        ipfs.pin(&users_direct, -1).await.expect("cluster asks recursive");
        let got = ipfs.pin_ls_one(&users_direct).await.expect("ls").expect("pinned");
        assert_eq!((got.pin_type, got.by_cluster), (RECURSIVE, false));

        // A depth-limited pin (shards): recursive with max-depth, marked.
        let shallow = ipfs.add("shallow.txt", b"pinned two levels deep").await.expect("add");
        ipfs.pin(&shallow, 2).await.expect("pin with max_depth 2");
        let got = ipfs.pin_ls_one(&shallow).await.expect("ls").expect("pinned");
        assert_eq!((got.pin_type, got.by_cluster), (RECURSIVE, true));

        // Marks survive a restart of the connector.
        drop(ipfs);
        let ipfs = connector(&a.url(0), data.path());
        let pins = ipfs.list_pins().await.expect("list after restart");
        assert_eq!(listed(&pins, &file), Some((RECURSIVE, true)), "{pins:?}");
        assert_eq!(listed(&pins, &users), Some((RECURSIVE, false)), "{pins:?}");

        // pin_update: js-ipfs has no pin/update (404); the fallback moves
        // the pin and the mark.
        let newer = ipfs.add("hello.txt", b"hello again, updated").await.expect("add");
        ipfs.pin_update(&file, &newer).await.expect("pin_update");
        let pins = ipfs.list_pins().await.expect("list");
        assert_eq!(listed(&pins, &newer), Some((RECURSIVE, true)), "{pins:?}");
        assert_eq!(listed(&pins, &file), None, "{pins:?}");
        assert!(!ipfs.is_marked(&file));
        let err = ipfs.pin_update(&file, &newer).await.expect_err("from not pinned");
        assert!(
            matches!(&err, IpfsError::Daemon { message, .. } if message.contains("not recursively pinned")),
            "{err:?}"
        );

        // repo_stat: js-ipfs sends strings.
        let stat = ipfs.repo_stat().await.expect("repo_stat");
        assert!(stat.repo_size > 0 && stat.storage_max > stat.repo_size, "{stat:?}");

        // swarm_connect: b to a, then b pins what only a has (bitswap).
        let ipfs_b = connector(&b.url(0), &data.path().join("b"));
        let peers = ipfs_b.swarm_peers().await.expect("swarm_peers");
        assert!(!peers.contains(&id.peer_id), "not connected yet: {peers:?}");
        let a_addr = id
            .addresses
            .iter()
            .find(|x| x.contains("/tcp/16102"))
            .expect("a's swarm address");
        ipfs_b.swarm_connect(a_addr).await.expect("swarm_connect");
        let peers = ipfs_b.swarm_peers().await.expect("swarm_peers");
        assert!(peers.contains(&id.peer_id), "connected: {peers:?}");
        let only_on_a = ipfs.add("a.txt", b"content only daemon a has").await.expect("add");
        ipfs_b.pin(&only_on_a, -1).await.expect("b pins a's content over bitswap");
        let pins = ipfs_b.list_pins().await.expect("list on b");
        assert_eq!(listed(&pins, &only_on_a), Some((RECURSIVE, true)), "{pins:?}");
        let err = ipfs_b.swarm_connect("/ip4/127.0.0.1/tcp/1/p2p/nope").await;
        assert!(err.is_err(), "a bad multiaddr is refused: {err:?}");

        // A malformed argument from the daemon's point of view: typed.
        let err = ipfs.swarm_connect("not a multiaddr").await.expect_err("refused");
        assert!(matches!(err, IpfsError::Daemon { .. }), "{err:?}");
    });
    drop(a);
    // With the daemon gone, calls are Unreachable.
    rt.block_on(async {
        let ipfs = connector(&format!("http://127.0.0.1:{BASE_A}"), data.path());
        let err = ipfs.list_pins().await.expect_err("daemon down");
        assert!(matches!(err, IpfsError::Unreachable { .. }), "{err:?}");
    });
}

/// A port nothing listens on.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn daemon_down_is_unreachable() {
    let data = tempfile::tempdir().expect("data dir");
    let ipfs = connector(&format!("http://127.0.0.1:{}", free_port()), data.path());
    let cid = Cid::parse("QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo").expect("cid");
    runtime().block_on(async {
        for err in [
            ipfs.id().await.map(|_| ()),
            ipfs.pin(&cid, -1).await,
            ipfs.list_pins().await.map(|_| ()),
            ipfs.repo_stat().await.map(|_| ()),
            ipfs.block_put(b"x").await.map(|_| ()),
        ] {
            assert!(matches!(err, Err(IpfsError::Unreachable { .. })), "{err:?}");
        }
    });
    // The pin op's look-up failed before anything was marked.
    assert!(!ipfs.is_marked(&cid));
}

/// A fake daemon: answers each request by its path, one connection each.
fn fake_daemon(answer: fn(&str) -> Option<String>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream, answer));
        }
    });
    port
}

fn serve(mut stream: TcpStream, answer: fn(&str) -> Option<String>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers; these requests carry no body worth reading.
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
        line.clear();
    }
    let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
    match answer(&path) {
        Some(response) => {
            let _ = stream.write_all(response.as_bytes());
        }
        None => std::thread::sleep(Duration::from_secs(30)), // Never answers.
    }
}

fn http(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn fake_answers(path: &str) -> Option<String> {
    let route = path.split('?').next().unwrap_or("");
    Some(match route {
        "/api/v0/id" => http("200 OK", "this is not json"),
        "/api/v0/version" => http("200 OK", r#"{"Version":""}"#),
        "/api/v0/repo/stat" => http(
            "500 Internal Server Error",
            r#"{"Message":"repo is on fire","Code":0,"Type":"error"}"#,
        ),
        "/api/v0/swarm/peers" => http("200 OK", r#"{"Peers":[{"Peer":"not a peer id"}]}"#),
        "/api/v0/pin/ls" if path.contains("arg=") => http(
            "500 Internal Server Error",
            r#"{"Message":"path 'x' is not pinned","Code":0,"Type":"error"}"#,
        ),
        "/api/v0/pin/ls" => http("200 OK", r#"{"Cid":"Qmnotacid","Type":"recursive"}"#),
        "/api/v0/pin/add" => http("502 Bad Gateway", "<html>bad gateway</html>"),
        "/api/v0/block/put" => http(
            "200 OK",
            r#"{"Key":"QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo"}"#,
        ),
        "/api/v0/add" => return None, // Hangs: the call times out.
        _ => http("404 Not Found", "404 page not found"),
    })
}

#[test]
fn malformed_answers_are_typed_errors() {
    let port = fake_daemon(fake_answers);
    let data = tempfile::tempdir().expect("data dir");
    let mut config = KuboConfig::new(format!("http://127.0.0.1:{port}"), data.path());
    config.request_timeout = Duration::from_millis(500);
    let ipfs = KuboConnector::new(config).expect("connector");
    let cid = Cid::parse("QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo").expect("cid");
    runtime().block_on(async {
        let bad = |r: Result<(), IpfsError>, path: &str| match r {
            Err(IpfsError::BadAnswer { path: p, .. }) => assert_eq!(p, path),
            other => panic!("{path}: expected BadAnswer, got {other:?}"),
        };
        bad(ipfs.id().await.map(|_| ()), "id");
        bad(ipfs.version().await.map(|_| ()), "version");
        bad(ipfs.swarm_peers().await.map(|_| ()), "swarm/peers");
        bad(ipfs.list_pins().await.map(|_| ()), "pin/ls");
        match ipfs.repo_stat().await {
            Err(IpfsError::Daemon { path, message }) => {
                assert_eq!(
                    (path.as_str(), message.as_str()),
                    ("repo/stat", "repo is on fire")
                )
            }
            other => panic!("expected Daemon, got {other:?}"),
        }
        // A refused pin is a Daemon error and leaves no mark behind.
        match ipfs.pin(&cid, -1).await {
            Err(IpfsError::Daemon { path, message }) => {
                assert_eq!(path, "pin/add");
                assert!(message.contains("502"), "{message}");
            }
            other => panic!("expected Daemon, got {other:?}"),
        }
        assert!(!ipfs.is_marked(&cid), "a refused pin is not the cluster's");
        match ipfs.add("f", b"data").await {
            Err(IpfsError::Timeout { path, after_ms }) => {
                assert_eq!((path.as_str(), after_ms), ("add", 500))
            }
            other => panic!("expected Timeout, got {other:?}"),
        }
        // A block whose CID is not raw is still a CID: accepted as answered.
        assert_eq!(ipfs.block_put(b"x").await.expect("block_put"), cid);
    });
}

const SLOW_CID: &str = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq";

/// Streams that go wrong after the 200, and a pin that never progresses.
fn fake_streams(path: &str) -> Option<String> {
    let route = path.split('?').next().unwrap_or("");
    Some(match route {
        "/api/v0/pin/ls" if path.contains("arg=") => http(
            "500 Internal Server Error",
            r#"{"Message":"path 'x' is not pinned","Code":0,"Type":"error"}"#,
        ),
        "/api/v0/pin/ls" if path.contains("type=recursive") => {
            let line =
                r#"{"Cid":"QmZk8A4MY6AEPSr3yu1rHaB5FYXqZ87nwbSuJzMwpRNXCo","Type":"recursive"}"#;
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
                 Trailer: X-Stream-Error\r\nConnection: close\r\n\r\n{:x}\r\n{line}\r\n0\r\n\
                 X-Stream-Error: listing interrupted\r\n\r\n",
                line.len()
            )
        }
        "/api/v0/pin/add" => return None, // No progress, ever.
        _ => http("404 Not Found", "404 page not found"),
    })
}

#[test]
fn failed_streams_and_stalled_pins() {
    let port = fake_daemon(fake_streams);
    let data = tempfile::tempdir().expect("data dir");
    let mut config = KuboConfig::new(format!("http://127.0.0.1:{port}"), data.path());
    config.request_timeout = Duration::from_secs(5);
    config.pin_timeout = Duration::from_millis(300);
    let ipfs = KuboConnector::new(config).expect("connector");
    let slow = Cid::parse(SLOW_CID).expect("cid");
    runtime().block_on(async {
        // An error trailer after data: the daemon's error, not a short list.
        match ipfs.list_pins().await {
            Err(IpfsError::Daemon { path, message }) => {
                assert_eq!(
                    (path.as_str(), message.as_str()),
                    ("pin/ls", "listing interrupted")
                )
            }
            other => panic!("expected Daemon, got {other:?}"),
        }
        // No progress within pin_timeout: Timeout; the pin may still
        // happen, so the mark stays (the tracker's listing sorts it out).
        match ipfs.pin(&slow, -1).await {
            Err(IpfsError::Timeout { path, after_ms }) => {
                assert_eq!((path.as_str(), after_ms), ("pin/add", 300))
            }
            other => panic!("expected Timeout, got {other:?}"),
        }
        assert!(ipfs.is_marked(&slow));
    });
}

#[test]
fn unusable_settings_are_refused() {
    let data = tempfile::tempdir().expect("data dir");
    for api in [
        "https://127.0.0.1:5001",
        "127.0.0.1:5001",
        "/ip4/127.0.0.1/udp/5001",
    ] {
        let r = KuboConnector::new(KuboConfig::new(api, data.path()));
        assert!(matches!(r, Err(IpfsError::Config { .. })), "{api}");
    }
    let mut config = KuboConfig::new("http://127.0.0.1:5001", data.path());
    config.concurrency = 0;
    assert!(matches!(
        KuboConnector::new(config),
        Err(IpfsError::Config { .. })
    ));
    // The record's directory is a file: a storage error, not a panic.
    let file = data.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let r = KuboConnector::new(KuboConfig::new("http://127.0.0.1:5001", &file));
    assert!(matches!(r, Err(IpfsError::Storage { .. })));
    assert_eq!(
        api_url_from_multiaddr("/ip4/127.0.0.1/tcp/5001").expect("multiaddr"),
        "http://127.0.0.1:5001"
    );
    let defaults = KuboConfig::new("http://127.0.0.1:5001", data.path());
    assert_eq!(defaults.request_timeout, Duration::from_secs(300));
    assert_eq!(defaults.pin_timeout, Duration::from_secs(120));
    assert_eq!(defaults.unpin_timeout, Duration::from_secs(3 * 3600));
}

/// `POST /api/v0/<path>` on `api` with extra curl arguments: the body.
fn curl(api: &str, path: &str, extra: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-f", "-X", "POST", "--max-time", "60"])
        .args(extra)
        .arg(format!("{api}/api/v0/{path}"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "{path}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of `key` in the JSON line of `body` whose `Name` is `name`.
fn field(body: &str, name: &str, key: &str) -> String {
    body.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["Name"] == name)
        .and_then(|v| v[key].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no {name:?} in {body}"))
}

#[test]
fn resolve_against_a_real_daemon() {
    use cluster_node::ipfs::IpfsPath;
    let d = Daemons::start(1, BASE_RESOLVE);
    let api = d.url(0);
    let data = tempfile::tempdir().expect("data dir");
    let files = tempfile::tempdir().expect("files");
    std::fs::write(files.path().join("a.txt"), b"resolve me").expect("write");
    std::fs::write(files.path().join("b.txt"), b"and me").expect("write");
    let a = files.path().join("a.txt").display().to_string();
    let b = files.path().join("b.txt").display().to_string();
    // A directory `{sub/a.txt, b.txt}`, wrapped.
    let added = curl(
        &api,
        "add?wrap-with-directory=true&pin=false",
        &[
            "-F",
            &format!("file=@{a};filename=sub/a.txt"),
            "-F",
            &format!("file=@{b};filename=b.txt"),
        ],
    );
    let root = Cid::parse(&field(&added, "", "Hash")).expect("root");
    let sub = Cid::parse(&field(&added, "sub", "Hash")).expect("sub");
    let file = Cid::parse(&field(&added, "sub/a.txt", "Hash")).expect("file");
    // A dag-cbor node linking to the file under `a/b`.
    std::fs::write(
        files.path().join("node.json"),
        format!(r#"{{"a":{{"b":{{"/":"{file}"}}}},"n":1}}"#),
    )
    .expect("write");
    let node = files.path().join("node.json").display().to_string();
    let put = curl(
        &api,
        "dag/put?store-codec=dag-cbor&input-codec=dag-json",
        &["-F", &format!("file=@{node};type=application/octet-stream")],
    );
    let put: serde_json::Value = serde_json::from_str(&put).expect("dag/put");
    let cbor = Cid::parse(put["Cid"]["/"].as_str().expect("cid")).expect("cbor cid");
    // The daemon's own name, published offline.
    let id: serde_json::Value = serde_json::from_str(&curl(&api, "id", &[])).expect("id");
    let name = id["ID"].as_str().expect("ID").to_string();
    curl(
        &api,
        &format!("name/publish?arg=/ipfs/{root}&allow-offline=true"),
        &[],
    );

    let rt = runtime();
    rt.block_on(async {
        let ipfs = connector(&api, data.path());
        let resolve = |text: String| {
            let ipfs = ipfs.clone();
            async move {
                let path = IpfsPath::parse(&text).expect("path");
                ipfs.resolve(&path).await
            }
        };
        for (path, want) in [
            (format!("/ipfs/{root}"), &root),
            (format!("/ipfs/{root}/sub"), &sub),
            (format!("/ipfs/{root}/sub/a.txt"), &file),
            (format!("/ipld/{root}/sub/a.txt"), &file),
            (format!("/ipld/{cbor}/a/b"), &file),
            (format!("/ipfs/{cbor}/a/b"), &file),
            (format!("/ipns/{name}"), &root),
            (format!("/ipns/{name}/sub/a.txt"), &file),
        ] {
            assert_eq!(resolve(path.clone()).await.as_ref(), Ok(want), "{path}");
        }
        let err = resolve(format!("/ipfs/{root}/nope"))
            .await
            .expect_err("no link");
        assert!(
            matches!(&err, IpfsError::Daemon { message, .. } if message.contains("nope")),
            "{err:?}"
        );
        let err = resolve(format!("/ipld/{cbor}/zz"))
            .await
            .expect_err("no field");
        assert!(matches!(err, IpfsError::Daemon { .. }), "{err:?}");
    });
}

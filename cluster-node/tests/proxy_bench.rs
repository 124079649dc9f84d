//! The IPFS proxy's cost (ignored by default; figures go to BENCHMARKS.md):
//!
//!     cargo test --release -p cluster-node --test proxy_bench -- --ignored --nocapture
//!
//! One cluster peer (a real `ipfscluster-server`) over one real js-ipfs
//! daemon, both on loopback. Measured on one keep-alive connection each:
//! - `pin/add` of 200 local raw blocks, serial: through the proxy (a
//!   cluster pin: allocation and a committed consensus write) and straight
//!   to the daemon (the daemon's own pin);
//! - `cat` of a 100 MiB file, read and dropped as it streams: through the
//!   proxy (a forward) and straight to the daemon, 6 rounds each,
//!   alternating who goes first.
//!
//! IPFS API port 18600 (this file only).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const BASE: u16 = 18600;
const PINS: usize = 200;
const CAT_MIB: usize = 100;
const CAT_ROUNDS: usize = 6;

type Http = Client<HttpConnector, Full<Bytes>>;

fn http() -> Http {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// `POST http://<addr>/api/v0/<path>`: the status and the body's length
/// (read as it streams, not kept).
async fn post(client: &Http, addr: &str, path: &str) -> (u16, usize) {
    let uri: hyper::Uri = format!("http://{addr}/api/v0/{path}").parse().expect("uri");
    let request = hyper::Request::post(uri)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = client.request(request).await.expect("request sent");
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body frame").into_data() {
            len += data.len();
        }
    }
    (status, len)
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn proxy_against_the_daemon() {
    let _serial = serial();
    let cluster = Cluster::start(BASE, 1, 1);
    let proxy = cluster.peers[0].proxy.clone();
    let daemon = format!("127.0.0.1:{BASE}");

    // Two sets of blocks: pinning one CID twice would measure a no-op.
    let blocks: Vec<Vec<u8>> = (0..2 * PINS)
        .map(|i| format!("proxy bench block {i}\n").into_bytes())
        .collect();
    let cids = cluster.ipfs[0].add_all(&blocks);
    let (via_proxy, direct) = cids.split_at(PINS);

    // A 100 MiB file of varied bytes (no two chunks alike), added unpinned.
    let file = cluster.root.path().join("big.bin");
    let mut data = Vec::with_capacity(CAT_MIB << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < CAT_MIB << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&file, &data).expect("write the big file");
    drop(data);
    let t = Instant::now();
    let out = cluster.ipfs[0].call(
        "add?pin=false&progress=false",
        &["-F", &format!("file=@{}", file.display())],
    );
    let add_time = t.elapsed();
    let big = serde_json::from_str::<serde_json::Value>(out.lines().last().expect("a line"))
        .expect("json")["Hash"]
        .as_str()
        .expect("Hash")
        .to_string();

    cluster.rt.block_on(async {
        let client = http();
        let (status, _) = post(&client, &proxy, "version").await;
        assert_eq!(status, 200);

        let t = Instant::now();
        for cid in via_proxy {
            let (status, _) = post(&client, &proxy, &format!("pin/add?arg={cid}")).await;
            assert_eq!(status, 200, "pin/add {cid} through the proxy");
        }
        let pin_proxy = t.elapsed();
        // The cluster's own pins reach the daemon through the tracker: let
        // them land before the daemon is measured alone.
        cluster.wait_daemon(0, via_proxy, true);
        let pin_landed = t.elapsed();
        let t = Instant::now();
        for cid in direct {
            let (status, _) = post(&client, &daemon, &format!("pin/add?arg={cid}")).await;
            assert_eq!(status, 200, "pin/add {cid} on the daemon");
        }
        let pin_direct = t.elapsed();

        let mut cat_proxy = Vec::new();
        let mut cat_direct = Vec::new();
        for round in 0..CAT_ROUNDS {
            // Alternate who goes first (the daemon's caches warm up).
            let mut order = [(&proxy, &mut cat_proxy), (&daemon, &mut cat_direct)];
            if round % 2 == 1 {
                order.reverse();
            }
            for (addr, times) in order {
                let t = Instant::now();
                let (status, len) = post(&client, addr, &format!("cat?arg={big}")).await;
                times.push(t.elapsed());
                assert_eq!((status, len), (200, CAT_MIB << 20), "cat via {addr}");
            }
        }

        let each_ms = |d: Duration| d.as_secs_f64() * 1000.0 / PINS as f64;
        let mib_s = |d: &Duration| CAT_MIB as f64 / d.as_secs_f64();
        let best = |v: &[Duration]| v.iter().copied().min().unwrap_or_default();
        let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len().max(1) as u32;
        let (bp, bd) = (best(&cat_proxy), best(&cat_direct));
        println!(
            "ipfs proxy, 1 peer + 1 js-ipfs daemon, one keep-alive connection:\n  \
             pin/add serial, {PINS} local raw blocks: proxy {:.2} ms each ({:.0}/s), \
             daemon {:.2} ms each ({:.0}/s); all proxy pins on the daemon {:.1} s after the first\n  \
             cat {CAT_MIB} MiB (added in {:.1} s): proxy best {:.0} MiB/s mean {:.0} MiB/s, \
             daemon best {:.0} MiB/s mean {:.0} MiB/s; throughput overhead (best) {:.1} %\n  \
             rounds proxy {:?}\n  rounds daemon {:?}",
            each_ms(pin_proxy),
            PINS as f64 / pin_proxy.as_secs_f64(),
            each_ms(pin_direct),
            PINS as f64 / pin_direct.as_secs_f64(),
            pin_landed.as_secs_f64(),
            add_time.as_secs_f64(),
            mib_s(&bp),
            mib_s(&mean(&cat_proxy)),
            mib_s(&bd),
            mib_s(&mean(&cat_direct)),
            (1.0 - mib_s(&bp) / mib_s(&bd)) * 100.0,
            cat_proxy,
            cat_direct,
        );
    });
}

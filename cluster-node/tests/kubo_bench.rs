//! Throughput of the connector against one real js-ipfs daemon (ignored by
//! default; figures go to BENCHMARKS.md):
//!
//!     cargo test -p cluster-node --test kubo_bench -- --ignored --nocapture
//!
//! (The dev profile is fine: the daemon, not the connector, is the cost.)
//!
//! Serial `pin` calls of 1,000 local raw blocks (each: two `pin/ls` look-ups,
//! a synced mark, `pin/add`), then `list_pins` of those 1,000 pins, then
//! serial `unpin`. Port base 16200 (this file only).

mod common;

use std::time::{Duration, Instant};

use cluster_node::ipfs::kubo::{KuboConfig, KuboConnector};
use cluster_node::ipfs::IpfsConnector;
use common::{runtime, Daemons};

const BASE: u16 = 16200;
const PINS: usize = 1_000;
const LISTINGS: u32 = 5;

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn pin_and_list_1000() {
    let daemons = Daemons::start(1, BASE);
    let data = tempfile::tempdir().expect("data dir");
    let mut config = KuboConfig::new(daemons.url(0), data.path());
    config.request_timeout = Duration::from_secs(60);
    let ipfs = KuboConnector::new(config).expect("connector");
    runtime().block_on(async {
        let mut cids = Vec::with_capacity(PINS);
        let t = Instant::now();
        for i in 0..PINS {
            let block = format!("kubo bench block {i}");
            cids.push(ipfs.block_put(block.as_bytes()).await.expect("block_put"));
        }
        let put = t.elapsed();

        let t = Instant::now();
        for cid in &cids {
            ipfs.pin(cid, -1).await.expect("pin");
        }
        let pin = t.elapsed();

        let mut list = Duration::ZERO;
        for _ in 0..LISTINGS {
            let t = Instant::now();
            let pins = ipfs.list_pins().await.expect("list_pins");
            list += t.elapsed();
            assert_eq!(pins.len(), PINS);
            assert!(pins.iter().all(|p| p.by_cluster));
        }
        let list = list / LISTINGS;

        let t = Instant::now();
        for cid in &cids {
            ipfs.unpin(cid).await.expect("unpin");
        }
        let unpin = t.elapsed();

        let per_s = |d: Duration| PINS as f64 / d.as_secs_f64();
        println!(
            "kubo connector, 1 js-ipfs daemon, {PINS} raw blocks:\n  \
             block_put serial: {:.0}/s ({:.2} s)\n  \
             pin serial: {:.0}/s ({:.2} s, {:.2} ms each)\n  \
             list_pins of {PINS}: {:.1} ms (mean of {LISTINGS})\n  \
             unpin serial: {:.0}/s ({:.2} s)",
            per_s(put),
            put.as_secs_f64(),
            per_s(pin),
            pin.as_secs_f64(),
            pin.as_secs_f64() * 1000.0 / PINS as f64,
            list.as_secs_f64() * 1000.0,
            per_s(unpin),
            unpin.as_secs_f64(),
        );
    });
}

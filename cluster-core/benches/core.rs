//! Core figures: apply throughput into a 1M-pin state, memory per pin, and
//! snapshot size and encode/decode time; the pin tracker's memory per pin
//! once every pin is done. Run: `cargo bench -p cluster-core`.
//! `PINS=<n>` changes the state size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use cluster_core::pinset::{Command, Entry, Pinset, RequestId};
use cluster_core::tracker::{Desire, Input, IpfsCommand, Output, Tracker, TrackerConfig};
use cluster_core::{Cid, Millis, PeerId, Pin, PinOptions};

/// Counts live heap bytes so memory per pin is measured, not estimated.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn cid(n: u64) -> Cid {
    // A CIDv1 (raw, sha2-256) with a digest spread from n, like real content.
    let mut bytes = vec![0x01, 0x55, 0x12, 0x20];
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.push(x as u8);
    }
    Cid::from_bytes(&bytes).expect("valid cid")
}

fn entry(n: u64, peers: &[PeerId], request: bool) -> Entry {
    let options = PinOptions {
        replication_factor_min: 2,
        replication_factor_max: 3,
        name: format!("file-{n}"),
        ..Default::default()
    };
    let mut pin = Pin::new(cid(n), options, Millis(1_700_000_000_000 + n));
    pin.allocations = (0..3)
        .map(|i| peers[(n as usize + i) % peers.len()].clone())
        .collect();
    Entry {
        request: request.then_some(RequestId {
            client: n % 64,
            serial: n,
        }),
        command: Command::Pin(pin),
    }
}

const CHUNK: u64 = 100_000;

/// The floor for an ordered map of this many random keys on this machine:
/// plain inserts of CID-sized keys and stored-pin-sized values, nothing else.
fn btree_baseline(n: u64) -> f64 {
    let keys: Vec<[u8; 40]> = (0..n)
        .map(|i| {
            let mut k = [0u8; 40];
            k[..36].copy_from_slice(cid(i).as_bytes());
            k
        })
        .collect();
    let mut map = std::collections::BTreeMap::new();
    let start = Instant::now();
    for k in &keys {
        map.insert(*k, [0u8; 64]);
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    assert_eq!(map.len() as u64, n);
    rate
}

fn main() {
    let pins: u64 = std::env::var("PINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let peers: Vec<PeerId> = (0..10).map(PeerId::synthetic).collect();
    println!("cluster-core bench: {pins} pins, rf 2..3, 3 allocations of 10 peers, name 'file-<n>', CIDv1");

    // Entries are built outside the timed region, a chunk at a time, and the
    // heap they use is subtracted, so both figures describe the pinset alone.
    let mut set = Pinset::new();
    let mut fill = std::time::Duration::ZERO;
    let mut state_bytes = 0isize;
    for chunk_start in (0..pins).step_by(CHUNK as usize) {
        let chunk: Vec<Entry> = (chunk_start..(chunk_start + CHUNK).min(pins))
            .map(|n| entry(n, &peers, false))
            .collect();
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let start = Instant::now();
        for (i, e) in chunk.iter().enumerate() {
            set.apply(chunk_start + i as u64 + 1, e)
                .expect("index grows")
                .expect("valid pin");
        }
        fill += start.elapsed();
        state_bytes += LIVE_BYTES.load(Ordering::Relaxed) - before;
    }
    let bytes = state_bytes;
    let baseline = btree_baseline(pins);
    println!(
        "apply (fill 0 -> {pins}):           {:>10.0} applies/s  ({:.2} s)",
        pins as f64 / fill.as_secs_f64(),
        fill.as_secs_f64()
    );
    println!(
        "  same run, plain std BTreeMap<[u8; 40], [u8; 64]> inserts of {pins} such keys: {:.0}/s (apply = {:.0}% of that floor)",
        baseline,
        100.0 * pins as f64 / fill.as_secs_f64() / baseline
    );
    println!(
        "memory:                            {:>10.1} bytes/pin (heap, counted)",
        bytes as f64 / pins as f64
    );

    let start = Instant::now();
    let snap = set.snapshot();
    let encode = start.elapsed();
    let start = Instant::now();
    let restored = Pinset::restore(&snap).expect("restore");
    let decode = start.elapsed();
    assert_eq!(restored.len(), set.len());
    drop(restored);
    println!(
        "snapshot of {} pins:            {:>10.1} MB, {:.1} bytes/pin",
        set.len(),
        snap.len() as f64 / 1e6,
        snap.len() as f64 / set.len() as f64
    );
    println!(
        "snapshot encode + decode:          {:>10.3} s  (encode {:.3} s, decode {:.3} s)",
        (encode + decode).as_secs_f64(),
        encode.as_secs_f64(),
        decode.as_secs_f64()
    );
    let extra = 200_000u64;
    let more: Vec<Entry> = (pins..pins + extra)
        .map(|n| entry(n, &peers, true))
        .collect();
    let start = Instant::now();
    for (i, e) in more.iter().enumerate() {
        set.apply(pins + i as u64 + 1, e)
            .expect("index grows")
            .expect("valid pin");
    }
    let t = start.elapsed();
    drop(more);
    println!(
        "apply into {pins}-pin state (+req id): {:>7.0} applies/s  ({extra} adds)",
        extra as f64 / t.as_secs_f64()
    );

    drop(set);
    tracker_memory(pins);
}

/// Heap bytes per pin of one peer's tracker holding `pins` pinned CIDs (the
/// state a peer keeps for each pin allocated to it), and the time to get
/// there: desires fed, every pin command answered.
fn tracker_memory(pins: u64) {
    let config = TrackerConfig {
        queue_max: pins as usize + 1,
        concurrent_pins: 1_024,
        ..TrackerConfig::default()
    };
    let cids: Vec<Cid> = (0..pins).map(cid).collect();
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut tracker = Tracker::new(config, 1, Millis(0)).expect("valid config");
    let now = Millis(1);
    for c in &cids {
        tracker.handle_input(
            Input::Desired {
                cid: c.clone(),
                desire: Some(Desire::Pin { max_depth: -1 }),
            },
            now,
        );
    }
    let mut done = 0u64;
    while done < pins {
        let mut answers = Vec::new();
        while let Output::Command(cmd) = tracker.poll_output(now) {
            match cmd {
                IpfsCommand::Pin { op, .. } => answers.push(op),
                // The first listing: answer it empty, as a fresh daemon would.
                IpfsCommand::ListPins { op } => tracker.handle_input(
                    Input::IpfsPins {
                        op,
                        result: Ok(Vec::new()),
                    },
                    now,
                ),
                IpfsCommand::Unpin { .. } => unreachable!("nothing to unpin"),
            }
        }
        assert!(
            !answers.is_empty(),
            "the tracker stalled at {done} of {pins}"
        );
        done += answers.len() as u64;
        for op in answers {
            tracker.handle_input(Input::IpfsDone { op, result: Ok(()) }, now);
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(tracker.counts().pinned as u64, pins);
    let bytes = LIVE_BYTES.load(Ordering::Relaxed) - before;
    // The CIDs fed in are the driver's, not the tracker's.
    let cid_bytes = (cids.capacity() * std::mem::size_of::<Cid>()) as isize;
    println!(
        "tracker memory, {pins} pinned:      {:>10.1} bytes/pin (heap, counted; {:.2} s to feed and pin all)",
        (bytes - cid_bytes) as f64 / pins as f64,
        elapsed.as_secs_f64()
    );
    // What an idle peer pays per pass of the driver's self-check, and for
    // the counters the metrics read after every step.
    let start = Instant::now();
    tracker.check_invariants().expect("a consistent tracker");
    let check = start.elapsed();
    let start = Instant::now();
    let mut pinned = 0;
    for _ in 0..1_000 {
        pinned += std::hint::black_box(&tracker).counts().pinned;
    }
    let counts = start.elapsed() / 1_000;
    assert_eq!(pinned as u64, pins * 1_000);
    println!(
        "tracker self-check of {pins} pinned:  {:>10.1} ms per pass; counts() {:?}",
        check.as_secs_f64() * 1e3,
        counts
    );
}

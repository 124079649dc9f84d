//! Runs a small cluster under madsim's deterministic runtime to check the
//! runtime seam end to end. Only built with `--cfg madsim`:
//!
//! `RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/madsim cargo test -p cluster-net --no-default-features --test madsim_smoke`

#![cfg(madsim)]

use std::time::Duration;

use cluster_core::pinset::{Applied, Command, Entry, RequestId};
use cluster_core::{Cid, Millis, PeerId, Pin, PinOptions};
use cluster_net::inproc::InProcRouter;
use cluster_net::store::MemStore;
use cluster_net::{Boot, ClusterRaft, RaftConfig};

fn pin_entry(n: u64) -> Entry {
    let mut bytes = vec![0x12, 0x20];
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&n.to_be_bytes());
    bytes.extend_from_slice(&digest);
    let options = PinOptions {
        replication_factor_min: -1,
        replication_factor_max: -1,
        ..Default::default()
    };
    Entry {
        request: Some(RequestId {
            client: 3,
            serial: n,
        }),
        command: Command::Pin(Pin::new(
            Cid::from_bytes(&bytes).expect("cid"),
            options,
            Millis(n),
        )),
    }
}

#[madsim::test]
async fn three_peers_elect_and_replicate_under_madsim() {
    let router = InProcRouter::serializing();
    let config = RaftConfig {
        snapshot_every_logs: 10,
        logs_to_keep: 2,
        ..RaftConfig::fast_for_tests()
    };
    let mut peers: Vec<ClusterRaft> = Vec::new();
    for n in 0..3u64 {
        let id = PeerId::synthetic(n + 1);
        let raft = ClusterRaft::start(
            &id,
            format!("sim/{n}"),
            config.clone(),
            Boot::CreateIfEmpty {
                incarnation: u128::from(n) + 1,
            },
            MemStore::new(),
            router.transport(id.as_str()),
        )
        .await
        .expect("start");
        router.register(id.as_str(), raft.rpc_handler());
        if n == 0 {
            raft.initialize(42).await.expect("initialize");
            raft.wait_for_leader(Duration::from_secs(10))
                .await
                .expect("leader");
        } else {
            raft.join(peers[0].node_info()).await.expect("join");
        }
        peers.push(raft);
    }
    for n in 0..30 {
        let result = peers[(n % 3) as usize].write(pin_entry(n)).await;
        assert!(
            matches!(result, Ok(Ok(Applied::Pinned { .. }))),
            "{result:?}"
        );
    }
    let index = peers[0].applied_index().max(peers[1].applied_index());
    for p in &peers {
        assert!(p.wait_for_applied(index, Duration::from_secs(10)).await);
        assert_eq!(p.with_pinset(|s| s.len()), 30);
    }
    // Lose the leader; the others elect a new one and keep writing.
    let leader = peers.iter().position(|p| p.is_leader()).expect("leader");
    router.set_down(peers[leader].node_info().peer_id.as_str(), true);
    peers[leader].shutdown().await;
    let survivor = &peers[(leader + 1) % 3];
    let result = survivor.write(pin_entry(100)).await;
    assert!(
        matches!(result, Ok(Ok(Applied::Pinned { .. }))),
        "{result:?}"
    );
    assert_eq!(survivor.with_pinset(|s| s.len()), 31);
}

//! Peers over the libp2p transport on 127.0.0.1 with real sockets: a
//! 3-peer Raft cluster replicates writes; a peer with another cluster
//! secret is refused (and both sides say so); an oversize message is
//! refused without harm; a restarted peer is redialled and catches up; a
//! non-member's Raft traffic is refused.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cluster_core::pinset::{Applied, Command, Entry};
use cluster_core::{Millis, Pin, PinOptions};
use cluster_net::p2p::{ClusterSecret, Libp2pConfig, Libp2pTransport, PEERSTORE_FILE};
use cluster_net::store::RedbStore;
use cluster_net::{Boot, ClusterRaft, RaftConfig};
use common::{cid, next_incarnation, open_retrying, pin_entry, CLUSTER_ID, WAIT};

const SECRET: &str = "2f3a5d71c0b2e4f6a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5";
const OTHER_SECRET: &str = "9f3a5d71c0b2e4f6a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5";

/// Log lines of every test of this binary (tests run in parallel: each
/// looks for lines naming its own peers).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        std::io::stderr().write_all(bytes)?;
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_lines(containing: &[&str]) -> Vec<String> {
    let text =
        String::from_utf8_lossy(&logs().lock().unwrap_or_else(|e| e.into_inner())).to_string();
    text.lines()
        .filter(|l| containing.iter().all(|c| l.contains(c)))
        .map(str::to_string)
        .collect()
}

/// One peer: its host and its Raft.
struct Peer {
    raft: ClusterRaft,
    net: Libp2pTransport,
    dir: PathBuf,
}

impl Peer {
    async fn stop(self) -> (PathBuf, String) {
        let addr = self.net.addr();
        self.raft.shutdown().await;
        self.net.shutdown().await;
        (self.dir, addr)
    }
}

fn secret(text: &str) -> Option<ClusterSecret> {
    Some(ClusterSecret::parse(text).expect("test secret"))
}

fn raft_config() -> RaftConfig {
    RaftConfig {
        membership_leader_wait_ms: 2_000,
        membership_attempt_timeout_ms: 2_500,
        membership_timeout_ms: 8_000,
        ..RaftConfig::fast_for_tests()
    }
}

async fn start_peer(dir: &Path, net_config: impl FnOnce(&mut Libp2pConfig)) -> Peer {
    logs();
    let mut config = Libp2pConfig::fast_for_tests(dir.join("config"));
    config.secret = secret(SECRET);
    net_config(&mut config);
    let net = Libp2pTransport::start(config).await.expect("libp2p start");
    let store = open_retrying(&dir.join("raft"), RedbStore::open_or_create).await;
    let raft = ClusterRaft::start(
        &net.peer_id(),
        net.addr(),
        raft_config(),
        Boot::CreateIfEmpty {
            incarnation: next_incarnation(),
        },
        store,
        Arc::new(net.clone()),
    )
    .await
    .expect("raft start");
    net.register(raft.rpc_handler());
    Peer {
        raft,
        net,
        dir: dir.to_path_buf(),
    }
}

/// Peer 0 initialises the cluster, the others join through it.
async fn form(root: &Path, count: usize) -> Vec<Peer> {
    let first = start_peer(&root.join("peer-0"), |_| {}).await;
    first.raft.initialize(CLUSTER_ID).await.expect("initialize");
    first.raft.wait_for_leader(WAIT).await.expect("leader");
    let mut peers = vec![first];
    for n in 1..count {
        let peer = start_peer(&root.join(format!("peer-{n}")), |_| {}).await;
        peer.raft
            .join(peers[0].raft.node_info())
            .await
            .expect("join over libp2p");
        peers.push(peer);
    }
    wait_members(&peers, count).await;
    peers
}

async fn wait_members(peers: &[Peer], count: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    for p in peers {
        while p.raft.members().len() != count {
            assert!(
                std::time::Instant::now() < deadline,
                "members {:?}",
                p.raft.members()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn write_pins(raft: &ClusterRaft, range: std::ops::Range<u64>) -> u64 {
    for n in range {
        let result = raft.write(pin_entry(n)).await.expect("write");
        assert!(
            matches!(result, Ok(Applied::Pinned { .. })),
            "pin {n}: {result:?}"
        );
    }
    raft.applied_index()
}

async fn wait_applied(peers: &[&Peer], index: u64) {
    for p in peers {
        assert!(
            p.raft.wait_for_applied(index, WAIT).await,
            "{} at {} < {index}",
            p.raft.node_info(),
            p.raft.applied_index()
        );
    }
}

fn leader_of(peers: &[Peer]) -> usize {
    peers
        .iter()
        .position(|p| p.raft.is_leader())
        .expect("a leader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_form_a_cluster_and_replicate_over_libp2p() {
    let root = tempfile::tempdir().expect("temp dir");
    let peers = form(root.path(), 3).await;
    let leader = leader_of(&peers);
    let follower = (leader + 1) % 3;
    write_pins(&peers[leader].raft, 0..20).await;
    // Writes at a follower are forwarded over the peer-RPC protocol.
    let last = write_pins(&peers[follower].raft, 20..40).await;
    // Concurrent writes, batched.
    let mut tasks = Vec::new();
    for n in 40..100 {
        let raft = peers[n as usize % 3].raft.clone();
        tasks.push(tokio::spawn(async move { raft.write(pin_entry(n)).await }));
    }
    for t in tasks {
        assert!(matches!(
            t.await.expect("task"),
            Ok(Ok(Applied::Pinned { .. }))
        ));
    }
    let last = last.max(
        peers
            .iter()
            .map(|p| p.raft.applied_index())
            .max()
            .unwrap_or(0),
    );
    wait_applied(&peers.iter().collect::<Vec<_>>(), last).await;
    let sets: Vec<_> = peers
        .iter()
        .map(|p| p.raft.with_pinset(|s| s.to_map()))
        .collect();
    assert_eq!(sets[0].len(), 100);
    assert!(sets.iter().all(|s| *s == sets[0]));
    // The leader and each follower know each other, connected, with
    // addresses (followers need not talk to each other).
    let leader = leader_of(&peers);
    for (a, b) in (0..3)
        .filter(|&f| f != leader)
        .flat_map(|f| [(leader, f), (f, leader)])
    {
        let (p, records) = (&peers[a], peers[a].net.peers());
        let other = &peers[b];
        let record = records
            .iter()
            .find(|r| r.peer_id == other.net.peer_id().as_str())
            .unwrap_or_else(|| panic!("{} does not know {}", p.net.addr(), other.net.addr()));
        assert!(record.connected, "{record:?}");
        assert!(!record.addresses.is_empty(), "{record:?}");
    }
    for p in peers {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_another_secret_is_refused_and_both_sides_say_so() {
    let root = tempfile::tempdir().expect("temp dir");
    let member = start_peer(&root.path().join("member"), |_| {}).await;
    member
        .raft
        .initialize(CLUSTER_ID)
        .await
        .expect("initialize");
    member.raft.wait_for_leader(WAIT).await.expect("leader");
    let stranger = start_peer(&root.path().join("stranger"), |c| {
        c.secret = secret(OTHER_SECRET)
    })
    .await;
    let joined = stranger.raft.join(member.raft.node_info()).await;
    assert!(joined.is_err(), "joined with another secret: {joined:?}");
    assert!(!stranger.raft.is_member());
    assert_eq!(member.raft.members().len(), 1);

    // The dialling side says why, by peer and in its peer list.
    let member_id = member.net.peer_id().to_string();
    let record = stranger
        .net
        .peers()
        .into_iter()
        .find(|r| r.peer_id == member_id)
        .expect("member in the stranger's peer list");
    assert!(!record.connected);
    let error = record.last_error.unwrap_or_default();
    assert!(
        error.contains("does not use this cluster's secret"),
        "{error}"
    );
    assert!(
        !log_lines(&[
            "cannot connect to peer",
            &member_id,
            "does not use this cluster's secret"
        ])
        .is_empty(),
        "no plain-words log line on the dialling side"
    );
    // The listening side logs the refusal of a connection from the
    // stranger's address; the dialling side of the connection to it.
    let member_port = member
        .net
        .addr()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        !log_lines(&[
            "refused the connection to",
            &format!("/tcp/{member_port}"),
            "does not use this cluster's secret"
        ])
        .is_empty(),
        "no refusal logged by the dialler"
    );
    assert!(
        !log_lines(&[
            "refused the connection from",
            "does not use this cluster's secret"
        ])
        .is_empty(),
        "no refusal logged by the listener"
    );
    // The member is unharmed.
    write_pins(&member.raft, 0..3).await;
    stranger.stop().await;
    member.stop().await;
}

/// A pin whose metadata makes its entry about 64 KiB.
fn big_entry(n: u64) -> Entry {
    let mut options = PinOptions {
        replication_factor_min: -1,
        replication_factor_max: -1,
        ..Default::default()
    };
    for k in 0..16 {
        options
            .metadata
            .insert(format!("key{k}"), "x".repeat(4_000));
    }
    Entry {
        request: None,
        command: Command::Pin(Pin::new(cid(n), options, Millis(n))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_is_refused_without_harm() {
    let root = tempfile::tempdir().expect("temp dir");
    // The leader accepts messages of at most 32 KiB; the follower sends up
    // to the default 8 MiB.
    let leader = start_peer(&root.path().join("leader"), |c| {
        c.message_bytes_max = 32 * 1024
    })
    .await;
    leader
        .raft
        .initialize(CLUSTER_ID)
        .await
        .expect("initialize");
    leader.raft.wait_for_leader(WAIT).await.expect("leader");
    let follower = start_peer(&root.path().join("follower"), |_| {}).await;
    follower
        .raft
        .join(leader.raft.node_info())
        .await
        .expect("join");
    let peers = [leader, follower];
    wait_members(&peers, 2).await;
    let [leader, follower] = peers;
    assert!(leader.raft.is_leader());

    // Forwarded to the leader, whose codec refuses it before buffering.
    let result = follower.raft.write(big_entry(1)).await;
    match &result {
        Err(e) => assert!(e.outcome_unknown(), "{e:?}"),
        Ok(answer) => panic!("oversize write answered {answer:?}"),
    }
    assert!(
        !log_lines(&[
            "dropped an inbound request on /ipfs-cluster-rs/peer-rpc/",
            "exceeds the limit of 32768 bytes"
        ])
        .is_empty(),
        "the refusal is not logged"
    );
    // Nothing was applied, and the cluster carries on over the same hosts.
    assert!(!leader
        .raft
        .with_pinset(|p| p.to_map().contains_key(&cid(1))));
    let last = write_pins(&follower.raft, 10..20).await;
    wait_applied(&[&leader, &follower], last).await;
    assert_eq!(leader.raft.with_pinset(|p| p.len()), 10);
    follower.stop().await;
    leader.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_redialled_and_catches_up() {
    let root = tempfile::tempdir().expect("temp dir");
    let mut peers = form(root.path(), 3).await;
    let leader = leader_of(&peers);
    write_pins(&peers[leader].raft, 0..10).await;
    let follower = (leader + 1) % 3;
    let stopped = peers.remove(follower);
    let stopped_id = stopped.net.peer_id();
    let (dir, addr) = stopped.stop().await;
    // Its peerstore, saved at shutdown, names the peers it talked to.
    let saved =
        std::fs::read_to_string(dir.join("config").join(PEERSTORE_FILE)).expect("peerstore saved");
    assert!(
        peers
            .iter()
            .any(|p| saved.contains(&format!("/p2p/{}", p.net.peer_id()))),
        "peerstore {saved:?} names no other peer"
    );
    let leader = leader_of(&peers);
    let last = write_pins(&peers[leader].raft, 10..30).await;

    // The leader's dials to it fail and back off meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let record = peers[leader]
        .net
        .peers()
        .into_iter()
        .find(|r| r.peer_id == stopped_id.as_str())
        .expect("stopped peer known");
    assert!(!record.connected);
    assert!(record.last_error.is_some(), "{record:?}");

    // Same address, same identity key, same store.
    let back = start_peer(&dir, |c| c.listen = vec![addr.clone()]).await;
    assert_eq!(back.net.peer_id(), stopped_id);
    assert_eq!(back.net.addr(), addr);
    assert!(
        back.raft.wait_for_applied(last, WAIT).await,
        "restarted peer did not catch up"
    );
    assert_eq!(back.raft.with_pinset(|p| p.len()), 30);
    let connected = peers[leader]
        .net
        .peers()
        .into_iter()
        .any(|r| r.peer_id == stopped_id.as_str() && r.connected);
    assert!(connected, "leader not connected to the restarted peer");
    peers.push(back);
    let leader = leader_of(&peers);
    let last = write_pins(&peers[leader].raft, 30..31).await;
    wait_applied(&peers.iter().collect::<Vec<_>>(), last).await;
    for p in peers {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_members_raft_traffic_is_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    let peers = form(root.path(), 2).await;
    let leader = leader_of(&peers);
    write_pins(&peers[leader].raft, 0..5).await;
    // An outsider holding the secret and the cluster id (but not a member)
    // writes itself a membership naming a member and campaigns: its votes
    // reach the member over libp2p and are refused.
    let outsider = start_peer(&root.path().join("outsider"), |_| {}).await;
    let target = &peers[(leader + 1) % 2];
    let initial = vec![
        outsider.raft.node_info().clone(),
        target.raft.node_info().clone(),
    ];
    let bootstrapped = tokio::time::timeout(
        Duration::from_secs(3),
        outsider.raft.bootstrap(CLUSTER_ID, &initial),
    )
    .await;
    assert!(
        !matches!(bootstrapped, Ok(Ok(()))),
        "the outsider formed a cluster with a member"
    );
    let outsider_id = outsider.net.peer_id().to_string();
    assert!(
        !log_lines(&["refusing raft traffic", &outsider_id, "not a member"]).is_empty(),
        "no refusal of the outsider's raft traffic logged"
    );
    // The cluster is unharmed: same members, writes go on.
    assert_eq!(target.raft.members().len(), 2);
    let leader = leader_of(&peers);
    let last = write_pins(&peers[leader].raft, 5..10).await;
    wait_applied(&peers.iter().collect::<Vec<_>>(), last).await;
    outsider.stop().await;
    for p in peers {
        p.stop().await;
    }
}

//! Known peers: their addresses, whether they are connected, when they were
//! last seen and why the last attempt failed; the dial back-off; and the
//! `peerstore` file (one multiaddr ending in `/p2p/<peer id>` per line, as
//! IPFS Cluster writes it).
//!
//! Pure bookkeeping: the swarm task tells it what happened, with the time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// Name of the peerstore file in the config directory.
pub const PEERSTORE_FILE: &str = "peerstore";
/// Most addresses remembered per peer (the newest are kept).
pub const ADDRESSES_PER_PEER_MAX: usize = 8;
/// Most peers remembered (the file is not a database).
pub const PEERS_MAX: usize = 1_024;

/// What this peer knows about another one (what `peers ls` shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// The peer.
    pub peer_id: String,
    /// Addresses it can be dialled at (without `/p2p/`).
    pub addresses: Vec<String>,
    /// Connected right now.
    pub connected: bool,
    /// When a connection to it was last open.
    pub last_seen: Option<SystemTime>,
    /// Why the last dial or connection failed, in words.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Entry {
    addresses: Vec<Multiaddr>,
    connections: usize,
    last_seen: Option<SystemTime>,
    last_error: Option<String>,
    failures: u32,
    dial_not_before: Option<Instant>,
    wanted_until: Option<Instant>,
}

/// The peers this peer knows, with a dial back-off per peer.
#[derive(Debug)]
pub(crate) struct Peerstore {
    peers: BTreeMap<PeerId, Entry>,
    backoff_min: Duration,
    backoff_max: Duration,
    dirty: bool,
}

/// Splits `/…/p2p/<id>` into the address and the peer id.
pub(crate) fn split_p2p(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut addr = addr.clone();
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => {
            addr.pop();
            (addr, Some(peer))
        }
        _ => (addr, None),
    }
}

impl Peerstore {
    /// An empty store whose back-off doubles from `backoff_min` up to
    /// `backoff_max` with each failed dial.
    pub(crate) fn new(backoff_min: Duration, backoff_max: Duration) -> Peerstore {
        assert!(backoff_min <= backoff_max, "back-off bounds out of order");
        Peerstore {
            peers: BTreeMap::new(),
            backoff_min,
            backoff_max,
            dirty: false,
        }
    }

    /// Records an address of `peer` (newest last); true when it is new.
    pub(crate) fn add_address(&mut self, peer: PeerId, addr: Multiaddr) -> bool {
        let (addr, _) = split_p2p(&addr);
        if addr.is_empty() {
            return false;
        }
        if !self.peers.contains_key(&peer) && self.peers.len() >= PEERS_MAX {
            return false;
        }
        let entry = self.peers.entry(peer).or_default();
        if let Some(at) = entry.addresses.iter().position(|a| *a == addr) {
            let known = entry.addresses.remove(at);
            entry.addresses.push(known);
            return false;
        }
        entry.addresses.push(addr);
        if entry.addresses.len() > ADDRESSES_PER_PEER_MAX {
            entry.addresses.remove(0);
        }
        self.dirty = true;
        true
    }

    /// Addresses of `peer`, newest first.
    pub(crate) fn addresses(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.peers
            .get(peer)
            .map(|e| e.addresses.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// True while a dial to `peer` must wait (it failed recently).
    pub(crate) fn in_backoff(&self, peer: &PeerId, now: Instant) -> bool {
        self.peers
            .get(peer)
            .and_then(|e| e.dial_not_before)
            .is_some_and(|t| now < t)
    }

    /// A connection to `peer` opened.
    pub(crate) fn connected(&mut self, peer: PeerId) {
        let entry = self.peers.entry(peer).or_default();
        entry.connections += 1;
        entry.last_seen = Some(SystemTime::now());
        entry.failures = 0;
        entry.dial_not_before = None;
        entry.last_error = None;
    }

    /// A connection to `peer` closed (`error` when it broke).
    pub(crate) fn disconnected(&mut self, peer: PeerId, error: Option<String>) {
        let entry = self.peers.entry(peer).or_default();
        entry.connections = entry.connections.saturating_sub(1);
        entry.last_seen = Some(SystemTime::now());
        if error.is_some() {
            entry.last_error = error;
        }
    }

    /// A dial to `peer` failed: the next one waits, twice as long as the
    /// last wait, up to the cap.
    pub(crate) fn dial_failed(&mut self, peer: PeerId, error: String, now: Instant) {
        let (min, max) = (self.backoff_min, self.backoff_max);
        let entry = self.peers.entry(peer).or_default();
        entry.failures = entry.failures.saturating_add(1);
        let doublings = entry.failures.saturating_sub(1).min(16);
        let wait = min.saturating_mul(1u32 << doublings).min(max);
        entry.dial_not_before = Some(now + wait);
        entry.last_error = Some(error);
    }

    /// Marks `peer` as one to keep connected until `until` (it is being
    /// called): the redial loop dials it when it is not connected.
    pub(crate) fn want(&mut self, peer: PeerId, until: Instant) {
        let entry = self.peers.entry(peer).or_default();
        entry.wanted_until = Some(entry.wanted_until.map_or(until, |t| t.max(until)));
    }

    /// Peers to dial now: wanted, not connected, with an address, and out
    /// of back-off.
    pub(crate) fn due_for_redial(&self, now: Instant) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(_, e)| e.wanted_until.is_some_and(|t| now < t))
            .filter(|(_, e)| e.connections == 0 && !e.addresses.is_empty())
            .filter(|(_, e)| e.dial_not_before.is_none_or(|t| now >= t))
            .map(|(p, _)| *p)
            .collect()
    }

    /// What `peers ls` shows.
    pub(crate) fn records(&self) -> Vec<PeerRecord> {
        self.peers
            .iter()
            .map(|(peer, e)| PeerRecord {
                peer_id: peer.to_string(),
                addresses: e.addresses.iter().rev().map(|a| a.to_string()).collect(),
                connected: e.connections > 0,
                last_seen: e.last_seen,
                last_error: e.last_error.clone(),
            })
            .collect()
    }

    /// The file form: one `/…/p2p/<id>` line per address.
    pub(crate) fn to_file(&self) -> String {
        let mut out = String::new();
        for (peer, e) in &self.peers {
            for addr in &e.addresses {
                let full = addr.clone().with(Protocol::P2p(*peer));
                out.push_str(&full.to_string());
                out.push('\n');
            }
        }
        out
    }

    /// Reads the file form; bad lines are skipped with a warning (they were
    /// hand-edited or written by another version), never fatal.
    pub(crate) fn load_file(&mut self, text: &str) -> usize {
        let mut loaded = 0;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.parse::<Multiaddr>().map(|a| split_p2p(&a)) {
                Ok((addr, Some(peer))) => {
                    self.add_address(peer, addr);
                    loaded += 1;
                }
                Ok((_, None)) => {
                    tracing::warn!(
                        line = number + 1,
                        "peerstore line has no /p2p/ peer id; skipped"
                    )
                }
                Err(e) => {
                    tracing::warn!(line = number + 1, error = %e, "peerstore line is not a multiaddr; skipped")
                }
            }
        }
        self.dirty = false;
        loaded
    }

    /// Takes the "changed since saved" flag.
    pub(crate) fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Known peers, in order.
    pub(crate) fn peers(&self) -> BTreeSet<PeerId> {
        self.peers.keys().copied().collect()
    }
}

/// Reads the peerstore file of `dir` into `store` (a missing file is an
/// empty store).
pub(crate) fn load(dir: &Path, store: &mut Peerstore) -> std::io::Result<usize> {
    match std::fs::read_to_string(dir.join(PEERSTORE_FILE)) {
        Ok(text) => Ok(store.load_file(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr")
    }

    #[test]
    fn back_off_doubles_up_to_the_cap_and_resets_on_connect() {
        let mut store = Peerstore::new(Duration::from_millis(100), Duration::from_millis(350));
        let peer = PeerId::random();
        let t0 = Instant::now();
        assert!(!store.in_backoff(&peer, t0));
        store.dial_failed(peer, "refused".into(), t0);
        assert!(store.in_backoff(&peer, t0 + Duration::from_millis(99)));
        assert!(!store.in_backoff(&peer, t0 + Duration::from_millis(100)));
        store.dial_failed(peer, "refused".into(), t0);
        assert!(store.in_backoff(&peer, t0 + Duration::from_millis(199)));
        for _ in 0..40 {
            store.dial_failed(peer, "refused".into(), t0);
        }
        assert!(store.in_backoff(&peer, t0 + Duration::from_millis(349)));
        assert!(!store.in_backoff(&peer, t0 + Duration::from_millis(350)));
        assert_eq!(store.records()[0].last_error.as_deref(), Some("refused"));
        store.connected(peer);
        assert!(!store.in_backoff(&peer, t0));
        assert_eq!(store.records()[0].last_error, None);
        assert!(store.records()[0].connected);
    }

    #[test]
    fn redial_only_wanted_disconnected_peers_out_of_back_off() {
        let mut store = Peerstore::new(Duration::from_millis(100), Duration::from_secs(1));
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        store.add_address(a, addr(1));
        store.add_address(b, addr(2));
        assert!(store.due_for_redial(t0).is_empty(), "nobody wanted");
        store.want(a, t0 + Duration::from_secs(5));
        assert_eq!(store.due_for_redial(t0), vec![a]);
        store.dial_failed(a, "down".into(), t0);
        assert!(store.due_for_redial(t0).is_empty());
        assert_eq!(
            store.due_for_redial(t0 + Duration::from_millis(100)),
            vec![a]
        );
        store.connected(a);
        assert!(store.due_for_redial(t0 + Duration::from_secs(1)).is_empty());
        store.disconnected(a, Some("reset".into()));
        assert_eq!(store.due_for_redial(t0 + Duration::from_secs(1)), vec![a]);
        assert!(
            store.due_for_redial(t0 + Duration::from_secs(6)).is_empty(),
            "no longer wanted"
        );
    }

    #[test]
    fn file_round_trips_and_skips_bad_lines() {
        let mut store = Peerstore::new(Duration::from_millis(1), Duration::from_millis(1));
        let peer = PeerId::random();
        assert!(store.add_address(peer, addr(1)));
        assert!(!store.add_address(peer, addr(1)));
        assert!(store.add_address(peer, addr(2).with(Protocol::P2p(peer))));
        assert!(store.take_dirty());
        let text = store.to_file();
        assert_eq!(text.lines().count(), 2);
        let mut back = Peerstore::new(Duration::from_millis(1), Duration::from_millis(1));
        let loaded = back.load_file(&format!("{text}garbage\n/ip4/1.2.3.4/tcp/5\n\n"));
        assert_eq!(loaded, 2);
        assert_eq!(back.addresses(&peer), vec![addr(2), addr(1)]);
        assert!(!back.take_dirty());
    }

    #[test]
    fn addresses_per_peer_are_capped() {
        let mut store = Peerstore::new(Duration::from_millis(1), Duration::from_millis(1));
        let peer = PeerId::random();
        for port in 0..20 {
            store.add_address(peer, addr(port));
        }
        let kept = store.addresses(&peer);
        assert_eq!(kept.len(), ADDRESSES_PER_PEER_MAX);
        assert_eq!(kept[0], addr(19));
    }
}

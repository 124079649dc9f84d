//! A page of pin statuses as the peers answered them (rest-api.md §5.6),
//! encoded as NDJSON from borrowed parts: each peer's name and IPFS
//! daemon, and the page's timestamp, are written once per page, never
//! copied into an owned `GlobalPinInfo` per CID.

use std::collections::BTreeMap;

use cluster_core::tracker::PinStatus;
use cluster_core::{Cid, Millis, PeerId, Pin};

use super::encode::{self, TimeText};
use crate::api::time::Timestamp;
use crate::api::types::{GlobalPinInfo, PinInfoShort};

/// One peer asked for the page: its `peer_map` key and what is shown for
/// it in every entry.
#[derive(Debug, Clone)]
pub struct PeerColumn {
    /// The cluster peer (the `peer_map` key).
    pub id: PeerId,
    /// Its name.
    pub peername: String,
    /// Its IPFS daemon's id, when known.
    pub ipfs_peer_id: Option<String>,
    /// Its IPFS daemon's addresses, when known.
    pub ipfs_peer_addresses: Option<Vec<String>>,
}

/// The statuses of a page of CIDs on the peers asked.
#[derive(Debug, Clone)]
pub struct StatusPage {
    /// The page's CIDs and pins (`None`: not in the state), as asked:
    /// kept whole rather than moved entry by entry (a pin is ~300 bytes).
    rows: Vec<(Cid, Option<Pin>)>,
    /// The rows that are entries (the filter may leave some out), in order.
    kept: Vec<usize>,
    /// The peers, in `peer_map` (peer id) order.
    peers: Vec<PeerColumn>,
    /// `kept × peers`, entry by entry: one peer's status of one CID;
    /// `None` where the filter left it out.
    cells: Vec<Option<PinStatus>>,
    /// When the statuses were gathered (every entry's `timestamp`).
    now: Millis,
}

impl StatusPage {
    /// A page of `rows` over `peers` (sorted by id) gathered at `now`,
    /// with no entry yet.
    pub fn new(rows: Vec<(Cid, Option<Pin>)>, peers: Vec<PeerColumn>, now: Millis) -> StatusPage {
        debug_assert!(peers.windows(2).all(|w| w[0].id < w[1].id));
        StatusPage {
            kept: Vec::with_capacity(rows.len()),
            cells: Vec::with_capacity(rows.len() * peers.len()),
            rows,
            peers,
            now,
        }
    }

    /// The peers of the page.
    pub fn peers(&self) -> &[PeerColumn] {
        &self.peers
    }

    /// The page's CIDs and pins, entries or not.
    pub fn rows(&self) -> &[(Cid, Option<Pin>)] {
        &self.rows
    }

    /// Makes row `row` (after the last one kept) an entry: one cell per
    /// peer, in the peers' order.
    pub fn keep(&mut self, row: usize, cells: impl IntoIterator<Item = Option<PinStatus>>) {
        assert!(row < self.rows.len(), "a row of the page");
        assert!(
            self.kept.last().is_none_or(|last| *last < row),
            "rows in order"
        );
        let before = self.cells.len();
        self.cells.extend(cells);
        assert_eq!(
            self.cells.len() - before,
            self.peers.len(),
            "one cell per peer"
        );
        self.kept.push(row);
    }

    /// Entries on the page.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// True when the page has no entry.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Keeps the first `n` entries.
    pub fn truncate(&mut self, n: usize) {
        self.kept.truncate(n);
        // `n` is often "no limit" (usize::MAX).
        self.cells.truncate(n.saturating_mul(self.peers.len()));
    }

    fn entry_cells(&self, entry: usize) -> &[Option<PinStatus>] {
        let width = self.peers.len();
        &self.cells[entry * width..(entry + 1) * width]
    }

    /// Appends each entry as one line of JSON: byte for byte what
    /// serde_json writes for [`into_infos`](Self::into_infos)' values.
    pub fn write_lines(&self, out: &mut Vec<u8>) {
        // What repeats in every entry, encoded once: each peer's key,
        // name and daemon up to its status, and the page's timestamp.
        let heads: Vec<Vec<u8>> = self.peers.iter().map(peer_head).collect();
        let mut stamp = b",\"timestamp\":".to_vec();
        encode::time(&mut stamp, Some(self.now));
        stamp.extend_from_slice(b",\"error\":");
        let mut created = TimeText::default();
        for (entry, row) in self.kept.iter().enumerate() {
            let (cid, pin) = &self.rows[*row];
            entry_head(out, cid, pin.as_ref(), &mut created);
            let mut first = true;
            for (cell, head) in self.entry_cells(entry).iter().zip(&heads) {
                let Some(cell) = cell else { continue };
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(head);
                encode::status(out, cell.status);
                out.extend_from_slice(&stamp);
                encode::string(out, &cell.error);
                out.extend_from_slice(b",\"attempt_count\":");
                encode::uint(out, cell.attempts.into());
                out.extend_from_slice(b",\"priority_pin\":");
                encode::boolean(out, cell.priority);
                out.push(b'}');
            }
            out.extend_from_slice(b"}}\n");
        }
    }

    /// The entries as owned values (single answers and the recovery's
    /// list, where a few are built).
    pub fn into_infos(self) -> Vec<GlobalPinInfo> {
        let width = self.peers.len();
        let now = Timestamp::at(self.now);
        let mut cells = self.cells.into_iter();
        let peers = self.peers;
        let mut kept = self.kept.into_iter().peekable();
        self.rows
            .into_iter()
            .enumerate()
            .filter(|(row, _)| kept.next_if_eq(row).is_some())
            .map(|(_, (cid, pin))| {
                let mut info = pin_part(cid, pin.as_ref());
                for (peer, cell) in peers.iter().zip(cells.by_ref().take(width)) {
                    let Some(cell) = cell else { continue };
                    info.peer_map.insert(
                        peer.id.to_string(),
                        PinInfoShort {
                            peername: peer.peername.clone(),
                            ipfs_peer_id: peer.ipfs_peer_id.clone(),
                            ipfs_peer_addresses: peer.ipfs_peer_addresses.clone(),
                            status: cell.status,
                            timestamp: now,
                            error: cell.error,
                            attempt_count: cell.attempts,
                            priority_pin: cell.priority,
                        },
                    );
                }
                info
            })
            .collect()
    }
}

/// The pin's part of a `GlobalPinInfo` (empty values when not pinned),
/// with an empty `peer_map`.
pub fn pin_part(cid: Cid, pin: Option<&Pin>) -> GlobalPinInfo {
    GlobalPinInfo {
        cid,
        name: pin.map(|p| p.options.name.clone()).unwrap_or_default(),
        allocations: pin.map(|p| p.allocations.clone()).unwrap_or_default(),
        origins: pin.map(|p| p.options.origins.clone()).unwrap_or_default(),
        created: Timestamp(pin.map(|p| p.timestamp)),
        metadata: pin
            .filter(|p| !p.options.metadata.is_empty())
            .map(|p| p.options.metadata.clone()),
        peer_map: BTreeMap::new(),
    }
}

/// `{"cid":…,…,"peer_map":{` of an entry: [`pin_part`]'s fields.
fn entry_head(out: &mut Vec<u8>, cid: &Cid, pin: Option<&Pin>, created: &mut TimeText) {
    out.extend_from_slice(b"{\"cid\":");
    encode::cid(out, cid);
    out.extend_from_slice(b",\"name\":");
    match pin {
        Some(pin) => {
            encode::string(out, &pin.options.name);
            out.extend_from_slice(b",\"allocations\":");
            encode::peer_ids(out, &pin.allocations);
            out.extend_from_slice(b",\"origins\":");
            encode::strings(out, &pin.options.origins);
            out.extend_from_slice(b",\"created\":");
            created.write(out, pin.timestamp);
            out.extend_from_slice(b",\"metadata\":");
            let metadata = Some(&pin.options.metadata).filter(|m| !m.is_empty());
            encode::metadata(out, metadata);
        }
        None => {
            out.extend_from_slice(b"\"\",\"allocations\":[],\"origins\":[],\"created\":");
            encode::time(out, None);
            out.extend_from_slice(b",\"metadata\":null");
        }
    }
    out.extend_from_slice(b",\"peer_map\":{");
}

/// `"<peer id>":{"peername":…,"status":` of a peer's entries.
fn peer_head(peer: &PeerColumn) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    encode::string(&mut out, peer.id.as_str());
    out.extend_from_slice(b":{\"peername\":");
    encode::string(&mut out, &peer.peername);
    if let Some(id) = &peer.ipfs_peer_id {
        out.extend_from_slice(b",\"ipfs_peer_id\":");
        encode::string(&mut out, id);
    }
    if let Some(addresses) = &peer.ipfs_peer_addresses {
        out.extend_from_slice(b",\"ipfs_peer_addresses\":");
        encode::strings(&mut out, addresses);
    }
    out.extend_from_slice(b",\"status\":");
    out
}

#[cfg(test)]
mod tests {
    use cluster_core::{PinOptions, TrackerStatus};

    use super::*;

    /// A small deterministic generator (no extra crate for the tests).
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn text(&mut self) -> String {
            const PARTS: [&str; 8] = ["", "a", "name", "\"", "\\", "\n", "ü✓", "\u{1}"];
            (0..self.below(4))
                .map(|_| PARTS[self.below(PARTS.len() as u64) as usize])
                .collect()
        }
    }

    fn peer(n: u64) -> PeerId {
        const PEERS: [&str; 3] = [
            "12D3KooWG1aenKP6tEXto3pN2z7PRNNaiR2BuJKpATfQssXTLLLr",
            "12D3KooWGHTKzeT4KaLGLrbKKyT8zKrBPXAUBRzCAN6ZMDMo4M6M",
            "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
        ];
        PeerId::parse(PEERS[n as usize % PEERS.len()]).expect("peer")
    }

    fn cid(n: u64) -> Cid {
        let mut bytes = if n.is_multiple_of(2) {
            vec![0x12, 0x20]
        } else {
            vec![0x01, 0x55, 0x12, 0x20]
        };
        bytes.extend_from_slice(&[0xab; 24]);
        bytes.extend_from_slice(&n.to_be_bytes());
        Cid::from_bytes(&bytes).expect("cid")
    }

    fn page(g: &mut Gen) -> StatusPage {
        let mut ids: Vec<PeerId> = (0..=g.below(3)).map(peer).collect();
        ids.sort();
        ids.dedup();
        let peers: Vec<PeerColumn> = ids
            .into_iter()
            .map(|id| PeerColumn {
                id,
                peername: g.text(),
                ipfs_peer_id: (g.below(2) == 0).then(|| g.text()),
                ipfs_peer_addresses: (g.below(2) == 0)
                    .then(|| (0..g.below(3)).map(|_| g.text()).collect()),
            })
            .collect();
        let width = peers.len();
        let mut rows = Vec::new();
        for n in 0..g.below(6) {
            let pin = (g.below(3) > 0).then(|| {
                let options = PinOptions {
                    name: g.text(),
                    origins: (0..g.below(3)).map(|_| g.text()).collect(),
                    metadata: (0..g.below(3)).map(|_| (g.text(), g.text())).collect(),
                    ..PinOptions::default()
                };
                let mut pin = Pin::new(cid(n), options, Millis(g.below(3) * 1_000_500));
                pin.allocations = (0..g.below(3)).map(peer).collect();
                pin
            });
            rows.push((cid(n), pin));
        }
        let count = rows.len();
        let mut page = StatusPage::new(rows, peers, Millis(1_700_000_000_000 + g.below(2) * 123));
        for row in 0..count {
            // Some rows are left out, as the filter leaves them.
            if g.below(5) == 0 {
                continue;
            }
            let cells: Vec<_> = (0..width)
                .map(|_| {
                    (g.below(4) > 0).then(|| PinStatus {
                        status: TrackerStatus::ALL[g.below(15) as usize],
                        error: g.text(),
                        attempts: g.below(1000) as u32,
                        priority: g.below(2) == 0,
                    })
                })
                .collect();
            page.keep(row, cells);
        }
        page
    }

    #[test]
    fn lines_are_byte_for_byte_the_owned_values_encoding() {
        let mut g = Gen(0x2545_f491_4f6c_dd1d);
        for _ in 0..2_000 {
            let mut page = page(&mut g);
            match g.below(4) {
                0 => page.truncate(g.below(4) as usize),
                1 => page.truncate(usize::MAX),
                _ => {}
            }
            let mut fast = Vec::new();
            page.write_lines(&mut fast);
            let mut owned = Vec::new();
            for info in page.clone().into_infos() {
                serde_json::to_writer(&mut owned, &info).expect("json");
                owned.push(b'\n');
            }
            assert_eq!(
                String::from_utf8(fast.clone()).expect("utf-8"),
                String::from_utf8(owned).expect("utf-8")
            );
            // And each line decodes back to the same values.
            let decoded: Vec<GlobalPinInfo> = fast
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).expect("decodes"))
                .collect();
            assert_eq!(decoded, page.into_infos());
        }
    }
}

//! The state machine target: an arbitrary sequence of operations on the
//! core (pins, unpins, updates, re-allocations, expiries, peer removals,
//! blank log positions, batches, replayed and reused request ids, snapshot
//! and restore, out-of-order indices) applied to the real pinset and to a
//! simple model ([`model`]), compared after every log index; and the pin
//! tracker fed from the pinset, answered arbitrarily ([`tracker`]).

mod model;
mod tracker;

use std::collections::BTreeMap;

use arbitrary::{Result, Unstructured};
use cluster_core::pinset::{
    Command, Entry, OutOfOrder, PinVersion, Pinset, RequestId, SESSION_IDLE_ENTRIES,
};
use cluster_core::{Cid, Millis, PeerId, Pin, PinMode, PinOptions};

use model::{Expect, Model};
use tracker::TrackerWorld;

/// CIDs in play: few, so operations meet each other.
const CIDS: u64 = 8;
/// Peers in play (peer 0 is the tracker's).
const PEERS: u64 = 5;
/// Operations per input at most.
const STEPS_MAX: usize = 400;

/// Runs the operations `data` describes.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = drive(&mut u);
}

fn drive(u: &mut Unstructured) -> Result<()> {
    let mut world = World {
        real: Pinset::new(),
        model: Model::default(),
        index: 0,
        first: BTreeMap::new(),
        tracker: TrackerWorld::new(u)?,
    };
    let cids: Vec<Cid> = (0..CIDS).map(cid).collect();
    let mut batch: Vec<Entry> = Vec::new();
    for _ in 0..STEPS_MAX {
        if u.is_empty() {
            break;
        }
        match u.int_in_range(0..=15)? {
            0..=8 => {
                // Commands are computed from the state before the batch
                // applies, as a leader computes them.
                let ts = (world.index + 1) * 1000 + batch.len() as u64;
                let entry = Entry {
                    request: request(u)?,
                    command: command(u, ts, &world.model.versions)?,
                };
                batch.push(entry);
                if u.ratio(2, 3)? {
                    world.apply(std::mem::take(&mut batch));
                }
            }
            9 => world.apply(std::mem::take(&mut batch)),
            10 => world.blank(u)?,
            11 => world.snapshot_restore(),
            12 => world.out_of_order(u)?,
            _ => world.tracker.step(u, &cids)?,
        }
    }
    world.apply(batch);
    Ok(())
}

struct World {
    real: Pinset,
    model: Model,
    index: u64,
    /// The first answer of every request id, to hold retries to it (until
    /// the session could have expired).
    first: BTreeMap<RequestId, (Command, Expect, u64)>,
    tracker: TrackerWorld,
}

impl World {
    /// Applies `batch` at the next index on both sides and compares.
    fn apply(&mut self, batch: Vec<Entry>) {
        if batch.is_empty() {
            return;
        }
        self.index += 1;
        let index = self.index;
        let got = self
            .real
            .apply_batch(index, &batch)
            .expect("the index grows");
        for (entry, got) in batch.iter().zip(&got) {
            let want = self.model.apply(index, entry.request, &entry.command);
            let got = Expect::of(got);
            assert_eq!(got, want, "entry {entry:?} at {index}");
            if let Some(id) = entry.request {
                self.hold_retry_to_first_answer(id, &entry.command, &got);
            }
        }
        self.compare();
        self.tracker.sync_desires(&self.model.pins);
    }

    fn hold_retry_to_first_answer(&mut self, id: RequestId, command: &Command, got: &Expect) {
        let index = self.index;
        match self.first.get(&id) {
            Some((first, answer, at))
                if first == command && at.saturating_add(SESSION_IDLE_ENTRIES) >= index =>
            {
                if !matches!(got, Expect::Err("request too old")) {
                    assert_eq!(got, answer, "retry of {id:?}");
                }
            }
            Some(_) if matches!(got, Expect::Err("request id reused")) => {}
            _ => {
                self.first.insert(id, (command.clone(), got.clone(), index));
            }
        }
    }

    /// The real state against the model's, and the invariants.
    fn compare(&self) {
        if let Err(e) = self.real.check_invariants() {
            panic!("invariant broken at {}: {e}", self.index);
        }
        assert_eq!(self.real.applied_index(), self.index);
        assert_eq!(
            self.real.to_map(),
            self.model.pins,
            "pins at {}",
            self.index
        );
        let versions: BTreeMap<Cid, u64> = self
            .real
            .iter_with_versions()
            .map(|(p, v)| (p.cid, v.0))
            .collect();
        assert_eq!(versions, self.model.versions, "versions at {}", self.index);
        let under: Vec<Cid> = self.real.under_replicated().map(|p| p.cid).collect();
        let want: Vec<Cid> = self
            .model
            .pins
            .values()
            .filter(|p| p.is_under_replicated())
            .map(|p| p.cid.clone())
            .collect();
        assert_eq!(under, want, "under-replicated at {}", self.index);
        let now = self.index * 1000 + 2;
        assert_eq!(
            self.real.expired(Millis(now), usize::MAX),
            self.model.expired(now),
            "expired at {now}"
        );
    }

    /// Log positions taken by blank or membership entries: a few, or enough
    /// for idle client sessions to expire.
    fn blank(&mut self, u: &mut Unstructured) -> Result<()> {
        let gap = if u.ratio(1, 4)? {
            SESSION_IDLE_ENTRIES + u.int_in_range(0..=2)?
        } else {
            u.int_in_range(1..=3)?
        };
        self.index += gap;
        self.real.advance_to(self.index).expect("the index grows");
        self.compare();
        Ok(())
    }

    /// The state goes through a snapshot and is replaced by the restored
    /// copy (as a follower installing it would be).
    fn snapshot_restore(&mut self) {
        let bytes = self.real.snapshot();
        let restored = Pinset::restore(&bytes).expect("own snapshot restores");
        assert!(
            restored == self.real,
            "snapshot round trip changed the state"
        );
        assert_eq!(restored.snapshot(), bytes, "snapshot bytes are canonical");
        self.real = restored;
        self.compare();
    }

    /// An index that does not grow is refused and changes nothing.
    fn out_of_order(&mut self, u: &mut Unstructured) -> Result<()> {
        if self.index == 0 {
            return Ok(());
        }
        let index = u.int_in_range(1..=self.index)?;
        let before = self.real.clone();
        let entry = Entry::new(Command::Unpin { cid: cid(0) });
        let refused = OutOfOrder {
            index,
            applied: self.index,
        };
        assert_eq!(self.real.apply(index, &entry), Err(refused));
        assert_eq!(self.real.apply_batch(index, &[entry]), Err(refused));
        assert_eq!(self.real.advance_to(index), Err(refused));
        assert!(self.real == before, "a refused index changed the state");
        Ok(())
    }
}

fn cid(n: u64) -> Cid {
    let mut bytes = vec![0x12, 0x20];
    bytes.extend(n.to_be_bytes());
    bytes.extend([0xAB; 24]);
    Cid::from_bytes(&bytes).expect("a well-formed CIDv0")
}

fn peer(n: u64) -> PeerId {
    PeerId::synthetic(n)
}

/// A request id from few clients and serials (so retries and reuse meet),
/// sometimes a serial far enough to slide a session's window.
fn request(u: &mut Unstructured) -> Result<Option<RequestId>> {
    if u.ratio(2, 3)? {
        return Ok(None);
    }
    let client = u.int_in_range(0..=2)?;
    let serial = if u.ratio(1, 8)? {
        u.int_in_range(0..=200)?
    } else {
        u.int_in_range(0..=4)?
    };
    Ok(Some(RequestId { client, serial }))
}

fn peers(u: &mut Unstructured) -> Result<Vec<PeerId>> {
    let n = u.int_in_range(0..=4)?;
    (0..n)
        .map(|_| Ok(peer(u.int_in_range(0..=PEERS - 1)?)))
        .collect()
}

/// The version a command carries: the current one, or a stale one.
fn version(u: &mut Unstructured, n: u64, versions: &BTreeMap<Cid, u64>) -> Result<PinVersion> {
    let v = versions.get(&cid(n)).copied().unwrap_or(0);
    Ok(PinVersion(if u.ratio(1, 4)? {
        v.saturating_sub(u.int_in_range(1..=2)?)
    } else {
        v
    }))
}

/// A command over the CIDs and peers in play, valid or not; `ts` is its
/// submission time.
fn command(u: &mut Unstructured, ts: u64, versions: &BTreeMap<Cid, u64>) -> Result<Command> {
    let n = u.int_in_range(0..=CIDS - 1)?;
    Ok(match u.int_in_range(0..=9)? {
        0..=3 => Command::Pin(pin(u, n, ts)?),
        4 => Command::Unpin { cid: cid(n) },
        5 => Command::Update {
            from: cid(n),
            to: cid(u.int_in_range(0..=CIDS - 1)?),
            name: if u.arbitrary()? {
                String::new()
            } else {
                format!("name-{}", u.int_in_range(0..=2)?)
            },
            expire_at: match u.int_in_range(0..=2)? {
                0 => None,
                1 => Some(Millis(ts)),
                _ => Some(Millis(ts + u.int_in_range(1..=3000)?)),
            },
            timestamp: Millis(ts),
        },
        6 => Command::Reallocate {
            cid: cid(n),
            allocations: peers(u)?,
            version: version(u, n, versions)?,
        },
        7 => Command::Expire {
            cid: cid(n),
            version: version(u, n, versions)?,
        },
        8 => Command::RemovePeer {
            peer: peer(u.int_in_range(0..=PEERS - 1)?),
        },
        // Any command postcard can carry, the odd shapes included.
        _ => {
            let len = u.int_in_range(0..=64)?;
            match postcard::from_bytes::<Command>(u.bytes(len)?) {
                Ok(command) => command,
                Err(_) => Command::Unpin { cid: cid(n) },
            }
        }
    })
}

/// A pin of CID `n`, mostly valid: replication factors, allocations, mode
/// and depth, name, expiry and metadata vary.
fn pin(u: &mut Unstructured, n: u64, ts: u64) -> Result<Pin> {
    let (min, max) = *u.choose(&[(-1, -1), (1, 1), (1, 2), (2, 3), (3, 2), (0, 1), (-1, 2)])?;
    let mut options = PinOptions {
        replication_factor_min: min,
        replication_factor_max: max,
        name: format!("name-{}", u.int_in_range(0..=2)?),
        ..Default::default()
    };
    if u.ratio(1, 4)? {
        options.mode = PinMode::Direct;
    }
    options.expire_at = match u.int_in_range(0..=5)? {
        0 => Some(Millis(ts)),
        1 | 2 => Some(Millis(ts + u.int_in_range(1..=3000)?)),
        _ => None,
    };
    if u.ratio(1, 6)? {
        options
            .metadata
            .insert("k".into(), format!("v{}", u.int_in_range(0..=1)?));
    }
    if u.ratio(1, 8)? {
        options.user_allocations = vec![peer(u.int_in_range(0..=PEERS - 1)?)];
    }
    let mut pin = Pin::new(cid(n), options, Millis(ts));
    if pin.options.mode == PinMode::Recursive && u.ratio(1, 5)? {
        pin.max_depth = u.int_in_range(1..=3)?;
    }
    if u.ratio(1, 10)? {
        // A depth that does not fit the mode.
        pin.max_depth = u.int_in_range(-2..=2)?;
    }
    pin.allocations = if min == -1 && u.ratio(3, 4)? {
        Vec::new()
    } else {
        peers(u)?
    };
    Ok(pin)
}

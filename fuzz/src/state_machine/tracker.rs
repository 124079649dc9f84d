//! The pin tracker beside the pinset: fed the desires the pinset implies
//! for one peer, answering its commands with arbitrary IPFS answers (late,
//! twice, failed, for other instances), at arbitrary times, across
//! restarts. Its invariants must hold after every input and poll, and every
//! command must be one the desires allow when it is issued.

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::{Result, Unstructured};
use cluster_core::tracker::{
    Desire, Input, IpfsCommand, IpfsPinType, ListedPin, OpId, Output, Tracker, TrackerConfig,
};
use cluster_core::{Cid, Millis, PeerId, Pin};

/// Commands kept for answering at most (older ones are dropped unanswered).
const PENDING_MAX: usize = 64;

/// The tracker and what the fuzz driver told it.
pub struct TrackerWorld {
    config: TrackerConfig,
    tracker: Tracker,
    epoch: u16,
    now: Millis,
    /// The peer this tracker runs on.
    local: PeerId,
    /// The desire last fed per CID (`None`: left the pinset).
    fed: BTreeMap<Cid, Option<Desire>>,
    /// Told the desired set is complete.
    complete: bool,
    /// CIDs this instance sent a pin command for.
    pinned_by_us: BTreeSet<Cid>,
    /// Commands not answered yet, across instances.
    pending: Vec<IpfsCommand>,
}

impl TrackerWorld {
    /// A tracker with settings from `u`, all within their valid ranges.
    pub fn new(u: &mut Unstructured) -> Result<TrackerWorld> {
        let backoff_base_ms = u.int_in_range(1..=2_000)?;
        let config = TrackerConfig {
            concurrent_pins: u.int_in_range(1..=4)?,
            concurrent_unpins: u.int_in_range(1..=2)?,
            queue_max: u.int_in_range(1..=16)?,
            attempts_max: u.int_in_range(1..=4)?,
            backoff_base_ms,
            backoff_max_ms: backoff_base_ms + u.int_in_range(0..=10_000)?,
            reconcile_interval_ms: u.int_in_range(1..=200_000)?,
            op_timeout_ms: u.int_in_range(1..=60_000)?,
        };
        let now = Millis(u.int_in_range(0..=1_000_000)?);
        let tracker = Tracker::new(config.clone(), 0, now).expect("settings in their valid ranges");
        Ok(TrackerWorld {
            config,
            tracker,
            epoch: 0,
            now,
            local: PeerId::synthetic(0),
            fed: BTreeMap::new(),
            complete: false,
            pinned_by_us: BTreeSet::new(),
            pending: Vec::new(),
        })
    }

    /// Feeds the desires the pinset's `pins` imply for this peer, where they
    /// changed since last fed.
    pub fn sync_desires(&mut self, pins: &BTreeMap<Cid, Pin>) {
        let cids: BTreeSet<Cid> = pins.keys().chain(self.fed.keys()).cloned().collect();
        for cid in cids {
            let desire = pins.get(&cid).map(|p| Desire::of(p, &self.local));
            if self.fed.get(&cid).copied().flatten() != desire {
                self.input(Input::Desired {
                    cid: cid.clone(),
                    desire,
                });
                self.fed.insert(cid, desire);
            }
        }
    }

    /// One tracker step chosen by `u`; `cids` are the CIDs in play.
    pub fn step(&mut self, u: &mut Unstructured, cids: &[Cid]) -> Result<()> {
        match u.int_in_range(0..=8)? {
            0..=2 => self.poll(u.int_in_range(1..=8)?),
            3 | 4 => self.answer(u, cids)?,
            5 => {
                // Time passes: a little, past an operation's deadline, or
                // past a reconcile.
                let ms = match u.int_in_range(0..=2)? {
                    0 => u.int_in_range(0..=1_000)?,
                    1 => self.config.op_timeout_ms + u.int_in_range(0..=1_000)?,
                    _ => self.config.reconcile_interval_ms + u.int_in_range(0..=1_000)?,
                };
                self.now = self.now.plus(ms);
                self.input(Input::Tick);
            }
            6 => {
                let cid = if u.arbitrary()? {
                    Some(pick(u, cids)?)
                } else {
                    None
                };
                self.input(Input::Recover { cid });
            }
            7 => {
                self.complete = true;
                self.input(Input::DesiredComplete);
            }
            _ => {
                if u.ratio(1, 4)? {
                    self.restart();
                } else {
                    // An answer to nothing this instance sent.
                    let op = OpId(u.arbitrary()?);
                    let result = if u.arbitrary()? {
                        Ok(())
                    } else {
                        Err("boom".into())
                    };
                    self.input(Input::IpfsDone { op, result });
                }
            }
        }
        Ok(())
    }

    /// The peer restarts: a new instance (next epoch) fed the current
    /// desires, not told they are complete. Old commands may still answer.
    fn restart(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.tracker = Tracker::new(self.config.clone(), self.epoch, self.now)
            .expect("settings in their valid ranges");
        self.complete = false;
        self.pinned_by_us.clear();
        let fed = std::mem::take(&mut self.fed);
        for (cid, desire) in fed {
            if desire.is_some() {
                self.input(Input::Desired {
                    cid: cid.clone(),
                    desire,
                });
                self.fed.insert(cid, desire);
            }
        }
    }

    /// Drains up to `max` outputs, checking each command as it is issued.
    fn poll(&mut self, max: usize) {
        for _ in 0..max {
            match self.tracker.poll_output(self.now) {
                Output::Timeout(at) => {
                    assert!(
                        at > self.now,
                        "asked to wake at {at:?}, now is {:?}",
                        self.now
                    );
                    break;
                }
                Output::Command(cmd) => {
                    self.check_command(&cmd);
                    if self.pending.len() >= PENDING_MAX {
                        self.pending.remove(0);
                    }
                    self.pending.push(cmd);
                }
            }
            self.check();
        }
    }

    fn check_command(&mut self, cmd: &IpfsCommand) {
        let fed = |c: &Cid| self.fed.get(c).copied().flatten();
        match cmd {
            IpfsCommand::Pin { cid, max_depth, .. } => {
                assert_eq!(
                    fed(cid),
                    Some(Desire::Pin {
                        max_depth: *max_depth
                    }),
                    "pin of {cid} not wanted so"
                );
                self.pinned_by_us.insert(cid.clone());
            }
            IpfsCommand::Unpin { cid, .. } => {
                assert!(
                    !matches!(fed(cid), Some(Desire::Pin { .. })),
                    "unpin of wanted {cid}"
                );
                // Before the desired set is complete, only what this
                // instance pinned may go: a marked pin may be wanted by
                // entries still to come.
                assert!(
                    self.complete || self.pinned_by_us.contains(cid),
                    "unpin of {cid} before the desired set is complete"
                );
            }
            IpfsCommand::ListPins { .. } => {}
        }
    }

    /// Answers one pending command (maybe leaving it pending, to answer twice).
    fn answer(&mut self, u: &mut Unstructured, cids: &[Cid]) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let i = u.choose_index(self.pending.len())?;
        let cmd = if u.ratio(1, 8)? {
            self.pending[i].clone()
        } else {
            self.pending.remove(i)
        };
        let input = match cmd {
            IpfsCommand::Pin { op, .. } | IpfsCommand::Unpin { op, .. } => Input::IpfsDone {
                op,
                result: if u.ratio(3, 4)? {
                    Ok(())
                } else {
                    Err("ipfs said no".into())
                },
            },
            IpfsCommand::ListPins { op } => Input::IpfsPins {
                op,
                result: if u.ratio(7, 8)? {
                    Ok(listing(u, cids)?)
                } else {
                    Err("daemon down".into())
                },
            },
        };
        self.input(input);
        Ok(())
    }

    fn input(&mut self, input: Input) {
        self.tracker.handle_input(input, self.now);
        self.check();
    }

    /// The invariants, and every status readable.
    fn check(&self) {
        if let Err(e) = self.tracker.check_invariants() {
            panic!("tracker invariant: {e}");
        }
        for (cid, status) in self.tracker.statuses() {
            assert_eq!(status, self.tracker.status(cid));
        }
        let _ = self.tracker.counts();
    }
}

/// An arbitrary listing of some of `cids` (repeats allowed, as a daemon
/// listing both a pin and an indirect hold of one CID).
fn listing(u: &mut Unstructured, cids: &[Cid]) -> Result<Vec<ListedPin>> {
    let mut out = Vec::new();
    for _ in 0..u.int_in_range(0..=cids.len() + 1)? {
        let pin_type = match u.int_in_range(0..=3)? {
            0 => IpfsPinType::Recursive { max_depth: None },
            1 => IpfsPinType::Recursive {
                max_depth: Some(u.int_in_range(-1..=3)?),
            },
            2 => IpfsPinType::Direct,
            _ => IpfsPinType::Indirect,
        };
        out.push(ListedPin {
            cid: pick(u, cids)?,
            pin_type,
            by_cluster: u.arbitrary()?,
        });
    }
    Ok(out)
}

fn pick(u: &mut Unstructured, cids: &[Cid]) -> Result<Cid> {
    Ok(cids[u.choose_index(cids.len())?].clone())
}

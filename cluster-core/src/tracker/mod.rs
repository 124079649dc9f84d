//! The pin tracker: one peer's reconciler between the pins the cluster wants
//! here and what its IPFS daemon actually has.
//!
//! Sans-IO, in the str0m shape: feed [`Input`]s with `now` through
//! [`Tracker::handle_input`], then drain [`Tracker::poll_output`] until it
//! returns [`Output::Timeout`], execute the [`IpfsCommand`]s and feed their
//! results back as inputs. Statuses are computed from memory at any time.
//!
//! Policy: pin operations run at most `concurrent_pins` at once (unpins have
//! their own limit); first attempts go before retries; a failed operation is
//! retried with exponential back-off up to `attempts_max` times, then stays in
//! error until `recover` or the periodic reconcile, which retries it once per
//! interval. An operation IPFS does not answer within `op_timeout_ms` counts
//! as failed, and what IPFS holds is unknown until its late answer (which is
//! used: a late success means IPFS did it) or the next listing.
//!
//! The reconcile lists the daemon's pins (a listing has the same deadline):
//! pins IPFS lost are pinned again, a pin that holds less than wanted is
//! re-pinned (a direct or indirect pin does not serve a recursive desire, nor
//! a shallower one a deeper desire; a pin holding more serves, as Kubo cannot
//! narrow a pin by pinning), and pins of the cluster's that are no longer
//! wanted are removed. A pin is the cluster's when this tracker's pin
//! operation made it, and the listing shows the connector's mark (see
//! [`ListedPin`]): the mark is how pins made before a restart are found, and
//! a pin listed without it is a user's (the pin operation found it there). A
//! user's own pin is never removed, even while it serves a desire. After a restart the pinset may be behind, so marked pins
//! are only removed once the driver says the desired set is complete
//! ([`Input::DesiredComplete`]), as IPFS Cluster waits for consensus.
//!
//! Op ids carry the instance's epoch ([`Tracker::new`]): answers meant for an
//! earlier instance never match.

mod backoff;
mod item;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::pin::{Pin, PinType};
use crate::{Cid, Millis, PeerId, TrackerStatus};
pub use backoff::backoff_ms;
use item::{Held, IpfsView, Item, Op, OpKind, Owner, Phase};

/// Error text of an operation refused because the queue is full (as IPFS Cluster words it).
pub const QUEUE_FULL_ERROR: &str =
    "pin/unpin operation queue is full. Try increasing max_pin_queue_size";
/// Error text of an operation IPFS never answered in time.
pub const OP_TIMEOUT_ERROR: &str = "operation timed out waiting for IPFS";
/// Pin and unpin operations past their deadline whose answers are still
/// awaited, at most; beyond it the oldest answers are no longer used.
const TIMED_OUT_REMEMBERED_MAX: usize = 4096;
/// Listings past their deadline whose answers are still used, at most.
const LATE_LISTINGS_MAX: usize = 4;

/// Identifies one command sent to IPFS, so its answer can be matched: the
/// tracker instance's epoch in the high 16 bits, a sequence number below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId(pub u64);

/// Bits of an [`OpId`] that number the commands of one tracker instance.
const OP_SEQ_BITS: u32 = 48;
const OP_SEQ_MASK: u64 = (1 << OP_SEQ_BITS) - 1;

impl OpId {
    /// The `seq`-th command of the tracker started with `epoch`.
    pub fn new(epoch: u16, seq: u64) -> OpId {
        OpId((u64::from(epoch) << OP_SEQ_BITS) | (seq & OP_SEQ_MASK))
    }

    /// The epoch of the tracker instance that sent it.
    pub fn epoch(self) -> u16 {
        (self.0 >> OP_SEQ_BITS) as u16
    }

    /// Its number among that instance's commands.
    pub fn seq(self) -> u64 {
        self.0 & OP_SEQ_MASK
    }
}

/// A [`TrackerConfig`] setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerConfigError {
    /// A count or duration that must be positive is zero (a zero back-off or
    /// reconcile interval makes the tracker spin; zero concurrency stalls it).
    #[error("tracker setting {0} must be positive")]
    Zero(&'static str),
    /// The first retry delay is longer than the longest.
    #[error("backoff_base_ms ({base}) exceeds backoff_max_ms ({max})")]
    BackoffOrder {
        /// `backoff_base_ms`.
        base: u64,
        /// `backoff_max_ms`.
        max: u64,
    },
}

/// Tracker settings (IPFS Cluster's `pin_tracker.stateless` plus back-off).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerConfig {
    /// Pin operations in flight at once.
    pub concurrent_pins: usize,
    /// Unpin operations in flight at once.
    pub concurrent_unpins: usize,
    /// Queued operations at most; beyond it new operations fail with [`QUEUE_FULL_ERROR`].
    pub queue_max: usize,
    /// Automatic attempts per operation before it waits for a recover.
    pub attempts_max: u32,
    /// First retry delay.
    pub backoff_base_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
    /// How often the daemon's pin list is compared with the desired pins.
    pub reconcile_interval_ms: u64,
    /// How long an operation may wait for its IPFS answer before it counts as failed.
    pub op_timeout_ms: u64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            concurrent_pins: 10,
            concurrent_unpins: 1,
            queue_max: 1_000_000,
            attempts_max: 5,
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
            reconcile_interval_ms: 12 * 60_000,
            op_timeout_ms: 10 * 60_000,
        }
    }
}

impl TrackerConfig {
    /// Checks the settings can work; [`Tracker::new`] refuses any that cannot.
    pub fn validate(&self) -> Result<(), TrackerConfigError> {
        let positive = [
            ("concurrent_pins", self.concurrent_pins as u64),
            ("concurrent_unpins", self.concurrent_unpins as u64),
            ("queue_max", self.queue_max as u64),
            ("attempts_max", u64::from(self.attempts_max)),
            ("backoff_base_ms", self.backoff_base_ms),
            ("backoff_max_ms", self.backoff_max_ms),
            ("reconcile_interval_ms", self.reconcile_interval_ms),
            ("op_timeout_ms", self.op_timeout_ms),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(TrackerConfigError::Zero(name));
        }
        if self.backoff_base_ms > self.backoff_max_ms {
            return Err(TrackerConfigError::BackoffOrder {
                base: self.backoff_base_ms,
                max: self.backoff_max_ms,
            });
        }
        Ok(())
    }
}

/// What the cluster wants this peer to do with a CID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Desire {
    /// Pin it, to this depth (-1 recursive, 0 direct).
    Pin {
        /// Depth for IPFS.
        max_depth: i32,
    },
    /// Allocated to other peers: this peer must not hold a cluster pin of it.
    Remote,
    /// A meta pin: nobody pins it directly.
    Sharded,
}

impl Desire {
    /// What `pin` asks of `peer`.
    pub fn of(pin: &Pin, peer: &PeerId) -> Desire {
        if pin.pin_type == PinType::Meta {
            Desire::Sharded
        } else if pin.is_allocated_to(peer) {
            Desire::Pin {
                max_depth: pin.max_depth,
            }
        } else {
            Desire::Remote
        }
    }
}

/// A fact for the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The pinset changed for `cid`; `None` means it left the pinset.
    Desired {
        /// The CID.
        cid: Cid,
        /// What is wanted now.
        desire: Option<Desire>,
    },
    /// IPFS answered a pin or unpin.
    IpfsDone {
        /// The command answered.
        op: OpId,
        /// Ok, or the error text.
        result: Result<(), String>,
    },
    /// IPFS answered a pin listing with every CID it has pinned.
    IpfsPins {
        /// The command answered.
        op: OpId,
        /// The pins, or the error text.
        result: Result<Vec<ListedPin>, String>,
    },
    /// The desired set is complete: the local pinset has caught up with the
    /// leader's commit index seen at start-up, so a CID not desired now is
    /// truly unwanted. Until then the cluster's pins known only from a
    /// listing's mark are kept, as they may be wanted by entries still to come.
    DesiredComplete,
    /// Retry failed operations now (one CID, or all) and re-check IPFS.
    Recover {
        /// The CID, or `None` for everything.
        cid: Option<Cid>,
    },
    /// Time passed.
    Tick,
}

/// How IPFS holds a listed CID (the types Kubo's `pin ls` reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpfsPinType {
    /// The DAG below the CID, down to `max_depth` when the daemon reports a
    /// limit (`None`: not reported, as Kubo's plain recursive pins; -1: all).
    Recursive {
        /// The depth limit, if reported.
        max_depth: Option<i32>,
    },
    /// The block itself only.
    Direct,
    /// Held only because another pin's DAG contains it. Not a pin of its own:
    /// it satisfies no desire, and goes when that other pin goes.
    Indirect,
}

/// One pin of an IPFS listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedPin {
    /// The pinned CID.
    pub cid: Cid,
    /// How it is pinned.
    pub pin_type: IpfsPinType,
    /// The pin carries the cluster's mark (the connector names the pins it
    /// makes), so the cluster may remove it even after a restart.
    pub by_cluster: bool,
}

/// A command for the IPFS connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpfsCommand {
    /// `pin/add`, marking the pin as the cluster's.
    Pin {
        /// Answer with this id.
        op: OpId,
        /// What to pin.
        cid: Cid,
        /// Depth (-1 recursive).
        max_depth: i32,
    },
    /// `pin/rm`; not-pinned counts as success.
    Unpin {
        /// Answer with this id.
        op: OpId,
        /// What to unpin.
        cid: Cid,
    },
    /// `pin/ls` of every pin.
    ListPins {
        /// Answer with this id.
        op: OpId,
    },
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Execute this and feed the answer back.
    Command(IpfsCommand),
    /// Nothing more until this time (or the next input).
    Timeout(Millis),
}

/// The status of one CID on this peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinStatus {
    /// The status.
    pub status: TrackerStatus,
    /// The last error, empty when none.
    pub error: String,
    /// Attempts of the current operation.
    pub attempts: u32,
    /// Whether it waits in the first-attempt (priority) queue.
    pub priority: bool,
}

impl PinStatus {
    /// Not pinned here and not in the state: a CID the tracker does not know.
    fn unpinned() -> PinStatus {
        PinStatus {
            status: TrackerStatus::Unpinned,
            error: String::new(),
            attempts: 0,
            priority: false,
        }
    }
}

/// Counters for metrics (`pinqueue`, `numpin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TrackerCounts {
    /// Operations waiting in queues.
    pub queued: usize,
    /// Operations in flight.
    pub in_flight: usize,
    /// Operations in error.
    pub failed: usize,
    /// CIDs the tracker believes IPFS has pinned for the cluster.
    pub pinned: usize,
}

/// One peer's pin tracker.
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackerConfig,
    items: BTreeMap<Cid, Item>,
    /// First attempts of pins.
    queue_new: VecDeque<(Cid, u64)>,
    /// Retried pins.
    queue_retry: VecDeque<(Cid, u64)>,
    queue_unpin: VecDeque<(Cid, u64)>,
    queued: usize,
    pins_in_flight: usize,
    unpins_in_flight: usize,
    in_flight: BTreeMap<OpId, Cid>,
    deadlines: BTreeSet<(Millis, OpId)>,
    retries: BTreeSet<(Millis, Cid)>,
    epoch: u16,
    next_op: u64,
    next_generation: u64,
    /// The listing in flight and its deadline.
    listing: Option<(OpId, Millis)>,
    /// Listings past their deadline whose answers are still used, oldest first.
    late_listings: VecDeque<OpId>,
    /// Pin and unpin operations past their deadline: a late answer still
    /// tells what IPFS did.
    timed_out: BTreeMap<OpId, (Cid, OpKind)>,
    listing_error: Option<String>,
    have_listing: bool,
    touched_since_listing: BTreeSet<Cid>,
    /// Pins the last listing showed without the cluster's mark: a CID wanted
    /// later starts from this, so the user's pin is never taken for ours.
    users_pins: BTreeMap<Cid, Held>,
    next_reconcile: Millis,
    list_wanted: bool,
    failed: usize,
    /// Items whose IPFS view is pinned (see `Item::counted_pinned`).
    pinned: usize,
    /// The driver said every desire is known (see [`Input::DesiredComplete`]).
    desired_complete: bool,
}

impl Tracker {
    /// A tracker that knows nothing yet: its first command lists the daemon's pins.
    ///
    /// `epoch` must differ from that of any earlier instance whose answers may
    /// still arrive (a per-start counter), so they never match this one's commands.
    pub fn new(
        config: TrackerConfig,
        epoch: u16,
        now: Millis,
    ) -> Result<Tracker, TrackerConfigError> {
        config.validate()?;
        Ok(Tracker {
            next_reconcile: now.plus(config.reconcile_interval_ms),
            config,
            items: BTreeMap::new(),
            queue_new: VecDeque::new(),
            queue_retry: VecDeque::new(),
            queue_unpin: VecDeque::new(),
            queued: 0,
            pins_in_flight: 0,
            unpins_in_flight: 0,
            in_flight: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            retries: BTreeSet::new(),
            epoch,
            next_op: 1,
            next_generation: 1,
            listing: None,
            late_listings: VecDeque::new(),
            timed_out: BTreeMap::new(),
            listing_error: None,
            have_listing: false,
            touched_since_listing: BTreeSet::new(),
            users_pins: BTreeMap::new(),
            list_wanted: true,
            failed: 0,
            pinned: 0,
            desired_complete: false,
        })
    }

    /// Feeds one fact observed at `now`.
    pub fn handle_input(&mut self, input: Input, now: Millis) {
        self.fire_timers(now);
        match input {
            Input::Desired { cid, desire } => self.on_desired(cid, desire, now),
            Input::IpfsDone { op, result } => self.on_done(op, result, now),
            Input::IpfsPins { op, result } => self.on_listing(op, result, now),
            Input::Recover { cid } => self.on_recover(cid, now),
            Input::DesiredComplete => self.on_desired_complete(now),
            Input::Tick => {}
        }
    }

    /// The next thing to do: a command to execute, or the time to wake up.
    pub fn poll_output(&mut self, now: Millis) -> Output {
        self.fire_timers(now);
        if self.list_wanted && self.listing.is_none() {
            self.list_wanted = false;
            let op = self.new_op_id();
            self.listing = Some((op, now.plus(self.config.op_timeout_ms)));
            if self.late_listings.is_empty() {
                // Kept while a late listing may still answer: it is older.
                self.touched_since_listing.clear();
            }
            return Output::Command(IpfsCommand::ListPins { op });
        }
        if let Some(cmd) = self.dispatch(now) {
            return Output::Command(cmd);
        }
        Output::Timeout(self.next_deadline())
    }

    /// The status of `cid` on this peer.
    pub fn status(&self, cid: &Cid) -> PinStatus {
        match self.items.get(cid) {
            Some(item) => self.item_status(item),
            None => PinStatus::unpinned(),
        }
    }

    /// The statuses of `cids`, in their order. Ascending CIDs (a pinset
    /// page, what listings ask) are found in one walk over the items
    /// rather than a search each.
    pub fn statuses_of(&self, cids: &[Cid]) -> Vec<PinStatus> {
        /// Items stepped over before searching instead: the walk must
        /// not crawl across a gap between two far-apart CIDs.
        const WALK_MAX: usize = 8;
        let ascending = cids.windows(2).all(|w| w[0] < w[1]);
        let (Some(first), true) = (cids.first(), ascending) else {
            return cids.iter().map(|c| self.status(c)).collect();
        };
        let mut items = self.items.range(first..).peekable();
        cids.iter()
            .map(|cid| {
                let mut stepped = 0;
                while items.next_if(|(k, _)| *k < cid).is_some() {
                    stepped += 1;
                    if stepped > WALK_MAX {
                        items = self.items.range(cid..).peekable();
                        break;
                    }
                }
                match items.peek() {
                    Some((k, item)) if *k == cid => self.item_status(item),
                    _ => PinStatus::unpinned(),
                }
            })
            .collect()
    }

    fn item_status(&self, item: &Item) -> PinStatus {
        let none = |status| PinStatus {
            status,
            error: String::new(),
            attempts: 0,
            priority: false,
        };
        if let Some(op) = &item.op {
            let status = match (op.kind, &op.phase) {
                (OpKind::Pin { .. }, Phase::Queued { .. }) => TrackerStatus::PinQueued,
                (OpKind::Pin { .. }, Phase::InFlight { .. }) => TrackerStatus::Pinning,
                (OpKind::Pin { .. }, Phase::Failed { .. }) => TrackerStatus::PinError,
                (OpKind::Unpin, Phase::Queued { .. }) => TrackerStatus::UnpinQueued,
                (OpKind::Unpin, Phase::InFlight { .. }) => TrackerStatus::Unpinning,
                (OpKind::Unpin, Phase::Failed { .. }) => TrackerStatus::UnpinError,
            };
            return PinStatus {
                status,
                error: op.error.clone().unwrap_or_default(),
                attempts: op.attempts,
                priority: matches!(op.phase, Phase::Queued { priority: true, .. }),
            };
        }
        if item.awaits_desired_set(self.desired_complete) {
            // Unpinned once the desired set is complete, unless desired by then.
            return none(TrackerStatus::UnpinQueued);
        }
        match item.desire {
            None => none(TrackerStatus::Unpinned),
            Some(Desire::Remote) => none(TrackerStatus::Remote),
            Some(Desire::Sharded) => none(TrackerStatus::Sharded),
            // Once IPFS is known, a pin that is missing, of the wrong type or
            // unsure has an operation, shown above (see `check_invariants`):
            // what IPFS Cluster calls `unexpectedly_unpinned` is `pin_queued` here.
            Some(Desire::Pin { .. }) => match item.ipfs_view(self.have_listing) {
                // The last look at IPFS failed (the daemon is down, say):
                // what it holds now is not known, as IPFS Cluster answers
                // when its status call to IPFS fails.
                IpfsView::Pinned(_) | IpfsView::NotPinned | IpfsView::Unsure
                    if self.listing_error.is_some() =>
                {
                    PinStatus {
                        error: format!(
                            "could not list IPFS pins: {}",
                            self.listing_error.as_deref().unwrap_or_default()
                        ),
                        ..none(TrackerStatus::ClusterError)
                    }
                }
                IpfsView::Pinned(_) | IpfsView::NotPinned | IpfsView::Unsure => {
                    none(TrackerStatus::Pinned)
                }
                IpfsView::Unknown => match &self.listing_error {
                    Some(e) => PinStatus {
                        error: format!("could not list IPFS pins: {e}"),
                        ..none(TrackerStatus::ClusterError)
                    },
                    None => none(TrackerStatus::PinQueued),
                },
            },
        }
    }

    /// What the tracker was last told is wanted of `cid` (`None`: not in
    /// the pinset, or unknown), so a driver feeds only what changed.
    pub fn desire(&self, cid: &Cid) -> Option<Desire> {
        self.items.get(cid).and_then(|i| i.desire)
    }

    /// Every CID with a desire, in CID order: what a driver's full pass
    /// compares with the pinset to find the pins that left it.
    pub fn desired(&self) -> impl Iterator<Item = &Cid> + '_ {
        self.items
            .iter()
            .filter(|(_, i)| i.desire.is_some())
            .map(|(cid, _)| cid)
    }

    /// Every CID the tracker knows, in CID order, with its status.
    pub fn statuses(&self) -> impl Iterator<Item = (&Cid, PinStatus)> + '_ {
        self.items
            .iter()
            .map(|(cid, item)| (cid, self.item_status(item)))
    }

    /// Queue and pin counters.
    pub fn counts(&self) -> TrackerCounts {
        TrackerCounts {
            queued: self.queued,
            in_flight: self.in_flight.len(),
            failed: self.failed,
            pinned: self.pinned,
        }
    }

    // ---- inputs ---------------------------------------------------------------

    fn on_desired(&mut self, cid: Cid, desire: Option<Desire>, now: Millis) {
        let users_pin = self.users_pins.get(&cid).copied();
        let item = self.items.entry(cid.clone()).or_insert_with(|| Item {
            ipfs: users_pin.map_or(IpfsView::Unknown, IpfsView::Pinned),
            ..Item::default()
        });
        item.desire = desire;
        self.reconcile_item(&cid, now);
    }

    fn on_done(&mut self, op_id: OpId, result: Result<(), String>, now: Millis) {
        if let Some(cid) = self.in_flight.remove(&op_id) {
            self.finish_op(cid, op_id, result, now);
        } else if let Some((cid, kind)) = self.timed_out.remove(&op_id) {
            self.on_late_answer(cid, kind, result, now);
        }
        // Anything else answers an earlier instance (another epoch) or an
        // operation forgotten long ago.
    }

    /// The operation `op_id` on `cid` ended: answered, or timed out.
    fn finish_op(&mut self, cid: Cid, op_id: OpId, result: Result<(), String>, now: Millis) {
        let item = self
            .items
            .get_mut(&cid)
            .expect("invariant: in-flight op has an item");
        let op = item
            .op
            .as_mut()
            .expect("invariant: in-flight op is on its item");
        let Phase::InFlight { deadline, .. } = op.phase else {
            unreachable!("invariant: in-flight map points at an in-flight op");
        };
        self.deadlines.remove(&(deadline, op_id));
        match op.kind {
            OpKind::Pin { .. } => self.pins_in_flight -= 1,
            OpKind::Unpin => self.unpins_in_flight -= 1,
        }
        self.touched_since_listing.insert(cid.clone());
        if result.is_ok() && op.kind == OpKind::Unpin {
            // IPFS holds no pin of it now, the user's included: a CID wanted
            // again later must not start from the last listing's view.
            self.users_pins.remove(&cid);
        }
        match result {
            Ok(()) => {
                (item.ipfs, item.owner) = match op.kind {
                    OpKind::Pin { max_depth } => {
                        (IpfsView::Pinned(Held::made_with(max_depth)), Owner::Made)
                    }
                    OpKind::Unpin => (IpfsView::NotPinned, Owner::NotOurs),
                };
                item.op = None;
            }
            Err(error) => {
                let retry_at = (op.attempts < self.config.attempts_max).then(|| {
                    now.plus(backoff_ms(
                        op.attempts,
                        self.config.backoff_base_ms,
                        self.config.backoff_max_ms,
                    ))
                });
                op.error = Some(error);
                op.phase = Phase::Failed { retry_at };
                self.failed += 1;
                if let Some(at) = retry_at {
                    self.retries.insert((at, cid.clone()));
                }
            }
        }
        self.reconcile_item(&cid, now);
    }

    /// IPFS gave up waiting on nothing: the operation may still take effect,
    /// so what IPFS holds is unknown until its answer or a listing tells.
    fn on_timeout(&mut self, op_id: OpId, now: Millis) {
        let cid = self
            .in_flight
            .remove(&op_id)
            .expect("invariant: a deadline belongs to an in-flight op");
        let item = self
            .items
            .get_mut(&cid)
            .expect("invariant: in-flight op has an item");
        let kind = item
            .op
            .as_ref()
            .expect("invariant: in-flight op is on its item")
            .kind;
        item.ipfs = IpfsView::Unsure;
        if self.timed_out.len() >= TIMED_OUT_REMEMBERED_MAX {
            self.timed_out.pop_first();
        }
        self.timed_out.insert(op_id, (cid.clone(), kind));
        self.finish_op(cid, op_id, Err(OP_TIMEOUT_ERROR.into()), now);
    }

    /// The answer to an operation that had timed out: if it succeeded, IPFS
    /// did what it was asked (the item may have been forgotten meanwhile).
    fn on_late_answer(&mut self, cid: Cid, kind: OpKind, result: Result<(), String>, now: Millis) {
        if result.is_err() {
            return; // It changed nothing; the retry goes on.
        }
        self.touched_since_listing.insert(cid.clone());
        if kind == OpKind::Unpin {
            self.users_pins.remove(&cid);
        }
        let item = self.items.entry(cid.clone()).or_default();
        (item.ipfs, item.owner) = match kind {
            OpKind::Pin { max_depth } => {
                (IpfsView::Pinned(Held::made_with(max_depth)), Owner::Made)
            }
            OpKind::Unpin => (IpfsView::NotPinned, Owner::NotOurs),
        };
        self.reconcile_item(&cid, now);
    }

    fn on_listing(&mut self, op: OpId, result: Result<Vec<ListedPin>, String>, now: Millis) {
        let live = self.listing.is_some_and(|(live, _)| live == op);
        if !live && !self.late_listings.contains(&op) {
            return;
        }
        // Its answer supersedes those of listings sent before it.
        self.late_listings.retain(|late| *late > op);
        if live {
            self.listing = None;
        }
        let newer_pending = self.listing.is_some() || !self.late_listings.is_empty();
        let listed = match result {
            Ok(listed) => listed,
            Err(e) => {
                if !newer_pending {
                    self.listing_error = Some(e);
                    // Try again soon rather than at the next reconcile interval.
                    self.next_reconcile = now.plus(self.config.backoff_base_ms);
                }
                return;
            }
        };
        self.listing_error = None;
        self.have_listing = true;
        // A newer listing still pending needs what was touched since it was
        // sent: a superset is kept (skipping too much only delays a view).
        let touched = if newer_pending {
            self.touched_since_listing.clone()
        } else {
            std::mem::take(&mut self.touched_since_listing)
        };
        // What each CID is pinned as, and whether with the cluster's mark.
        let mut pinned: BTreeMap<Cid, (Held, bool)> = BTreeMap::new();
        for pin in listed {
            let held = match pin.pin_type {
                IpfsPinType::Indirect => continue, // No pin of its own, nobody's mark.
                IpfsPinType::Direct => Held::Direct,
                IpfsPinType::Recursive { max_depth } => Held::Recursive(max_depth),
            };
            // Kubo lists a CID once; should a daemon list it twice, the
            // recursive pin is the one that holds the most.
            let entry = pinned
                .entry(pin.cid.clone())
                .or_insert((held, pin.by_cluster));
            if held != Held::Direct {
                *entry = (held, pin.by_cluster);
            }
            if pin.by_cluster && !touched.contains(&pin.cid) {
                // Ours even if this tracker never saw it wanted (made before a restart).
                let item = self.items.entry(pin.cid.clone()).or_default();
                if item.owner == Owner::NotOurs {
                    item.owner = Owner::Marked;
                }
            }
        }
        self.users_pins = pinned
            .iter()
            .filter(|(_, (_, marked))| !marked)
            .map(|(cid, (held, _))| (cid.clone(), *held))
            .collect();
        let cids: Vec<Cid> = self.items.keys().cloned().collect();
        for cid in cids {
            if touched.contains(&cid) {
                continue; // An answer newer than the listing already told us.
            }
            let item = self
                .items
                .get_mut(&cid)
                .expect("invariant: key just listed");
            if let Some(&(held, marked)) = pinned.get(&cid) {
                if !marked {
                    // The mark is the truth: our pin op may have found the
                    // user's pin already there and changed nothing.
                    item.owner = Owner::NotOurs;
                }
                item.ipfs = match (held, item.ipfs) {
                    // The depth this tracker pinned with stays known when the
                    // daemon does not report depths.
                    (Held::Recursive(None), IpfsView::Pinned(Held::Recursive(Some(depth)))) => {
                        IpfsView::Pinned(Held::Recursive(Some(depth)))
                    }
                    (held, _) => IpfsView::Pinned(held),
                };
            } else {
                // Nothing left in IPFS to call ours.
                (item.ipfs, item.owner) = (IpfsView::NotPinned, Owner::NotOurs);
            }
            self.reconcile_item(&cid, now);
            self.retry_exhausted(&cid, now);
        }
    }

    fn on_desired_complete(&mut self, now: Millis) {
        if self.desired_complete {
            return;
        }
        self.desired_complete = true;
        let cids: Vec<Cid> = self.items.keys().cloned().collect();
        for cid in cids {
            self.reconcile_item(&cid, now);
        }
    }

    fn on_recover(&mut self, cid: Option<Cid>, now: Millis) {
        let cids: Vec<Cid> = match cid {
            Some(c) => vec![c],
            None => self.items.keys().cloned().collect(),
        };
        for cid in cids {
            let Some(item) = self.items.get_mut(&cid) else {
                continue;
            };
            if let Some(op) = &mut item.op {
                if let Phase::Failed { retry_at } = op.phase {
                    if let Some(at) = retry_at {
                        self.retries.remove(&(at, cid.clone()));
                    }
                    item.op = None;
                    self.failed -= 1;
                }
            }
            self.reconcile_item(&cid, now);
        }
        self.list_wanted = true;
    }

    // ---- decisions --------------------------------------------------------------

    /// Makes the item's operation match what is wanted, given what IPFS has.
    fn reconcile_item(&mut self, cid: &Cid, now: Millis) {
        let Some(item) = self.items.get(cid) else {
            return;
        };
        let want = item.wanted_op(self.have_listing, self.desired_complete);
        let have = item.op.as_ref().map(|op| (op.kind, op.phase.clone()));
        match (want, have) {
            (_, Some((_, Phase::InFlight { .. }))) => {} // Re-decided when it answers.
            (Some(kind), Some((k, _))) if k == kind => {}
            (want, Some((_, phase))) => {
                self.drop_op(cid, &phase);
                if let Some(kind) = want {
                    self.enqueue(cid, kind, 0, now);
                }
            }
            (Some(kind), None) => self.enqueue(cid, kind, 0, now),
            (None, None) => {}
        }
        let item = self.items.get_mut(cid).expect("invariant: item present");
        // Every change of an item's IPFS view ends here, so the count follows.
        let pinned = matches!(item.ipfs, IpfsView::Pinned(_));
        if pinned != item.counted_pinned {
            item.counted_pinned = pinned;
            if pinned {
                self.pinned += 1;
            } else {
                self.pinned -= 1;
            }
        }
        if item.is_idle_and_empty() {
            self.pinned -= usize::from(item.counted_pinned);
            self.items.remove(cid);
        }
    }

    /// Queues one more attempt of an operation that ran out of automatic
    /// ones (IPFS Cluster's periodic recover): the reconcile interval is its
    /// back-off, and it waits behind first attempts.
    fn retry_exhausted(&mut self, cid: &Cid, now: Millis) {
        let Some(op) = self.items.get(cid).and_then(|i| i.op.as_ref()) else {
            return;
        };
        if op.phase == (Phase::Failed { retry_at: None }) {
            let (kind, attempts) = (op.kind, op.attempts);
            self.failed -= 1;
            self.enqueue(cid, kind, attempts, now);
        }
    }

    fn drop_op(&mut self, cid: &Cid, phase: &Phase) {
        match phase {
            Phase::Queued { .. } => self.queued -= 1,
            Phase::Failed { retry_at } => {
                self.failed -= 1;
                if let Some(at) = retry_at {
                    self.retries.remove(&(*at, cid.clone()));
                }
            }
            Phase::InFlight { .. } => unreachable!("in-flight operations are never dropped"),
        }
        if let Some(item) = self.items.get_mut(cid) {
            item.op = None;
        }
    }

    fn enqueue(&mut self, cid: &Cid, kind: OpKind, attempts: u32, now: Millis) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let item = self
            .items
            .get_mut(cid)
            .expect("invariant: enqueue on a known item");
        debug_assert!(item
            .op
            .as_ref()
            .is_none_or(|op| !matches!(op.phase, Phase::InFlight { .. })));
        if self.queued >= self.config.queue_max {
            let retry_at = now.plus(self.config.backoff_max_ms);
            item.op = Some(Op {
                kind,
                phase: Phase::Failed {
                    retry_at: Some(retry_at),
                },
                attempts,
                error: Some(QUEUE_FULL_ERROR.into()),
            });
            self.failed += 1;
            self.retries.insert((retry_at, cid.clone()));
            return;
        }
        // First attempts go before retries.
        let priority = attempts == 0;
        let error = item.op.as_ref().and_then(|op| op.error.clone());
        item.op = Some(Op {
            kind,
            phase: Phase::Queued {
                generation,
                priority,
            },
            attempts,
            error,
        });
        self.queued += 1;
        let queue = match kind {
            OpKind::Unpin => &mut self.queue_unpin,
            OpKind::Pin { .. } if priority => &mut self.queue_new,
            OpKind::Pin { .. } => &mut self.queue_retry,
        };
        queue.push_back((cid.clone(), generation));
        self.compact_queues();
    }

    /// Drops cancelled entries once they outnumber live ones, keeping queues bounded.
    fn compact_queues(&mut self) {
        const SLACK_ENTRIES: usize = 1024;
        let total = self.queue_new.len() + self.queue_retry.len() + self.queue_unpin.len();
        if total <= 2 * self.queued + SLACK_ENTRIES {
            return;
        }
        let items = &self.items;
        let live = |(cid, generation): &(Cid, u64)| {
            items.get(cid).and_then(|i| i.op.as_ref()).is_some_and(
                |op| matches!(op.phase, Phase::Queued { generation: g, .. } if g == *generation),
            )
        };
        self.queue_new.retain(live);
        self.queue_retry.retain(live);
        self.queue_unpin.retain(live);
    }

    /// Starts the next queued operation that fits the concurrency limits.
    fn dispatch(&mut self, now: Millis) -> Option<IpfsCommand> {
        if self.unpins_in_flight < self.config.concurrent_unpins {
            if let Some(cid) = Self::pop_live(&mut self.queue_unpin, &self.items) {
                return Some(self.start(cid, now));
            }
        }
        if self.pins_in_flight < self.config.concurrent_pins {
            let cid = Self::pop_live(&mut self.queue_new, &self.items)
                .or_else(|| Self::pop_live(&mut self.queue_retry, &self.items));
            if let Some(cid) = cid {
                return Some(self.start(cid, now));
            }
        }
        None
    }

    fn pop_live(queue: &mut VecDeque<(Cid, u64)>, items: &BTreeMap<Cid, Item>) -> Option<Cid> {
        while let Some((cid, generation)) = queue.pop_front() {
            let live = items.get(&cid).and_then(|i| i.op.as_ref()).is_some_and(
                |op| matches!(op.phase, Phase::Queued { generation: g, .. } if g == generation),
            );
            if live {
                return Some(cid);
            }
        }
        None
    }

    fn start(&mut self, cid: Cid, now: Millis) -> IpfsCommand {
        let op_id = self.new_op_id();
        let deadline = now.plus(self.config.op_timeout_ms);
        let item = self
            .items
            .get_mut(&cid)
            .expect("invariant: queued op has an item");
        let op = item.op.as_mut().expect("invariant: queued op present");
        op.attempts += 1;
        op.phase = Phase::InFlight {
            op: op_id,
            deadline,
        };
        self.queued -= 1;
        self.in_flight.insert(op_id, cid.clone());
        self.deadlines.insert((deadline, op_id));
        match op.kind {
            OpKind::Pin { max_depth } => {
                self.pins_in_flight += 1;
                debug_assert!(self.pins_in_flight <= self.config.concurrent_pins);
                IpfsCommand::Pin {
                    op: op_id,
                    cid,
                    max_depth,
                }
            }
            OpKind::Unpin => {
                self.unpins_in_flight += 1;
                debug_assert!(self.unpins_in_flight <= self.config.concurrent_unpins);
                IpfsCommand::Unpin { op: op_id, cid }
            }
        }
    }

    // ---- time -------------------------------------------------------------------

    fn fire_timers(&mut self, now: Millis) {
        while let Some(&(at, op)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.on_timeout(op, now);
        }
        while let Some((at, cid)) = self.retries.first().cloned() {
            if at > now {
                break;
            }
            self.retries.remove(&(at, cid.clone()));
            let Some(item) = self.items.get_mut(&cid) else {
                continue;
            };
            let Some(op) = &item.op else { continue };
            debug_assert!(matches!(op.phase, Phase::Failed { .. }));
            let (kind, attempts) = (op.kind, op.attempts);
            self.failed -= 1;
            self.enqueue(&cid, kind, attempts, now);
        }
        if let Some((op, deadline)) = self.listing {
            if deadline <= now {
                self.listing = None;
                if self.late_listings.len() >= LATE_LISTINGS_MAX {
                    self.late_listings.pop_front();
                }
                self.late_listings.push_back(op);
                self.listing_error = Some(OP_TIMEOUT_ERROR.into());
                self.next_reconcile = now.plus(self.config.backoff_base_ms);
            }
        }
        if now >= self.next_reconcile {
            self.next_reconcile = now.plus(self.config.reconcile_interval_ms);
            self.list_wanted = true;
        }
    }

    fn next_deadline(&self) -> Millis {
        let mut next = self.next_reconcile;
        if let Some((_, deadline)) = self.listing {
            next = next.min(deadline);
        }
        if let Some((at, _)) = self.deadlines.first() {
            next = next.min(*at);
        }
        if let Some((at, _)) = self.retries.first() {
            next = next.min(*at);
        }
        next
    }

    fn new_op_id(&mut self) -> OpId {
        let id = OpId::new(self.epoch, self.next_op);
        self.next_op += 1;
        id
    }

    /// Checks the tracker's invariants; tests and the simulator call it after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        let (mut queued, mut failed, mut pins, mut unpins, mut pinned) = (0, 0, 0, 0, 0);
        for (cid, item) in &self.items {
            if item.is_idle_and_empty() {
                return Err(format!("{cid}: empty item kept"));
            }
            if item.counted_pinned != matches!(item.ipfs, IpfsView::Pinned(_)) {
                return Err(format!("{cid}: pinned count out of step with its view"));
            }
            pinned += usize::from(item.counted_pinned);
            let Some(op) = &item.op else {
                if let Some(kind) = item.wanted_op(self.have_listing, self.desired_complete) {
                    return Err(format!("{cid}: needs {kind:?} but has no operation"));
                }
                continue;
            };
            match op.phase {
                Phase::Queued { .. } => queued += 1,
                Phase::Failed { .. } => failed += 1,
                Phase::InFlight { op: id, .. } => {
                    if self.in_flight.get(&id) != Some(cid) {
                        return Err(format!("{cid}: in-flight op {id:?} not registered"));
                    }
                    match op.kind {
                        OpKind::Pin { .. } => pins += 1,
                        OpKind::Unpin => unpins += 1,
                    }
                }
            }
        }
        let checks = [
            (queued == self.queued, "queued count"),
            (failed == self.failed, "failed count"),
            (pinned == self.pinned, "pinned count"),
            (pins == self.pins_in_flight, "pins in flight count"),
            (unpins == self.unpins_in_flight, "unpins in flight count"),
            (self.in_flight.len() == pins + unpins, "in-flight map size"),
            (
                self.pins_in_flight <= self.config.concurrent_pins,
                "pin concurrency",
            ),
            (
                self.unpins_in_flight <= self.config.concurrent_unpins,
                "unpin concurrency",
            ),
            (self.queued <= self.config.queue_max, "queue bound"),
            (
                self.deadlines.len() == self.in_flight.len(),
                "deadline per in-flight op",
            ),
            (
                self.timed_out.len() <= TIMED_OUT_REMEMBERED_MAX,
                "timed-out ops bound",
            ),
            (
                self.timed_out
                    .keys()
                    .all(|op| !self.in_flight.contains_key(op)),
                "timed-out op still in flight",
            ),
            (
                self.late_listings.len() <= LATE_LISTINGS_MAX,
                "late listings bound",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, what)) => Err(format!("tracker invariant broken: {what}")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;

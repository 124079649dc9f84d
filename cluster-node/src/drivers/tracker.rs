//! The pin tracker's driver: feeds the core [`Tracker`] what changed in the
//! pinset and what IPFS answered, and executes its commands on the IPFS
//! connector.
//!
//! It learns which pins changed from the consensus' change feed
//! ([`cluster_net::PinsetChanges`]): O(changed) per applied entry, a full
//! pass only after a snapshot install, a peer removal or an overflow. It
//! opens the tracker's start-up gate ([`Input::DesiredComplete`]) once the
//! desires it fed reach the leader's applied index seen at start-up: only
//! then may the tracker unpin cluster pins nothing desires.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cluster_core::tracker::{
    Desire, Input, IpfsCommand, Output, PinStatus, Tracker, TrackerConfig, TrackerConfigError,
    TrackerCounts,
};
use cluster_core::{Cid, Millis};
use cluster_net::{rt, Changed};
use tokio::sync::{mpsc, oneshot};

use crate::context::PeerContext;
use crate::rpc::{self, CONSENSUS_APPLIED};

/// Called with a description of every tracker invariant found broken (the
/// simulator collects them; the binary logs them).
pub type ViolationHook = Arc<dyn Fn(String) + Send + Sync>;

/// The driver's own settings (the tracker's are in [`TrackerConfig`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerDriverConfig {
    /// The core tracker's settings.
    pub tracker: TrackerConfig,
    /// This tracker instance's epoch: unique per start of the peer, so IPFS
    /// answers meant for an earlier instance never match an op id.
    pub epoch: u16,
    /// Longest wait between two looks at the pinset feed and the clock, in ms
    /// (a backstop: changes and answers wake the driver at once).
    pub idle_wake_ms: u64,
    /// Pause between two tries to learn the leader's applied index, in ms.
    pub catch_up_retry_ms: u64,
    /// Deadline of one such try, in ms.
    pub catch_up_call_ms: u64,
    /// Least time between two full passes over the tracker's items, in
    /// ms: its invariant check, which costs O(pins), so with a million
    /// pins a pass per message or tick would dominate (a status page
    /// waited ~27 ms behind them). 0: after every step, for the simulator
    /// and tests, which want a broken invariant caught at the step that
    /// broke it.
    pub full_pass_ms: u64,
}

/// Default least time between two full passes over the tracker's items: a
/// self-check, so a minute is often enough (a pass a second kept an idle
/// peer with a million pins ~15 % busy).
pub const FULL_PASS_MS: u64 = 60_000;

impl TrackerDriverConfig {
    /// The driver's defaults around `tracker`.
    pub fn new(tracker: TrackerConfig, epoch: u16) -> TrackerDriverConfig {
        TrackerDriverConfig {
            tracker,
            epoch,
            idle_wake_ms: 1_000,
            catch_up_retry_ms: 500,
            catch_up_call_ms: 2_000,
            full_pass_ms: FULL_PASS_MS,
        }
    }
}

enum Msg {
    Input(Input),
    Statuses {
        cids: Option<Vec<Cid>>,
        reply: oneshot::Sender<Vec<(Cid, PinStatus)>>,
    },
    CatchUpTo(u64),
}

/// A handle on a running tracker driver: recover requests, status queries,
/// counters for the metrics.
#[derive(Clone)]
pub struct TrackerHandle {
    tx: mpsc::UnboundedSender<Msg>,
    counts: Arc<Mutex<TrackerCounts>>,
}

impl TrackerHandle {
    /// Asks the tracker to retry failed operations now (one CID, or all) and
    /// to re-check IPFS. False when the driver is stopped.
    pub fn recover(&self, cid: Option<Cid>) -> bool {
        self.tx.send(Msg::Input(Input::Recover { cid })).is_ok()
    }

    /// The statuses of `cids` (every CID the tracker knows when `None`), or
    /// `None` when the driver is stopped.
    pub async fn statuses(&self, cids: Option<Vec<Cid>>) -> Option<Vec<(Cid, PinStatus)>> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Msg::Statuses { cids, reply }).ok()?;
        answer.await.ok()
    }

    /// The tracker's counters as of its last step.
    pub fn counts(&self) -> TrackerCounts {
        *lock(&self.counts)
    }

    /// True while the driver runs.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the tracker driver of the peer in `ctx` as a task of the current
/// runtime. It runs as long as the peer does (its process, or its simulated
/// node): its own in-flight IPFS calls keep its queue open.
pub fn start_tracker(
    ctx: &PeerContext,
    config: TrackerDriverConfig,
    on_violation: ViolationHook,
) -> Result<TrackerHandle, TrackerConfigError> {
    let tracker = Tracker::new(config.tracker.clone(), config.epoch, ctx.clock.now())?;
    let (tx, rx) = mpsc::unbounded_channel();
    let counts = Arc::new(Mutex::new(tracker.counts()));
    let handle = TrackerHandle {
        tx: tx.clone(),
        counts: Arc::clone(&counts),
    };
    rt::spawn(learn_catch_up_target(
        ctx.clone(),
        config.clone(),
        tx.clone(),
    ));
    let driver = Driver {
        tracker,
        ctx: ctx.clone(),
        config,
        tx,
        counts,
        on_violation,
        catch_up_to: None,
        desired_complete: false,
        last_full_pass: None,
    };
    rt::spawn(driver.run(rx));
    Ok(handle)
}

/// Learns the leader's applied index once (the leader itself answers its
/// own), retrying until a leader answers.
async fn learn_catch_up_target(
    ctx: PeerContext,
    config: TrackerDriverConfig,
    tx: mpsc::UnboundedSender<Msg>,
) {
    loop {
        if tx.is_closed() {
            return;
        }
        if ctx.raft.is_leader() {
            let _ = tx.send(Msg::CatchUpTo(ctx.raft.applied_index()));
            return;
        }
        if let Some(leader) = ctx.raft.leader_info() {
            let limit = Duration::from_millis(config.catch_up_call_ms);
            let asked: Result<u64, _> =
                rpc::call(ctx.rpc.as_ref(), &leader, CONSENSUS_APPLIED, &(), limit).await;
            match asked {
                Ok(index) => {
                    let _ = tx.send(Msg::CatchUpTo(index));
                    return;
                }
                Err(e) => tracing::debug!("tracker start-up: leader's applied index: {e}"),
            }
        }
        rt::sleep(Duration::from_millis(config.catch_up_retry_ms)).await;
    }
}

struct Driver {
    tracker: Tracker,
    ctx: PeerContext,
    config: TrackerDriverConfig,
    tx: mpsc::UnboundedSender<Msg>,
    counts: Arc<Mutex<TrackerCounts>>,
    on_violation: ViolationHook,
    catch_up_to: Option<u64>,
    desired_complete: bool,
    /// When the items were last checked and counted.
    last_full_pass: Option<Millis>,
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let changes = self.ctx.raft.changes();
        loop {
            // Read the index before taking the changes: every entry up to it
            // recorded its changes (under the pinset's lock) before it
            // became visible, so the desires fed below reflect at least it.
            let fed_index = self.ctx.raft.applied_index();
            let changed = changes.take();
            if !changed.is_empty() {
                self.feed(changed);
            }
            if !self.desired_complete && self.catch_up_to.is_some_and(|t| fed_index >= t) {
                self.desired_complete = true;
                self.tracker
                    .handle_input(Input::DesiredComplete, self.ctx.clock.now());
            }
            let wake = self.run_commands();
            let now = self.ctx.clock.now();
            self.full_pass(now);
            let wait = wake
                .0
                .saturating_sub(now.0)
                .clamp(1, self.config.idle_wake_ms.max(1));
            let next = tokio::select! {
                biased;
                msg = rx.recv() => match msg {
                    Some(msg) => Some(msg),
                    None => return,
                },
                _ = changes.changed() => None,
                _ = rt::sleep(Duration::from_millis(wait)) => None,
            };
            if let Some(msg) = next {
                self.handle(msg);
                while let Ok(more) = rx.try_recv() {
                    self.handle(more);
                }
            } else {
                self.tracker.handle_input(Input::Tick, self.ctx.clock.now());
            }
        }
    }

    /// Refreshes the counters the metrics read (kept by the tracker, so
    /// cheap) and checks the tracker's invariants, unless that was done
    /// less than `full_pass_ms` ago.
    fn full_pass(&mut self, now: Millis) {
        *lock(&self.counts) = self.tracker.counts();
        // A clock that went back (skew, a reset) also makes it due.
        let due = self
            .last_full_pass
            .is_none_or(|last| now < last || now.0 - last.0 >= self.config.full_pass_ms);
        if !due {
            return;
        }
        self.last_full_pass = Some(now);
        if let Err(e) = self.tracker.check_invariants() {
            (self.on_violation)(format!("tracker of {}: {e}", self.ctx.id));
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Input(input) => self.tracker.handle_input(input, self.ctx.clock.now()),
            Msg::Statuses { cids, reply } => {
                let statuses = match cids {
                    Some(cids) => {
                        let statuses = self.tracker.statuses_of(&cids);
                        cids.into_iter().zip(statuses).collect()
                    }
                    None => self
                        .tracker
                        .statuses()
                        .map(|(c, s)| (c.clone(), s))
                        .collect(),
                };
                let _ = reply.send(statuses);
            }
            Msg::CatchUpTo(index) => self.catch_up_to = Some(index),
        }
    }

    /// Feeds the desires that differ from what the tracker holds.
    fn feed(&mut self, changed: Changed) {
        let now = self.ctx.clock.now();
        let me = &self.ctx.id;
        let fresh: Vec<(Cid, Option<Desire>)> = if changed.full {
            self.ctx.raft.with_pinset(|pinset| {
                let mut fresh: Vec<(Cid, Option<Desire>)> = pinset
                    .iter()
                    .map(|pin| {
                        let desire = Desire::of(&pin, me);
                        (pin.cid, Some(desire))
                    })
                    .collect();
                let gone: BTreeSet<Cid> = self
                    .tracker
                    .desired()
                    .filter(|c| !pinset.contains(c))
                    .cloned()
                    .collect();
                fresh.extend(gone.into_iter().map(|c| (c, None)));
                fresh
            })
        } else {
            self.ctx.raft.with_pinset(|pinset| {
                changed
                    .cids
                    .into_iter()
                    .map(|cid| {
                        let desire = pinset.get(&cid).map(|pin| Desire::of(&pin, me));
                        (cid, desire)
                    })
                    .collect()
            })
        };
        for (cid, desire) in fresh {
            if self.tracker.desire(&cid) != desire {
                self.tracker
                    .handle_input(Input::Desired { cid, desire }, now);
            }
        }
    }

    /// Starts every command the tracker has ready; returns when it next
    /// wants to be woken.
    fn run_commands(&mut self) -> Millis {
        loop {
            match self.tracker.poll_output(self.ctx.clock.now()) {
                Output::Command(cmd) => {
                    let (ipfs, tx) = (Arc::clone(&self.ctx.ipfs), self.tx.clone());
                    rt::spawn(async move {
                        let input = execute(ipfs.as_ref(), cmd).await;
                        // The driver is gone only when the peer stops; the
                        // answer goes with it.
                        let _ = tx.send(Msg::Input(input));
                    });
                }
                Output::Timeout(at) => return at,
            }
        }
    }
}

/// Runs one tracker command against IPFS and returns the answer to feed back.
async fn execute(ipfs: &dyn crate::ipfs::IpfsConnector, cmd: IpfsCommand) -> Input {
    match cmd {
        IpfsCommand::Pin { op, cid, max_depth } => Input::IpfsDone {
            op,
            result: ipfs.pin(&cid, max_depth).await.map_err(|e| e.to_string()),
        },
        IpfsCommand::Unpin { op, cid } => Input::IpfsDone {
            op,
            result: ipfs.unpin(&cid).await.map_err(|e| e.to_string()),
        },
        IpfsCommand::ListPins { op } => Input::IpfsPins {
            op,
            result: ipfs.list_pins().await.map_err(|e| e.to_string()),
        },
    }
}

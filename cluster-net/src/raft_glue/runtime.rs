//! The runtime seam: openraft and every driver task of this crate take
//! spawn, sleep and timeouts from [`Runtime`], which is openraft's tokio
//! runtime normally and a madsim runtime under `--cfg madsim`.

use std::future::Future;
use std::time::Duration;

use openraft::AsyncRuntime;

#[cfg(not(madsim))]
/// The async runtime of this build (tokio).
pub(crate) type Runtime = openraft::TokioRuntime;

#[cfg(madsim)]
/// The async runtime of this build (madsim's deterministic simulator).
pub(crate) type Runtime = madsim_runtime::MadsimRuntime;

/// Sleeps for `duration` on the runtime of this build.
pub async fn sleep(duration: Duration) {
    Runtime::sleep(duration).await
}

/// Runs `future` with a time limit; `None` when it ran out.
pub async fn timeout<T, F>(duration: Duration, future: F) -> Option<T>
where
    F: Future<Output = T> + Send,
{
    Runtime::timeout(duration, future).await.ok()
}

/// Spawns a detached task on the runtime of this build.
pub fn spawn<F>(future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    drop(Runtime::spawn(future));
}

/// Runs blocking work (a durable store commit, i.e. an fsync) off the async
/// worker threads: on tokio's blocking pool normally; inline under madsim,
/// where stores are in memory and threads would break determinism.
/// `None` when the runtime is shutting down and refused the work. A panic in
/// `work` is propagated.
pub(crate) async fn blocking<T, F>(work: F) -> Option<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    #[cfg(not(madsim))]
    {
        match tokio::task::spawn_blocking(work).await {
            Ok(out) => Some(out),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        }
    }
    #[cfg(madsim)]
    {
        // A commit takes simulated time before it is durable, so a crash can
        // land between a write being issued and its fsync returning.
        let max = sim_hooks::COMMIT_DELAY_MAX_MS.load(std::sync::atomic::Ordering::Relaxed);
        if max > 0 {
            use madsim::rand::Rng;
            let ms = madsim::rand::thread_rng().gen_range(0..=max);
            madsim::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        Some(work())
    }
}

/// Knobs the simulator sets for the code it runs (only under madsim).
#[cfg(madsim)]
pub mod sim_hooks {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use madsim::task::NodeId;

    /// Longest simulated time a durable store commit takes, in ms (0: instant).
    pub static COMMIT_DELAY_MAX_MS: AtomicU64 = AtomicU64::new(0);

    /// Timer drift of each simulated node, in parts per thousand (positive:
    /// its timers fire late, its clock runs slow; negative: early, fast).
    /// Nodes not listed have exact timers.
    static DRIFT_PER_MILLE: Mutex<BTreeMap<NodeId, i32>> = Mutex::new(BTreeMap::new());

    /// What a leader calls as it starts a membership change, with its node
    /// (see [`set_membership_change_hook`]).
    pub type MembershipChangeHook = std::sync::Arc<dyn Fn(NodeId) + Send + Sync>;

    static MEMBERSHIP_CHANGE_HOOK: Mutex<Option<MembershipChangeHook>> = Mutex::new(None);

    /// Sets what is called each time a leader proposes a membership change
    /// (BUGGIFY: the simulator may crash it between the change's joint and
    /// uniform steps, the window a lost leadership leaves a joint config in).
    pub fn set_membership_change_hook(hook: Option<MembershipChangeHook>) {
        *MEMBERSHIP_CHANGE_HOOK
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = hook;
    }

    /// Calls the membership-change hook, if one is set.
    pub(crate) fn membership_change_starting() {
        let hook = MEMBERSHIP_CHANGE_HOOK
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook(madsim::plugin::node());
        }
    }

    /// Timers that fired at a drifted time so far (a coverage count).
    pub static DRIFTED_TIMERS: AtomicU64 = AtomicU64::new(0);

    /// Sets the timer drift of `node` (0: none). The simulator keeps drifts
    /// small (a few percent), as crystals and VM clocks differ.
    pub fn set_drift_per_mille(node: NodeId, per_mille: i32) {
        let mut drifts = DRIFT_PER_MILLE.lock().unwrap_or_else(|e| e.into_inner());
        if per_mille == 0 {
            drifts.remove(&node);
        } else {
            drifts.insert(node, per_mille);
        }
    }

    /// `duration` as the current node's timers measure it: how long a timer
    /// set for `duration` really takes on this node.
    pub fn drifted(duration: Duration) -> Duration {
        let per_mille = DRIFT_PER_MILLE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&madsim::plugin::node())
            .copied()
            .unwrap_or(0);
        if per_mille == 0 || duration.is_zero() {
            return duration;
        }
        DRIFTED_TIMERS.fetch_add(1, Ordering::Relaxed);
        let nanos = duration.as_nanos() as i128 * (1000 + per_mille as i128) / 1000;
        Duration::from_nanos(nanos.clamp(0, u64::MAX as i128) as u64)
    }

    /// The drifted wait until `deadline` (a timer armed now for the
    /// remaining time).
    pub(crate) fn drifted_until(deadline: std::time::Instant) -> std::time::Instant {
        let now = madsim::time::Instant::now();
        now + drifted(deadline.saturating_duration_since(now))
    }
}

#[cfg(madsim)]
mod madsim_runtime {
    //! openraft's `AsyncRuntime` over madsim's tasks and timers.

    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use openraft::async_runtime::TokioOneShotSender;
    use openraft::{AsyncRuntime, OptionalSend, TokioInstant};

    use super::sim_hooks::{drifted, drifted_until};

    /// openraft runtime backed by madsim.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub struct MadsimRuntime;

    /// The error of a timed-out future.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
    #[error("deadline has elapsed")]
    pub struct Elapsed;

    /// A future with a deadline (madsim's own timeout future is unnameable).
    pub struct Timeout<T> {
        inner: Pin<Box<T>>,
        sleep: Pin<Box<madsim::time::Sleep>>,
    }

    impl<R, T: Future<Output = R>> Future for Timeout<T> {
        type Output = Result<R, Elapsed>;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            if let Poll::Ready(v) = self.inner.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
            match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    impl AsyncRuntime for MadsimRuntime {
        type JoinError = madsim::task::JoinError;
        type JoinHandle<T: OptionalSend + 'static> = madsim::task::JoinHandle<T>;
        type Sleep = madsim::time::Sleep;
        type Instant = TokioInstant;
        type TimeoutError = Elapsed;
        type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
        type ThreadLocalRng = madsim::rand::GlobalRng;
        type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
        type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
        type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

        fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
        where
            T: Future + OptionalSend + 'static,
            T::Output: OptionalSend + 'static,
        {
            madsim::task::spawn(future)
        }

        // Every timer goes through the node's drift: the simulator gives
        // each peer timers that run a little fast or slow.
        fn sleep(duration: Duration) -> Self::Sleep {
            madsim::time::sleep(drifted(duration))
        }

        fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
            madsim::time::sleep_until(drifted_until(deadline.into_std()))
        }

        fn timeout<R, F: Future<Output = R> + OptionalSend>(
            duration: Duration,
            future: F,
        ) -> Self::Timeout<R, F> {
            Timeout {
                inner: Box::pin(future),
                sleep: Box::pin(madsim::time::sleep(drifted(duration))),
            }
        }

        fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
            deadline: Self::Instant,
            future: F,
        ) -> Self::Timeout<R, F> {
            Timeout {
                inner: Box::pin(future),
                sleep: Box::pin(madsim::time::sleep_until(drifted_until(
                    deadline.into_std(),
                ))),
            }
        }

        fn is_panic(_join_error: &Self::JoinError) -> bool {
            // madsim cannot tell a panicked task from a killed one.
            false
        }

        fn thread_rng() -> Self::ThreadLocalRng {
            madsim::rand::thread_rng()
        }

        fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
        where
            T: OptionalSend,
        {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (TokioOneShotSender(tx), rx)
        }
    }
}

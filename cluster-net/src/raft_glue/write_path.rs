//! The client write path: a batcher that groups concurrent writes into one
//! log entry (bounded by count and bytes), the leader call that forwards
//! requests (with bounded retries when leadership moves), and the one place
//! that decides whether a failed attempt's outcome is known.

use std::sync::{Arc, Weak};
use std::time::Duration;

use cluster_core::pinset::{ApplyResult, Entry};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::node::{ClusterRaft, Inner};
use super::rpc::{RefusedReason, RequestBody, ResponseBody, RpcRequest};
use super::runtime::{self, Runtime};
use super::types::NodeInfo;
use crate::error::WriteError;
use crate::transport::TransportError;
use openraft::AsyncRuntime;

/// Most attempts of one leader call (each attempt may follow a new leader
/// hint or wait for an election).
pub(crate) const FORWARD_RETRIES_MAX: u32 = 64;

/// A client write waiting to be proposed.
pub(crate) struct PendingWrite {
    entry: Entry,
    /// Encoded size of `entry`, counted against `batch_bytes_max`.
    bytes: usize,
    reply: oneshot::Sender<Result<ApplyResult, WriteError>>,
}

/// A batch the leader committed and applied.
pub(crate) struct Committed {
    /// Log index of the entry that carried the batch.
    index: u64,
    /// One result per entry.
    results: Vec<ApplyResult>,
    /// End of the write's time budget.
    deadline: <Runtime as AsyncRuntime>::Instant,
}

/// Why a leader call failed.
#[derive(Debug)]
pub(crate) enum LeaderCallError {
    /// No leader answered within the retry budget.
    NoLeader,
    /// An attempt may have been served (see [`classify`]) and the request
    /// may not be retried.
    Unknown(String),
}

/// What a leader call ended with.
#[derive(Debug)]
pub(crate) struct LeaderAnswer {
    pub(crate) result: Result<ResponseBody, LeaderCallError>,
    /// Some earlier attempt may have been served: a final failure does not
    /// mean the request had no effect.
    pub(crate) ambiguous: bool,
}

/// What one attempt tells about the request's fate.
#[derive(Debug)]
enum Attempt {
    /// A final answer.
    Answered(ResponseBody),
    /// Certainly not served: try the hinted peer (or the known leader),
    /// after a pause when there is no new hint.
    NotServed { hint: Option<NodeInfo> },
    /// Perhaps served: retry only a request that is applied once however
    /// often it is delivered.
    Unknown {
        reason: String,
        hint: Option<NodeInfo>,
    },
}

/// Decides, for one attempt at `target`, whether the outcome is known. The
/// only place that does: every retry decision of [`Inner::call_leader`]
/// follows from it.
///
/// - a transport failure is "not served" only if the request certainly was
///   not delivered (`Unreachable`); a timeout or a broken exchange may have
///   been served;
/// - `NotLeader` and `Refused(Shutdown)` are answered by a peer *before* it
///   hands the request to Raft ([`serve_forward`]), so nothing was proposed;
///   a `Refused(Shutdown)` from this very peer is final (no retry helps);
/// - `OutcomeUnknown` means the leader proposed the request and then lost
///   leadership or shut down: the entry may be committed later.
fn classify(
    me: &NodeInfo,
    target: &NodeInfo,
    answer: Result<ResponseBody, TransportError>,
) -> Attempt {
    match answer {
        Err(e) if e.not_delivered() => Attempt::NotServed { hint: None },
        Err(e) => Attempt::Unknown {
            reason: e.to_string(),
            hint: None,
        },
        Ok(ResponseBody::NotLeader { leader }) => Attempt::NotServed {
            hint: leader.filter(|l| l != target),
        },
        Ok(ResponseBody::Refused(RefusedReason::Shutdown)) if target == me => {
            Attempt::Answered(ResponseBody::Refused(RefusedReason::Shutdown))
        }
        Ok(ResponseBody::Refused(RefusedReason::Shutdown)) => Attempt::NotServed { hint: None },
        Ok(ResponseBody::OutcomeUnknown { leader, reason }) => Attempt::Unknown {
            reason,
            hint: leader.filter(|l| l != target),
        },
        Ok(other) => Attempt::Answered(other),
    }
}

/// Encoded size of a write, as the log stores and ships it.
fn encoded_len(entry: &Entry) -> usize {
    // Serialising an owned value into a size counter cannot fail.
    postcard::serialize_with_flavor(entry, postcard::ser_flavors::Size::default())
        .unwrap_or(usize::MAX)
}

impl ClusterRaft {
    /// Replicates one write and returns its result once it is committed and
    /// applied on the leader and on this peer (read-your-writes). Works on
    /// any peer; concurrent writes are batched into one log entry. When
    /// [`WriteError::outcome_unknown`] holds the write may still be
    /// applied: give entries a `RequestId` so that retries apply once.
    pub async fn write(&self, entry: Entry) -> Result<ApplyResult, WriteError> {
        let bytes = encoded_len(&entry);
        let max = self.inner.config.batch_bytes_max;
        if bytes > max {
            return Err(WriteError::TooLarge { bytes, max });
        }
        let (reply, answer) = oneshot::channel();
        self.inner
            .writes
            .send(PendingWrite {
                entry,
                bytes,
                reply,
            })
            .await
            .map_err(|_| WriteError::Shutdown)?;
        answer.await.map_err(|_| WriteError::Shutdown)?
    }

    /// Replicates several writes as one log entry (no further batching);
    /// together they must fit `batch_bytes_max`.
    pub async fn write_batch(&self, entries: Vec<Entry>) -> Result<Vec<ApplyResult>, WriteError> {
        let bytes = entries
            .iter()
            .map(encoded_len)
            .fold(0, usize::saturating_add);
        let max = self.inner.config.batch_bytes_max;
        if bytes > max {
            return Err(WriteError::TooLarge { bytes, max });
        }
        let committed = self.inner.propose(entries).await?;
        self.inner.wait_applied_locally(&committed).await;
        Ok(committed.results)
    }
}

/// Takes `first` and then queued writes while the batch stays within
/// `entries_max` writes and `bytes_max` bytes. Returns the batch and the
/// write that did not fit (it starts the next batch).
fn take_batch(
    first: PendingWrite,
    queue: &mut mpsc::Receiver<PendingWrite>,
    entries_max: usize,
    bytes_max: usize,
) -> (Vec<PendingWrite>, Option<PendingWrite>) {
    let mut bytes = first.bytes;
    let mut batch = vec![first];
    while batch.len() < entries_max {
        let Ok(write) = queue.try_recv() else {
            break;
        };
        if bytes.saturating_add(write.bytes) > bytes_max {
            return (batch, Some(write));
        }
        bytes += write.bytes;
        batch.push(write);
    }
    (batch, None)
}

/// Drains the write queue into batches: waits for a free proposal slot,
/// then takes queued writes (up to the count and byte limits) into one
/// proposal. Writes arriving while proposals are in flight accumulate for
/// the next one.
pub(crate) async fn run_batcher(inner: Weak<Inner>, mut queue: mpsc::Receiver<PendingWrite>) {
    let (entries_max, bytes_max, slots) = match inner.upgrade() {
        Some(i) => (
            i.config.batch_entries_max,
            i.config.batch_bytes_max,
            Arc::new(Semaphore::new(i.config.proposals_in_flight_max)),
        ),
        None => return,
    };
    let mut carried: Option<PendingWrite> = None;
    loop {
        let first = match carried.take() {
            Some(write) => write,
            None => match queue.recv().await {
                Some(write) => write,
                None => return,
            },
        };
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (batch, rest) = take_batch(first, &mut queue, entries_max, bytes_max);
        carried = rest;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        runtime::spawn(async move {
            let (entries, replies): (Vec<Entry>, Vec<_>) =
                batch.into_iter().map(|w| (w.entry, w.reply)).unzip();
            let expected = entries.len();
            match inner.propose(entries).await {
                Ok(committed) if committed.results.len() == expected => {
                    inner.wait_applied_locally(&committed).await;
                    for (reply, result) in replies.into_iter().zip(committed.results) {
                        // The writer may have given up; nothing to do then.
                        let _ = reply.send(Ok(result));
                    }
                }
                Ok(committed) => {
                    let e = WriteError::Raft(format!(
                        "{} results for {expected} entries",
                        committed.results.len()
                    ));
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            // Freed only once every writer of the batch has its answer: the
            // next batch never races these replies, and a peer that applies
            // slower than the leader commits holds at most
            // `proposals_in_flight_max` batches waiting (back-pressure
            // instead of an unbounded pile of waiting batches).
            drop(permit);
        });
    }
}

/// Leader side of forwarded writes. Answers `Refused(Shutdown)` or
/// `NotLeader` only before proposing, so that the caller may retry
/// elsewhere; once proposed, a failure is `OutcomeUnknown`.
pub(crate) async fn serve_forward(inner: &Arc<Inner>, entries: Vec<Entry>) -> ResponseBody {
    {
        let metrics = inner.raft.metrics();
        let m = metrics.borrow();
        if m.running_state.is_err() {
            return ResponseBody::Refused(RefusedReason::Shutdown);
        }
        let leads = m.state == ServerState::Leader && m.current_leader == Some(inner.my_id);
        if !leads {
            drop(m);
            return ResponseBody::NotLeader {
                leader: inner.leader_node(),
            };
        }
    }
    match inner.raft.client_write(entries).await {
        Ok(response) => ResponseBody::Applied {
            index: response.log_id.index,
            results: response.data,
        },
        // Either leadership moved between the check above and the
        // proposal, or the proposed entry was truncated: it may survive on
        // other peers and be committed by a later leader.
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            ResponseBody::OutcomeUnknown {
                leader: f.leader_node,
                reason: "the leader lost leadership before committing".to_string(),
            }
        }
        Err(RaftError::APIError(other)) => ResponseBody::Failed(other.to_string()),
        Err(RaftError::Fatal(f)) => ResponseBody::OutcomeUnknown {
            leader: None,
            reason: format!("the leader stopped before committing: {f}"),
        },
    }
}

impl Inner {
    fn retry_delay(&self) -> Duration {
        Duration::from_millis(self.config.leader_retry_delay_ms)
    }

    /// Proposes one batch through the leader, within the write timeout.
    pub(crate) async fn propose(
        self: &Arc<Self>,
        entries: Vec<Entry>,
    ) -> Result<Committed, WriteError> {
        if self.cluster_id.get().is_none() {
            return Err(WriteError::NotInCluster);
        }
        // Entries with request ids are applied once even if delivered twice,
        // so an attempt with an unknown outcome may be retried.
        let idempotent = entries.iter().all(|e| e.request.is_some());
        let limit = Duration::from_millis(self.config.write_timeout_ms);
        let attempt = Duration::from_millis(self.config.rpc_timeout_ms);
        let call = self.call_leader(None, RequestBody::Forward(entries), idempotent, attempt);
        let deadline = <Runtime as AsyncRuntime>::Instant::now() + limit;
        let Some(LeaderAnswer { result, ambiguous }) = runtime::timeout(limit, call).await else {
            return Err(WriteError::Timeout {
                ms: self.config.write_timeout_ms,
            });
        };
        let error = match result {
            Ok(ResponseBody::Applied { index, results }) => {
                return Ok(Committed {
                    index,
                    results,
                    deadline,
                })
            }
            Err(LeaderCallError::Unknown(reason)) => {
                return Err(WriteError::OutcomeUnknown(reason))
            }
            Err(LeaderCallError::NoLeader) => WriteError::NoLeader,
            Ok(ResponseBody::Failed(reason)) => WriteError::Raft(reason),
            Ok(ResponseBody::Refused(RefusedReason::Shutdown)) => WriteError::Shutdown,
            Ok(other) => WriteError::Raft(format!("unexpected answer {other:?}")),
        };
        if ambiguous {
            // An earlier attempt may have been applied: this failure does
            // not tell the writer that nothing happened.
            return Err(WriteError::OutcomeUnknown(format!(
                "an earlier attempt may have been applied; last error: {error}"
            )));
        }
        Err(error)
    }

    /// Read-your-writes on this peer: waits until this peer applied the
    /// committed entry too (bounded by what is left of the write timeout;
    /// the write is committed either way).
    pub(crate) async fn wait_applied_locally(&self, committed: &Committed) {
        if self.applied_index() >= committed.index {
            return;
        }
        let left = committed
            .deadline
            .saturating_duration_since(<Runtime as AsyncRuntime>::Instant::now());
        let wait = self.raft.wait(Some(left));
        if wait
            .applied_index_at_least(Some(committed.index), "forwarded write")
            .await
            .is_err()
        {
            tracing::debug!(peer = %self.me, index = committed.index, "write committed, not yet applied locally");
        }
    }

    /// Sends `body` to the leader (starting at `first`, else the known
    /// leader), serving it locally when this peer leads, and following
    /// `NotLeader` hints. Each remote attempt is bounded by `attempt`.
    /// Attempts whose outcome is unknown ([`classify`]) are retried only
    /// when `retry_unknown` (the request is idempotent). At most
    /// [`FORWARD_RETRIES_MAX`] attempts.
    pub(crate) async fn call_leader(
        self: &Arc<Self>,
        first: Option<NodeInfo>,
        body: RequestBody,
        retry_unknown: bool,
        attempt: Duration,
    ) -> LeaderAnswer {
        let mut target = first.or_else(|| self.leader_node());
        let mut ambiguous = false;
        for _ in 0..FORWARD_RETRIES_MAX {
            let Some(node) = target.clone() else {
                runtime::sleep(self.retry_delay()).await;
                target = self.leader_node();
                continue;
            };
            let answer = if node.peer_id == self.me.peer_id {
                Ok(self.serve_at_leader(body.clone()).await)
            } else {
                let request = RpcRequest {
                    cluster_id: self.cluster_id.get(),
                    target_incarnation: node.incarnation,
                    body: body.clone(),
                };
                let call = self.transport.call(&node, request);
                runtime::timeout(attempt, call)
                    .await
                    .unwrap_or_else(|| {
                        Err(TransportError::Timeout {
                            peer: node.peer_id.clone(),
                        })
                    })
                    .map(|r| r.body)
            };
            let hint = match classify(&self.me, &node, answer) {
                Attempt::Answered(response) => {
                    return LeaderAnswer {
                        result: Ok(response),
                        ambiguous,
                    }
                }
                Attempt::NotServed { hint } => hint,
                Attempt::Unknown { reason, hint } => {
                    if !retry_unknown {
                        return LeaderAnswer {
                            result: Err(LeaderCallError::Unknown(reason)),
                            ambiguous: true,
                        };
                    }
                    tracing::debug!(peer = %self.me, target = %node, %reason, "leader call outcome unknown, retrying");
                    ambiguous = true;
                    hint
                }
            };
            if hint.is_none() {
                runtime::sleep(self.retry_delay()).await;
            }
            // Prefer a new hint, then the known leader if it is another
            // peer, else try the same one again.
            target = hint
                .or_else(|| self.leader_node().filter(|n| *n != node))
                .or(Some(node));
        }
        LeaderAnswer {
            result: Err(LeaderCallError::NoLeader),
            ambiguous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inproc::InProcRouter;
    use crate::store::MemStore;
    use crate::transport::{BoxFuture, RaftTransport};
    use crate::{RaftConfig, RpcResponse};
    use cluster_core::pinset::{Applied, Command, RequestId};
    use cluster_core::{Cid, Millis, PeerId, Pin, PinOptions};
    use std::sync::atomic::{AtomicU32, Ordering};

    fn cid(n: u64) -> Cid {
        let mut bytes = vec![0x12, 0x20];
        let mut digest = [0u8; 32];
        digest[..8].copy_from_slice(&n.to_be_bytes());
        bytes.extend_from_slice(&digest);
        Cid::from_bytes(&bytes).expect("valid cid")
    }

    fn pin(n: u64, request: Option<RequestId>) -> Entry {
        let options = PinOptions {
            replication_factor_min: -1,
            replication_factor_max: -1,
            ..Default::default()
        };
        Entry {
            request,
            command: Command::Pin(Pin::new(cid(n), options, Millis(n))),
        }
    }

    /// A transport that delivers forwarded writes, then replaces the answer
    /// of the first `lies` of them with `OutcomeUnknown`: what a leader that
    /// proposed the entry and then shut down answers.
    struct ShutdownAfterDelivery {
        inner: Arc<dyn RaftTransport>,
        lies: AtomicU32,
    }

    impl RaftTransport for ShutdownAfterDelivery {
        fn call(
            &self,
            target: &NodeInfo,
            request: RpcRequest,
        ) -> BoxFuture<Result<RpcResponse, TransportError>> {
            let forward = matches!(request.body, RequestBody::Forward(_));
            let lie = forward
                && self
                    .lies
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            let call = self.inner.call(target, request);
            Box::pin(async move {
                let answer = call.await?;
                if lie {
                    // The real answer (`Applied`) is lost with the leader.
                    let body = ResponseBody::OutcomeUnknown {
                        leader: None,
                        reason: "leader stopped".to_string(),
                    };
                    let _ = answer;
                    return Ok(RpcResponse { body });
                }
                Ok(answer)
            })
        }
    }

    /// A leader and a follower whose transport is wrapped by `wrap`.
    async fn pair(
        wrap: impl FnOnce(Arc<dyn RaftTransport>) -> Arc<dyn RaftTransport>,
    ) -> (ClusterRaft, ClusterRaft) {
        let router = InProcRouter::new();
        let config = RaftConfig::fast_for_tests();
        let a = PeerId::synthetic(1);
        let b = PeerId::synthetic(2);
        let leader = ClusterRaft::start(
            &a,
            "inproc/1",
            config.clone(),
            crate::Boot::CreateIfEmpty { incarnation: 101 },
            MemStore::new(),
            router.transport(a.as_str()),
        )
        .await
        .expect("start");
        router.register(a.as_str(), leader.rpc_handler());
        leader.initialize(9).await.expect("initialize");
        leader
            .wait_for_leader(Duration::from_secs(5))
            .await
            .expect("leader");
        let follower = ClusterRaft::start(
            &b,
            "inproc/2",
            config,
            crate::Boot::CreateIfEmpty { incarnation: 102 },
            MemStore::new(),
            wrap(router.transport(b.as_str())),
        )
        .await
        .expect("start");
        router.register(b.as_str(), follower.rpc_handler());
        follower.join(leader.node_info()).await.expect("join");
        assert!(leader.is_leader());
        (leader, follower)
    }

    fn log_entries_applied(raft: &ClusterRaft) -> u64 {
        raft.applied_index()
    }

    /// Item 14: a remote leader that replicated a forwarded write and then
    /// reported shutting down made the follower retry it, so an entry
    /// without a request id was proposed twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_outcome_is_not_retried_without_a_request_id() {
        let (leader, follower) = pair(|t| {
            Arc::new(ShutdownAfterDelivery {
                inner: t,
                lies: AtomicU32::new(1),
            })
        })
        .await;
        let before = log_entries_applied(&leader);
        let result = follower.write(pin(1, None)).await;
        match &result {
            Err(e) => assert!(e.outcome_unknown(), "{e:?}"),
            Ok(r) => panic!("retried although the outcome was unknown: {r:?}"),
        }
        // Proposed once: one log entry more on the leader.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(log_entries_applied(&leader), before + 1);
        leader.shutdown().await;
        follower.shutdown().await;
    }

    /// The same ambiguity with a request id is retried, and the pinset
    /// applies the entry once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_outcome_is_retried_with_a_request_id() {
        let (leader, follower) = pair(|t| {
            Arc::new(ShutdownAfterDelivery {
                inner: t,
                lies: AtomicU32::new(1),
            })
        })
        .await;
        let request = Some(RequestId {
            client: 1,
            serial: 1,
        });
        let result = follower.write(pin(1, request)).await.expect("retried");
        assert!(matches!(result, Ok(Applied::Pinned { .. })), "{result:?}");
        assert_eq!(leader.with_pinset(|p| p.len()), 1);
        leader.shutdown().await;
        follower.shutdown().await;
    }

    fn pending(n: u64, bytes: usize) -> PendingWrite {
        let (reply, _) = oneshot::channel();
        PendingWrite {
            entry: pin(n, None),
            bytes,
            reply,
        }
    }

    /// Item 14: batches were bounded by count only.
    #[tokio::test]
    async fn batches_are_bounded_by_bytes_and_count() {
        let (tx, mut rx) = mpsc::channel(16);
        for n in 1..6 {
            tx.send(pending(n, 400)).await.expect("queue");
        }
        let (batch, rest) = take_batch(pending(0, 400), &mut rx, 10, 1_000);
        assert_eq!(batch.len(), 2);
        let rest = rest.expect("the write that did not fit is kept");
        let (batch, rest) = take_batch(rest, &mut rx, 10, 1_000);
        assert_eq!(batch.len(), 2);
        let (batch, rest) = take_batch(rest.expect("kept"), &mut rx, 1, 1_000);
        assert_eq!(batch.len(), 1);
        assert!(rest.is_none());
        // A write that alone fills the budget still makes a batch.
        let (batch, _) = take_batch(pending(9, 1_000), &mut rx, 10, 1_000);
        assert_eq!(batch.len(), 1);
    }

    #[tokio::test]
    async fn a_write_larger_than_a_batch_is_refused() {
        let router = InProcRouter::new();
        let me = PeerId::synthetic(1);
        let config = RaftConfig {
            batch_bytes_max: 16,
            append_entries_bytes_max: 16,
            ..RaftConfig::fast_for_tests()
        };
        let raft = ClusterRaft::start(
            &me,
            "inproc/1",
            config,
            crate::Boot::CreateIfEmpty { incarnation: 103 },
            MemStore::new(),
            router.transport(me.as_str()),
        )
        .await
        .expect("start");
        let result = raft.write(pin(1, None)).await;
        assert!(
            matches!(result, Err(WriteError::TooLarge { max: 16, .. })),
            "{result:?}"
        );
        raft.shutdown().await;
    }
}

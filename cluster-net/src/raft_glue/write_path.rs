//! The client write path: a batcher that groups concurrent writes into one
//! log entry, and the leader call that forwards them (with bounded retries
//! when leadership moves).

use std::sync::{Arc, Weak};
use std::time::Duration;

use cluster_core::pinset::{ApplyResult, Entry};
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
    /// The transport failed after the request may have been delivered.
    Transport(TransportError),
}

impl ClusterRaft {
    /// Replicates one write and returns its result once it is committed and
    /// applied on the leader and on this peer (read-your-writes). Works on
    /// any peer; concurrent writes are batched into one log entry. On `Timeout` or `Transport` errors the write may still be
    /// applied: give entries a `RequestId` so that retries apply once.
    pub async fn write(&self, entry: Entry) -> Result<ApplyResult, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .writes
            .send(PendingWrite { entry, reply })
            .await
            .map_err(|_| WriteError::Shutdown)?;
        answer.await.map_err(|_| WriteError::Shutdown)?
    }

    /// Replicates several writes as one log entry (no further batching).
    pub async fn write_batch(&self, entries: Vec<Entry>) -> Result<Vec<ApplyResult>, WriteError> {
        let committed = self.inner.propose(entries).await?;
        self.inner.wait_applied_locally(&committed).await;
        Ok(committed.results)
    }
}

/// Drains the write queue into batches: waits for a free proposal slot,
/// then takes every queued write (up to the batch limit) into one proposal.
/// Writes arriving while proposals are in flight accumulate for the next one.
pub(crate) async fn run_batcher(inner: Weak<Inner>, mut queue: mpsc::Receiver<PendingWrite>) {
    let (batch_max, slots) = match inner.upgrade() {
        Some(i) => (
            i.config.batch_entries_max,
            Arc::new(Semaphore::new(i.config.proposals_in_flight_max)),
        ),
        None => return,
    };
    while let Some(first) = queue.recv().await {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < batch_max {
            match queue.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        runtime::spawn(async move {
            let (entries, replies): (Vec<Entry>, Vec<_>) =
                batch.into_iter().map(|w| (w.entry, w.reply)).unzip();
            let expected = entries.len();
            let outcome = inner.propose(entries).await;
            // The slot is free as soon as the leader answered: waiting for
            // the local apply below does not hold back the next batch.
            drop(permit);
            match outcome {
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
        });
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
        // so an ambiguous transport failure may be retried.
        let idempotent = entries.iter().all(|e| e.request.is_some());
        let limit = Duration::from_millis(self.config.write_timeout_ms);
        let call = self.call_leader(None, RequestBody::Forward(entries), idempotent);
        let deadline = <Runtime as AsyncRuntime>::Instant::now() + limit;
        match runtime::timeout(limit, call).await {
            None => Err(WriteError::Timeout {
                ms: self.config.write_timeout_ms,
            }),
            Some(Err(LeaderCallError::NoLeader)) => Err(WriteError::NoLeader),
            Some(Err(LeaderCallError::Transport(e))) => Err(WriteError::Transport(e)),
            Some(Ok(ResponseBody::Applied { index, results })) => Ok(Committed {
                index,
                results,
                deadline,
            }),
            Some(Ok(ResponseBody::Failed(reason))) => Err(WriteError::Raft(reason)),
            Some(Ok(ResponseBody::Refused(RefusedReason::Shutdown))) => Err(WriteError::Shutdown),
            Some(Ok(other)) => Err(WriteError::Raft(format!("unexpected answer {other:?}"))),
        }
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
    /// `NotLeader` hints. Retries at most [`FORWARD_RETRIES_MAX`] times.
    pub(crate) async fn call_leader(
        self: &Arc<Self>,
        first: Option<NodeInfo>,
        body: RequestBody,
        retry_ambiguous: bool,
    ) -> Result<ResponseBody, LeaderCallError> {
        let mut target = first.or_else(|| self.leader_node());
        for _ in 0..FORWARD_RETRIES_MAX {
            let Some(node) = target.clone() else {
                runtime::sleep(self.retry_delay()).await;
                target = self.leader_node();
                continue;
            };
            let response = if node.peer_id == self.me.peer_id {
                self.serve_at_leader(body.clone()).await
            } else {
                let request = RpcRequest {
                    cluster_id: self.cluster_id.get(),
                    target_incarnation: node.incarnation,
                    body: body.clone(),
                };
                let call = self.transport.call(&node, request);
                let limit = Duration::from_millis(self.config.rpc_timeout_ms);
                let answer = runtime::timeout(limit, call).await.unwrap_or_else(|| {
                    Err(TransportError::Timeout {
                        peer: node.peer_id.clone(),
                    })
                });
                match answer {
                    Ok(r) => r.body,
                    Err(e) if e.not_delivered() || retry_ambiguous => {
                        tracing::debug!(peer = %self.me, target = %node, error = %e, "leader call failed, retrying");
                        runtime::sleep(self.retry_delay()).await;
                        target = self.leader_node().filter(|n| *n != node).or(Some(node));
                        continue;
                    }
                    Err(e) => return Err(LeaderCallError::Transport(e)),
                }
            };
            match response {
                ResponseBody::NotLeader { leader } => {
                    let hint = leader.filter(|l| *l != node);
                    if hint.is_none() {
                        runtime::sleep(self.retry_delay()).await;
                    }
                    target = hint.or_else(|| self.leader_node());
                }
                // This peer's own Raft is shut down: no retry can succeed.
                ResponseBody::Refused(RefusedReason::Shutdown) if node == self.me => {
                    return Ok(ResponseBody::Refused(RefusedReason::Shutdown));
                }
                ResponseBody::Refused(RefusedReason::Shutdown) => {
                    runtime::sleep(self.retry_delay()).await;
                    target = self.leader_node().filter(|n| *n != node);
                }
                other => return Ok(other),
            }
        }
        Err(LeaderCallError::NoLeader)
    }
}

//! `--wait`: poll `GET /pins/{cid}` until enough peers reach the target
//! status (upstream's `WaitFor`, cli.md §1.4). The decision is a pure
//! function of one status answer so it is tested without a cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_core::{Cid, TrackerStatus};

use super::CliError;
use crate::api::client::Client;
use crate::api::types::GlobalPinInfo;

/// How often the status is asked (upstream: every second).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What one status answer says about the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Enough peers are in the target status.
    Reached,
    /// Not yet: `done` of `needed` peers are there; `summary` counts statuses.
    Pending {
        /// Peers in the target status.
        done: usize,
        /// Peers needed.
        needed: usize,
        /// Peers per status, e.g. `pin_queued: 2`.
        summary: String,
    },
    /// A peer is in a status the target cannot follow from.
    Failed {
        /// The peer (name, else id).
        peer: String,
        /// Its status.
        status: TrackerStatus,
        /// Its error text.
        error: String,
    },
}

/// Where `info` stands on the way to `target`. `limit > 0`: that many peers
/// must reach it; otherwise every peer (ignoring `remote` ones when the
/// target is `pinned`, which hold no copy by design).
pub fn check(info: &GlobalPinInfo, target: TrackerStatus, limit: i32) -> Progress {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut considered = 0;
    let mut done = 0;
    for (id, p) in &info.peer_map {
        if matches!(
            p.status,
            TrackerStatus::Undefined
                | TrackerStatus::ClusterError
                | TrackerStatus::PinError
                | TrackerStatus::UnpinError
        ) {
            return Progress::Failed {
                peer: if p.peername.is_empty() {
                    id.clone()
                } else {
                    p.peername.clone()
                },
                status: p.status,
                error: p.error.clone(),
            };
        }
        if target == TrackerStatus::Pinned && p.status == TrackerStatus::Remote {
            continue;
        }
        considered += 1;
        if p.status == target {
            done += 1;
        }
        *counts.entry(p.status.as_str()).or_default() += 1;
    }
    let needed = match usize::try_from(limit) {
        Ok(n) if n > 0 => n,
        _ => considered,
    };
    if considered > 0 && done >= needed {
        return Progress::Reached;
    }
    let summary = counts
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    Progress::Pending {
        done,
        needed,
        summary,
    }
}

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitSpec {
    /// The status wanted.
    pub target: TrackerStatus,
    /// Peers that must reach it; 0 or less: every peer.
    pub limit: i32,
    /// Give up after this long (`None`: never).
    pub timeout: Option<Duration>,
    /// Time between two polls.
    pub interval: Duration,
}

/// Polls until [`check`] says reached (answers the last status), failed,
/// or the spec's timeout (if any) passes. `progress` gets a one-line
/// summary after each poll that did not end the wait.
pub async fn wait_for(
    client: &Client,
    host: &str,
    cid: &Cid,
    spec: WaitSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<GlobalPinInfo, CliError> {
    let WaitSpec {
        target,
        limit,
        timeout,
        interval,
    } = spec;
    let started = tokio::time::Instant::now();
    let poll = async {
        loop {
            let info = client
                .status(cid, false)
                .await
                .map_err(|e| CliError::from_client(host, e))?;
            match check(&info, target, limit) {
                Progress::Reached => return Ok(info),
                Progress::Failed {
                    peer,
                    status,
                    error,
                } => {
                    return Err(CliError::WaitFailed {
                        cid: cid.to_string(),
                        peer,
                        status: status.to_string(),
                        error,
                    })
                }
                Progress::Pending {
                    done,
                    needed,
                    summary,
                } => progress(&format!(
                    "waiting for {cid} to be {target}: {done}/{needed} peers ({summary}), {}",
                    super::humanize::elapsed(started.elapsed())
                )),
            }
            tokio::time::sleep(interval).await;
        }
    };
    match timeout {
        None => poll.await,
        Some(after) => tokio::time::timeout(after, poll).await.unwrap_or_else(|_| {
            Err(CliError::WaitTimeout {
                cid: cid.to_string(),
                target: target.to_string(),
                after,
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::time::Timestamp;
    use crate::api::types::PinInfoShort;

    fn info(statuses: &[TrackerStatus]) -> GlobalPinInfo {
        GlobalPinInfo {
            cid: Cid::parse("QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq").unwrap(),
            name: String::new(),
            allocations: vec![],
            origins: vec![],
            created: Timestamp(None),
            metadata: None,
            peer_map: statuses
                .iter()
                .enumerate()
                .map(|(n, s)| {
                    (
                        format!("peer{n}"),
                        PinInfoShort {
                            peername: String::new(),
                            ipfs_peer_id: None,
                            ipfs_peer_addresses: None,
                            status: *s,
                            timestamp: Timestamp(None),
                            error: String::new(),
                            attempt_count: 0,
                            priority_pin: false,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn waits_for_every_peer_or_the_limit_and_fails_on_errors() {
        use TrackerStatus::*;
        let pinned = Pinned;
        assert_eq!(
            check(&info(&[Pinned, Remote]), pinned, 0),
            Progress::Reached
        );
        assert!(matches!(
            check(&info(&[Pinned, PinQueued]), pinned, 0),
            Progress::Pending {
                done: 1,
                needed: 2,
                ..
            }
        ));
        assert_eq!(
            check(&info(&[Pinned, PinQueued]), pinned, 1),
            Progress::Reached
        );
        assert!(matches!(
            check(&info(&[Pinned, PinError]), pinned, 1),
            Progress::Failed {
                status: PinError,
                ..
            }
        ));
        assert!(matches!(
            check(&info(&[]), pinned, 0),
            Progress::Pending { .. }
        ));
        assert_eq!(
            check(&info(&[Unpinned, Unpinned]), Unpinned, 0),
            Progress::Reached
        );
    }
}

//! A fake IPFS daemon per peer, shaped like Kubo where the tracker can tell:
//! one pin per CID with its mode (recursive or direct; a recursive pin covers
//! a direct request), pins the cluster made carry its mark, the user pins and
//! unpins by hand behind the tracker's back. Injectable faults: errors (some
//! after the work was done), answers slower than the tracker's op timeout,
//! restarts that lose the work in flight, outages (the daemon is down:
//! every request is refused at once, so operations run out of attempts), and
//! a stuck daemon (requests hang, unanswered, until it recovers; only the
//! caller's own deadline gets it going again).
//! Some content is large: pinning it where the daemon does not hold it yet
//! takes seconds of fetching (longer than a repair round, shorter than the
//! tracker's op timeout), as a real DAG fetched over bitswap does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cluster_core::tracker::{IpfsPinType, ListedPin};
use cluster_core::{Cid, PinMode};
use cluster_node::ipfs::{BoxFuture, IpfsConnector, IpfsError, IpfsId, RepoStat};
use madsim::rand::{thread_rng, Rng};

/// Normal answer latency range, in ms.
const LATENCY_MS: (u64, u64) = (1, 30);
/// Latency while the daemon is slow, in ms (beyond the tracker's op timeout at the top).
const SLOW_LATENCY_MS: (u64, u64) = (500, 14_000);

/// One CID in this many is large content (decided by its bytes, so every
/// daemon agrees).
const LARGE_CONTENT_ONE_IN: u64 = 10;
/// How long fetching large content takes, in ms: past a repair round (2 s),
/// so a replacement is still fetching when the leader plans the next one,
/// and below the smallest op timeout the simulator draws (4 s).
const LARGE_FETCH_MS: (u64, u64) = (2_100, 3_800);

/// True when `cid` is large content (slow to fetch).
pub(crate) fn is_large(cid: &Cid) -> bool {
    let folded = cid
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    folded % LARGE_CONTENT_ONE_IN == 0
}

/// One pin held by the daemon.
pub type HeldPin = crate::checkers::DaemonPin;

/// One daemon. It lives outside the cluster peer, so a peer crash keeps its pins.
#[derive(Default)]
pub struct FakeIpfs {
    state: Mutex<DaemonState>,
}

#[derive(Default)]
struct DaemonState {
    pins: BTreeMap<Cid, HeldPin>,
    /// CIDs the user pinned by hand while IPFS did not hold them: theirs to
    /// keep, unless the cluster later turned the pin into its own (a direct
    /// user pin made recursive for the cluster: `true`).
    user_pins: BTreeMap<Cid, (PinMode, bool)>,
    /// Cluster `pin/add`s being served, per CID: a hand pin then would race
    /// with it, which not even Kubo could tell apart, so none is made.
    pins_in_flight: BTreeMap<Cid, u32>,
    error_per_mille: u32,
    slow: bool,
    /// Down: every request is refused, as a stopped Kubo refuses connections.
    down: bool,
    /// Stuck: requests get no answer until the daemon recovers.
    hung: bool,
    restarts: u64,
}

/// How long the tracker waits for an answer before it counts as failed, in ms
/// (the simulator's tracker setting; answers later than this exercise the
/// tracker's late-answer path).
pub const TRACKER_OP_TIMEOUT_MS: u64 = 10_000;

impl FakeIpfs {
    fn state(&self) -> MutexGuard<'_, DaemonState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the share of requests that fail, in thousandths.
    pub fn set_error_per_mille(&self, per_mille: u32) {
        self.state().error_per_mille = per_mille;
    }

    /// Makes answers slow (seconds, some past the op timeout) or normal again.
    pub fn set_slow(&self, slow: bool) {
        self.state().slow = slow;
    }

    /// Takes the daemon down (every request refused at once) until [`Self::heal`].
    pub fn set_down(&self) {
        self.state().down = true;
    }

    /// Makes the daemon stuck until [`Self::heal`]: new requests hang, then
    /// fail as their connections are reset.
    pub fn set_hung(&self) {
        self.state().hung = true;
    }

    /// Restarts the daemon: requests in flight fail and change nothing.
    pub fn restart(&self) {
        self.state().restarts += 1;
    }

    /// Clears every fault.
    pub fn heal(&self) {
        let mut s = self.state();
        s.error_per_mille = 0;
        s.slow = false;
        s.down = false;
        s.hung = false;
    }

    /// The user pins `cid` by hand. Only a CID IPFS does not hold becomes the
    /// user's own (Kubo keeps one pin per CID: pinning a held CID changes nothing).
    pub fn pin_by_hand(&self, cid: &Cid, mode: PinMode) -> bool {
        let mut s = self.state();
        if s.pins.contains_key(cid) || s.pins_in_flight.contains_key(cid) {
            return false;
        }
        s.pins.insert(
            cid.clone(),
            HeldPin {
                mode,
                by_cluster: false,
            },
        );
        s.user_pins.insert(cid.clone(), (mode, false));
        true
    }

    /// Someone removes one of the cluster's pins by hand, behind the tracker's back.
    pub fn unpin_cluster_pin_by_hand(&self, pick: usize) -> Option<Cid> {
        let mut s = self.state();
        let ours: Vec<Cid> = s
            .pins
            .iter()
            .filter(|(_, p)| p.by_cluster)
            .map(|(c, _)| c.clone())
            .collect();
        if ours.is_empty() {
            return None;
        }
        let cid = ours[pick % ours.len()].clone();
        s.pins.remove(&cid);
        Some(cid)
    }

    /// Every pin it holds now.
    pub fn pins(&self) -> BTreeMap<Cid, HeldPin> {
        self.state().pins.clone()
    }

    /// The user's own pins (made by hand on CIDs IPFS did not hold) that
    /// must still be there, with their mode; pins the cluster converted to
    /// its own (direct made recursive) are left out.
    pub fn user_pins(&self) -> BTreeMap<Cid, PinMode> {
        self.state()
            .user_pins
            .iter()
            .filter(|(_, (_, converted))| !converted)
            .map(|(c, (m, _))| (c.clone(), *m))
            .collect()
    }

    /// Waits like a daemon would; says whether the request survived and
    /// whether, having survived, its answer is an error after the work.
    async fn serve(&self, what: &str) -> Result<Answer, IpfsError> {
        self.serve_after(what, 0).await
    }

    /// [`Self::serve`] for a request whose work itself takes `work_ms` (a
    /// fetch): a restart meanwhile loses it too.
    async fn serve_after(&self, what: &str, work_ms: u64) -> Result<Answer, IpfsError> {
        let (restarts, slow, down, hung) = {
            let s = self.state();
            (s.restarts, s.slow, s.down, s.hung)
        };
        if hung {
            crate::probes::hit("ipfs: request hung on a stuck daemon");
            // Half of them lose their connection silently (no reset ever
            // arrives): only the caller's own deadline ends the wait.
            if thread_rng().gen_bool(0.5) {
                crate::probes::hit("ipfs: answer lost for good");
                std::future::pending::<()>().await;
            }
            while self.state().hung {
                madsim::time::sleep(Duration::from_millis(100)).await;
            }
            return Err(IpfsError::Unreachable {
                path: what.to_string(),
                reason: "connection reset (the stuck daemon recovered)".into(),
            });
        }
        if down {
            crate::probes::hit("ipfs: request refused by a daemon that is down");
            madsim::time::sleep(Duration::from_millis(1)).await;
            return Err(IpfsError::Unreachable {
                path: what.to_string(),
                reason: "dial tcp 127.0.0.1:5001: connect: connection refused".into(),
            });
        }
        let (lo, hi) = if slow { SLOW_LATENCY_MS } else { LATENCY_MS };
        let ms = thread_rng().gen_range(lo..=hi) + work_ms;
        madsim::time::sleep(Duration::from_millis(ms)).await;
        let s = self.state();
        if ms > TRACKER_OP_TIMEOUT_MS {
            crate::probes::hit("ipfs: answer later than the op timeout");
        }
        if s.restarts != restarts {
            return Err(IpfsError::Unreachable {
                path: what.to_string(),
                reason: "connection reset (ipfs daemon restarted)".into(),
            });
        }
        let roll = thread_rng().gen_range(0..1000);
        if roll < s.error_per_mille / 2 {
            return Err(daemon_error(what, "context deadline exceeded"));
        }
        if roll < s.error_per_mille {
            crate::probes::hit("ipfs: error after the work was done");
            return Ok(Answer::ErrorAfterWork(daemon_error(
                what,
                "context canceled (the daemon finished anyway)",
            )));
        }
        Ok(Answer::Ok)
    }

    /// `pin/add` with the cluster's mark; depth 0 is a direct pin.
    pub async fn pin(&self, cid: &Cid, max_depth: i32) -> Result<(), IpfsError> {
        let fetch_ms = {
            let mut s = self.state();
            *s.pins_in_flight.entry(cid.clone()).or_default() += 1;
            if is_large(cid) && !s.pins.contains_key(cid) {
                crate::probes::hit("ipfs: large content fetched for seconds");
                thread_rng().gen_range(LARGE_FETCH_MS.0..=LARGE_FETCH_MS.1)
            } else {
                0
            }
        };
        let served = self.serve_after("pin/add", fetch_ms).await;
        {
            let mut s = self.state();
            if let Some(n) = s.pins_in_flight.get_mut(cid) {
                *n -= 1;
                if *n == 0 {
                    s.pins_in_flight.remove(cid);
                }
            }
        }
        let answer = served?;
        if max_depth == 0 {
            crate::probes::hit("ipfs: direct pin asked");
        }
        let mode = if max_depth == 0 {
            PinMode::Direct
        } else {
            PinMode::Recursive
        };
        {
            let mut guard = self.state();
            let s = &mut *guard;
            match s.pins.get_mut(cid) {
                None => {
                    s.pins.insert(
                        cid.clone(),
                        HeldPin {
                            mode,
                            by_cluster: true,
                        },
                    );
                }
                // A recursive pin already covers a direct request.
                Some(held) if held.mode == PinMode::Recursive || mode == PinMode::Direct => {}
                // Direct becomes recursive, keeping whose pin it was.
                Some(held) => {
                    held.mode = PinMode::Recursive;
                    if let Some(user) = s.user_pins.get_mut(cid) {
                        user.1 = true;
                    }
                }
            }
        }
        answer.into_result()
    }

    /// `pin/rm`; not pinned counts as done.
    pub async fn unpin(&self, cid: &Cid) -> Result<(), IpfsError> {
        let answer = self.serve("pin/rm").await?;
        {
            // A user's pin removed here is lost: the user-pins checker looks.
            self.state().pins.remove(cid);
        }
        answer.into_result()
    }

    /// `pin/ls` of every pin, with its type and mark.
    pub async fn list(&self) -> Result<Vec<ListedPin>, IpfsError> {
        self.serve("pin/ls").await?.into_result()?;
        Ok(self
            .state()
            .pins
            .iter()
            .map(|(cid, held)| listed(cid, held))
            .collect())
    }
}

/// A listing line for one held pin.
fn listed(cid: &Cid, held: &HeldPin) -> ListedPin {
    ListedPin {
        cid: cid.clone(),
        // As Kubo lists them: no depth for recursive pins.
        pin_type: match held.mode {
            PinMode::Recursive => IpfsPinType::Recursive { max_depth: None },
            PinMode::Direct => IpfsPinType::Direct,
        },
        by_cluster: held.by_cluster,
    }
}

/// How a request that survived ends.
enum Answer {
    Ok,
    ErrorAfterWork(IpfsError),
}

fn daemon_error(path: &str, message: &str) -> IpfsError {
    IpfsError::Daemon {
        path: path.to_string(),
        message: message.to_string(),
    }
}

impl Answer {
    fn into_result(self) -> Result<(), IpfsError> {
        match self {
            Answer::Ok => Ok(()),
            Answer::ErrorAfterWork(e) => Err(e),
        }
    }
}

/// One peer's fake daemon behind the node's connector seam: the drivers of
/// `cluster-node` talk to it exactly as they talk to Kubo in the product.
pub struct SimIpfs {
    daemon: Arc<FakeIpfs>,
    /// Which peer's daemon (names its fake identity and address).
    index: usize,
    /// The repo's free space, in bytes (`repo/stat`).
    free_space_bytes: u64,
}

impl SimIpfs {
    /// The connector of peer `index` to `daemon`.
    pub fn new(daemon: Arc<FakeIpfs>, index: usize, free_space_bytes: u64) -> SimIpfs {
        SimIpfs {
            daemon,
            index,
            free_space_bytes,
        }
    }
}

impl IpfsConnector for SimIpfs {
    fn pin(&self, cid: &Cid, max_depth: i32) -> BoxFuture<Result<(), IpfsError>> {
        let (daemon, cid) = (Arc::clone(&self.daemon), cid.clone());
        Box::pin(async move { daemon.pin(&cid, max_depth).await })
    }

    fn unpin(&self, cid: &Cid) -> BoxFuture<Result<(), IpfsError>> {
        let (daemon, cid) = (Arc::clone(&self.daemon), cid.clone());
        Box::pin(async move { daemon.unpin(&cid).await })
    }

    fn list_pins(&self) -> BoxFuture<Result<Vec<ListedPin>, IpfsError>> {
        let daemon = Arc::clone(&self.daemon);
        Box::pin(async move { daemon.list().await })
    }

    fn repo_stat(&self) -> BoxFuture<Result<RepoStat, IpfsError>> {
        let (daemon, free) = (Arc::clone(&self.daemon), self.free_space_bytes);
        Box::pin(async move {
            daemon.serve("repo/stat").await?.into_result()?;
            let held = daemon.state().pins.len() as u64;
            Ok(RepoStat {
                repo_size: held,
                storage_max: free.saturating_add(held),
            })
        })
    }

    fn id(&self) -> BoxFuture<Result<IpfsId, IpfsError>> {
        let (daemon, index) = (Arc::clone(&self.daemon), self.index);
        Box::pin(async move {
            daemon.serve("id").await?.into_result()?;
            Ok(IpfsId {
                peer_id: format!("ipfs-daemon-{index}"),
                addresses: vec![format!("/ip4/10.0.0.{index}/tcp/4001")],
            })
        })
    }

    fn swarm_connect(&self, _multiaddr: &str) -> BoxFuture<Result<(), IpfsError>> {
        let daemon = Arc::clone(&self.daemon);
        Box::pin(async move {
            daemon.serve("swarm/connect").await?.into_result()?;
            crate::probes::hit("ipfs: daemons connected for bitswap");
            Ok(())
        })
    }

    fn add(
        &self,
        request: cluster_node::ipfs::AddRequest,
    ) -> BoxFuture<Result<(), cluster_node::ipfs::IpfsError>> {
        Box::pin(async move {
            cluster_node::ipfs::mem_add::add_in_memory(request, 64 << 20)
                .await
                .map(|_| ())
        })
    }
}

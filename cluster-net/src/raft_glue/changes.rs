//! Which pins changed since a reader last looked: the pin tracker's feed.
//!
//! Applying an entry records the CIDs its commands changed (O(changed) per
//! entry); a snapshot install, a peer removal or an overflow of the pending
//! set asks the reader for one full pass instead. The reader takes what
//! accumulated and reads those pins from the pinset, so it never rescans the
//! whole pinset per applied index.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use cluster_core::pinset::{Applied, ApplyResult, PinChange};
use cluster_core::Cid;
use tokio::sync::Notify;

/// Pending CIDs past this many are dropped for one full pass: a reader far
/// behind then costs one scan, not memory that grows with the backlog.
pub const PENDING_CIDS_MAX: usize = 65_536;

/// What changed since the last [`PinsetChanges::take`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changed {
    /// Re-read every pin (and forget any not in the pinset any more).
    pub full: bool,
    /// Re-read these pins (some may be gone now). Empty when `full`.
    pub cids: BTreeSet<Cid>,
}

impl Changed {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.full && self.cids.is_empty()
    }
}

/// The feed between the state machine (writer) and one reader.
#[derive(Debug)]
pub struct PinsetChanges {
    pending: Mutex<Changed>,
    notify: Notify,
}

impl Default for PinsetChanges {
    /// A fresh feed asks for a full pass: the reader starts knowing nothing.
    fn default() -> Self {
        PinsetChanges {
            pending: Mutex::new(Changed {
                full: true,
                cids: BTreeSet::new(),
            }),
            notify: Notify::new(),
        }
    }
}

impl PinsetChanges {
    fn pending(&self) -> MutexGuard<'_, Changed> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what one applied batch changed.
    pub(crate) fn record_batch(&self, results: &[ApplyResult]) {
        let mut pending = self.pending();
        let mut any = false;
        for result in results {
            match result {
                Ok(Applied::Pinned {
                    change: PinChange::Unchanged,
                    ..
                })
                | Err(_) => {}
                Ok(Applied::Pinned { cid, .. }) | Ok(Applied::Unpinned { cid }) => {
                    any = true;
                    if !pending.full {
                        pending.cids.insert(cid.clone());
                    }
                }
                Ok(Applied::PeerRemoved { .. }) => {
                    any = true;
                    pending.full = true;
                }
            }
        }
        if pending.full || pending.cids.len() > PENDING_CIDS_MAX {
            pending.full = true;
            pending.cids.clear();
        }
        drop(pending);
        if any {
            self.notify.notify_one();
        }
    }

    /// Records that the whole pinset was replaced (a snapshot installed).
    pub(crate) fn record_replaced(&self) {
        let mut pending = self.pending();
        pending.full = true;
        pending.cids.clear();
        drop(pending);
        self.notify.notify_one();
    }

    /// Takes what changed since the last call.
    pub fn take(&self) -> Changed {
        std::mem::take(&mut *self.pending())
    }

    /// Waits until something was recorded after the last [`take`](Self::take)
    /// (returns at once if a change is pending). One reader only.
    pub async fn changed(&self) {
        if !self.pending().is_empty() {
            return;
        }
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_core::pinset::ApplyError;
    use cluster_core::PeerId;

    fn cid(n: u8) -> Cid {
        let mut bytes = vec![0x12, 0x20];
        bytes.extend_from_slice(&[n; 32]);
        Cid::from_bytes(&bytes).expect("valid cid")
    }

    #[test]
    fn a_new_feed_asks_for_one_full_pass() {
        let feed = PinsetChanges::default();
        assert!(feed.take().full);
        assert!(feed.take().is_empty());
    }

    #[test]
    fn applied_pins_and_unpins_are_recorded_unchanged_and_refused_are_not() {
        let feed = PinsetChanges::default();
        feed.take();
        let (a, b, c) = (cid(1), cid(2), cid(3));
        feed.record_batch(&[
            Ok(Applied::Pinned {
                cid: a.clone(),
                change: PinChange::Created,
            }),
            Ok(Applied::Pinned {
                cid: b.clone(),
                change: PinChange::Unchanged,
            }),
            Ok(Applied::Unpinned { cid: c.clone() }),
            Err(ApplyError::NotFound(cid(4))),
        ]);
        let changed = feed.take();
        assert!(!changed.full);
        assert_eq!(changed.cids, BTreeSet::from([a, c]));
    }

    #[test]
    fn a_peer_removal_or_a_snapshot_asks_for_a_full_pass() {
        let feed = PinsetChanges::default();
        feed.take();
        feed.record_batch(&[Ok(Applied::PeerRemoved {
            peer: PeerId::synthetic(1),
            pins_affected: 1,
            under_replicated: 0,
        })]);
        assert_eq!(
            feed.take(),
            Changed {
                full: true,
                cids: BTreeSet::new()
            }
        );
        feed.record_replaced();
        assert!(feed.take().full);
    }
}

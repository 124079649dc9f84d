//! Per-CID bookkeeping of the tracker.

use super::Desire;
use crate::Millis;

/// What the tracker believes IPFS has for a CID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum IpfsView {
    #[default]
    Unknown,
    Pinned,
    NotPinned,
}

/// Whose pin IPFS holds for a CID, as far as the tracker knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Owner {
    /// No pin, or a user's own: the cluster never removes it.
    #[default]
    NotOurs,
    /// The listing showed the cluster's mark (made before a restart, maybe).
    Marked,
    /// A pin operation of this tracker made it.
    Made,
}

impl Owner {
    pub fn is_ours(self) -> bool {
        self != Owner::NotOurs
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpKind {
    Pin { max_depth: i32 },
    Unpin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting; queue entries with another generation are stale.
    Queued {
        generation: u64,
        priority: bool,
    },
    InFlight {
        op: super::OpId,
        deadline: Millis,
    },
    /// `retry_at` is `None` once automatic attempts are used up.
    Failed {
        retry_at: Option<Millis>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Op {
    pub kind: OpKind,
    pub phase: Phase,
    pub attempts: u32,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Item {
    pub desire: Option<Desire>,
    pub ipfs: IpfsView,
    /// Whether the pin IPFS holds is the cluster's (so the cluster may
    /// unpin it). Wanting a CID does not make a user's pin of it ours.
    pub owner: Owner,
    pub op: Option<Op>,
}

impl Item {
    /// What IPFS is taken to have. Before the first listing nothing is known
    /// and nothing is decided; after it, a CID the listing did not mention (one
    /// that appeared later) counts as not pinned: pinning it again is harmless.
    pub fn ipfs_view(&self, have_listing: bool) -> IpfsView {
        match self.ipfs {
            IpfsView::Unknown if have_listing => IpfsView::NotPinned,
            view => view,
        }
    }

    /// The operation the item needs, or `None` when IPFS already matches.
    pub fn wanted_op(&self, have_listing: bool) -> Option<OpKind> {
        let view = self.ipfs_view(have_listing);
        match self.desire {
            Some(Desire::Pin { max_depth }) => {
                (view == IpfsView::NotPinned).then_some(OpKind::Pin { max_depth })
            }
            // Only what the cluster pinned here is unpinned here (after a
            // re-allocation or a removal); a user's own pin of the same CID stays.
            Some(Desire::Remote) if self.owner.is_ours() => {
                (view == IpfsView::Pinned).then_some(OpKind::Unpin)
            }
            None if self.owner.is_ours() => (view != IpfsView::NotPinned).then_some(OpKind::Unpin),
            None | Some(Desire::Remote) | Some(Desire::Sharded) => None,
        }
    }

    /// Nothing wanted, nothing pending, nothing of ours in IPFS: forget it.
    pub fn is_idle_and_empty(&self) -> bool {
        self.desire.is_none()
            && self.op.is_none()
            && !(self.owner.is_ours() && self.ipfs != IpfsView::NotPinned)
    }
}

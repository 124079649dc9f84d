//! Per-CID bookkeeping of the tracker.

use super::Desire;
use crate::Millis;

/// What the tracker believes IPFS has for a CID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum IpfsView {
    #[default]
    Unknown,
    Pinned(Held),
    NotPinned,
    /// An operation is outstanding past its deadline: it may yet take effect.
    Unsure,
}

/// A pin IPFS holds (an indirect one is no pin of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    Direct,
    /// To this depth (-1: all), `None` when the daemon did not say.
    Recursive(Option<i32>),
}

impl Held {
    /// The pin a pin operation with `max_depth` makes.
    pub fn made_with(max_depth: i32) -> Held {
        match max_depth {
            0 => Held::Direct,
            d => Held::Recursive(Some(d.max(-1))),
        }
    }

    /// Whether this pin holds at least what `max_depth` asks for. A pin that
    /// holds more serves too: Kubo cannot narrow a pin by pinning again, and
    /// the cluster never weakens a user's pin.
    pub fn covers(self, max_depth: i32) -> bool {
        match self {
            Held::Direct => max_depth == 0,
            Held::Recursive(None | Some(-1)) => true,
            Held::Recursive(Some(depth)) => (0..=depth).contains(&max_depth),
        }
    }
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
    /// Whether the tracker's pinned count includes this item: kept in step
    /// with `ipfs` by `Tracker::reconcile_item`, so the count is not a pass
    /// over every item (a million of them on a large peer).
    pub counted_pinned: bool,
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

    /// Whether what IPFS holds serves a pin to `max_depth`.
    pub fn is_pinned_as(&self, max_depth: i32) -> bool {
        match self.ipfs {
            IpfsView::Pinned(held) => held.covers(max_depth),
            IpfsView::Unknown | IpfsView::NotPinned | IpfsView::Unsure => false,
        }
    }

    /// The operation the item needs, or `None` when IPFS already matches.
    /// `desired_complete`: the desire of every CID is known (see
    /// [`Input::DesiredComplete`](super::Input::DesiredComplete)).
    pub fn wanted_op(&self, have_listing: bool, desired_complete: bool) -> Option<OpKind> {
        let view = self.ipfs_view(have_listing);
        match self.desire {
            Some(Desire::Pin { max_depth }) => (view != IpfsView::Unknown
                && !self.is_pinned_as(max_depth))
            .then_some(OpKind::Pin { max_depth }),
            // Only what the cluster pinned here is unpinned here (after a
            // re-allocation or a removal); a user's own pin of the same CID stays.
            None | Some(Desire::Remote) | Some(Desire::Sharded) => {
                let removable = match self.owner {
                    Owner::NotOurs => false,
                    Owner::Marked => desired_complete,
                    Owner::Made => true,
                };
                let maybe_pinned = matches!(view, IpfsView::Pinned(_) | IpfsView::Unsure);
                (removable && maybe_pinned).then_some(OpKind::Unpin)
            }
        }
    }

    /// A cluster pin known only from its mark, unwanted as far as the
    /// desired set goes, which is not complete yet: it waits.
    pub fn awaits_desired_set(&self, desired_complete: bool) -> bool {
        !desired_complete
            && self.owner == Owner::Marked
            && !matches!(self.desire, Some(Desire::Pin { .. }))
            && matches!(self.ipfs, IpfsView::Pinned(_) | IpfsView::Unsure)
    }

    /// Nothing wanted, nothing pending, nothing of ours in IPFS: forget it.
    pub fn is_idle_and_empty(&self) -> bool {
        self.desire.is_none()
            && self.op.is_none()
            && !(self.owner.is_ours() && self.ipfs != IpfsView::NotPinned)
    }
}

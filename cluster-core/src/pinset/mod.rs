//! The shared pinset: the deterministic state machine that Raft replicates.
//!
//! `apply` is a pure function of the state and the entry: it never reads a
//! clock, metrics or IPFS, so every peer that applies the same log holds the
//! same pinset. Invalid commands are answered with a typed error and leave the
//! state untouched.

mod command;
mod snapshot;
mod stored;

use std::collections::{BTreeMap, VecDeque};

pub use command::{Applied, ApplyError, ApplyResult, Command, Entry, PinChange, RequestId};
pub use snapshot::{SnapshotError, SNAPSHOT_VERSION};

use crate::pin::{Pin, PinMode, PinType};
use crate::{Cid, Millis, PeerId};
use stored::{PeerPool, StoredPin};

/// How many recent client requests are remembered for de-duplication.
pub const RECENT_REQUESTS_MAX: usize = 16_384;

/// The replicated pinset.
#[derive(Debug, Clone, Default)]
pub struct Pinset {
    pins: BTreeMap<Cid, StoredPin>,
    pool: PeerPool,
    applied_index: u64,
    recent: RecentRequests,
}

/// Answers to recently applied client requests, oldest first, so a retry gets
/// the first answer instead of being applied twice.
#[derive(Debug, Clone, Default, PartialEq)]
struct RecentRequests {
    by_id: BTreeMap<RequestId, (u64, ApplyResult)>,
    order: VecDeque<RequestId>,
}

impl RecentRequests {
    fn get(&self, id: &RequestId) -> Option<&ApplyResult> {
        self.by_id.get(id).map(|(_, r)| r)
    }

    fn remember(&mut self, id: RequestId, index: u64, result: ApplyResult) {
        if self.by_id.insert(id, (index, result)).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > RECENT_REQUESTS_MAX {
            let oldest = self
                .order
                .pop_front()
                .expect("invariant: order is not empty");
            self.by_id.remove(&oldest);
        }
        debug_assert_eq!(self.order.len(), self.by_id.len());
    }
}

impl Pinset {
    /// An empty pinset.
    pub fn new() -> Pinset {
        Pinset::default()
    }

    /// Applies the entry at log position `index` (which must exceed every index
    /// applied before) and returns its answer.
    pub fn apply(&mut self, index: u64, entry: &Entry) -> ApplyResult {
        self.advance_to(index);
        self.apply_one(index, entry)
    }

    /// Applies several entries that share log position `index` (a batch of
    /// concurrent client writes proposed as one Raft entry), in order.
    pub fn apply_batch(&mut self, index: u64, entries: &[Entry]) -> Vec<ApplyResult> {
        self.advance_to(index);
        entries.iter().map(|e| self.apply_one(index, e)).collect()
    }

    fn apply_one(&mut self, index: u64, entry: &Entry) -> ApplyResult {
        if let Some(id) = entry.request {
            if let Some(previous) = self.recent.get(&id) {
                return previous.clone();
            }
        }
        let result = match &entry.command {
            Command::Pin(pin) => self.apply_pin(pin),
            Command::Unpin { cid } => self.apply_unpin(cid),
            Command::Update {
                from,
                to,
                name,
                expire_at,
                timestamp,
            } => self.apply_update(from, to, name, *expire_at, *timestamp),
            Command::Reallocate { cid, allocations } => self.apply_reallocate(cid, allocations),
            Command::RemovePeer { peer } => Ok(self.apply_remove_peer(peer)),
        };
        if let Some(id) = entry.request {
            self.recent.remember(id, index, result.clone());
        }
        if cfg!(debug_assertions) {
            self.assert_step(&result);
        }
        result
    }

    /// Post-condition of one apply, checked in debug builds (tests, the
    /// simulator): the pin it touched is valid as stored. Cheap enough to run
    /// after every entry, unlike the whole-state [`Pinset::check_invariants`].
    fn assert_step(&self, result: &ApplyResult) {
        if let Ok(Applied::Pinned { cid, .. }) = result {
            let stored = self
                .pins
                .get(cid)
                .expect("invariant: a pinned CID is in the pinset");
            if let Err(e) = stored.to_pin(cid).validate() {
                panic!("invariant: apply stored an invalid pin {cid}: {e}");
            }
            assert!(
                stored.allocations.iter().all(|p| self.pool.is_interned(p)),
                "invariant: allocations of {cid} are interned"
            );
        }
        if let Ok(Applied::Unpinned { pin }) = result {
            assert!(
                !self.pins.contains_key(&pin.cid),
                "invariant: an unpinned CID is gone"
            );
        }
        debug_assert_eq!(self.recent.order.len(), self.recent.by_id.len());
    }

    /// Records that log position `index` was consumed by an entry that does not
    /// touch the pinset (a Raft blank or membership entry).
    pub fn advance_to(&mut self, index: u64) {
        assert!(
            index > self.applied_index || (index == 0 && self.applied_index == 0),
            "applied index must grow: {index} after {}",
            self.applied_index
        );
        self.applied_index = index;
    }

    fn apply_pin(&mut self, pin: &Pin) -> ApplyResult {
        use std::collections::btree_map::Entry as Slot;
        pin.validate()?;
        // One search of the map per pin: this is the hot path of every apply.
        let change = match self.pins.entry(pin.cid.clone()) {
            Slot::Vacant(slot) => {
                slot.insert(StoredPin::from_pin(pin, &mut self.pool));
                PinChange::Created
            }
            Slot::Occupied(mut slot) => {
                let existing = slot.get();
                if existing.pin_type != pin.pin_type {
                    return Err(ApplyError::TypeChange {
                        was: existing.pin_type,
                        new: pin.pin_type,
                    });
                }
                if existing.pin_type == PinType::Data
                    && existing.max_depth != 0
                    && pin.mode() == PinMode::Direct
                {
                    return Err(ApplyError::RecursiveToDirect);
                }
                if existing.to_pin(&pin.cid).same_request(pin) {
                    PinChange::Unchanged
                } else {
                    slot.insert(StoredPin::from_pin(pin, &mut self.pool));
                    PinChange::Updated
                }
            }
        };
        Ok(Applied::Pinned {
            cid: pin.cid.clone(),
            change,
        })
    }

    fn apply_unpin(&mut self, cid: &Cid) -> ApplyResult {
        let stored = self
            .pins
            .get(cid)
            .ok_or_else(|| ApplyError::NotFound(cid.clone()))?;
        if matches!(stored.pin_type, PinType::Shard | PinType::ClusterDag) {
            return Err(ApplyError::NotUnpinnable(stored.pin_type));
        }
        let stored = self
            .pins
            .remove(cid)
            .expect("invariant: checked present above");
        Ok(Applied::Unpinned {
            pin: Box::new(stored.to_pin(cid)),
        })
    }

    fn apply_update(
        &mut self,
        from: &Cid,
        to: &Cid,
        name: &str,
        expire_at: Option<Millis>,
        timestamp: Millis,
    ) -> ApplyResult {
        let source = self
            .pins
            .get(from)
            .ok_or_else(|| ApplyError::NotFound(from.clone()))?;
        if source.pin_type != PinType::Data {
            return Err(ApplyError::NotUpdatable(source.pin_type));
        }
        let mut pin = source.to_pin(from);
        pin.cid = to.clone();
        pin.timestamp = timestamp;
        pin.options.pin_update = Some(from.clone());
        if !name.is_empty() {
            pin.options.name = name.to_string();
        }
        if let Some(at) = expire_at.filter(|at| *at > timestamp) {
            pin.options.expire_at = Some(at);
        }
        self.apply_pin(&pin)
    }

    fn apply_reallocate(&mut self, cid: &Cid, allocations: &[PeerId]) -> ApplyResult {
        let stored = self
            .pins
            .get(cid)
            .ok_or_else(|| ApplyError::NotFound(cid.clone()))?;
        let mut pin = stored.to_pin(cid);
        pin.allocations = allocations.to_vec();
        pin.under_replicated =
            !pin.is_everywhere() && allocations.len() < pin.options.replication_factor_min as usize;
        pin.validate()?;
        let change = if pin.allocations[..] == stored.allocations[..]
            && pin.under_replicated == stored.under_replicated
        {
            PinChange::Unchanged
        } else {
            PinChange::Updated
        };
        self.pins
            .insert(cid.clone(), StoredPin::from_pin(&pin, &mut self.pool));
        Ok(Applied::Pinned {
            cid: cid.clone(),
            change,
        })
    }

    fn apply_remove_peer(&mut self, peer: &PeerId) -> Applied {
        let (mut pins_affected, mut under_replicated) = (0, 0);
        for stored in self.pins.values_mut() {
            if !stored.allocations.contains(peer) {
                continue;
            }
            pins_affected += 1;
            stored.allocations = stored
                .allocations
                .iter()
                .filter(|p| *p != peer)
                .cloned()
                .collect();
            if !stored.is_everywhere() && stored.allocations.len() < stored.rmin as usize {
                stored.under_replicated = true;
                under_replicated += 1;
            }
        }
        self.pool.forget(peer);
        Applied::PeerRemoved {
            peer: peer.clone(),
            pins_affected,
            under_replicated,
        }
    }

    /// The pin stored for `cid`.
    pub fn get(&self, cid: &Cid) -> Option<Pin> {
        self.pins.get(cid).map(|s| s.to_pin(cid))
    }

    /// True when `cid` is in the pinset.
    pub fn contains(&self, cid: &Cid) -> bool {
        self.pins.contains_key(cid)
    }

    /// Number of pins.
    pub fn len(&self) -> usize {
        self.pins.len()
    }

    /// True when there are no pins.
    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }

    /// Index of the last applied log entry.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Every pin, in CID byte order.
    pub fn iter(&self) -> impl Iterator<Item = Pin> + '_ {
        self.pins.iter().map(|(cid, s)| s.to_pin(cid))
    }

    /// Up to `limit` pins after `after` (exclusive), in CID order: one page of a listing.
    pub fn page(&self, after: Option<&Cid>, limit: usize) -> Vec<Pin> {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.pins
            .range((start, Bound::Unbounded))
            .take(limit)
            .map(|(cid, s)| s.to_pin(cid))
            .collect()
    }

    /// Pins flagged under-replicated (left below their minimum by a peer removal).
    pub fn under_replicated(&self) -> impl Iterator<Item = Pin> + '_ {
        self.pins
            .iter()
            .filter(|(_, s)| s.under_replicated)
            .map(|(cid, s)| s.to_pin(cid))
    }

    /// Checks the state's invariants; tests and the simulator call it after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (cid, stored) in &self.pins {
            let pin = stored.to_pin(cid);
            pin.validate()
                .map_err(|e| format!("stored pin {cid} invalid: {e}"))?;
            if let Some(p) = stored
                .allocations
                .iter()
                .find(|p| !self.pool.is_interned(p))
            {
                return Err(format!("pin {cid}: allocation {p} not interned"));
            }
        }
        if self.recent.order.len() != self.recent.by_id.len() {
            return Err("recent-request queue and map disagree".into());
        }
        if let Some((id, _)) = self
            .recent
            .by_id
            .iter()
            .find(|(_, (i, _))| *i > self.applied_index)
        {
            return Err(format!(
                "request {id:?} remembered beyond the applied index"
            ));
        }
        Ok(())
    }

    /// The pinset as a plain map, for comparing replicas and models.
    pub fn to_map(&self) -> BTreeMap<Cid, Pin> {
        self.iter().map(|p| (p.cid.clone(), p)).collect()
    }
}

impl PartialEq for Pinset {
    fn eq(&self, other: &Self) -> bool {
        self.applied_index == other.applied_index
            && self.pins == other.pins
            && self.recent == other.recent
    }
}

#[cfg(test)]
mod tests;

//! The shared pinset: the deterministic state machine that Raft replicates.
//!
//! `apply` is a pure function of the state and the entry: it never reads a
//! clock, metrics or IPFS, so every peer that applies the same log holds the
//! same pinset. Invalid commands are answered with a typed error and leave the
//! state untouched.

mod command;
mod sessions;
mod snapshot;
mod stored;

use std::collections::BTreeMap;

pub use command::{
    Applied, ApplyError, ApplyResult, Command, Entry, OutOfOrder, PinChange, PinVersion, RequestId,
};
pub use sessions::{SESSIONS_MAX, SESSION_IDLE_ENTRIES, SESSION_WINDOW};
#[doc(hidden)]
pub use snapshot::seal_snapshot_body;
pub use snapshot::{SnapshotError, SNAPSHOT_VERSION};

use crate::pin::{Allocated, Pin, PinMode, PinType};
use crate::{Cid, Millis, PeerId};
use sessions::{Answer, Seen, Sessions};
use stored::{PeerPool, StoredPin};

/// The replicated pinset.
#[derive(Debug, Clone, Default)]
pub struct Pinset {
    pins: BTreeMap<Cid, StoredPin>,
    pool: PeerPool,
    applied_index: u64,
    sessions: Sessions,
}

impl Pinset {
    /// An empty pinset.
    pub fn new() -> Pinset {
        Pinset::default()
    }

    /// Applies the entry at log position `index` (which must exceed every index
    /// applied before) and returns its answer.
    pub fn apply(&mut self, index: u64, entry: &Entry) -> Result<ApplyResult, OutOfOrder> {
        self.advance_to(index)?;
        Ok(self.apply_one(index, entry))
    }

    /// Applies several entries that share log position `index` (a batch of
    /// concurrent client writes proposed as one Raft entry), in order.
    pub fn apply_batch(
        &mut self,
        index: u64,
        entries: &[Entry],
    ) -> Result<Vec<ApplyResult>, OutOfOrder> {
        self.advance_to(index)?;
        Ok(entries.iter().map(|e| self.apply_one(index, e)).collect())
    }

    fn apply_one(&mut self, index: u64, entry: &Entry) -> ApplyResult {
        let request = entry
            .request
            .map(|id| (id, sessions::digest(&entry.command)));
        if let Some((id, digest)) = request {
            self.sessions.expire(index);
            match self.sessions.seen(id, digest) {
                Seen::New => {}
                Seen::Answered(answer) => return answer.rebuild(id, &entry.command),
                Seen::Reused => return Err(ApplyError::RequestIdReused(id)),
                Seen::TooOld => return Err(ApplyError::RequestTooOld(id)),
            }
        }
        let result = match &entry.command {
            Command::Pin(pin) => self.apply_pin(pin, index),
            Command::Unpin { cid } => self.apply_unpin(cid),
            Command::Expire { cid, version } => self.apply_expire(cid, *version),
            Command::Update {
                from,
                to,
                name,
                expire_at,
                timestamp,
            } => self.apply_update(from, to, name, *expire_at, *timestamp, index),
            Command::Reallocate {
                cid,
                allocations,
                version,
            } => self.apply_reallocate(cid, allocations, *version, index),
            Command::RemovePeer { peer } => Ok(self.apply_remove_peer(peer, index)),
        };
        if let Some((id, digest)) = request {
            self.sessions
                .remember(id, digest, index, Answer::of(&result));
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
            if let Err(e) = self.check_pin(cid, stored) {
                panic!("invariant: apply stored an invalid pin: {e}");
            }
            assert!(
                stored.allocations.iter().all(|p| self.pool.is_interned(p)),
                "invariant: allocations of {cid} are interned"
            );
        }
        if let Ok(Applied::Unpinned { cid }) = result {
            assert!(
                !self.pins.contains_key(cid),
                "invariant: an unpinned CID is gone"
            );
        }
        if let Ok(Applied::PeerRemoved {
            peer,
            under_replicated,
            ..
        }) = result
        {
            self.assert_peer_removed(peer, *under_replicated);
        }
    }

    /// Post-condition of a removal. It rewrites many pins at once, but it is
    /// rare, so a pass over the pinset is affordable: no pin names the peer
    /// and every short pin is flagged (a pin left short but unflagged would
    /// make every snapshot taken before its repair fail to restore).
    fn assert_peer_removed(&self, peer: &PeerId, answered_short: u64) {
        let mut flagged = 0u64;
        for (cid, stored) in &self.pins {
            assert!(
                !stored.allocations.contains(peer),
                "invariant: removed peer {peer} is still allocated {cid}"
            );
            assert_eq!(
                stored.under_replicated,
                stored.is_short(),
                "invariant: the under-replicated flag of {cid} after removing {peer}"
            );
            flagged += u64::from(stored.under_replicated);
        }
        assert!(
            answered_short <= flagged,
            "invariant: removal of {peer} answered {answered_short} pins short, {flagged} are flagged"
        );
    }

    /// Records that log position `index` was consumed by an entry that does not
    /// touch the pinset (a Raft blank or membership entry). Refused, with the
    /// state untouched, unless `index` exceeds every index applied before.
    pub fn advance_to(&mut self, index: u64) -> Result<(), OutOfOrder> {
        if index > self.applied_index || (index == 0 && self.applied_index == 0) {
            self.applied_index = index;
            Ok(())
        } else {
            Err(OutOfOrder {
                index,
                applied: self.applied_index,
            })
        }
    }

    fn apply_pin(&mut self, pin: &Pin, index: u64) -> ApplyResult {
        if pin.pin_type != PinType::Data {
            return Err(ApplyError::Unsupported(pin.pin_type));
        }
        self.put(pin, index, Allocated::Fully)
    }

    /// Stores `pin` (created or changed at `index`) unless it is invalid or a
    /// recursive-to-direct change; an equal re-pin changes nothing.
    fn put(&mut self, pin: &Pin, index: u64, allocated: Allocated) -> ApplyResult {
        use std::collections::btree_map::Entry as Slot;
        pin.validate_with(allocated)?;
        // One search of the map per pin: this is the hot path of every apply.
        let change = match self.pins.entry(pin.cid.clone()) {
            Slot::Vacant(slot) => {
                slot.insert(StoredPin::from_pin(pin, &mut self.pool, index));
                PinChange::Created
            }
            Slot::Occupied(mut slot) => {
                let existing = slot.get();
                if existing.max_depth != 0 && pin.mode() == PinMode::Direct {
                    return Err(ApplyError::RecursiveToDirect);
                }
                if existing.to_pin(&pin.cid).same_request(pin) {
                    PinChange::Unchanged
                } else {
                    slot.insert(StoredPin::from_pin(pin, &mut self.pool, index));
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
        self.pins
            .remove(cid)
            .ok_or_else(|| ApplyError::NotFound(cid.clone()))?;
        Ok(Applied::Unpinned { cid: cid.clone() })
    }

    fn apply_expire(&mut self, cid: &Cid, version: PinVersion) -> ApplyResult {
        let stored = self.current(cid, version)?;
        if stored.expire_at().is_none() {
            return Err(ApplyError::NoExpiry(cid.clone()));
        }
        self.apply_unpin(cid)
    }

    /// The stored pin, if it is still at `version`.
    fn current(&self, cid: &Cid, version: PinVersion) -> Result<&StoredPin, ApplyError> {
        let stored = self
            .pins
            .get(cid)
            .ok_or_else(|| ApplyError::NotFound(cid.clone()))?;
        if stored.version != version.0 {
            return Err(ApplyError::Stale {
                cid: cid.clone(),
                expected: version,
                current: PinVersion(stored.version),
            });
        }
        Ok(stored)
    }

    fn apply_update(
        &mut self,
        from: &Cid,
        to: &Cid,
        name: &str,
        expire_at: Option<Millis>,
        timestamp: Millis,
        index: u64,
    ) -> ApplyResult {
        let source = self
            .pins
            .get(from)
            .ok_or_else(|| ApplyError::NotFound(from.clone()))?;
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
        // A copy of an under-replicated pin is under-replicated too: the
        // leader tops both up.
        self.put(&pin, index, Allocated::Stored)
    }

    fn apply_reallocate(
        &mut self,
        cid: &Cid,
        allocations: &[PeerId],
        version: PinVersion,
        index: u64,
    ) -> ApplyResult {
        let stored = self.current(cid, version)?;
        if allocations == &stored.allocations[..] {
            return Ok(Applied::Pinned {
                cid: cid.clone(),
                change: PinChange::Unchanged,
            });
        }
        let mut pin = stored.to_pin(cid);
        pin.allocations = allocations.to_vec();
        pin.validate_with(Allocated::Stored)?;
        self.pins.insert(
            cid.clone(),
            StoredPin::from_pin(&pin, &mut self.pool, index),
        );
        Ok(Applied::Pinned {
            cid: cid.clone(),
            change: PinChange::Updated,
        })
    }

    fn apply_remove_peer(&mut self, peer: &PeerId, index: u64) -> Applied {
        let (mut pins_affected, mut under_replicated) = (0, 0);
        for stored in self.pins.values_mut() {
            if !stored.allocations.contains(peer) {
                continue;
            }
            pins_affected += 1;
            stored.allocations.retain(|p| p != peer);
            stored.version = index;
            stored.under_replicated = stored.is_short();
            under_replicated += u64::from(stored.under_replicated);
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

    /// Pins with fewer allocations than their minimum (left so by a peer
    /// removal or a short re-allocation): the leader re-allocates them.
    pub fn under_replicated(&self) -> impl Iterator<Item = Pin> + '_ {
        self.pins
            .iter()
            .filter(|(_, s)| s.under_replicated)
            .map(|(cid, s)| s.to_pin(cid))
    }

    /// The version of the pin stored for `cid`: what a command computed from
    /// it carries.
    pub fn version(&self, cid: &Cid) -> Option<PinVersion> {
        self.pins.get(cid).map(|s| PinVersion(s.version))
    }

    /// Every pin with its version, in CID byte order.
    pub fn iter_with_versions(&self) -> impl Iterator<Item = (Pin, PinVersion)> + '_ {
        self.pins
            .iter()
            .map(|(cid, s)| (s.to_pin(cid), PinVersion(s.version)))
    }

    /// Up to `limit` pins whose `expire_at` is at or before `now`, in CID
    /// order, each with the version judged expired: what the leader's expiry
    /// driver proposes as [`Command::Expire`] (a pin re-pinned meanwhile is
    /// then refused as stale, never removed). A full pass over the stored
    /// pins, without building a [`Pin`] for those that do not expire.
    pub fn expired(&self, now: Millis, limit: usize) -> Vec<(Cid, PinVersion)> {
        self.pins
            .iter()
            .filter(|(_, s)| s.expire_at().is_some_and(|at| at <= now))
            .take(limit)
            .map(|(cid, s)| (cid.clone(), PinVersion(s.version)))
            .collect()
    }

    /// Checks the state's invariants; tests and the simulator call it after
    /// every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_content()?;
        for (cid, stored) in &self.pins {
            if let Some(p) = stored
                .allocations
                .iter()
                .find(|p| !self.pool.is_interned(p))
            {
                return Err(format!("pin {cid}: allocation {p} not interned"));
            }
        }
        Ok(())
    }

    /// The invariants a restored snapshot must pass: every pin is what apply
    /// could have stored, every session is within its bounds. (Interning is
    /// left out: restore interns by construction, and hashing every
    /// allocation of a million pins would double the decode time.)
    fn check_content(&self) -> Result<(), String> {
        for (cid, stored) in &self.pins {
            self.check_pin(cid, stored)?;
        }
        self.sessions.check(self.applied_index)
    }

    /// One stored pin is what apply could have stored.
    fn check_pin(&self, cid: &Cid, stored: &StoredPin) -> Result<(), String> {
        if stored.pin_type != PinType::Data {
            return Err(format!("pin {cid}: unsupported type {:?}", stored.pin_type));
        }
        stored
            .validate(cid)
            .map_err(|e| format!("stored pin {cid} invalid: {e}"))?;
        if stored.under_replicated != stored.is_short() {
            return Err(format!(
                "pin {cid}: under-replicated flag {} with {} allocations, min {}",
                stored.under_replicated,
                stored.allocations.len(),
                stored.rmin
            ));
        }
        if stored.version > self.applied_index {
            return Err(format!(
                "pin {cid}: version {} beyond the applied index {}",
                stored.version, self.applied_index
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
            && self.sessions == other.sessions
            && self.pool.sorted() == other.pool.sorted()
    }
}

#[cfg(test)]
mod tests;

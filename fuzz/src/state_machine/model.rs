//! The pinset's model: the obvious implementation, written apart from the
//! real one. Pins in a plain map with their versions, every answer of every
//! client session kept in full (the window and the idle expiry are the
//! documented rules, applied literally).

use std::collections::BTreeMap;

use cluster_core::pinset::{
    Applied, ApplyError, ApplyResult, Command, PinChange, PinVersion, RequestId, SESSIONS_MAX,
    SESSION_IDLE_ENTRIES, SESSION_WINDOW,
};
use cluster_core::{Cid, PeerId, Pin, PinMode, PinType};

/// An answer as the model predicts it: success in full, refusals by kind
/// (the real error texts are unit-tested in the core).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// This exact success.
    Ok(Applied),
    /// A refusal of this kind.
    Err(&'static str),
}

impl Expect {
    /// What the real answer says, in the model's terms.
    pub fn of(result: &ApplyResult) -> Expect {
        match result {
            Ok(applied) => Expect::Ok(applied.clone()),
            Err(e) => Expect::Err(kind(e)),
        }
    }
}

fn kind(e: &ApplyError) -> &'static str {
    match e {
        ApplyError::Invalid(_) => "invalid",
        ApplyError::NotFound(_) => "not found",
        ApplyError::RecursiveToDirect => "recursive to direct",
        ApplyError::Unsupported(_) => "unsupported",
        ApplyError::Stale { .. } => "stale",
        ApplyError::NoExpiry(_) => "no expiry",
        ApplyError::RequestIdReused(_) => "request id reused",
        ApplyError::RequestTooOld(_) => "request too old",
    }
}

#[derive(Debug, Default)]
struct Session {
    last_index: u64,
    floor: u64,
    answers: BTreeMap<u64, (Command, Expect)>,
}

/// The model's state.
#[derive(Debug, Default)]
pub struct Model {
    /// Pins as the pinset reads them back.
    pub pins: BTreeMap<Cid, Pin>,
    /// The log index that last created or changed each pin.
    pub versions: BTreeMap<Cid, u64>,
    sessions: BTreeMap<u64, Session>,
}

impl Model {
    /// The answer to `command` applied at `index`, and the new state.
    pub fn apply(&mut self, index: u64, request: Option<RequestId>, command: &Command) -> Expect {
        if let Some(id) = request {
            self.sessions
                .retain(|_, s| s.last_index.saturating_add(SESSION_IDLE_ENTRIES) >= index);
            if let Some(session) = self.sessions.get(&id.client) {
                if id.serial < session.floor {
                    return Expect::Err("request too old");
                }
                if let Some((first, answer)) = session.answers.get(&id.serial) {
                    return if first == command {
                        answer.clone()
                    } else {
                        Expect::Err("request id reused")
                    };
                }
            }
        }
        let answer = self.apply_command(index, command);
        if let Some(id) = request {
            let session = self.sessions.entry(id.client).or_default();
            session.last_index = index;
            session
                .answers
                .insert(id.serial, (command.clone(), answer.clone()));
            if session.answers.len() > SESSION_WINDOW {
                let (oldest, _) = session.answers.pop_first().expect("over the window");
                session.floor = oldest + 1;
            }
            if self.sessions.len() > SESSIONS_MAX {
                let idlest = self
                    .sessions
                    .iter()
                    .map(|(client, s)| (s.last_index, *client))
                    .min()
                    .expect("sessions");
                self.sessions.remove(&idlest.1);
            }
        }
        answer
    }

    fn apply_command(&mut self, index: u64, command: &Command) -> Expect {
        match command {
            Command::Pin(pin) => {
                if pin.pin_type != PinType::Data {
                    return Expect::Err("unsupported");
                }
                if pin.validate().is_err() {
                    return Expect::Err("invalid");
                }
                self.store(index, pin.clone())
            }
            Command::Unpin { cid } => self.unpin(cid),
            Command::Expire { cid, version } => {
                if let Err(e) = self.current(cid, *version) {
                    return e;
                }
                if self.pins[cid].options.expire_at.is_none() {
                    return Expect::Err("no expiry");
                }
                self.unpin(cid)
            }
            Command::Update {
                from,
                to,
                name,
                expire_at,
                timestamp,
            } => {
                let Some(source) = self.pins.get(from) else {
                    return Expect::Err("not found");
                };
                let mut pin = source.clone();
                pin.cid = to.clone();
                pin.timestamp = *timestamp;
                pin.options.pin_update = Some(from.clone());
                if !name.is_empty() {
                    pin.options.name = name.clone();
                }
                if let Some(at) = expire_at.filter(|at| at > timestamp) {
                    pin.options.expire_at = Some(at);
                }
                if !valid_as_stored(&pin) {
                    return Expect::Err("invalid");
                }
                self.store(index, pin)
            }
            Command::Reallocate {
                cid,
                allocations,
                version,
            } => {
                if let Err(e) = self.current(cid, *version) {
                    return e;
                }
                let unchanged = Expect::Ok(Applied::Pinned {
                    cid: cid.clone(),
                    change: PinChange::Unchanged,
                });
                let mut pin = self.pins[cid].clone();
                if pin.allocations == *allocations {
                    return unchanged;
                }
                pin.allocations = allocations.clone();
                if !valid_as_stored(&pin) {
                    return Expect::Err("invalid");
                }
                self.pins.insert(cid.clone(), pin);
                self.versions.insert(cid.clone(), index);
                Expect::Ok(Applied::Pinned {
                    cid: cid.clone(),
                    change: PinChange::Updated,
                })
            }
            Command::RemovePeer { peer } => {
                let (mut affected, mut under) = (0, 0);
                for (cid, pin) in self.pins.iter_mut() {
                    if pin.allocations.contains(peer) {
                        pin.allocations.retain(|p| p != peer);
                        self.versions.insert(cid.clone(), index);
                        affected += 1;
                        under += u64::from(pin.is_under_replicated());
                    }
                }
                Expect::Ok(Applied::PeerRemoved {
                    peer: peer.clone(),
                    pins_affected: affected,
                    under_replicated: under,
                })
            }
        }
    }

    fn current(&self, cid: &Cid, version: PinVersion) -> Result<(), Expect> {
        match self.versions.get(cid) {
            None => Err(Expect::Err("not found")),
            Some(v) if *v != version.0 => Err(Expect::Err("stale")),
            Some(_) => Ok(()),
        }
    }

    fn unpin(&mut self, cid: &Cid) -> Expect {
        self.versions.remove(cid);
        match self.pins.remove(cid) {
            Some(_) => Expect::Ok(Applied::Unpinned { cid: cid.clone() }),
            None => Expect::Err("not found"),
        }
    }

    /// Stores a valid pin: created, changed, or the same request again.
    fn store(&mut self, index: u64, mut pin: Pin) -> Expect {
        let cid = pin.cid.clone();
        // What the pinset keeps: no user allocations, the mode from the depth.
        pin.options.user_allocations.clear();
        pin.options.mode = if pin.max_depth == 0 {
            PinMode::Direct
        } else {
            PinMode::Recursive
        };
        let change = match self.pins.get(&cid) {
            None => PinChange::Created,
            Some(old) if old.max_depth != 0 && pin.max_depth == 0 => {
                return Expect::Err("recursive to direct")
            }
            Some(old) if old.same_request(&pin) => PinChange::Unchanged,
            Some(_) => PinChange::Updated,
        };
        if change != PinChange::Unchanged {
            self.pins.insert(cid.clone(), pin);
            self.versions.insert(cid.clone(), index);
        }
        Expect::Ok(Applied::Pinned { cid, change })
    }

    /// Pins whose expiry is at or before `now`, in CID order.
    pub fn expired(&self, now: u64) -> Vec<(Cid, PinVersion)> {
        self.pins
            .values()
            .filter(|p| p.options.expire_at.is_some_and(|at| at.0 <= now))
            .map(|p| (p.cid.clone(), PinVersion(self.versions[&p.cid])))
            .collect()
    }
}

/// A pin is valid as the pinset may store it: like a request, except that
/// it may have fewer allocations than its minimum (after a peer removal).
/// Checked as a request with the missing allocations filled by peers that
/// appear nowhere else, which changes no other rule.
fn valid_as_stored(pin: &Pin) -> bool {
    let mut padded = pin.clone();
    // A hand-over may hold up to twice the maximum (at most
    // `ALLOCATIONS_MAX`) while the replacements start pinning: the peers
    // past the maximum only need to be distinct; the rest is judged as a
    // request would be.
    let max = pin.options.replication_factor_max;
    if max > 0 && padded.allocations.len() > max as usize {
        let most = (max as usize * 2).min(cluster_core::pin::ALLOCATIONS_MAX);
        let distinct: std::collections::BTreeSet<&PeerId> = padded.allocations.iter().collect();
        if padded.allocations.len() > most || distinct.len() != padded.allocations.len() {
            return false;
        }
        padded.allocations.truncate(max as usize);
    }
    let min = pin.options.replication_factor_min;
    let mut filler = 0u64;
    while min > 0 && padded.allocations.len() < min as usize {
        let peer = PeerId::synthetic(FILLER_PEERS + filler);
        filler += 1;
        if !padded.allocations.contains(&peer) {
            padded.allocations.push(peer);
        }
    }
    padded.validate().is_ok()
}

/// Synthetic peer numbers from here on only fill allocations for a check.
const FILLER_PEERS: u64 = 1 << 40;

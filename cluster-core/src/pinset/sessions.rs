//! Client sessions: request de-duplication that survives retries for as
//! long as a client may retry, whatever other clients do meanwhile.
//!
//! Each client has its own session: the answers of its last
//! [`SESSION_WINDOW`] serials (a digest of the command and a small answer)
//! and a floor below which serials are refused as too old (they may have been
//! applied and forgotten). Sessions are bounded in number
//! ([`SESSIONS_MAX`], least recently active evicted first) and expire after
//! [`SESSION_IDLE_ENTRIES`] log positions without a request. A client whose
//! session was evicted or expired is a new client: its retries would apply
//! again, so clients must give up on a request well within those bounds.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::{Applied, ApplyError, ApplyResult, Command, PinChange, RequestId};

/// Most client sessions remembered; the least recently active goes first.
pub const SESSIONS_MAX: usize = 4096;
/// Answers remembered per client: how many of its requests may be in flight
/// (or retried) at once.
pub const SESSION_WINDOW: usize = 64;
/// Log positions without a request after which a session is forgotten
/// (4M entries: over a minute even at 50k unbatched writes per second).
pub const SESSION_IDLE_ENTRIES: u64 = 1 << 22;

/// What a request's answer was, without what the command itself says (the
/// CID or peer): a retry carries the same command, so the full answer is
/// rebuilt from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Answer {
    Pinned(PinChange),
    Unpinned,
    PeerRemoved {
        pins_affected: u64,
        under_replicated: u64,
    },
    /// Refusals are rare: boxed, so the common answer stays a few bytes.
    Refused(Box<ApplyError>),
}

impl Answer {
    pub fn of(result: &ApplyResult) -> Answer {
        match result {
            Ok(Applied::Pinned { change, .. }) => Answer::Pinned(*change),
            Ok(Applied::Unpinned { .. }) => Answer::Unpinned,
            Ok(Applied::PeerRemoved {
                pins_affected,
                under_replicated,
                ..
            }) => Answer::PeerRemoved {
                pins_affected: *pins_affected,
                under_replicated: *under_replicated,
            },
            Err(e) => Answer::Refused(Box::new(e.clone())),
        }
    }

    /// The full answer to `command` (the one this answer was given to: the
    /// digests matched). A mismatch of kinds cannot come from one command; it
    /// is answered as a reused id rather than trusted.
    pub fn rebuild(&self, id: RequestId, command: &Command) -> ApplyResult {
        match (self, command) {
            (Answer::Refused(e), _) => Err((**e).clone()),
            (Answer::Pinned(change), Command::Pin(pin)) => Ok(Applied::Pinned {
                cid: pin.cid.clone(),
                change: *change,
            }),
            (Answer::Pinned(change), Command::Update { to: cid, .. })
            | (Answer::Pinned(change), Command::Reallocate { cid, .. }) => Ok(Applied::Pinned {
                cid: cid.clone(),
                change: *change,
            }),
            (Answer::Unpinned, Command::Unpin { cid } | Command::Expire { cid, .. }) => {
                Ok(Applied::Unpinned { cid: cid.clone() })
            }
            (
                Answer::PeerRemoved {
                    pins_affected,
                    under_replicated,
                },
                Command::RemovePeer { peer },
            ) => Ok(Applied::PeerRemoved {
                peer: peer.clone(),
                pins_affected: *pins_affected,
                under_replicated: *under_replicated,
            }),
            _ => Err(ApplyError::RequestIdReused(id)),
        }
    }
}

/// One remembered answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cached {
    /// Digest of the command (see [`digest`]).
    pub digest: u64,
    pub answer: Answer,
}

/// One client's session.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Session {
    /// Log index of its latest applied request.
    pub last_index: u64,
    /// Serials below this are refused: answered once and forgotten.
    pub floor: u64,
    /// Answers by serial, at most [`SESSION_WINDOW`], all at or above `floor`.
    pub answers: BTreeMap<u64, Cached>,
}

/// What the sessions say about an incoming request.
#[derive(Debug, PartialEq)]
pub(crate) enum Seen<'a> {
    /// Not seen: apply it.
    New,
    /// Seen with the same command: this was its answer.
    Answered(&'a Answer),
    /// Seen with another command.
    Reused,
    /// Below the session's floor.
    TooOld,
}

/// Every client session.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sessions {
    pub by_client: BTreeMap<u64, Session>,
    /// `(last_index, client)` of every session: least recently active first.
    by_activity: BTreeSet<(u64, u64)>,
}

impl PartialEq for Sessions {
    fn eq(&self, other: &Self) -> bool {
        // `by_activity` is derived from the sessions.
        self.by_client == other.by_client
    }
}

impl Sessions {
    /// Rebuilds the sessions from their parts (snapshot restore).
    pub fn from_sessions(by_client: BTreeMap<u64, Session>) -> Sessions {
        let by_activity = by_client
            .iter()
            .map(|(client, s)| (s.last_index, *client))
            .collect();
        Sessions {
            by_client,
            by_activity,
        }
    }

    /// Forgets sessions idle for more than [`SESSION_IDLE_ENTRIES`] at `index`.
    pub fn expire(&mut self, index: u64) {
        while let Some(&(last, client)) = self.by_activity.first() {
            if last.saturating_add(SESSION_IDLE_ENTRIES) >= index {
                break;
            }
            self.by_activity.pop_first();
            self.by_client.remove(&client);
        }
    }

    /// Looks `id` up; `digest` is its command's.
    pub fn seen(&self, id: RequestId, digest: u64) -> Seen<'_> {
        let Some(session) = self.by_client.get(&id.client) else {
            return Seen::New;
        };
        if id.serial < session.floor {
            return Seen::TooOld;
        }
        match session.answers.get(&id.serial) {
            None => Seen::New,
            Some(cached) if cached.digest == digest => Seen::Answered(&cached.answer),
            Some(_) => Seen::Reused,
        }
    }

    /// Remembers the answer to a new request applied at `index`.
    pub fn remember(&mut self, id: RequestId, digest: u64, index: u64, answer: Answer) {
        let session = self.by_client.entry(id.client).or_default();
        if session.last_index != index || session.answers.is_empty() {
            self.by_activity.remove(&(session.last_index, id.client));
            session.last_index = index;
            self.by_activity.insert((index, id.client));
        }
        session.answers.insert(id.serial, Cached { digest, answer });
        if session.answers.len() > SESSION_WINDOW {
            let (oldest, _) = session
                .answers
                .pop_first()
                .expect("invariant: over the window, so not empty");
            session.floor = oldest + 1;
        }
        if self.by_client.len() > SESSIONS_MAX {
            let (_, client) = self
                .by_activity
                .pop_first()
                .expect("invariant: one entry per session");
            self.by_client.remove(&client);
        }
    }

    /// Checks the sessions' own rules against the applied index.
    pub fn check(&self, applied_index: u64) -> Result<(), String> {
        if self.by_client.len() > SESSIONS_MAX {
            return Err(format!("{} sessions", self.by_client.len()));
        }
        if self.by_activity.len() != self.by_client.len() {
            return Err("session activity index and sessions disagree".into());
        }
        for (client, s) in &self.by_client {
            if !self.by_activity.contains(&(s.last_index, *client)) {
                return Err(format!("session {client} missing from the activity index"));
            }
            if s.last_index > applied_index {
                return Err(format!(
                    "session {client} active at {} beyond the applied index {applied_index}",
                    s.last_index
                ));
            }
            if s.answers.is_empty() || s.answers.len() > SESSION_WINDOW {
                return Err(format!(
                    "session {client} holds {} answers",
                    s.answers.len()
                ));
            }
            if s.answers.keys().next().is_some_and(|low| *low < s.floor) {
                return Err(format!(
                    "session {client} remembers a serial below its floor"
                ));
            }
        }
        Ok(())
    }
}

/// A stable 64-bit digest of the command's postcard bytes (the same on every
/// peer and platform), computed without a buffer: bytes are gathered into
/// words and each word is mixed in with a multiply-rotate step.
pub(crate) fn digest(command: &Command) -> u64 {
    struct Digest {
        hash: u64,
        word: u64,
        filled: u32,
        len: u64,
    }
    impl Digest {
        fn mix(&mut self) {
            const K: u64 = 0x9E37_79B9_7F4A_7C15;
            self.hash = (self.hash ^ self.word).wrapping_mul(K).rotate_left(29);
            self.word = 0;
            self.filled = 0;
        }
    }
    impl postcard::ser_flavors::Flavor for Digest {
        type Output = u64;
        fn try_push(&mut self, data: u8) -> postcard::Result<()> {
            self.word |= u64::from(data) << (8 * self.filled);
            self.filled += 1;
            self.len += 1;
            if self.filled == 8 {
                self.mix();
            }
            Ok(())
        }
        fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
            for b in data {
                self.try_push(*b)?;
            }
            Ok(())
        }
        fn finalize(mut self) -> postcard::Result<u64> {
            // The length goes in last, so trailing zero bytes still count.
            self.mix();
            self.word = self.len;
            self.mix();
            Ok(self.hash ^ (self.hash >> 32))
        }
    }
    let start = Digest {
        hash: 0xcbf2_9ce4_8422_2325,
        word: 0,
        filled: 0,
        len: 0,
    };
    postcard::serialize_with_flavor(command, start).expect("invariant: digesting cannot fail")
}

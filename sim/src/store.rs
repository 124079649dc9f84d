//! A simulated disk for one peer's Raft state: commits are atomic, and a crash
//! loses what was never made durable: all of it, or only a tail of it (a torn
//! tail: some unsynced commits reached the platter in order, the rest did not).
//! It counts the rare paths it sees (truncation, purge, snapshot) as coverage
//! probes, and can call a hook right after a vote or an append was made
//! durable, or written without a sync (a relaxed commit), so the controller
//! can crash the peer at that very point: after the fsync, or between the
//! write and the fsync that never came.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use cluster_net::store::{Durability, DurableStore, MetaKey, StoreError, WriteBatch, WriteOp};

/// Called right after a commit that persisted a vote (`"vote"`) or log
/// entries (`"append"`); for a relaxed commit, not yet synced, the names are
/// `"unsynced vote"` and `"unsynced append"`.
pub type PersistHook = Arc<dyn Fn(&'static str) + Send + Sync>;

/// One peer's disk; clones share it, so it outlives the peer's crashes.
#[derive(Clone, Default)]
pub struct SimStore {
    state: Arc<Mutex<Disk>>,
}

#[derive(Default)]
struct Disk {
    meta: BTreeMap<MetaKey, Vec<u8>>,
    log: BTreeMap<u64, Vec<u8>>,
    /// How to go back to the last durable image: one list per unsynced
    /// commit, oldest commit first, newest change last within each.
    undo: Vec<Vec<Undo>>,
    fail_writes: bool,
    fail_reads: bool,
    /// Damaged on the platter: the store's checksums refuse every read.
    corrupt: bool,
    /// Votes and log entries a crash took back after a commit had returned
    /// them as saved (see [`SimStore::lost_acknowledged`]).
    lost: Vec<String>,
    commits: u64,
    hook: Option<PersistHook>,
}

enum Undo {
    Meta(MetaKey, Option<Vec<u8>>),
    Log(u64, Option<Vec<u8>>),
}

impl SimStore {
    fn disk(&self) -> MutexGuard<'_, Disk> {
        // A panic elsewhere while holding the lock already fails the run.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Power loss: of the commits not yet durable, the first `tear % (n + 1)`
    /// survive (they reached the disk in order) and the rest are gone.
    pub fn crash(&self, tear: u64) {
        let mut disk = self.disk();
        let unsynced = disk.undo.len();
        let keep = (tear % (unsynced as u64 + 1)) as usize;
        if unsynced > 0 && keep == 0 {
            crate::probes::hit("disk: crash lost unsynced writes");
        } else if keep > 0 && keep < unsynced {
            crate::probes::hit("disk: crash tore the unsynced tail");
        }
        while disk.undo.len() > keep {
            let Some(mut commit) = disk.undo.pop() else {
                break;
            };
            for undo in &commit {
                let lost = match undo {
                    Undo::Meta(MetaKey::Vote, _) => Some("a vote".to_string()),
                    Undo::Log(i, _) if disk.log.contains_key(i) => Some(format!("log entry {i}")),
                    _ => None,
                };
                disk.lost.extend(lost);
            }
            while let Some(undo) = commit.pop() {
                match undo {
                    Undo::Meta(k, Some(v)) => {
                        disk.meta.insert(k, v);
                    }
                    Undo::Meta(k, None) => {
                        disk.meta.remove(&k);
                    }
                    Undo::Log(i, Some(v)) => {
                        disk.log.insert(i, v);
                    }
                    Undo::Log(i, None) => {
                        disk.log.remove(&i);
                    }
                }
            }
        }
        disk.undo.clear();
    }

    /// Votes and log entries that a crash lost after their commit had
    /// returned. Raft acts on a saved vote or entry the moment the store
    /// returns (it answers the candidate, acknowledges the append), so each
    /// one is an acknowledgement the peer may now contradict: the product
    /// must never save them with relaxed durability.
    pub fn lost_acknowledged(&self) -> Vec<String> {
        self.disk().lost.clone()
    }

    /// Sets the hook called right after a vote or an append became durable.
    pub fn set_persist_hook(&self, hook: PersistHook) {
        self.disk().hook = Some(hook);
    }

    /// Makes every write fail (disk full, I/O error) until cleared.
    pub fn set_fail_writes(&self, fail: bool) {
        self.disk().fail_writes = fail;
    }

    /// Makes every read fail (a failing disk) until cleared.
    pub fn set_fail_reads(&self, fail: bool) {
        self.disk().fail_reads = fail;
    }

    /// Damages the disk (bit rot, a bad sector): the store's checksums catch
    /// it on the next read, as redb's do when it opens a damaged file. Only
    /// a wipe heals it.
    pub fn corrupt(&self) {
        self.disk().corrupt = true;
    }

    /// True while the disk is damaged.
    pub fn is_corrupt(&self) -> bool {
        self.disk().corrupt
    }

    /// True while reads or writes are made to fail.
    pub fn failing(&self) -> bool {
        let disk = self.disk();
        disk.fail_reads || disk.fail_writes
    }

    /// Wipes the disk (a peer replaced by a fresh one).
    pub fn wipe(&self) {
        crate::probes::hit("disk: wiped");
        let mut disk = self.disk();
        disk.meta.clear();
        disk.log.clear();
        disk.undo.clear();
        disk.corrupt = false;
    }

    /// True when nothing was ever written (or the disk was wiped).
    pub fn is_empty(&self) -> bool {
        let disk = self.disk();
        disk.meta.is_empty() && disk.log.is_empty()
    }
}

impl Disk {
    /// Refuses a read while the disk is made to fail reads.
    fn check_read(&self) -> Result<(), StoreError> {
        if self.corrupt {
            crate::probes::hit("disk: checksum caught a corrupt page");
            return Err(StoreError::Corrupt {
                what: "sim-disk page".into(),
                reason: "checksum mismatch".into(),
            });
        }
        if self.fail_reads {
            crate::probes::hit("disk: read refused");
            return Err(StoreError::Io {
                path: "sim-disk".into(),
                reason: "injected read error".into(),
            });
        }
        Ok(())
    }

    fn track(&mut self, undo: Undo) {
        match self.undo.last_mut() {
            Some(commit) => commit.push(undo),
            None => self.undo.push(vec![undo]),
        }
    }

    fn put_meta(&mut self, key: MetaKey, value: Option<Vec<u8>>, track: bool) {
        let old = match value {
            Some(v) => self.meta.insert(key, v),
            None => self.meta.remove(&key),
        };
        if track {
            self.track(Undo::Meta(key, old));
        }
    }

    fn put_log(&mut self, index: u64, value: Option<Vec<u8>>, track: bool) {
        let old = match value {
            Some(v) => self.log.insert(index, v),
            None => self.log.remove(&index),
        };
        if track {
            self.track(Undo::Log(index, old));
        }
    }
}

impl DurableStore for SimStore {
    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        let disk = self.disk();
        disk.check_read()?;
        Ok(disk.meta.get(&key).cloned())
    }

    fn log_range(&self, range: Range<u64>) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let disk = self.disk();
        disk.check_read()?;
        Ok(disk
            .log
            .range(range)
            .map(|(i, v)| (*i, v.clone()))
            .collect())
    }

    fn log_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let disk = self.disk();
        disk.check_read()?;
        Ok(disk.log.last_key_value().map(|(i, v)| (*i, v.clone())))
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut disk = self.disk();
        if disk.corrupt {
            // Nothing can be written through a damaged image either.
            return Err(StoreError::Corrupt {
                what: "sim-disk page".into(),
                reason: "checksum mismatch".into(),
            });
        }
        if disk.fail_writes {
            crate::probes::hit("disk: write refused");
            return Err(StoreError::Io {
                path: "sim-disk".into(),
                reason: "injected write error (disk full)".into(),
            });
        }
        disk.commits += 1;
        let durable = batch.durability == Durability::Immediate;
        if !durable {
            disk.undo.push(Vec::new());
        }
        let (mut voted, mut appended) = (false, false);
        for op in batch.ops {
            match op {
                WriteOp::PutMeta(k, v) => {
                    voted |= k == MetaKey::Vote;
                    if k == MetaKey::SnapshotMeta {
                        crate::probes::hit("disk: snapshot stored");
                    }
                    disk.put_meta(k, Some(v), !durable)
                }
                WriteOp::DeleteMeta(k) => disk.put_meta(k, None, !durable),
                WriteOp::PutLog(i, v) => {
                    appended = true;
                    disk.put_log(i, Some(v), !durable)
                }
                WriteOp::TruncateLogFrom(from) => {
                    let doomed: Vec<u64> = disk.log.range(from..).map(|(i, _)| *i).collect();
                    if !doomed.is_empty() {
                        crate::probes::hit("disk: log truncated");
                    }
                    doomed
                        .into_iter()
                        .for_each(|i| disk.put_log(i, None, !durable));
                }
                WriteOp::PurgeLogUpTo(upto) => {
                    let doomed: Vec<u64> = disk.log.range(..=upto).map(|(i, _)| *i).collect();
                    if !doomed.is_empty() {
                        crate::probes::hit("disk: log purged");
                    }
                    doomed
                        .into_iter()
                        .for_each(|i| disk.put_log(i, None, !durable));
                }
            }
        }
        if durable {
            // Everything written so far reached the platter with this sync.
            disk.undo.clear();
        }
        let hook = disk.hook.clone();
        drop(disk);
        if let Some(hook) = hook {
            // A relaxed commit is written but not yet synced: a crash now
            // lands between the write and its fsync.
            match (voted, appended, durable) {
                (true, _, true) => hook("vote"),
                (true, _, false) => hook("unsynced vote"),
                _ => {}
            }
            match (appended, durable) {
                (true, true) => hook("append"),
                (true, false) => hook("unsynced append"),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(durability: Durability, ops: Vec<WriteOp>) -> WriteBatch {
        WriteBatch { ops, durability }
    }

    #[test]
    fn crash_keeps_durable_writes_and_loses_relaxed_ones() {
        let s = SimStore::default();
        s.commit(batch(
            Durability::Immediate,
            vec![WriteOp::PutLog(1, vec![1])],
        ))
        .unwrap();
        s.commit(batch(
            Durability::Relaxed,
            vec![
                WriteOp::PutMeta(MetaKey::Committed, vec![9]),
                WriteOp::PutLog(2, vec![2]),
            ],
        ))
        .unwrap();
        s.crash(0);
        assert_eq!(s.log_range(0..10).unwrap(), vec![(1, vec![1])]);
        assert_eq!(s.get_meta(MetaKey::Committed).unwrap(), None);
        // A later durable commit makes earlier relaxed writes durable too.
        s.commit(batch(
            Durability::Relaxed,
            vec![WriteOp::PutLog(2, vec![2])],
        ))
        .unwrap();
        s.commit(batch(
            Durability::Immediate,
            vec![WriteOp::TruncateLogFrom(5)],
        ))
        .unwrap();
        s.crash(0);
        assert_eq!(s.log_last().unwrap(), Some((2, vec![2])));
    }

    #[test]
    fn a_crash_reports_the_relaxed_votes_and_entries_it_lost() {
        let s = SimStore::default();
        s.commit(batch(
            Durability::Immediate,
            vec![WriteOp::PutMeta(MetaKey::Vote, vec![1])],
        ))
        .unwrap();
        s.crash(0);
        assert!(s.lost_acknowledged().is_empty());
        s.commit(batch(
            Durability::Relaxed,
            vec![
                WriteOp::PutMeta(MetaKey::Vote, vec![2]),
                WriteOp::PutLog(4, vec![4]),
                WriteOp::PutMeta(MetaKey::Committed, vec![3]),
            ],
        ))
        .unwrap();
        s.crash(0);
        assert_eq!(s.lost_acknowledged(), vec!["a vote", "log entry 4"]);
        assert_eq!(s.get_meta(MetaKey::Vote).unwrap(), Some(vec![1]));
    }

    #[test]
    fn a_torn_crash_keeps_a_prefix_of_the_unsynced_commits() {
        let s = SimStore::default();
        for i in 1..=3 {
            s.commit(batch(
                Durability::Relaxed,
                vec![WriteOp::PutLog(i, vec![i as u8])],
            ))
            .unwrap();
        }
        s.crash(2); // Keep the first 2 of 3 unsynced commits.
        assert_eq!(s.log_last().unwrap(), Some((2, vec![2])));
        s.commit(batch(
            Durability::Relaxed,
            vec![WriteOp::PutLog(3, vec![3])],
        ))
        .unwrap();
        s.crash(7); // 7 % 2 = 1: the one unsynced commit survives.
        assert_eq!(s.log_last().unwrap(), Some((3, vec![3])));
    }

    #[test]
    fn injected_write_errors_refuse_commits() {
        let s = SimStore::default();
        s.set_fail_writes(true);
        assert!(s
            .commit(batch(
                Durability::Immediate,
                vec![WriteOp::PutLog(1, vec![1])]
            ))
            .is_err());
        s.set_fail_writes(false);
        assert!(s
            .commit(batch(
                Durability::Immediate,
                vec![WriteOp::PutLog(1, vec![1])]
            ))
            .is_ok());
    }

    #[test]
    fn a_corrupt_disk_refuses_reads_and_writes_until_wiped() {
        let s = SimStore::default();
        s.commit(batch(
            Durability::Immediate,
            vec![WriteOp::PutLog(1, vec![1])],
        ))
        .unwrap();
        s.corrupt();
        assert!(matches!(s.log_last(), Err(StoreError::Corrupt { .. })));
        assert!(s
            .commit(batch(
                Durability::Immediate,
                vec![WriteOp::PutLog(2, vec![2])]
            ))
            .is_err());
        s.wipe();
        assert!(!s.is_corrupt());
        assert_eq!(s.log_last().unwrap(), None);
    }

    #[test]
    fn injected_read_errors_refuse_reads_and_keep_the_data() {
        let s = SimStore::default();
        s.commit(batch(
            Durability::Immediate,
            vec![WriteOp::PutLog(1, vec![1])],
        ))
        .unwrap();
        s.set_fail_reads(true);
        assert!(s.failing());
        assert!(s.log_last().is_err());
        assert!(s.log_range(0..5).is_err());
        assert!(s.get_meta(MetaKey::Vote).is_err());
        s.set_fail_reads(false);
        assert!(!s.failing());
        assert_eq!(s.log_last().unwrap(), Some((1, vec![1])));
    }
}

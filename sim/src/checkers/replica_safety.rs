//! During faults, safety only: every replica's state satisfies the core's
//! invariants, and replicas that applied the same log prefix hold the same
//! state (the state machine is deterministic, so anything else means two
//! peers applied different entries at one index).

use std::collections::BTreeMap;

use super::Violation;

/// One replica as sampled during the run.
pub struct ReplicaSample {
    /// Which peer.
    pub name: String,
    /// Its applied index.
    pub applied_index: u64,
    /// Its encoded state (`Pinset::snapshot`).
    pub state: Vec<u8>,
    /// The result of its `check_invariants`.
    pub invariants: Result<(), String>,
}

/// Checks one sample of every live replica.
pub fn check_replica_safety(samples: &[ReplicaSample]) -> Result<(), Violation> {
    let mut at_index: BTreeMap<u64, &ReplicaSample> = BTreeMap::new();
    for s in samples {
        if let Err(e) = &s.invariants {
            return Err(Violation {
                checker: "replica_safety",
                detail: format!("{}: invariant broken: {e}", s.name),
            });
        }
        match at_index.get(&s.applied_index) {
            Some(other) if other.state != s.state => {
                return Err(Violation {
                    checker: "replica_safety",
                    detail: format!(
                        "{} and {} differ at applied index {}",
                        other.name, s.name, s.applied_index
                    ),
                })
            }
            Some(_) => {}
            None => {
                at_index.insert(s.applied_index, s);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, applied_index: u64, state: &[u8]) -> ReplicaSample {
        ReplicaSample {
            name: name.into(),
            applied_index,
            state: state.to_vec(),
            invariants: Ok(()),
        }
    }

    #[test]
    fn divergence_at_one_index_is_caught() {
        assert!(check_replica_safety(&[sample("a", 5, b"x"), sample("b", 6, b"y")]).is_ok());
        assert!(check_replica_safety(&[sample("a", 5, b"x"), sample("b", 5, b"x")]).is_ok());
        assert!(check_replica_safety(&[sample("a", 5, b"x"), sample("b", 5, b"y")]).is_err());
        let mut broken = sample("c", 1, b"z");
        broken.invariants = Err("bad".into());
        assert!(check_replica_safety(&[broken]).is_err());
    }
}

//! After the heal phase every peer holds the same pinset at the same index.

use std::collections::BTreeMap;

use cluster_core::{Cid, Pin};

use super::Violation;

/// One peer's final state: its name, applied index and pinset.
pub type ReplicaState = (String, u64, BTreeMap<Cid, Pin>);

/// Checks that all replicas are identical.
pub fn check_replicas_converged(replicas: &[ReplicaState]) -> Result<(), Violation> {
    let Some((first_name, first_index, first_pins)) = replicas.first() else {
        return Err(Violation {
            checker: "replicas_converged",
            detail: "no live replica to compare".into(),
        });
    };
    for (name, index, pins) in &replicas[1..] {
        if index != first_index || pins != first_pins {
            let differing: Vec<&Cid> = first_pins
                .iter()
                .filter(|(c, p)| pins.get(*c) != Some(*p))
                .map(|(c, _)| c)
                .chain(pins.keys().filter(|c| !first_pins.contains_key(*c)))
                .take(5)
                .collect();
            return Err(Violation {
                checker: "replicas_converged",
                detail: format!(
                    "{name} (index {index}, {} pins) differs from {first_name} (index {first_index}, {} pins); e.g. {differing:?}",
                    pins.len(),
                    first_pins.len()
                ),
            });
        }
    }
    Ok(())
}

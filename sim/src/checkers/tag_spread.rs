//! The allocator spreads a pin's allocations over the values of the
//! configured tag: with k distinct values among the peers it could choose
//! from, the first min(k, n) allocations of n land on distinct values.

use std::collections::{BTreeMap, BTreeSet};

use cluster_core::PeerId;

use super::Violation;

/// Checks one allocation against the tag values of the candidates it was chosen from.
pub fn check_tag_spread(
    allocations: &[PeerId],
    candidate_tags: &BTreeMap<PeerId, String>,
) -> Result<(), Violation> {
    let values: BTreeSet<&String> = candidate_tags.values().collect();
    let used: BTreeSet<&String> = allocations
        .iter()
        .filter_map(|p| candidate_tags.get(p))
        .collect();
    let expected = values.len().min(allocations.len());
    if used.len() < expected {
        return Err(Violation {
            checker: "tag_spread",
            detail: format!(
                "allocations {allocations:?} use tag values {used:?}, but {expected} of {values:?} were available"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crowding_one_tag_value_is_caught() {
        let (a, b, c) = (
            PeerId::synthetic(1),
            PeerId::synthetic(2),
            PeerId::synthetic(3),
        );
        let tags: BTreeMap<PeerId, String> = [
            (a.clone(), "x".to_string()),
            (b.clone(), "x".to_string()),
            (c.clone(), "y".to_string()),
        ]
        .into();
        assert!(check_tag_spread(&[a.clone(), c.clone()], &tags).is_ok());
        assert!(check_tag_spread(&[a.clone(), b.clone()], &tags).is_err());
        assert!(check_tag_spread(&[a, b, c], &tags).is_ok());
    }
}

//! Once the cluster is healed, every member knows every member's fresh
//! metrics: the allocator of whichever peer takes a request chooses among
//! all of them, and the leader's re-allocation sees who is alive. Metrics
//! that do not travel show up to a user as pins refused for "not enough
//! peers" while every peer is up.

use std::collections::{BTreeMap, BTreeSet};

use cluster_core::PeerId;

use super::Violation;

/// Checks that each member's view (`views`: peer → peers whose metrics it
/// holds and has not let expire) covers every member.
pub fn check_metrics_reach(
    views: &BTreeMap<PeerId, BTreeSet<PeerId>>,
    members: &BTreeSet<PeerId>,
) -> Result<(), Violation> {
    for (peer, seen) in views {
        let missing: Vec<&PeerId> = members.difference(seen).collect();
        if !missing.is_empty() {
            return Err(Violation {
                checker: "metrics_reach",
                detail: format!("{peer} holds no fresh metrics of {missing:?}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_missing_from_a_view_is_caught() {
        let p = |n| PeerId::synthetic(n);
        let members: BTreeSet<PeerId> = [p(1), p(2)].into();
        let mut views = BTreeMap::new();
        views.insert(p(1), members.clone());
        views.insert(p(2), members.clone());
        assert!(check_metrics_reach(&views, &members).is_ok());
        views.insert(p(2), [p(2)].into());
        let caught = check_metrics_reach(&views, &members);
        assert!(caught.is_err_and(|v| v.detail.contains(&format!("{:?}", p(1)))));
    }
}

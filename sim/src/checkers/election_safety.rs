//! Election safety: one leader per leader id. Openraft (in its default
//! mode) names a leader by (term, node id) and lets a candidate with a
//! greater node id take over a term, so two leaders in one term are allowed
//! (their log ids differ); what must never happen is two *nodes* leading
//! under one leader id, which makes their entries indistinguishable. The
//! node id is derived from the peer id and its store's incarnation, so a
//! peer back on a wiped disk is another node: if both incarnations led under
//! one leader id, an entry of the old one could be taken for the new one's
//! (seed 68 before the node id covered the incarnation).

use std::collections::{BTreeMap, BTreeSet};

use super::Violation;

/// Who led under each leader id seen so far.
#[derive(Debug, Default)]
pub struct Leaders {
    /// (term, node id) -> (peer id, incarnation, label for the report).
    by_leader_id: BTreeMap<(u64, u64), (String, u128, String)>,
    /// Leader ids already reported, so one conflict is one violation.
    reported: BTreeSet<(u64, u64)>,
}

impl Leaders {
    /// Records that `peer` on the store of `incarnation` (described by
    /// `label`) led as node `node` in `term`; an error if another peer or
    /// incarnation was seen leading under that leader id.
    pub fn record(
        &mut self,
        term: u64,
        node: u64,
        peer: &str,
        incarnation: u128,
        label: &str,
    ) -> Result<(), Violation> {
        let key = (term, node);
        match self.by_leader_id.get(&key) {
            None => {
                self.by_leader_id
                    .insert(key, (peer.to_string(), incarnation, label.to_string()));
                Ok(())
            }
            Some((p, i, _)) if p == peer && *i == incarnation => Ok(()),
            Some(_) if !self.reported.insert(key) => Ok(()),
            Some((_, _, other)) => Err(Violation {
                checker: "election safety",
                detail: format!("two nodes led as leader T{term}-N{node}: {other} and {label}"),
            }),
        }
    }

    /// How many leader ids were seen.
    pub fn leaders(&self) -> usize {
        self.by_leader_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_incarnations_leading_under_one_leader_id_are_caught() {
        let mut leaders = Leaders::default();
        assert!(leaders.record(1, 10, "a", 1, "peer 0").is_ok());
        assert!(leaders.record(1, 10, "a", 1, "peer 0").is_ok());
        // Openraft lets a greater node id take over a term.
        assert!(leaders.record(1, 11, "b", 1, "peer 1").is_ok());
        let err = leaders
            .record(1, 10, "a", 2, "peer 0 on a wiped disk")
            .unwrap_err();
        assert!(err.detail.contains("T1-N10"), "{err}");
        assert!(
            leaders.record(1, 10, "a", 3, "again").is_ok(),
            "reported once"
        );
        assert_eq!(leaders.leaders(), 2);
    }
}

//! What Raft was told is saved survives a crash: a vote (it answers the
//! candidate on it) and a log entry (it acknowledges the append on it) are
//! acted on the moment the store returns, so a crash may lose neither once
//! its commit returned. The simulated disk reports every one a crash took
//! back; any at all means the product saved it without syncing.

use super::Violation;

/// Checks each peer's disk report (peer index, what its crashes lost).
pub fn check_durable_acknowledgements(disks: &[(usize, Vec<String>)]) -> Result<(), Violation> {
    for (peer, lost) in disks {
        if let Some(first) = lost.first() {
            return Err(Violation {
                checker: "durable_acks",
                detail: format!(
                    "peer {peer}: a crash lost {first} after the store had returned it as \
                     saved ({} such records in all): Raft may already have acted on it",
                    lost.len()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_lost_passes_and_a_lost_vote_fails() {
        assert!(check_durable_acknowledgements(&[(0, vec![]), (1, vec![])]).is_ok());
        let v =
            check_durable_acknowledgements(&[(0, vec![]), (1, vec!["a vote".into()])]).unwrap_err();
        assert_eq!(v.checker, "durable_acks");
        assert!(v.detail.contains("peer 1"));
    }
}

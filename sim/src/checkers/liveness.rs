//! Progress: once a quorum is connected again, a write is acknowledged
//! within a bounded simulated time.

use super::Violation;

/// Checks that the first write acknowledged after the heal came in time.
pub fn check_liveness(
    heal_ms: u64,
    first_ack_after_heal_ms: Option<u64>,
    bound_ms: u64,
) -> Result<(), Violation> {
    match first_ack_after_heal_ms {
        Some(at) if at.saturating_sub(heal_ms) <= bound_ms => Ok(()),
        Some(at) => Err(Violation {
            checker: "liveness",
            detail: format!(
                "first write acknowledged {} ms after the heal (bound {bound_ms} ms)",
                at - heal_ms
            ),
        }),
        None => Err(Violation {
            checker: "liveness",
            detail: format!("no write acknowledged within {bound_ms} ms of the heal"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_or_missing_progress_is_caught() {
        assert!(check_liveness(1000, Some(1500), 1000).is_ok());
        assert!(check_liveness(1000, Some(2500), 1000).is_err());
        assert!(check_liveness(1000, None, 1000).is_err());
    }
}

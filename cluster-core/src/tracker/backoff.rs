//! Retry delays.

/// Delay before attempt `attempts + 1`: `base · 2^(attempts − 1)`, capped at `max`.
pub fn backoff_ms(attempts: u32, base_ms: u64, max_ms: u64) -> u64 {
    let doublings = attempts.saturating_sub(1).min(63);
    base_ms.saturating_mul(1u64 << doublings).min(max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let got: Vec<u64> = (1..=8).map(|a| backoff_ms(a, 1000, 30_000)).collect();
        assert_eq!(got, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        assert_eq!(backoff_ms(200, 1000, 30_000), 30_000);
        assert_eq!(backoff_ms(0, 1000, 30_000), 1000);
    }
}

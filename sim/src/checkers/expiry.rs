//! Pins whose expiry passed are removed by the cluster itself (the leader's
//! expiry driver), from every replica. The opposite promise, that a pin is
//! never removed before its expiry, is the oracle's: client pins carry
//! expiries far past the run, and a removal of one is a lost pin there.

use std::collections::BTreeMap;

use cluster_core::{Cid, Pin};

use super::Violation;

/// A pin with an expiry that the cluster acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringPin {
    /// Its CID (from a pool no client writes).
    pub cid: Cid,
    /// When it expires, in ms of simulated time.
    pub expire_at_ms: u64,
}

/// Checks that every acknowledged pin whose expiry is at least `grace_ms`
/// before `now_ms` is gone from every replica's pinset (`replicas`: label and
/// pins). Returns how many were checked.
pub fn check_expired_removed<'a>(
    acked: &[ExpiringPin],
    replicas: impl IntoIterator<Item = (&'a str, &'a BTreeMap<Cid, Pin>)> + Clone,
    now_ms: u64,
    grace_ms: u64,
) -> Result<usize, Violation> {
    let due: Vec<&ExpiringPin> = acked
        .iter()
        .filter(|p| p.expire_at_ms.saturating_add(grace_ms) <= now_ms)
        .collect();
    for pin in &due {
        for (replica, pins) in replicas.clone() {
            if pins.contains_key(&pin.cid) {
                return Err(Violation {
                    checker: "expiry",
                    detail: format!(
                        "{replica} still holds {} at {now_ms} ms, expired at {} ms",
                        pin.cid, pin.expire_at_ms
                    ),
                });
            }
        }
    }
    Ok(due.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_core::{Millis, PinOptions};

    fn cid(n: u8) -> Cid {
        let mut bytes = vec![0x12, 0x20];
        bytes.extend_from_slice(&[n; 32]);
        Cid::from_bytes(&bytes).expect("valid cid")
    }

    #[test]
    fn an_expired_pin_still_held_is_caught_and_a_pin_within_grace_is_not() {
        let acked = vec![
            ExpiringPin {
                cid: cid(1),
                expire_at_ms: 1_000,
            },
            ExpiringPin {
                cid: cid(2),
                expire_at_ms: 9_000,
            },
        ];
        let held = |c: Cid| Pin::new(c, PinOptions::default(), Millis(1));
        let peer0 = BTreeMap::from([(cid(2), held(cid(2)))]);
        let peer1 = BTreeMap::from([(cid(1), held(cid(1)))]);
        let healthy = [("peer 0", &peer0)];
        assert_eq!(check_expired_removed(&acked, healthy, 10_000, 2_000), Ok(1));
        let both = [("peer 0", &peer0), ("peer 1", &peer1)];
        let caught = check_expired_removed(&acked, both, 10_000, 2_000);
        assert!(caught.is_err_and(|v| v.checker == "expiry" && v.detail.contains("peer 1")));
    }
}

//! From the cluster's view of a pin to a [`PinStatus`]: the peers' tracker
//! statuses folded into one service status (pinning-service-api.md §4) and
//! the delegates (the IPFS addresses of the peers that hold the pin).

use std::collections::BTreeMap;

use cluster_core::{PeerId, Pin, TrackerStatus};

use super::types::{info, PinObject, PinStatus, ServiceStatus};
use crate::api::time::Timestamp;
use crate::drivers::metrics::Received;

/// Most delegates one answer lists (the spec's bound).
pub const DELEGATES_MAX: usize = 20;

/// The service status of a pin whose peers report `statuses`, checked in
/// upstream's order: any error → failed, else any pin queued → queued,
/// else any pinning → pinning, else any pinned → pinned. Anything else
/// (only unpinned, remote, unpinning, unpin queued, sharded, unexpectedly
/// unpinned) is no request to show: `None`. No peer at all is failed (no
/// peer can hold it), as upstream's empty mask is.
pub fn service_status(statuses: impl IntoIterator<Item = TrackerStatus>) -> Option<ServiceStatus> {
    let (mut any, mut error, mut queued, mut pinning, mut pinned) =
        (false, false, false, false, false);
    for status in statuses {
        any = true;
        error |= status.matches(TrackerStatus::Error);
        queued |= status == TrackerStatus::PinQueued;
        pinning |= status == TrackerStatus::Pinning;
        pinned |= status == TrackerStatus::Pinned;
    }
    if error || !any {
        Some(ServiceStatus::Failed)
    } else if queued {
        Some(ServiceStatus::Queued)
    } else if pinning {
        Some(ServiceStatus::Pinning)
    } else if pinned {
        Some(ServiceStatus::Pinned)
    } else {
        None
    }
}

/// The IPFS multiaddrs (each ending in `/p2p/<ipfs id>`, so a client can
/// dial them) of the peers that hold `pin`: its allocations, or every
/// member when it is pinned everywhere. From the peers' metrics; peers
/// without fresh metrics are left out. At most [`DELEGATES_MAX`].
pub fn delegates(
    pin: &Pin,
    members: &[PeerId],
    received: &BTreeMap<String, Received>,
) -> Vec<String> {
    let holders = if pin.allocations.is_empty() {
        members
    } else {
        &pin.allocations[..]
    };
    let mut out: Vec<String> = Vec::new();
    for peer in holders {
        let Some(ipfs) = received.get(peer.as_str()).map(|r| &r.ipfs) else {
            continue;
        };
        for address in &ipfs.addresses {
            let full = dialable(address, &ipfs.peer_id);
            if let Some(full) = full.filter(|f| !out.contains(f)) {
                out.push(full);
            }
            if out.len() == DELEGATES_MAX {
                return out;
            }
        }
    }
    out
}

/// `address` ending in `/p2p/<peer>` (Kubo reads each delegate as a peer
/// address and fails the whole request on one that does not end so);
/// `None` when the address or the id is unusable.
fn dialable(address: &str, peer: &str) -> Option<String> {
    let address = address.trim_end_matches('/');
    if !address.starts_with('/') {
        return None;
    }
    let mut parts = address.rsplit('/');
    let (_, protocol) = (parts.next(), parts.next());
    if matches!(protocol, Some("p2p" | "ipfs")) {
        return Some(address.to_string());
    }
    if peer.is_empty() || peer.contains('/') {
        return None;
    }
    Some(format!("{address}/p2p/{peer}"))
}

/// The answer for `pin` in `status`.
pub fn pin_status(pin: &Pin, status: ServiceStatus, delegates: Vec<String>) -> PinStatus {
    let cid = pin.cid.to_string();
    let o = &pin.options;
    PinStatus {
        requestid: cid.clone(),
        status,
        created: Timestamp::at(pin.timestamp),
        pin: PinObject {
            cid,
            name: (!o.name.is_empty()).then(|| o.name.clone()),
            origins: o.origins.clone(),
            meta: o.metadata.clone(),
        },
        delegates,
        info: info(),
    }
}

#[cfg(test)]
mod tests {
    use cluster_core::allocator::PeerMetrics;
    use cluster_core::{Cid, Millis, PinOptions};

    use super::*;
    use crate::ipfs::IpfsId;
    use TrackerStatus::*;

    #[test]
    fn statuses_fold_in_upstreams_order() {
        let s = |list: &[TrackerStatus]| service_status(list.iter().copied());
        assert_eq!(s(&[Pinned, Pinned]), Some(ServiceStatus::Pinned));
        assert_eq!(s(&[Pinned, Remote]), Some(ServiceStatus::Pinned));
        assert_eq!(s(&[Pinned, Pinning]), Some(ServiceStatus::Pinning));
        assert_eq!(s(&[Pinning, PinQueued]), Some(ServiceStatus::Queued));
        for error in [ClusterError, PinError, UnpinError] {
            assert_eq!(s(&[Pinned, PinQueued, error]), Some(ServiceStatus::Failed));
        }
        assert_eq!(s(&[]), Some(ServiceStatus::Failed));
        for nothing in [
            Unpinned,
            Remote,
            UnpinQueued,
            Unpinning,
            Sharded,
            UnexpectedlyUnpinned,
            Undefined,
        ] {
            assert_eq!(s(&[nothing]), None, "{nothing}");
        }
        assert_eq!(s(&[Remote, Unpinned, UnpinQueued]), None);
        // One peer that has it is enough for pinned; the rest lost it.
        assert_eq!(
            s(&[Pinned, UnexpectedlyUnpinned]),
            Some(ServiceStatus::Pinned)
        );
    }

    fn received(peer: &PeerId, ipfs_id: &str, addresses: &[&str]) -> (String, Received) {
        let received = Received {
            metrics: PeerMetrics {
                peer: peer.clone(),
                free_space_bytes: 0,
                pinned: 0,
                queue_len: 0,
                tags: BTreeMap::new(),
                last_seen: Millis(0),
            },
            ipfs: IpfsId {
                peer_id: ipfs_id.into(),
                addresses: addresses.iter().map(|a| a.to_string()).collect(),
            },
            expires: Millis(1_000),
        };
        (peer.to_string(), received)
    }

    #[test]
    fn delegates_are_the_holders_dialable_addresses() {
        let (a, b, c) = (
            PeerId::synthetic(1),
            PeerId::synthetic(2),
            PeerId::synthetic(3),
        );
        let id = "12D3KooWKuJ8LPTyHbyX4nt4C7uWmUobzFsiceTVoFw7HpmoNakM";
        let board = BTreeMap::from([
            received(
                &a,
                id,
                &["/ip4/10.0.0.1/tcp/4001", "/ip4/10.0.0.1/tcp/4001"],
            ),
            received(
                &b,
                id,
                &[&format!("/ip4/10.0.0.2/tcp/4001/p2p/{id}"), "garbage"],
            ),
            received(&c, "", &["/ip4/10.0.0.3/tcp/4001"]),
        ]);
        let cid = Cid::parse("QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq").expect("cid");
        let mut pin = Pin::new(cid, PinOptions::default(), Millis(5));
        let members = [a.clone(), b.clone(), c.clone()];
        assert_eq!(
            delegates(&pin, &members, &board),
            vec![
                format!("/ip4/10.0.0.1/tcp/4001/p2p/{id}"),
                format!("/ip4/10.0.0.2/tcp/4001/p2p/{id}"),
            ],
            "everywhere: every member; deduplicated; unusable addresses left out"
        );
        pin.allocations = vec![b.clone()];
        assert_eq!(
            delegates(&pin, &members, &board),
            vec![format!("/ip4/10.0.0.2/tcp/4001/p2p/{id}")]
        );
        pin.allocations = vec![PeerId::synthetic(9)];
        assert!(delegates(&pin, &members, &board).is_empty());
    }

    #[test]
    fn every_delegate_ends_with_a_peer_id() {
        let id = "12D3KooWKuJ8LPTyHbyX4nt4C7uWmUobzFsiceTVoFw7HpmoNakM";
        let relay = "/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWRelay/p2p-circuit";
        assert_eq!(dialable(relay, id), Some(format!("{relay}/p2p/{id}")));
        let full = format!("/ip4/1.2.3.4/tcp/4001/p2p/{id}");
        assert_eq!(dialable(&full, id), Some(full.clone()));
        assert_eq!(dialable(&format!("{full}/"), id), Some(full.clone()));
        let old = format!("/ip4/1.2.3.4/tcp/4001/ipfs/{id}");
        assert_eq!(dialable(&old, id), Some(old.clone()));
        assert_eq!(
            dialable("/ip6/::1/udp/4001/quic-v1", id),
            Some(format!("/ip6/::1/udp/4001/quic-v1/p2p/{id}"))
        );
        assert_eq!(dialable("/ip4/1.2.3.4/tcp/1", ""), None);
        assert_eq!(dialable("ip4/1.2.3.4", id), None);
    }

    #[test]
    fn delegates_are_bounded() {
        let a = PeerId::synthetic(1);
        let addresses: Vec<String> = (0..50).map(|i| format!("/ip4/10.0.0.{i}/tcp/1")).collect();
        let refs: Vec<&str> = addresses.iter().map(String::as_str).collect();
        let board = BTreeMap::from([received(&a, "12D3KooWX", &refs)]);
        let cid = Cid::parse("QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq").expect("cid");
        let pin = Pin::new(cid, PinOptions::default(), Millis(5));
        assert_eq!(delegates(&pin, &[a], &board).len(), DELEGATES_MAX);
    }

    #[test]
    fn a_pin_status_shows_the_pin() {
        let cid = Cid::parse("QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq").expect("cid");
        let options = PinOptions {
            name: "backup".into(),
            metadata: [("owner".to_string(), "alice".to_string())].into(),
            ..PinOptions::default()
        };
        let pin = Pin::new(cid.clone(), options, Millis(1_714_990_365_000));
        let status = pin_status(&pin, ServiceStatus::Queued, Vec::new());
        let json = serde_json::to_value(&status).expect("encode");
        assert_eq!(json["requestid"], cid.to_string());
        assert_eq!(json["status"], "queued");
        assert_eq!(json["created"], "2024-05-06T10:12:45Z");
        assert_eq!(json["pin"]["name"], "backup");
        assert_eq!(json["pin"]["meta"]["owner"], "alice");
        assert!(json["pin"].get("origins").is_none());
        assert_eq!(json["delegates"], serde_json::json!([]));
        assert_eq!(json["info"]["source"], "IPFS cluster API");
        let unnamed = Pin::new(cid, PinOptions::default(), Millis(0));
        let json = serde_json::to_value(pin_status(&unnamed, ServiceStatus::Pinned, Vec::new()))
            .expect("encode");
        assert!(json["pin"].get("name").is_none());
    }
}

//! Output: `--enc json` prints the API's own objects pretty-printed (4
//! spaces, one object after another for listings, as upstream); `--enc
//! text` prints the layouts of `ipfs-cluster-ctl` (cli.md §1.5). Every
//! function answers the text to print, newline included.

use std::fmt::Write as _;

use cluster_core::{PinMode, PinType};
use serde::Serialize;

use super::humanize;
use crate::api::types::{
    Alert, ApiPin, BandwidthByProtocol, ConnectGraph, GlobalPinInfo, GlobalRepoGc, IdInfo, Metric,
};

/// `value` as indented JSON and a newline (upstream's `MarshalIndent`).
pub fn json<T: Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serializing the API's own types into memory cannot fail: their maps
    // have string keys and their floats (traffic rates) are finite.
    if value.serialize(&mut ser).is_err() {
        return "null\n".to_string();
    }
    let mut text = String::from_utf8_lossy(&out).into_owned();
    text.push('\n');
    text
}

/// `id` / `peers ls`: one block per peer.
pub fn id(info: &IdInfo) -> String {
    if !info.error.is_empty() {
        return format!("{} | ERROR: {}\n", info.id, info.error);
    }
    let others = info.cluster_peers.len().saturating_sub(1);
    let mut out = format!(
        "{} | {} | Sees {others} other peers\n",
        info.id, info.peername
    );
    let mut addresses = info.addresses.clone().unwrap_or_default();
    addresses.sort();
    out.push_str("  > Addresses:\n");
    for a in &addresses {
        let _ = writeln!(out, "    - {a}");
    }
    if !info.ipfs.error.is_empty() {
        let _ = writeln!(out, "  > IPFS ERROR: {}", info.ipfs.error);
        return out;
    }
    let _ = writeln!(out, "  > IPFS: {}", info.ipfs.id.as_deref().unwrap_or(""));
    let mut ipfs = info.ipfs.addresses.clone().unwrap_or_default();
    ipfs.sort();
    for a in &ipfs {
        let _ = writeln!(out, "    - {a}");
    }
    out
}

/// `status` / `recover`: the CID line, then one line per peer (sorted by
/// peer id): `    > name                 : PINNED | time | Attempts: 0 | Priority: false`.
pub fn status(info: &GlobalPinInfo) -> String {
    let mut out = info.cid.to_string();
    if !info.name.is_empty() {
        let _ = write!(out, " | {}", info.name);
    }
    out.push_str(":\n");
    for (peer, p) in &info.peer_map {
        let who = if p.peername.is_empty() {
            peer.as_str()
        } else {
            p.peername.as_str()
        };
        let mut state = p.status.as_str().to_uppercase();
        if !p.error.is_empty() {
            let _ = write!(state, ": {}", p.error);
        }
        let _ = writeln!(
            out,
            "    > {who:<20} : {state} | {} | Attempts: {} | Priority: {}",
            p.timestamp, p.attempt_count, p.priority_pin
        );
    }
    out
}

/// `pin ls` / `allocations`: one line per pin.
pub fn pin(pin: &ApiPin) -> String {
    let kind = match pin.pin_type {
        PinType::Data => "PIN",
        PinType::Meta => "META-PIN",
        PinType::ClusterDag => "CLUSTERDAG-PIN",
        PinType::Shard => "SHARD-PIN",
    };
    let direct = if pin.mode == PinMode::Direct {
        "-DIRECT"
    } else {
        ""
    };
    let (min, max) = (pin.replication_factor_min, pin.replication_factor_max);
    let placement = if min == -1 && max == -1 {
        "Repl. Factor: -1 | Allocations: [everywhere]".to_string()
    } else {
        let mut ids: Vec<String> = pin.allocations.iter().map(ToString::to_string).collect();
        ids.sort();
        format!(
            "Repl. Factor: {min}--{max} | Allocations: [{}]",
            ids.join(" ")
        )
    };
    let depth = match pin.max_depth {
        0 => "Direct".to_string(),
        d if d < 0 => "Recursive".to_string(),
        d => format!("Recursive-{d}"),
    };
    let has_meta = pin.metadata.as_ref().is_some_and(|m| !m.is_empty());
    format!(
        "{} | {} | {kind}{direct} | {placement} | {depth} | Metadata: {} | Exp: {} | Added: {}\n",
        pin.cid,
        pin.name,
        if has_meta { "yes" } else { "no" },
        humanize::date(pin.expire_at).unwrap_or_else(|| "∞".into()),
        humanize::date(pin.timestamp).unwrap_or_else(|| "unknown".into()),
    )
}

/// `health metrics NAME`: `<peer> | <name>: <value> | Expires in: <when>`.
pub fn metric(m: &Metric, now_nanos: i64) -> String {
    let value = match m.value.parse::<u64>() {
        Ok(n) if m.name == "freespace" && m.weight > 0 => humanize::bytes(n),
        _ => m.value.clone(),
    };
    format!(
        "{} | {}: {value} | Expires in: {}\n",
        m.peer,
        m.name,
        humanize::relative(m.expire, now_nanos)
    )
}

/// `health metrics` without a name: the names, sorted, one per line.
pub fn metric_names(names: &[String]) -> String {
    let mut names = names.to_vec();
    names.sort();
    names.dedup();
    names.iter().map(|n| format!("{n}\n")).collect()
}

/// `health alerts`: `<peer>: <metric>. Expired at: <when>. Triggered at: <when>`.
pub fn alert(a: &Alert, now_nanos: i64) -> String {
    let triggered = humanize::timestamp_nanos(a.triggered_at)
        .map(|t| humanize::relative(t, now_nanos))
        .unwrap_or_else(|| "unknown".into());
    format!(
        "{}: {}. Expired at: {}. Triggered at: {triggered}\n",
        a.metric.peer,
        a.metric.name,
        humanize::relative(a.metric.expire, now_nanos)
    )
}

/// `health bandwidth`: one line per protocol, sorted, as upstream's
/// `%25s: In: %7s. Out: %7s. RateIn: %.2fB/s. RateOut: %.2fB/s`.
pub fn bandwidth(traffic: &BandwidthByProtocol) -> String {
    let mut out = String::new();
    for (protocol, t) in traffic {
        let _ = writeln!(
            out,
            "{protocol:>25}: In: {:>7}. Out: {:>7}. RateIn: {:.2}B/s. RateOut: {:.2}B/s",
            humanize::bytes(t.total_in),
            humanize::bytes(t.total_out),
            t.rate_in,
            t.rate_out
        );
    }
    out
}

/// `ipfs gc`: per peer (sorted by id) its name, then the removed CIDs.
pub fn repo_gc(gc: &GlobalRepoGc) -> String {
    let mut out = String::new();
    for (id, peer) in &gc.peer_map {
        let who = if peer.peername.is_empty() {
            id.as_str()
        } else {
            peer.peername.as_str()
        };
        match &peer.error {
            Some(e) if !e.is_empty() => {
                let _ = writeln!(out, "{who:<15} | ERROR: {e}");
            }
            _ => {
                let _ = writeln!(out, "{who:<15}");
            }
        }
        out.push_str("  > CIDs:\n");
        for key in &peer.keys {
            match (&key.key, &key.error) {
                (_, Some(e)) if !e.is_empty() => {
                    let _ = writeln!(out, "    - ERROR: {e}");
                }
                (Some(cid), _) => {
                    let _ = writeln!(out, "    - {cid}");
                }
                _ => {}
            }
        }
    }
    out
}

/// `health graph`: a Graphviz digraph named `cluster`. Cluster peers are
/// `C<n>` (the answering peer `C0`, double border), IPFS daemons `I<n>`;
/// edges are who hears from whom and each peer's daemon (`C0 -> I0`).
pub fn graph(g: &ConnectGraph) -> String {
    let mut peers: Vec<&str> = g
        .cluster_links
        .keys()
        .chain(g.cluster_links.values().flatten())
        .chain(g.cluster_to_ipfs.keys())
        .map(String::as_str)
        .filter(|p| *p != g.cluster_id)
        .collect();
    peers.sort();
    peers.dedup();
    peers.insert(0, g.cluster_id.as_str());
    let mut daemons: Vec<&str> = g
        .cluster_to_ipfs
        .values()
        .chain(g.ipfs_links.keys())
        .chain(g.ipfs_links.values().flatten())
        .map(String::as_str)
        .collect();
    daemons.sort();
    daemons.dedup();
    let c = |id: &str| peers.iter().position(|p| *p == id).map(|n| format!("C{n}"));
    let i = |id: &str| {
        daemons
            .iter()
            .position(|p| *p == id)
            .map(|n| format!("I{n}"))
    };

    let mut out = String::from("digraph cluster {\n");
    for (n, id) in peers.iter().enumerate() {
        let name = g.id_to_peername.get(*id).map(String::as_str).unwrap_or("");
        let short: String = id
            .chars()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let label = if name.is_empty() {
            short
        } else {
            format!("{name}\\n{short}")
        };
        let trusted = g.cluster_trust_links.get(*id).copied().unwrap_or(false);
        let extra = if n == 0 { " peripheries=2" } else { "" };
        let color = if trusted { "orange" } else { "darkorange" };
        let _ = writeln!(
            out,
            "  C{n} [label=\"{label}\" style=filled color=\"{color}\" shape=box{extra}]"
        );
    }
    for (n, id) in daemons.iter().enumerate() {
        let short: String = id
            .chars()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let _ = writeln!(
            out,
            "  I{n} [label=\"IPFS\\n{short}\" style=filled color=\"turquoise\" shape=ellipse]"
        );
    }
    for (from, tos) in &g.cluster_links {
        for to in tos {
            if let (Some(a), Some(b)) = (c(from), c(to)) {
                let _ = writeln!(out, "  {a} -> {b}");
            }
        }
    }
    for (peer, daemon) in &g.cluster_to_ipfs {
        if let (Some(a), Some(b)) = (c(peer), i(daemon)) {
            let _ = writeln!(out, "  {a} -> {b}");
        }
    }
    for (from, tos) in &g.ipfs_links {
        for to in tos {
            if let (Some(a), Some(b)) = (i(from), i(to)) {
                let _ = writeln!(out, "  {a} -> {b}");
            }
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::time::Timestamp;
    use crate::api::types::{IpfsIdInfo, PinInfoShort};
    use cluster_core::{Cid, Millis, PeerId, TrackerStatus};
    use std::collections::BTreeMap;

    const A: &str = "12D3KooWGHTKzeT4KaLGLrbKKyT8zKrBPXAUBRzCAN6ZMDMo4M6M";
    const CID: &str = "QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq";

    #[test]
    fn status_lines_follow_the_upstream_layout() {
        let mut peer_map = BTreeMap::new();
        peer_map.insert(
            A.to_string(),
            PinInfoShort {
                peername: "node-a".into(),
                ipfs_peer_id: None,
                ipfs_peer_addresses: None,
                status: TrackerStatus::PinError,
                timestamp: Timestamp::at(Millis(1_714_990_365_000)),
                error: "boom".into(),
                attempt_count: 3,
                priority_pin: true,
            },
        );
        let info = GlobalPinInfo {
            cid: Cid::parse(CID).unwrap(),
            name: "backup".into(),
            allocations: vec![],
            origins: vec![],
            created: Timestamp(None),
            metadata: None,
            peer_map,
        };
        assert_eq!(
            status(&info),
            format!(
                "{CID} | backup:\n    > node-a               : PIN_ERROR: boom | \
                 2024-05-06T10:12:45Z | Attempts: 3 | Priority: true\n"
            )
        );
    }

    #[test]
    fn pin_lines_follow_the_upstream_layout() {
        let p = ApiPin {
            replication_factor_min: 2,
            replication_factor_max: 3,
            name: "backup".into(),
            mode: PinMode::Recursive,
            shard_size: 0,
            user_allocations: None,
            expire_at: Timestamp(None),
            metadata: Some([("a".to_string(), "b".to_string())].into()),
            pin_update: None,
            origins: None,
            cid: Cid::parse(CID).unwrap(),
            pin_type: PinType::Data,
            allocations: vec![PeerId::parse(A).unwrap()],
            max_depth: -1,
            reference: None,
            timestamp: Timestamp::at(Millis(1_714_990_365_000)),
        };
        assert_eq!(
            pin(&p),
            format!(
                "{CID} | backup | PIN | Repl. Factor: 2--3 | Allocations: [{A}] | Recursive | \
                 Metadata: yes | Exp: ∞ | Added: 2024-05-06 10:12:45\n"
            )
        );
        let everywhere = ApiPin {
            replication_factor_min: -1,
            replication_factor_max: -1,
            mode: PinMode::Direct,
            max_depth: 0,
            metadata: None,
            ..p
        };
        assert!(pin(&everywhere).contains(
            "| PIN-DIRECT | Repl. Factor: -1 | Allocations: [everywhere] | Direct | Metadata: no"
        ));
    }

    #[test]
    fn id_blocks_count_the_other_peers() {
        let info = IdInfo {
            id: A.into(),
            addresses: Some(vec!["/ip4/b".into(), "/ip4/a".into()]),
            cluster_peers: vec![A.into(), "x".into()],
            cluster_peers_addresses: vec![],
            version: "1.1.6".into(),
            commit: String::new(),
            rpc_protocol_version: "x".into(),
            error: String::new(),
            ipfs: IpfsIdInfo {
                id: Some("I".into()),
                addresses: Some(vec!["/ip4/i".into()]),
                error: String::new(),
            },
            peername: "node-a".into(),
        };
        assert_eq!(
            id(&info),
            format!(
                "{A} | node-a | Sees 1 other peers\n  > Addresses:\n    - /ip4/a\n    - /ip4/b\n  \
                 > IPFS: I\n    - /ip4/i\n"
            )
        );
        let json = json(&info);
        assert!(json.starts_with("{\n    \"id\": "), "{json}");
    }

    #[test]
    fn the_graph_links_each_peer_to_its_daemon() {
        let mut g = ConnectGraph {
            cluster_id: A.into(),
            ..ConnectGraph::default()
        };
        g.cluster_to_ipfs.insert(A.into(), "ipfs-a".into());
        g.id_to_peername.insert(A.into(), "node-a".into());
        let dot = graph(&g);
        assert!(dot.starts_with("digraph cluster {"), "{dot}");
        assert!(dot.contains("C0 -> I0"), "{dot}");
    }

    #[test]
    fn bandwidth_lines_follow_upstreams_format_sorted_by_protocol() {
        let mut traffic = BandwidthByProtocol::new();
        traffic.insert(
            "/ipfscluster/1.0/rpc".into(),
            cluster_net::Traffic {
                total_in: 120_345,
                total_out: 99_812,
                rate_in: 12.5,
                rate_out: 9.1,
            },
        );
        traffic.insert("/a".into(), cluster_net::Traffic::default());
        assert_eq!(
            bandwidth(&traffic),
            concat!(
                "                       /a: In:     0 B. Out:     0 B. RateIn: 0.00B/s. RateOut: 0.00B/s\n",
                "     /ipfscluster/1.0/rpc: In:  120 kB. Out:  100 kB. RateIn: 12.50B/s. RateOut: 9.10B/s\n",
            )
        );
    }
}

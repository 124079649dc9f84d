//! The REST API's JSON shapes, with IPFS Cluster v1.1's field names and
//! order (rest-api.md §5). The server builds them from the cluster's own
//! types; the client decodes them.

use std::collections::BTreeMap;

use cluster_core::{Cid, PeerId, Pin, PinMode, PinType, TrackerStatus};
use serde::{Deserialize, Serialize};

use super::time::Timestamp;

/// `{"code":…,"message":…}`: every error answer; `code` equals the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The HTTP status.
    pub code: u16,
    /// What went wrong.
    pub message: String,
}

/// `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Semver of the API level, with this implementation as build metadata.
    pub version: String,
}

/// A pin as the API shows it (§5.2): the options first, then the pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiPin {
    /// Fewest peers; -1 everywhere.
    pub replication_factor_min: i32,
    /// Most peers; -1 everywhere.
    pub replication_factor_max: i32,
    /// Human name.
    pub name: String,
    /// Recursive or direct.
    pub mode: PinMode,
    /// Shard size (always 0 here: sharding is not supported).
    pub shard_size: u64,
    /// Preferred peers as sent; `null` when read back (never stored).
    pub user_allocations: Option<Vec<PeerId>>,
    /// Expiry; the zero time when none.
    pub expire_at: Timestamp,
    /// Metadata; `null` when read back empty.
    pub metadata: Option<BTreeMap<String, String>>,
    /// The CID this pin replaced (pin update).
    pub pin_update: Option<Cid>,
    /// Multiaddresses of peers holding the content.
    pub origins: Option<Vec<String>>,
    /// The pinned CID.
    pub cid: Cid,
    /// `pin`, `meta-pin`, `clusterdag-pin`, `shard-pin`.
    #[serde(rename = "type")]
    pub pin_type: PinType,
    /// Peers that pin it; `[]` when pinned everywhere.
    pub allocations: Vec<PeerId>,
    /// -1 recursive, 0 direct, n limited depth.
    pub max_depth: i32,
    /// Sharding link.
    pub reference: Option<Cid>,
    /// When it was submitted.
    pub timestamp: Timestamp,
}

impl ApiPin {
    /// The pin as read back from the shared state (rest-api.md §5.2: mode
    /// from the depth, `metadata` null when empty, `origins` `[]`,
    /// `user_allocations` null).
    pub fn stored(pin: &Pin) -> ApiPin {
        ApiPin::from_stored(pin.clone())
    }

    /// [`stored`](Self::stored) taking the pin by value: a listing moves its
    /// fields instead of copying them.
    pub fn from_stored(pin: Pin) -> ApiPin {
        let mode = pin.mode();
        let o = pin.options;
        ApiPin {
            replication_factor_min: o.replication_factor_min,
            replication_factor_max: o.replication_factor_max,
            name: o.name,
            mode,
            shard_size: o.shard_size,
            user_allocations: None,
            expire_at: Timestamp(o.expire_at),
            metadata: (!o.metadata.is_empty()).then_some(o.metadata),
            pin_update: o.pin_update,
            origins: Some(o.origins),
            cid: pin.cid,
            pin_type: pin.pin_type,
            allocations: pin.allocations,
            max_depth: pin.max_depth,
            reference: pin.reference,
            timestamp: Timestamp::at(pin.timestamp),
        }
    }

    /// The field-by-field reading of §5.2 that [`from_stored`] must match.
    #[cfg(test)]
    fn stored_via_submitted(pin: &Pin) -> ApiPin {
        let mut api = ApiPin::submitted(pin);
        api.mode = pin.mode();
        api.user_allocations = None;
        api.metadata = (!pin.options.metadata.is_empty()).then(|| pin.options.metadata.clone());
        api.origins = Some(pin.options.origins.clone());
        api
    }

    /// The pin as submitted (the answer to `POST /pins/…`): mode as asked,
    /// `metadata` always an object, `origins` and `user_allocations` null
    /// when none were sent.
    pub fn submitted(pin: &Pin) -> ApiPin {
        let o = &pin.options;
        ApiPin {
            replication_factor_min: o.replication_factor_min,
            replication_factor_max: o.replication_factor_max,
            name: o.name.clone(),
            mode: o.mode,
            shard_size: o.shard_size,
            user_allocations: (!o.user_allocations.is_empty()).then(|| o.user_allocations.clone()),
            expire_at: Timestamp(o.expire_at),
            metadata: Some(o.metadata.clone()),
            pin_update: o.pin_update.clone(),
            origins: (!o.origins.is_empty()).then(|| o.origins.clone()),
            cid: pin.cid.clone(),
            pin_type: pin.pin_type,
            allocations: pin.allocations.clone(),
            max_depth: pin.max_depth,
            reference: pin.reference.clone(),
            timestamp: Timestamp::at(pin.timestamp),
        }
    }
}

/// The IPFS daemon part of an [`IdInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IpfsIdInfo {
    /// The daemon's peer id; omitted when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its swarm addresses; `null` when unreachable.
    pub addresses: Option<Vec<String>>,
    /// Why it could not be asked; `""` when fine.
    pub error: String,
}

/// `GET /id` and each line of `GET /peers` (§5.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdInfo {
    /// The cluster peer.
    pub id: String,
    /// Its cluster addresses with `/p2p/<id>`.
    pub addresses: Option<Vec<String>>,
    /// The consensus peerset, this peer included, sorted.
    pub cluster_peers: Vec<String>,
    /// Known addresses of the other peers.
    pub cluster_peers_addresses: Vec<String>,
    /// The API version (see [`Version`]).
    pub version: String,
    /// Always `""` (as upstream v1.1).
    pub commit: String,
    /// The peer-RPC protocol this node speaks.
    pub rpc_protocol_version: String,
    /// Why the peer could not be asked; `""` when fine.
    pub error: String,
    /// Its IPFS daemon.
    pub ipfs: IpfsIdInfo,
    /// Its human name.
    pub peername: String,
}

/// One peer's view of one CID (a `peer_map` value, §5.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinInfoShort {
    /// The peer's name.
    pub peername: String,
    /// Its IPFS daemon's id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipfs_peer_id: Option<String>,
    /// Its IPFS daemon's addresses, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipfs_peer_addresses: Option<Vec<String>>,
    /// The status.
    pub status: TrackerStatus,
    /// When it was computed.
    pub timestamp: Timestamp,
    /// The last error, `""` when none.
    pub error: String,
    /// Retries of the current operation.
    pub attempt_count: u32,
    /// Whether the operation waits in the priority queue.
    pub priority_pin: bool,
}

/// The status of one CID on every peer asked (§5.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalPinInfo {
    /// The CID.
    pub cid: Cid,
    /// The pin's name (`""` when not pinned).
    pub name: String,
    /// The pin's allocations.
    pub allocations: Vec<PeerId>,
    /// The pin's origins.
    pub origins: Vec<String>,
    /// The pin's timestamp (zero time when not pinned).
    pub created: Timestamp,
    /// The pin's metadata, `null` when none.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Status per cluster peer id.
    pub peer_map: BTreeMap<String, PinInfoShort>,
}

/// One metric of one peer (§5.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metric {
    /// `ping`, `freespace`, `numpin`, `pinqueue`, `tag:<key>`.
    pub name: String,
    /// The issuing peer.
    pub peer: String,
    /// Informer-specific value.
    pub value: String,
    /// Expiry, Unix nanoseconds.
    pub expire: i64,
    /// Whether it counts.
    pub valid: bool,
    /// Allocator weight.
    pub weight: i64,
    /// Whether peers are partitioned by its value (tags).
    pub partitionable: bool,
    /// Arrival on the answering peer, Unix nanoseconds.
    pub received_at: i64,
}

/// A metric that expired, with when that was noticed (§5.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The metric.
    #[serde(flatten)]
    pub metric: Metric,
    /// When the alert was raised.
    pub triggered_at: Timestamp,
}

/// `GET /health/bandwidth`: this peer's traffic by libp2p protocol id.
pub type BandwidthByProtocol = BTreeMap<String, cluster_net::Traffic>;

/// `GET /health/graph` (§5.9).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConnectGraph {
    /// The answering peer.
    pub cluster_id: String,
    /// Names of the peers.
    pub id_to_peername: BTreeMap<String, String>,
    /// IPFS daemon → daemons it is connected to.
    pub ipfs_links: BTreeMap<String, Vec<String>>,
    /// Cluster peer → peers it hears from.
    pub cluster_links: BTreeMap<String, Vec<String>>,
    /// Cluster peer → trusted.
    pub cluster_trust_links: BTreeMap<String, bool>,
    /// Cluster peer → its IPFS daemon.
    pub cluster_to_ipfs: BTreeMap<String, String>,
}

/// One key a garbage collection removed, or why it could not (§5.9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpldKey {
    /// The removed block.
    pub key: Option<Cid>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One peer's garbage collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoGc {
    /// The cluster peer.
    pub peer: String,
    /// Its name.
    pub peername: String,
    /// What was removed.
    pub keys: Vec<IpldKey>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /ipfs/gc`: every peer's collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalRepoGc {
    /// By cluster peer id.
    pub peer_map: BTreeMap<String, RepoGc>,
}

/// One line of `POST /add` (§5.8): a file or directory added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedOutput {
    /// Its path within the upload.
    pub name: String,
    /// Its CID; `null` on progress updates.
    pub cid: Option<Cid>,
    /// Progress counter (omitted when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes: u64,
    /// Cumulative DAG size (omitted when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Peers the content is allocated to (omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocations: Vec<PeerId>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use cluster_core::{Millis, PinOptions};

    use super::*;

    #[test]
    fn a_pin_moved_into_the_api_form_reads_as_the_copied_one() {
        let cid =
            Cid::parse("bafkreiaaaakevi66arijx2jdd2iqxzkllwgmn4tl42gh5hht765vtak2re").expect("cid");
        let peer =
            PeerId::parse("12D3KooWG1aenKP6tEXto3pN2z7PRNNaiR2BuJKpATfQssXTLLLr").expect("peer");
        let full = PinOptions {
            replication_factor_min: 1,
            replication_factor_max: 2,
            name: "a name".into(),
            mode: PinMode::Direct,
            expire_at: Some(Millis(2_000_000_000_000)),
            metadata: BTreeMap::from([("k".into(), "v".into())]),
            pin_update: Some(cid.clone()),
            origins: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            ..PinOptions::default()
        };
        for options in [PinOptions::default(), full] {
            let mut pin = Pin::new(cid.clone(), options, Millis(1_700_000_000_123));
            pin.allocations = vec![peer.clone()];
            assert_eq!(
                ApiPin::from_stored(pin.clone()),
                ApiPin::stored_via_submitted(&pin)
            );
            assert_eq!(ApiPin::stored(&pin), ApiPin::stored_via_submitted(&pin));
        }
    }
}

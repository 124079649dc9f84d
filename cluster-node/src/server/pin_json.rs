//! A pin as IPFS Cluster writes it in JSON (the REST API's Pin object, and
//! one line of `state export`): field names and value forms as upstream's.
//!
//! Times are RFC 3339 in UTC with millisecond precision (the pinset keeps
//! milliseconds); the zero time `0001-01-01T00:00:00Z` means "no expiry".

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster_core::pin::{PinMode, PinType};
use cluster_core::{Cid, Millis, PeerId, Pin, PinOptions};
use serde::{Deserialize, Serialize};

/// Go's zero `time.Time`, IPFS Cluster's "not set".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One pin in upstream's JSON shape (options first, as upstream emits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinJson {
    /// Fewest peers that must pin it (-1: everywhere).
    pub replication_factor_min: i32,
    /// Most peers that should pin it (-1: everywhere).
    pub replication_factor_max: i32,
    /// Human name.
    #[serde(default)]
    pub name: String,
    /// `recursive` or `direct`.
    #[serde(default)]
    pub mode: PinMode,
    /// Shard size of sharded adds, in bytes.
    #[serde(default)]
    pub shard_size: u64,
    /// Never stored: always `null` when read back.
    #[serde(default)]
    pub user_allocations: Option<Vec<PeerId>>,
    /// RFC 3339 expiry, or the zero time.
    #[serde(default = "zero_time")]
    pub expire_at: String,
    /// Free-form metadata (`null` when empty).
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// The CID this pin replaced.
    #[serde(default)]
    pub pin_update: Option<Cid>,
    /// Multiaddrs of peers holding the content.
    #[serde(default)]
    pub origins: Option<Vec<String>>,
    /// The pinned content.
    pub cid: Cid,
    /// `pin`, `meta-pin`, `clusterdag-pin` or `shard-pin`.
    #[serde(rename = "type", default)]
    pub pin_type: PinType,
    /// Peers that must pin it; `[]` when everywhere.
    #[serde(default)]
    pub allocations: Vec<PeerId>,
    /// -1 recursive, 0 direct, n limited depth.
    pub max_depth: i32,
    /// Link between the pins of a sharded DAG.
    #[serde(default)]
    pub reference: Option<Cid>,
    /// RFC 3339 submission time.
    pub timestamp: String,
}

fn zero_time() -> String {
    ZERO_TIME.to_string()
}

/// A pin's JSON could not be turned into a pin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinJsonError {
    /// A time is not RFC 3339 (or before 1970).
    #[error("{field}: {value:?} is not an RFC 3339 time in UTC: {reason}")]
    Time {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// The parser's complaint.
        reason: String,
    },
}

/// Formats `ms` since the epoch as RFC 3339 UTC with milliseconds.
pub fn format_time(ms: Millis) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.0);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Parses an RFC 3339 UTC time to ms since the epoch; `None` for the zero time.
pub fn parse_time(field: &'static str, value: &str) -> Result<Option<Millis>, PinJsonError> {
    if value == ZERO_TIME || value.is_empty() {
        return Ok(None);
    }
    let bad = |reason: String| PinJsonError::Time {
        field,
        value: value.to_string(),
        reason,
    };
    let at = humantime::parse_rfc3339_weak(value).map_err(|e| bad(e.to_string()))?;
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|e| bad(e.to_string()))?;
    Ok(Some(Millis(
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
    )))
}

impl From<&Pin> for PinJson {
    fn from(pin: &Pin) -> PinJson {
        let o = &pin.options;
        PinJson {
            replication_factor_min: o.replication_factor_min,
            replication_factor_max: o.replication_factor_max,
            name: o.name.clone(),
            mode: pin.mode(),
            shard_size: o.shard_size,
            user_allocations: None,
            expire_at: o.expire_at.map_or_else(zero_time, format_time),
            metadata: (!o.metadata.is_empty()).then(|| o.metadata.clone()),
            pin_update: o.pin_update.clone(),
            origins: Some(o.origins.clone()),
            cid: pin.cid.clone(),
            pin_type: pin.pin_type,
            allocations: pin.allocations.clone(),
            max_depth: pin.max_depth,
            reference: pin.reference.clone(),
            timestamp: format_time(pin.timestamp),
        }
    }
}

impl PinJson {
    /// The pin this JSON describes (not validated: see [`Pin::validate`]).
    pub fn to_pin(&self) -> Result<Pin, PinJsonError> {
        let timestamp = parse_time("timestamp", &self.timestamp)?.unwrap_or(Millis(0));
        let options = PinOptions {
            replication_factor_min: self.replication_factor_min,
            replication_factor_max: self.replication_factor_max,
            name: self.name.clone(),
            mode: self.mode,
            shard_size: self.shard_size,
            // Transient: never stored.
            user_allocations: Vec::new(),
            expire_at: parse_time("expire_at", &self.expire_at)?,
            metadata: self.metadata.clone().unwrap_or_default(),
            pin_update: self.pin_update.clone(),
            origins: self.origins.clone().unwrap_or_default(),
        };
        Ok(Pin {
            cid: self.cid.clone(),
            pin_type: self.pin_type,
            allocations: self.allocations.clone(),
            max_depth: self.max_depth,
            reference: self.reference.clone(),
            timestamp,
            options,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid() -> Cid {
        let mut bytes = vec![0x12, 0x20];
        bytes.extend_from_slice(&[7; 32]);
        Cid::from_bytes(&bytes).expect("cid")
    }

    #[test]
    fn a_pin_goes_to_upstreams_json_and_back() {
        let mut pin = Pin::new(
            cid(),
            PinOptions {
                replication_factor_min: -1,
                replication_factor_max: -1,
                name: "backup".into(),
                metadata: [("owner".to_string(), "alice".to_string())].into(),
                expire_at: Some(Millis(1_900_000_000_123)),
                ..PinOptions::default()
            },
            Millis(1_714_990_365_512),
        );
        pin.options.user_allocations = Vec::new();
        let json = serde_json::to_string(&PinJson::from(&pin)).expect("json");
        assert!(
            json.starts_with(r#"{"replication_factor_min":-1,"#),
            "{json}"
        );
        assert!(
            json.contains(r#""timestamp":"2024-05-06T10:12:45.512Z""#),
            "{json}"
        );
        assert!(json.contains(r#""type":"pin""#), "{json}");
        assert!(json.contains(r#""user_allocations":null"#), "{json}");
        let back: PinJson = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.to_pin().expect("pin"), pin);
    }

    #[test]
    fn the_zero_time_means_no_expiry_and_bad_times_are_refused() {
        assert_eq!(parse_time("expire_at", ZERO_TIME), Ok(None));
        assert!(matches!(
            parse_time("timestamp", "yesterday"),
            Err(PinJsonError::Time {
                field: "timestamp",
                ..
            })
        ));
    }
}

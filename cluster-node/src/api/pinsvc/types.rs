//! The Pinning Service API's JSON shapes (pinning-service-api.md §2–§3):
//! `Pin`, `PinStatus`, `PinResults` and the error body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::time::Timestamp;

/// The state of a pin request as the pinning service shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceStatus {
    /// Waiting in a peer's pin queue.
    Queued,
    /// A peer's IPFS is fetching it.
    Pinning,
    /// Pinned where it is allocated.
    Pinned,
    /// A peer failed to pin it (or could not be asked).
    Failed,
}

impl ServiceStatus {
    /// Every status, in the spec's order.
    pub const ALL: [ServiceStatus; 4] = [
        ServiceStatus::Queued,
        ServiceStatus::Pinning,
        ServiceStatus::Pinned,
        ServiceStatus::Failed,
    ];

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Queued => "queued",
            ServiceStatus::Pinning => "pinning",
            ServiceStatus::Pinned => "pinned",
            ServiceStatus::Failed => "failed",
        }
    }

    /// Parses a wire string (exact, lower case as the spec writes them).
    pub fn parse(text: &str) -> Option<ServiceStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A pin object: the `pin` of a [`PinStatus`] (a request body is read by
/// [`super::body`], which checks every field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinObject {
    /// The content.
    pub cid: String,
    /// Its name, omitted when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Multiaddrs known to provide the data, omitted when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
    /// Metadata (the cluster pin's `metadata`), omitted when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// A pin request and its state (`GET /pins/{requestid}` and every write).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinStatus {
    /// The request id: the CID itself (one request per CID, as upstream).
    pub requestid: String,
    /// Where the request stands.
    pub status: ServiceStatus,
    /// When the cluster pin was submitted.
    pub created: Timestamp,
    /// The pin object.
    pub pin: PinObject,
    /// IPFS multiaddrs of the peers that receive the data (always an array).
    pub delegates: Vec<String>,
    /// Fixed notes about this service (upstream's map).
    pub info: BTreeMap<String, String>,
}

/// `GET /pins`: `count` matches in all, the newest `results` of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinResults {
    /// How many pins match the filters (not bounded by `limit`).
    pub count: u64,
    /// At most `limit` of them, newest first.
    pub results: Vec<PinStatus>,
}

/// `{"error":{"reason":…,"details":…}}`: every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// What went wrong (upstream's message, which clients print).
    pub reason: String,
    /// More about it, when there is more to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// `POST /token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBody {
    /// An HS256 JWT to send as `Authorization: Bearer <token>`.
    pub token: String,
}

/// The `info` map of every [`PinStatus`] (upstream's constant map).
pub fn info() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("source".to_string(), "IPFS cluster API".to_string()),
        (
            "warning1".to_string(),
            "CID used for requestID. Conflicts possible".to_string(),
        ),
        ("warning2".to_string(), "experimental".to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_print_as_the_spec_names_them() {
        for s in ServiceStatus::ALL {
            let json = serde_json::to_string(&s).expect("encode");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(ServiceStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ServiceStatus::parse("Pinned"), None);
        assert_eq!(ServiceStatus::parse("undefined"), None);
    }

    #[test]
    fn empty_pin_fields_are_left_out() {
        let pin = PinObject {
            cid: "bafy".into(),
            name: None,
            origins: Vec::new(),
            meta: BTreeMap::new(),
        };
        assert_eq!(
            serde_json::to_string(&pin).expect("encode"),
            r#"{"cid":"bafy"}"#
        );
        let error = ErrorBody {
            error: ErrorDetail {
                reason: "pin not found".into(),
                details: None,
            },
        };
        assert_eq!(
            serde_json::to_string(&error).expect("encode"),
            r#"{"error":{"reason":"pin not found"}}"#
        );
    }
}

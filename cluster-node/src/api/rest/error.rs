//! The API's errors and how each becomes an HTTP answer: the status, and
//! the `{"code":…,"message":…}` body every error carries (rest-api.md §1).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cluster_core::allocator::AllocationError;
use cluster_core::pinset::ApplyError;
use cluster_net::{MembershipError, WriteError};

use crate::api::types::ErrorBody;

/// Upstream's message for a CID that is not pinned (clients match on it).
pub const NOT_IN_PINSET: &str = "pin is not part of the pinset";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A CID in the path or query did not parse.
    #[error("error decoding Cid: {0}")]
    BadCid(String),
    /// A peer id did not parse.
    #[error("error decoding Peer ID: {0}")]
    BadPeer(String),
    /// A query parameter has a value that does not parse or is out of bounds.
    #[error("parameter {name} invalid: {reason}")]
    BadParam {
        /// The parameter, as the client spelled it.
        name: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// The request body is not what the route takes.
    #[error("{0}")]
    BadBody(String),
    /// An IPFS path in the route did not parse.
    #[error("error parsing path: {0}")]
    BadPath(String),
    /// IPFS could not resolve a path (upstream: 500).
    #[error("error resolving {path}: {source}")]
    Resolve {
        /// The path.
        path: String,
        /// What the daemon said.
        source: crate::ipfs::IpfsError,
    },
    /// A `filter` names nothing known.
    #[error("invalid filter value: {0:?}")]
    BadFilter(String),
    /// The CID is not pinned.
    #[error("{NOT_IN_PINSET}")]
    NotInPinset,
    /// The peer is not a member of the cluster.
    #[error("peer {0} is not a member of the cluster")]
    UnknownPeer(String),
    /// No route has this path.
    #[error("not found")]
    NoRoute,
    /// The request body is over the configured limit.
    #[error("request body of {got} bytes exceeds the limit of {max} bytes")]
    BodyTooLarge {
        /// Bytes announced.
        got: u64,
        /// The limit.
        max: u64,
    },
    /// The pinset refused the command.
    #[error(transparent)]
    Apply(ApplyError),
    /// No allocation could be made.
    #[error(transparent)]
    Allocation(#[from] AllocationError),
    /// The write did not commit, or its outcome is unknown.
    #[error("{0}")]
    Write(#[from] WriteError),
    /// A membership change failed.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// This node cannot do it (yet).
    #[error("{0}")]
    NotImplemented(&'static str),
    /// Anything else, described.
    #[error("{0}")]
    Internal(String),
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> ApiError {
        match e {
            ApplyError::NotFound(_) => ApiError::NotInPinset,
            other => ApiError::Apply(other),
        }
    }
}

impl ApiError {
    /// The HTTP status. Upstream answers 500 for every refusal that is not a
    /// parse error or a missing pin (invalid replication, not enough peers):
    /// kept, so clients see the codes they know. Consensus without a
    /// leader is 503 (retry later) rather than 500.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadCid(_)
            | ApiError::BadPeer(_)
            | ApiError::BadParam { .. }
            | ApiError::BadBody(_)
            | ApiError::BadPath(_)
            | ApiError::BadFilter(_) => StatusCode::BAD_REQUEST,
            ApiError::NotInPinset | ApiError::UnknownPeer(_) | ApiError::NoRoute => {
                StatusCode::NOT_FOUND
            }
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Write(
                WriteError::NoLeader | WriteError::NotInCluster | WriteError::Shutdown,
            ) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Apply(_)
            | ApiError::Allocation(_)
            | ApiError::Write(_)
            | ApiError::Membership(_)
            | ApiError::Resolve { .. }
            | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A bad value of query parameter `name`.
    pub fn param(name: &str, reason: impl std::fmt::Display) -> ApiError {
        ApiError::BadParam {
            name: name.chars().take(100).collect(),
            reason: reason.to_string(),
        }
    }
}

/// An error answer with `status` and `message`.
pub fn error_response(status: StatusCode, message: String) -> Response {
    let body = ErrorBody {
        code: status.as_u16(),
        message,
    };
    json_response(status, &body)
}

/// `value` as a JSON answer followed by a newline (as Go's encoder writes),
/// or why it does not encode. Every API of the peer answers JSON this way.
pub fn encode_json<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
) -> Result<Response, serde_json::Error> {
    let mut bytes = serde_json::to_vec(value)?;
    bytes.push(b'\n');
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// `value` as a JSON answer followed by a newline (as Go's encoder writes).
pub fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    match encode_json(status, value) {
        Ok(response) => response,
        // Our own types always encode; answer something valid regardless.
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("answer does not encode: {e}"),
        ),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "rest api request failed");
        }
        error_response(status, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_core::Cid;

    #[test]
    fn statuses_follow_the_contract() {
        let cid = Cid::parse("QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq").expect("cid");
        let missing = ApiError::from(ApplyError::NotFound(cid));
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(missing.to_string(), NOT_IN_PINSET);
        assert_eq!(
            ApiError::from(ApplyError::RecursiveToDirect).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            ApiError::from(WriteError::NoLeader).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let bad = ApiError::param("replication-min", "not an integer");
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert!(bad.to_string().contains("replication-min"));
    }
}

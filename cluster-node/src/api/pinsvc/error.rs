//! The Pinning Service API's errors and their answers: the status and the
//! `{"error":{"reason":…}}` body (pinning-service-api.md §2).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::types::{ErrorBody, ErrorDetail};
use crate::api::rest::error::encode_json;
use crate::api::rest::ApiError;

/// Upstream's reason for a request id whose pin does not exist.
pub const PIN_NOT_FOUND: &str = "pin not found";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum PinSvcError {
    /// The request id in the path is not a CID.
    #[error("error decoding requestID: {0}")]
    BadRequestId(String),
    /// The JSON body is malformed or a field is invalid.
    #[error("error decoding request body: {0}")]
    BadBody(String),
    /// A query parameter does not parse or is out of bounds.
    #[error("error decoding '{name}' query param: {reason}")]
    BadParam {
        /// The parameter.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No pin with this request id (or it is being removed).
    #[error("{PIN_NOT_FOUND}")]
    NotFound,
    /// The body is over the configured bound.
    #[error("request body exceeds the limit of {max} bytes")]
    BodyTooLarge {
        /// The bound.
        max: usize,
    },
    /// No route has this path.
    #[error("not found")]
    NoRoute,
    /// What the cluster said (the REST API's errors and statuses).
    #[error(transparent)]
    Cluster(#[from] ApiError),
}

impl PinSvcError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            PinSvcError::BadRequestId(_)
            | PinSvcError::BadBody(_)
            | PinSvcError::BadParam { .. } => StatusCode::BAD_REQUEST,
            PinSvcError::NotFound | PinSvcError::NoRoute => StatusCode::NOT_FOUND,
            PinSvcError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PinSvcError::Cluster(e) => e.status(),
        }
    }

    /// A bad value of query parameter `name`.
    pub fn param(name: &'static str, reason: impl std::fmt::Display) -> PinSvcError {
        PinSvcError::BadParam {
            name,
            reason: reason.to_string(),
        }
    }
}

/// An error answer with `status`, `reason` and optional `details`.
pub fn error_response(status: StatusCode, reason: String, details: Option<String>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail { reason, details },
    };
    json_response(status, &body)
}

/// `value` as a JSON answer.
pub fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    match encode_json(status, value) {
        Ok(response) => response,
        // Our own types always encode; answer something valid regardless.
        Err(e) => {
            tracing::error!(error = %e, "pinning service: an answer does not encode");
            let text = r#"{"error":{"reason":"the answer does not encode"}}"#;
            (StatusCode::INTERNAL_SERVER_ERROR, text).into_response()
        }
    }
}

impl IntoResponse for PinSvcError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "pinning service request failed");
        }
        error_response(status, self.to_string(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_core::pinset::ApplyError;
    use cluster_core::Cid;

    #[test]
    fn statuses_follow_the_contract() {
        assert_eq!(
            PinSvcError::BadRequestId("x".into()).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            PinSvcError::param("limit", "too big").status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(PinSvcError::NotFound.status(), StatusCode::NOT_FOUND);
        assert_eq!(PinSvcError::NotFound.to_string(), PIN_NOT_FOUND);
        let cid = Cid::parse("QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq").expect("cid");
        let missing = PinSvcError::from(ApiError::from(ApplyError::NotFound(cid)));
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(missing.to_string(), "pin is not part of the pinset");
        assert_eq!(
            PinSvcError::BodyTooLarge { max: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}

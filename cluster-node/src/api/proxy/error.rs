//! The proxy's errors and their answers in Kubo's shape:
//! `{"Message":…,"Code":…,"Type":"error"}`, with Kubo's status codes
//! (400 and `Code` 1 for a request Kubo itself would refuse as malformed,
//! 500 and `Code` 0 for a command that failed).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::rest::ApiError;

/// Why an intercepted request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// A required argument is missing (Kubo: 400).
    #[error("argument \"{0}\" is required")]
    MissingArgument(&'static str),
    /// The request is malformed (Kubo: 400).
    #[error("{0}")]
    BadRequest(String),
    /// A path argument does not parse.
    #[error("invalid path {path:?}: {reason}")]
    BadPath {
        /// The argument (cut to 100 characters).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A path argument (named) of `pin/update` does not parse.
    #[error("error parsing \"{argument}\" argument: {reason}")]
    BadArgument {
        /// Which argument.
        argument: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `pin/ls` of a CID outside the pinset.
    #[error("path '{0}' is not pinned")]
    NotPinned(String),
    /// The cluster refused or failed the operation.
    #[error("{0}")]
    Cluster(String),
    /// The IPFS daemon could not be reached or failed.
    #[error("{0}")]
    Daemon(String),
}

impl ProxyError {
    /// This path error, named as `argument` (`pin/update`'s wording).
    pub fn in_argument(self, argument: &'static str) -> ProxyError {
        ProxyError::BadArgument {
            argument,
            reason: self.to_string(),
        }
    }

    /// Kubo's status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::MissingArgument(_) | ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Kubo's error code: 1 for client errors, 0 otherwise.
    pub fn code(&self) -> u8 {
        u8::from(self.status() == StatusCode::BAD_REQUEST)
    }
}

impl From<ApiError> for ProxyError {
    fn from(e: ApiError) -> ProxyError {
        ProxyError::Cluster(e.to_string())
    }
}

/// go-ipfs-cmds' error body.
#[derive(Debug, Serialize)]
pub struct KuboError<'a> {
    /// The message.
    #[serde(rename = "Message")]
    pub message: &'a str,
    /// 0 normal, 1 client error.
    #[serde(rename = "Code")]
    pub code: u8,
    /// Always `"error"`.
    #[serde(rename = "Type")]
    pub kind: &'static str,
}

/// The body of an error answer, as bytes (newline-terminated).
pub fn error_body(message: &str, code: u8) -> Vec<u8> {
    let mut body = serde_json::to_vec(&KuboError {
        message,
        code,
        kind: "error",
    })
    .unwrap_or_default();
    body.push(b'\n');
    body
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "ipfs proxy request failed");
        }
        let mut response = (status, error_body(&self.to_string(), self.code())).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_kubos_shape_and_codes() {
        let body = error_body("boom", 0);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"Message": "boom", "Code": 0, "Type": "error"})
        );
        let missing = ProxyError::MissingArgument("from-path");
        assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
        assert_eq!(missing.code(), 1);
        assert_eq!(missing.to_string(), "argument \"from-path\" is required");
        let unpinned = ProxyError::NotPinned("Qm".into());
        assert_eq!(unpinned.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(unpinned.code(), 0);
        assert_eq!(unpinned.to_string(), "path 'Qm' is not pinned");
    }
}

//! Request shape checks ahead of the routes: bodies over the configured
//! size are refused (413) before a byte of them is read, and a path with a
//! trailing slash is redirected (307) to the path without it, as upstream.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The body bounds: uploads to `POST /add` have their own.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Every route but `/add`, in bytes.
    pub max_body: u64,
    /// `POST /add`, in bytes.
    pub max_add: u64,
}

/// Refuses bodies announced larger than the limit bytes. (Bodies without a
/// length are bounded by axum's body limit where a route reads one, and by
/// `/add` itself as it streams.)
pub async fn body_size(State(limits): State<BodyLimits>, request: Request, next: Next) -> Response {
    let max = if request.uri().path() == "/add" {
        limits.max_add
    } else {
        limits.max_body
    };
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(got) = announced {
        if got > max {
            return ApiError::BodyTooLarge { got, max }.into_response();
        }
    }
    next.run(request).await
}

/// Redirects `/x/` to `/x` (method kept: 307).
pub async fn strip_slash(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let mut target = path.trim_end_matches('/').to_string();
        if target.is_empty() {
            target.push('/');
        }
        if let Some(q) = request.uri().query() {
            target.push('?');
            target.push_str(q);
        }
        let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
        if let Ok(location) = HeaderValue::from_str(&target) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        return response;
    }
    next.run(request).await
}

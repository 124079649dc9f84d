//! CORS as upstream configures it by default (rest-api.md §4): allowed
//! origins from the settings, only `GET` allowed cross-origin, rs/cors'
//! default request headers, credentials allowed. Preflights are answered
//! here (204) and never reach the routes.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Methods allowed cross-origin (upstream's default).
const ALLOWED_METHODS: [&str; 1] = ["GET"];
/// Request headers allowed cross-origin (rs/cors' default set).
const ALLOWED_HEADERS: [&str; 3] = ["accept", "content-type", "x-requested-with"];
const EXPOSED_HEADERS: &str = "Content-Type, X-Stream-Output, X-Chunked-Output, X-Content-Length";

/// Which origins may call the API from a browser.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    origins: Vec<String>,
}

impl CorsPolicy {
    /// Allows `origins` (`*`: any).
    pub fn new(origins: Vec<String>) -> CorsPolicy {
        CorsPolicy { origins }
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, if allowed.
    fn allow(&self, origin: &str) -> Option<HeaderValue> {
        if self.origins.iter().any(|o| o == "*") {
            return Some(HeaderValue::from_static("*"));
        }
        self.origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
            .then(|| HeaderValue::from_str(origin).ok())
            .flatten()
    }
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn preflight(policy: &CorsPolicy, headers: &HeaderMap, method: &str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(
        header::VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    let Some(allowed) = text(headers, header::ORIGIN).and_then(|o| policy.allow(o)) else {
        return response;
    };
    if !ALLOWED_METHODS.contains(&method) {
        return response;
    }
    let requested = text(headers, header::ACCESS_CONTROL_REQUEST_HEADERS).unwrap_or("");
    let headers_ok = requested
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .all(|h| ALLOWED_HEADERS.iter().any(|a| a.eq_ignore_ascii_case(h)));
    if !headers_ok {
        return response;
    }
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    if let Ok(m) = HeaderValue::from_str(method) {
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, m);
    }
    if let Ok(h) = HeaderValue::from_str(requested) {
        if !requested.is_empty() {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, h);
        }
    }
    out.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    response
}

/// The middleware.
pub async fn apply(
    State(policy): State<Arc<CorsPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers().clone();
    if request.method() == Method::OPTIONS {
        if let Some(method) = text(&headers, header::ACCESS_CONTROL_REQUEST_METHOD) {
            return preflight(&policy, &headers, method);
        }
    }
    let method_ok = ALLOWED_METHODS.contains(&request.method().as_str());
    let mut response = next.run(request).await;
    let out = response.headers_mut();
    out.append(header::VARY, HeaderValue::from_static("Origin"));
    let allowed = text(&headers, header::ORIGIN).and_then(|o| policy.allow(o));
    if let (Some(allowed), true) = (allowed, method_ok) {
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        out.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    response
}

//! HTTP basic authentication and bearer tokens (rest-api.md §3), when
//! credentials are set. `OPTIONS` (CORS preflights) and `GET /health` pass
//! without it. Bearer tokens are the JWTs `POST /token` issues ([`jwt`]).
//!
//! [`jwt`]: super::jwt

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;

use super::error::error_response;

const REALM: &str = "Restricted IPFS Cluster API";

/// The one user allowed in.
#[derive(Clone)]
pub struct Credentials {
    user: String,
    pass: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// `user` with `pass`.
    pub fn new(user: String, pass: String) -> Credentials {
        Credentials { user, pass }
    }

    /// True when the `Authorization: Basic …` value names this user.
    fn admits_basic(&self, encoded: &str) -> bool {
        basic_matches(encoded, &self.user, &self.pass)
    }
}

/// True when `encoded`, the credentials of an `Authorization: Basic` value,
/// are `user` and `pass` (both non-empty). The Pinning Service API checks
/// its basic credentials the same way.
pub(crate) fn basic_matches(encoded: &str, user: &str, pass: &str) -> bool {
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|b| *b == b':') else {
        return false;
    };
    let (given_user, given_pass) = (&decoded[..colon], &decoded[colon + 1..]);
    // Both checks always run: the time taken says nothing about which failed.
    let user_ok = same(given_user, user.as_bytes());
    let pass_ok = same(given_pass, pass.as_bytes());
    !given_user.is_empty() && !given_pass.is_empty() && user_ok & pass_ok
}

/// Equality whose time does not depend on where equal-length inputs differ.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse(message: &str, challenges: &[&str]) -> Response {
    let mut response = error_response(StatusCode::UNAUTHORIZED, message.to_string());
    for challenge in challenges {
        if let Ok(value) = HeaderValue::from_str(challenge) {
            response
                .headers_mut()
                .append(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// The middleware: lets the request through or answers 401.
pub async fn require(
    State(credentials): State<Arc<Credentials>>,
    request: Request,
    next: Next,
) -> Response {
    let open = request.method() == Method::OPTIONS
        || (request.method() == Method::GET && request.uri().path() == "/health");
    if open {
        return next.run(request).await;
    }
    let basic = format!("Basic realm=\"{REALM}\"");
    let bearer = format!("Bearer realm=\"{REALM}\"");
    let Some(given) = request.headers().get(header::AUTHORIZATION) else {
        return refuse("unauthorized: no auth provided", &[&bearer, &basic]);
    };
    let given = given.to_str().unwrap_or("");
    // The credentials after `scheme` (matched without regard to case).
    let after = |scheme: &str| {
        given
            .get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .and_then(|_| given.get(scheme.len()..))
    };
    if let Some(token) = after("Bearer ") {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if super::jwt::verify(token, &credentials.user, &credentials.pass, now).is_ok() {
            return next.run(request).await;
        }
        let challenge = format!("{bearer}, error=\"invalid_token\"");
        return refuse("unauthorized: invalid token", &[&challenge]);
    }
    if after("Basic ").is_some_and(|encoded| credentials.admits_basic(encoded)) {
        return next.run(request).await;
    }
    refuse("unauthorized: access denied", &[&basic])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn basic_credentials_must_match_exactly() {
        let c = Credentials::new("alice".into(), "s3cret".into());
        assert!(c.admits_basic(&encode("alice:s3cret")));
        for bad in [
            "alice:s3cre",
            "alice:s3cret!",
            "bob:s3cret",
            "alice",
            ":",
            "alice:",
        ] {
            assert!(!c.admits_basic(&encode(bad)), "{bad}");
        }
        assert!(!c.admits_basic("%%%not-base64"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}

//! Who may use the API, when any credential is configured: a request
//! carries `Authorization: Bearer <token>` with one of the configured access
//! tokens or a JWT from `POST /token` (upstream's way), or
//! `Authorization: Basic` with the configured user. `OPTIONS` and
//! `GET /health` pass without. Refusals are 401 with the pinning service's
//! error body and upstream's `WWW-Authenticate` challenges.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::error::error_response;
use super::PinSvcState;
use crate::api::rest::auth::{basic_matches, same};
use crate::api::rest::jwt;

const REALM: &str = "Restricted IPFS Cluster API";

/// Who is allowed in.
#[derive(Clone, Default)]
pub struct Gate {
    basic: Option<(String, String)>,
    tokens: Vec<String>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a password or a token.
        f.debug_struct("Gate")
            .field("user", &self.basic.as_ref().map(|(u, _)| u))
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let in.
    Admitted,
    /// No `Authorization` header.
    Missing,
    /// A bearer token that is neither configured nor a valid JWT.
    BadToken,
    /// Wrong basic credentials (or an unknown scheme).
    Denied,
}

impl Gate {
    /// Admits the user `basic` (with its password) and the bearer `tokens`.
    pub fn new(basic: Option<(String, String)>, tokens: Vec<String>) -> Gate {
        Gate { basic, tokens }
    }

    /// True when nothing is configured: everyone is let in (upstream's
    /// default).
    pub fn is_open(&self) -> bool {
        self.basic.is_none() && self.tokens.is_empty()
    }

    /// The configured user and password.
    pub fn user(&self) -> Option<&(String, String)> {
        self.basic.as_ref()
    }

    /// Judges an `Authorization` value (`None`: absent) at `now_secs`.
    pub fn judge(&self, authorization: Option<&str>, now_secs: u64) -> Verdict {
        if self.is_open() {
            return Verdict::Admitted;
        }
        let Some(given) = authorization else {
            return Verdict::Missing;
        };
        // The credentials after `scheme` (matched without regard to case).
        let after = |scheme: &str| {
            given
                .get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .and_then(|_| given.get(scheme.len()..))
                .map(str::trim)
        };
        if let Some(token) = after("Bearer ") {
            return if self.admits_token(token, now_secs) {
                Verdict::Admitted
            } else {
                Verdict::BadToken
            };
        }
        match after("Basic ") {
            Some(encoded) if self.admits_basic(encoded) => Verdict::Admitted,
            _ => Verdict::Denied,
        }
    }

    fn admits_token(&self, token: &str, now_secs: u64) -> bool {
        // Every configured token is compared: the time taken says nothing
        // about which one came close.
        let listed = self
            .tokens
            .iter()
            .fold(false, |hit, t| hit | same(t.as_bytes(), token.as_bytes()));
        listed
            || self
                .basic
                .as_ref()
                .is_some_and(|(user, pass)| jwt::verify(token, user, pass, now_secs).is_ok())
    }

    fn admits_basic(&self, encoded: &str) -> bool {
        self.basic
            .as_ref()
            .is_some_and(|(user, pass)| basic_matches(encoded, user, pass))
    }
}

fn refuse(reason: &str, challenges: &[&str]) -> Response {
    let details = "send Authorization: Bearer <access token>, a token from POST /token, \
                   or basic credentials";
    let mut response = error_response(
        StatusCode::UNAUTHORIZED,
        reason.to_string(),
        Some(details.to_string()),
    );
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
    State(state): State<Arc<PinSvcState>>,
    request: Request,
    next: Next,
) -> Response {
    let open = request.method() == Method::OPTIONS
        || (request.method() == Method::GET && request.uri().path() == "/health");
    if open {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let now_secs = state.api.now().0 / 1_000;
    let basic = format!("Basic realm=\"{REALM}\"");
    let bearer = format!("Bearer realm=\"{REALM}\"");
    match state.gate.judge(given, now_secs) {
        Verdict::Admitted => next.run(request).await,
        Verdict::Missing => refuse("unauthorized: no auth provided", &[&bearer, &basic]),
        Verdict::BadToken => {
            let challenge = format!("{bearer}, error=\"invalid_token\"");
            refuse("unauthorized: invalid token", &[&challenge])
        }
        Verdict::Denied => refuse("unauthorized: access denied", &[&basic]),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    fn basic(s: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[test]
    fn an_open_gate_admits_everything() {
        let gate = Gate::default();
        assert!(gate.is_open());
        assert_eq!(gate.judge(None, 0), Verdict::Admitted);
        assert_eq!(gate.judge(Some("Bearer whatever"), 0), Verdict::Admitted);
    }

    #[test]
    fn tokens_and_credentials() {
        let gate = Gate::new(
            Some(("alice".into(), "s3cret".into())),
            vec!["tok-123".into()],
        );
        assert_eq!(gate.judge(None, 0), Verdict::Missing);
        assert_eq!(gate.judge(Some("Bearer tok-123"), 0), Verdict::Admitted);
        assert_eq!(gate.judge(Some("bearer tok-123"), 0), Verdict::Admitted);
        assert_eq!(gate.judge(Some("Bearer tok-12"), 0), Verdict::BadToken);
        assert_eq!(gate.judge(Some("Bearer "), 0), Verdict::BadToken);
        let jwt = jwt::issue("alice", "s3cret");
        assert_eq!(
            gate.judge(Some(&format!("Bearer {jwt}")), 0),
            Verdict::Admitted
        );
        let foreign = jwt::issue("alice", "other");
        assert_eq!(
            gate.judge(Some(&format!("Bearer {foreign}")), 0),
            Verdict::BadToken
        );
        assert_eq!(
            gate.judge(Some(&basic("alice:s3cret")), 0),
            Verdict::Admitted
        );
        for bad in ["alice:s3cre", "bob:s3cret", "alice", ":", "alice:"] {
            assert_eq!(gate.judge(Some(&basic(bad)), 0), Verdict::Denied, "{bad}");
        }
        assert_eq!(gate.judge(Some("Digest x"), 0), Verdict::Denied);
        assert!(!format!("{gate:?}").contains("s3cret"));
        assert!(!format!("{gate:?}").contains("tok-123"));
    }

    #[test]
    fn tokens_alone_refuse_basic_and_jwts() {
        let gate = Gate::new(None, vec!["tok".into()]);
        assert_eq!(gate.judge(Some(&basic("alice:x")), 0), Verdict::Denied);
        let jwt = jwt::issue("alice", "x");
        assert_eq!(
            gate.judge(Some(&format!("Bearer {jwt}")), 0),
            Verdict::BadToken
        );
        assert_eq!(gate.judge(Some("Bearer tok"), 0), Verdict::Admitted);
    }
}

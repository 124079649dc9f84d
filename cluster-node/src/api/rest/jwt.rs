//! The bearer tokens of `POST /token` (rest-api.md §3 "JWT"): HS256 JWTs
//! whose only claim is the issuer, `{"iss":"<user>"}`, signed with that
//! user's password, as upstream issues them. They do not expire (upstream
//! sets no `exp`); changing the password revokes them. A token carrying
//! `exp` or `nbf` claims is held to them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest token looked at, in bytes (a real one is under 200).
pub const TOKEN_MAX_BYTES: usize = 4096;

/// The JOSE header of every token issued.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn sign(key: &str, signed: &str) -> Vec<u8> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    match HmacSha256::new_from_slice(key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(signed.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// A token for `user`, signed with `password`.
pub fn issue(user: &str, password: &str) -> String {
    let claims = serde_json::json!({ "iss": user }).to_string();
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = URL_SAFE_NO_PAD.encode(sign(password, &signed));
    format!("{signed}.{signature}")
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url JSON parts.
    #[error("malformed token")]
    Malformed,
    /// Not signed with HS256.
    #[error("unexpected signing method")]
    Method,
    /// The issuer is not the configured user.
    #[error("unknown issuer")]
    Issuer,
    /// The signature does not match.
    #[error("bad signature")]
    Signature,
    /// `exp` passed or `nbf` not reached.
    #[error("token expired or not valid yet")]
    Time,
}

fn part(text: &str) -> Result<Value, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Checks `token` against the one `user` and `password`, at `now_secs`
/// (Unix seconds).
pub fn verify(token: &str, user: &str, password: &str, now_secs: u64) -> Result<(), TokenError> {
    if token.len() > TOKEN_MAX_BYTES {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.trim().split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header = part(h)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(TokenError::Method);
    }
    let claims = part(c)?;
    if claims.get("iss").and_then(Value::as_str) != Some(user) {
        return Err(TokenError::Issuer);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::Malformed)?;
    let mut mac =
        HmacSha256::new_from_slice(password.as_bytes()).map_err(|_| TokenError::Signature)?;
    mac.update(format!("{h}.{c}").as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::Signature)?;
    let number = |name: &str| claims.get(name).and_then(Value::as_f64);
    if number("exp").is_some_and(|exp| (now_secs as f64) >= exp) {
        return Err(TokenError::Time);
    }
    if number("nbf").is_some_and(|nbf| (now_secs as f64) < nbf) {
        return Err(TokenError::Time);
    }
    Ok(())
}

/// A token with any `claims`, signed with `password` (tests build expired
/// and foreign tokens with it).
pub fn sign_claims(claims: &Value, password: &str) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = URL_SAFE_NO_PAD.encode(sign(password, &signed));
    format!("{signed}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn issued_tokens_verify_and_say_only_the_issuer() {
        let t = issue("alice", "s3cret");
        assert_eq!(verify(&t, "alice", "s3cret", NOW), Ok(()));
        let claims = part(t.split('.').nth(1).expect("claims")).expect("json");
        assert_eq!(claims, serde_json::json!({"iss": "alice"}));
        // The reference's example header.
        assert!(t.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."));
    }

    #[test]
    fn tampered_foreign_and_expired_tokens_are_refused() {
        let t = issue("alice", "s3cret");
        assert_eq!(
            verify(&t, "alice", "other", NOW),
            Err(TokenError::Signature)
        );
        assert_eq!(verify(&t, "bob", "s3cret", NOW), Err(TokenError::Issuer));
        let forged_claims = URL_SAFE_NO_PAD.encode(r#"{"iss":"alice","admin":true}"#);
        let mut parts: Vec<&str> = t.split('.').collect();
        parts[1] = &forged_claims;
        assert_eq!(
            verify(&parts.join("."), "alice", "s3cret", NOW),
            Err(TokenError::Signature)
        );
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"iss":"alice"}"#)
        );
        assert_eq!(
            verify(&none, "alice", "s3cret", NOW),
            Err(TokenError::Method)
        );
        let expired = sign_claims(
            &serde_json::json!({"iss": "alice", "exp": NOW - 1}),
            "s3cret",
        );
        assert_eq!(
            verify(&expired, "alice", "s3cret", NOW),
            Err(TokenError::Time)
        );
        let later = sign_claims(
            &serde_json::json!({"iss": "alice", "nbf": NOW + 60}),
            "s3cret",
        );
        assert_eq!(
            verify(&later, "alice", "s3cret", NOW),
            Err(TokenError::Time)
        );
        let fresh = sign_claims(
            &serde_json::json!({"iss": "alice", "exp": NOW + 60}),
            "s3cret",
        );
        assert_eq!(verify(&fresh, "alice", "s3cret", NOW), Ok(()));
        for junk in ["", "a.b", "a.b.c.d", "!!.??.##"] {
            assert_eq!(
                verify(junk, "alice", "s3cret", NOW),
                Err(TokenError::Malformed)
            );
        }
    }

    #[test]
    fn the_hmac_is_rfc_7519s_and_long_tokens_are_not_read() {
        // The example token of jwt.io (HS256, key "your-256-bit-secret"):
        // its signature is right, but it names no issuer.
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                     eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.\
                     SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        assert_eq!(
            verify(token, "John Doe", "your-256-bit-secret", NOW),
            Err(TokenError::Issuer)
        );
        let named = sign_claims(
            &serde_json::json!({"iss": "John Doe"}),
            "your-256-bit-secret",
        );
        assert_eq!(
            verify(&named, "John Doe", "your-256-bit-secret", NOW),
            Ok(())
        );
        assert_eq!(
            verify(&"x".repeat(TOKEN_MAX_BYTES + 1), "alice", "pw", NOW),
            Err(TokenError::Malformed)
        );
    }
}

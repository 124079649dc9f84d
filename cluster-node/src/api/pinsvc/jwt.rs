//! The bearer tokens upstream issues from `POST /token` (rest-api.md §3):
//! HS256 JWTs with the claims `{"iss":"<user>"}`, signed with that user's
//! password. Only HS256 is accepted; `exp`, `nbf` and `iat` are checked
//! when present (upstream issues none of them, so its tokens never expire).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Longest token looked at, in bytes (a real one is under 200).
pub const TOKEN_MAX_BYTES: usize = 4096;

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts of JSON, or too long.
    #[error("malformed token")]
    Malformed,
    /// Signed with another algorithm than HS256.
    #[error("unexpected signing method")]
    Algorithm,
    /// Issued for another user.
    #[error("unknown issuer")]
    Issuer,
    /// The signature does not match the user's key.
    #[error("signature is invalid")]
    Signature,
    /// Expired, not yet valid, or issued in the future.
    #[error("token is expired or not valid yet")]
    Time,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    iat: Option<f64>,
}

fn mac(key: &[u8], signed: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .expect("invariant: HMAC accepts keys of any length");
    mac.update(signed);
    mac
}

/// A token for `user`, signed with `key` (the user's password).
pub fn issue(user: &str, key: &[u8]) -> String {
    let claims = serde_json::json!({ "iss": user }).to_string();
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = mac(key, signed.as_bytes()).finalize().into_bytes();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Checks `token` was issued for `user` with `key`, and is valid at
/// `now_secs` (Unix seconds).
pub fn verify(token: &str, user: &str, key: &[u8], now_secs: u64) -> Result<(), JwtError> {
    let token = token.trim();
    if token.len() > TOKEN_MAX_BYTES {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| JwtError::Malformed)
    };
    let header: Header =
        serde_json::from_slice(&decode(header)?).map_err(|_| JwtError::Malformed)?;
    if header.alg != "HS256" {
        return Err(JwtError::Algorithm);
    }
    let claims_json = decode(claims)?;
    let signature = decode(signature)?;
    // Three parts were found above: there is a last dot.
    let signed = token.rfind('.').map_or("", |dot| &token[..dot]);
    mac(key, signed.as_bytes())
        .verify_slice(&signature)
        .map_err(|_| JwtError::Signature)?;
    let claims: Claims = serde_json::from_slice(&claims_json).map_err(|_| JwtError::Malformed)?;
    if claims.iss.as_deref() != Some(user) {
        return Err(JwtError::Issuer);
    }
    let now = now_secs as f64;
    if claims.exp.is_some_and(|exp| now >= exp)
        || claims.nbf.is_some_and(|nbf| now < nbf)
        || claims.iat.is_some_and(|iat| now < iat)
    {
        return Err(JwtError::Time);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_for_their_user_only() {
        let token = issue("alice", b"s3cret");
        assert_eq!(verify(&token, "alice", b"s3cret", 0), Ok(()));
        assert_eq!(
            verify(&token, "alice", b"other", 0),
            Err(JwtError::Signature)
        );
        assert_eq!(verify(&token, "bob", b"s3cret", 0), Err(JwtError::Issuer));
        // The claims are exactly upstream's.
        let claims = token.split('.').nth(1).expect("claims");
        let claims = URL_SAFE_NO_PAD.decode(claims).expect("base64");
        assert_eq!(claims, br#"{"iss":"alice"}"#);
    }

    #[test]
    fn the_hmac_is_rfc_7519s() {
        // The example token of jwt.io (HS256, key "your-256-bit-secret").
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                     eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.\
                     SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        // Signature right, but it names no issuer.
        assert_eq!(
            verify(token, "John Doe", b"your-256-bit-secret", 1_600_000_000),
            Err(JwtError::Issuer)
        );
        assert_eq!(
            verify(token, "John Doe", b"wrong", 1_600_000_000),
            Err(JwtError::Signature)
        );
    }

    #[test]
    fn malformed_and_foreign_tokens_are_refused() {
        let good = issue("alice", b"pw");
        let parts: Vec<&str> = good.split('.').collect();
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            parts[1]
        );
        for (token, want) in [
            ("", JwtError::Malformed),
            ("a.b", JwtError::Malformed),
            ("a.b.c.d", JwtError::Malformed),
            ("!!.!!.!!", JwtError::Malformed),
            (none_alg.as_str(), JwtError::Algorithm),
        ] {
            assert_eq!(verify(token, "alice", b"pw", 0), Err(want), "{token}");
        }
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(r#"{"iss":"bob"}"#),
            parts[2]
        );
        assert_eq!(verify(&tampered, "bob", b"pw", 0), Err(JwtError::Signature));
        assert_eq!(
            verify(&"x".repeat(TOKEN_MAX_BYTES + 1), "alice", b"pw", 0),
            Err(JwtError::Malformed)
        );
    }

    #[test]
    fn time_claims_are_checked_when_present() {
        let sign = |claims: &str| {
            let signed = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(HEADER),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let signature = mac(b"pw", signed.as_bytes()).finalize().into_bytes();
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
        };
        let expiring = sign(r#"{"iss":"alice","exp":100}"#);
        assert_eq!(verify(&expiring, "alice", b"pw", 99), Ok(()));
        assert_eq!(verify(&expiring, "alice", b"pw", 100), Err(JwtError::Time));
        let later = sign(r#"{"iss":"alice","nbf":100}"#);
        assert_eq!(verify(&later, "alice", b"pw", 99), Err(JwtError::Time));
        assert_eq!(verify(&later, "alice", b"pw", 100), Ok(()));
        let future = sign(r#"{"iss":"alice","iat":100}"#);
        assert_eq!(verify(&future, "alice", b"pw", 50), Err(JwtError::Time));
    }
}

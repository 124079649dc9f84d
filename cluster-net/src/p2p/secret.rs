//! The cluster secret: 32 bytes written as 64 hex characters, shared by
//! every peer of a cluster. It keys libp2p's private network (`pnet`), so a
//! peer without it cannot open a connection.

use libp2p::pnet::PreSharedKey;

/// Length of the secret in bytes.
pub const SECRET_BYTES: usize = 32;

/// Why a cluster secret could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The text is not 64 hex characters long.
    #[error(
        "the cluster secret must be {expected} hex characters ({SECRET_BYTES} bytes), \
         got {got} characters"
    )]
    Length {
        /// Characters expected.
        expected: usize,
        /// Characters given.
        got: usize,
    },
    /// A character is not a hex digit.
    #[error("the cluster secret must be hex: character {position} is {found:?}")]
    NotHex {
        /// Position of the offending character (0-based).
        position: usize,
        /// The character.
        found: char,
    },
}

/// A parsed cluster secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClusterSecret([u8; SECRET_BYTES]);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret itself.
        write!(f, "ClusterSecret(fingerprint {})", self.fingerprint())
    }
}

impl ClusterSecret {
    /// Parses 64 hex characters (either case; surrounding whitespace is
    /// ignored).
    pub fn parse(text: &str) -> Result<ClusterSecret, SecretError> {
        let text = text.trim();
        let chars: Vec<char> = text.chars().collect();
        if chars.len() != 2 * SECRET_BYTES {
            return Err(SecretError::Length {
                expected: 2 * SECRET_BYTES,
                got: chars.len(),
            });
        }
        let mut bytes = [0u8; SECRET_BYTES];
        for (i, pair) in chars.chunks(2).enumerate() {
            let mut byte = 0u8;
            for (j, &c) in pair.iter().enumerate() {
                let digit = c.to_digit(16).ok_or(SecretError::NotHex {
                    position: 2 * i + j,
                    found: c,
                })?;
                // A hex digit is below 16: the shift and the cast are exact.
                byte = (byte << 4) | digit as u8;
            }
            bytes[i] = byte;
        }
        Ok(ClusterSecret(bytes))
    }

    /// A secret from raw bytes (e.g. freshly drawn at `init`).
    pub fn from_bytes(bytes: [u8; SECRET_BYTES]) -> ClusterSecret {
        ClusterSecret(bytes)
    }

    /// The secret as 64 lower-case hex characters (for writing the config).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A short public fingerprint of the secret, safe to log: peers whose
    /// fingerprints differ cannot connect.
    pub fn fingerprint(&self) -> String {
        self.psk().fingerprint().to_string()
    }

    pub(crate) fn psk(&self) -> PreSharedKey {
        PreSharedKey::new(self.0)
    }
}

impl std::str::FromStr for ClusterSecret {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClusterSecret::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    #[test]
    fn parses_hex_and_round_trips() {
        let secret = ClusterSecret::parse(HEX).expect("valid");
        assert_eq!(secret.to_hex(), HEX.to_lowercase());
        assert_eq!(ClusterSecret::parse(&format!(" {HEX}\n")), Ok(secret));
        assert_eq!(secret.0[1], 0x11);
        assert_eq!(secret.0[31], 0xff);
    }

    #[test]
    fn refuses_wrong_length_and_non_hex() {
        assert_eq!(
            ClusterSecret::parse("abcd"),
            Err(SecretError::Length {
                expected: 64,
                got: 4
            })
        );
        let mut bad = HEX.to_string();
        bad.replace_range(5..6, "g");
        assert_eq!(
            ClusterSecret::parse(&bad),
            Err(SecretError::NotHex {
                position: 5,
                found: 'g'
            })
        );
        // Multi-byte characters count as characters, never split a byte.
        let wide = "é".repeat(64);
        assert!(matches!(
            ClusterSecret::parse(&wide),
            Err(SecretError::NotHex { position: 0, .. })
        ));
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let secret = ClusterSecret::parse(HEX).expect("valid");
        let shown = format!("{secret:?}");
        assert!(!shown.contains("00112233"), "{shown}");
        assert_eq!(secret.fingerprint().len(), 32);
    }
}

//! Cluster peer identities.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use cid::multibase::Base;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Multicodec of a libp2p public key, used by the CIDv1 form of a peer id.
const LIBP2P_KEY_CODEC: u64 = 0x72;

/// Why a peer id could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("invalid peer ID {input:?}: {reason}")]
pub struct PeerIdError {
    /// The input as given (truncated).
    pub input: String,
    /// What was wrong with it.
    pub reason: String,
}

/// A libp2p peer id in its base58 text form (`12D3Koo…`, `Qm…`).
///
/// Cheap to clone: the text is shared, and the pinset interns it so every
/// allocation list naming a peer points at one copy.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(Arc<str>);

impl PeerId {
    /// Parses a peer id: base58btc multihash, or the CIDv1 `libp2p-key` form
    /// (normalised to base58, the form IPFS Cluster prints).
    pub fn parse(text: &str) -> Result<Self, PeerIdError> {
        let err = |reason: &str| PeerIdError {
            input: text.chars().take(100).collect(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(err("empty"));
        }
        if let Ok(bytes) = Base::Base58Btc.decode(text) {
            check_multihash(&bytes).map_err(|r| err(&r))?;
            return Ok(PeerId(Arc::from(text)));
        }
        let cid =
            cid::CidGeneric::<64>::try_from(text).map_err(|_| err("neither base58 nor a CID"))?;
        if cid.codec() != LIBP2P_KEY_CODEC {
            return Err(err("CID is not a libp2p-key"));
        }
        Ok(PeerId(Arc::from(
            Base::Base58Btc.encode(cid.hash().to_bytes()),
        )))
    }

    /// A deterministic, well-formed peer id for tests and simulations.
    pub fn synthetic(n: u64) -> Self {
        let mut bytes = vec![0x12, 0x20];
        let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5151;
        for _ in 0..32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push(x as u8);
        }
        PeerId(Arc::from(Base::Base58Btc.encode(bytes)))
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Address of the shared text: equal for values cloned from one interned id.
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as *const u8 as usize
    }

    /// True when both values share one interned allocation.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

fn check_multihash(bytes: &[u8]) -> Result<(), String> {
    let mh = cid::multihash::Multihash::<64>::from_bytes(bytes).map_err(|e| e.to_string())?;
    match mh.code() {
        0x00 | 0x12 => Ok(()),
        other => Err(format!("unsupported multihash code {other:#x}")),
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: &str = &self.0;
        // The tail is what tells peers apart (the head is the key-type prefix).
        write!(f, "Peer({})", &s[s.len().saturating_sub(6)..])
    }
}

impl FromStr for PeerId {
    type Err = PeerIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PeerId::parse(s)
    }
}

impl Serialize for PeerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        PeerId::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_peer_ids() {
        for text in [
            "12D3KooWGHTKzeT4KaLGLrbKKyT8zKrBPXAUBRzCAN6ZMDMo4M6M",
            "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
        ] {
            assert_eq!(PeerId::parse(text).unwrap().as_str(), text);
        }
    }

    #[test]
    fn cid_form_is_normalised_to_base58() {
        let b58 = "12D3KooWGHTKzeT4KaLGLrbKKyT8zKrBPXAUBRzCAN6ZMDMo4M6M";
        let mh = Base::Base58Btc.decode(b58).unwrap();
        let mh = cid::multihash::Multihash::<64>::from_bytes(&mh).unwrap();
        let as_cid = cid::CidGeneric::<64>::new_v1(LIBP2P_KEY_CODEC, mh).to_string();
        assert_eq!(PeerId::parse(&as_cid).unwrap().as_str(), b58);
    }

    #[test]
    fn rejects_garbage_with_the_input_named() {
        let e = PeerId::parse("hello-peer").unwrap_err();
        assert!(e.to_string().contains("hello-peer"));
        assert!(PeerId::parse("").is_err());
        assert!(
            PeerId::parse("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi").is_err()
        );
        // Base58 that is not a multihash, and a multihash of another kind.
        let not_multihash = Base::Base58Btc.encode([0xffu8, 0xff, 0xff]);
        assert!(PeerId::parse(&not_multihash).is_err());
        let mut sha3 = vec![0x16, 0x20];
        sha3.extend([5u8; 32]);
        let e = PeerId::parse(&Base::Base58Btc.encode(&sha3)).unwrap_err();
        assert!(
            e.to_string().contains("unsupported multihash code 0x16"),
            "{e}"
        );
    }

    #[test]
    fn display_is_the_id_and_debug_its_tail() {
        let id = PeerId::synthetic(4);
        assert_eq!(id.to_string(), id.as_str());
        let tail = &id.as_str()[id.as_str().len() - 6..];
        assert_eq!(format!("{id:?}"), format!("Peer({tail})"));
    }

    #[test]
    fn synthetic_ids_are_valid_and_distinct() {
        let a = PeerId::synthetic(1);
        assert_eq!(PeerId::parse(a.as_str()).unwrap(), a);
        assert_ne!(a, PeerId::synthetic(2));
        assert_eq!(a, PeerId::synthetic(1));
        // Simulations draw thousands: no two alike, and their digests look
        // random (no byte value dominates, as a saturating mix would make it).
        let ids: std::collections::BTreeSet<PeerId> = (0..5_000).map(PeerId::synthetic).collect();
        assert_eq!(ids.len(), 5_000);
        let digest = bs58_digest(&PeerId::synthetic(7));
        let most = (0..=255u8)
            .map(|b| digest.iter().filter(|&&x| x == b).count())
            .max()
            .unwrap_or(0);
        assert!(most <= 4, "{digest:02x?}");
        assert_eq!(
            bs58_digest(&PeerId::synthetic(3))[..4],
            [0xa4, 0xa5, 0x96, 0x15],
            "synthetic ids are fixed: seeds replay"
        );
    }

    /// The 32 digest bytes of a synthetic (sha2-256 multihash) peer id.
    fn bs58_digest(id: &PeerId) -> Vec<u8> {
        let bytes = Base::Base58Btc.decode(id.as_str()).expect("base58");
        bytes[2..].to_vec()
    }
}

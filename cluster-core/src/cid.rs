//! Content identifiers, stored compactly.
//!
//! Parsing and printing go through the `cid` crate; the value itself is kept as
//! the CID's binary form, inline when short (every sha2-256 CIDv0/CIDv1 is), so a
//! pinset of millions of CIDs costs no allocation per key.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cid_text::{self, CidText};

/// Longest binary CID kept inline; longer ones (e.g. sha2-512 digests) go to the heap.
pub const CID_INLINE_MAX_BYTES: usize = 38;

/// Longest binary CID accepted at all (version + codec + multihash with a 64-byte digest).
pub const CID_MAX_BYTES: usize = 96;

type CrateCid = cid::CidGeneric<64>;

/// Why a CID could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CidError {
    /// The text form did not parse.
    #[error("invalid CID {input:?}: {reason}")]
    BadText {
        /// The input as given (truncated to a printable length).
        input: String,
        /// What the parser said.
        reason: String,
    },
    /// The binary form did not parse.
    #[error("invalid binary CID ({len} bytes): {reason}")]
    BadBytes {
        /// Input length in bytes.
        len: usize,
        /// What the parser said.
        reason: String,
    },
}

/// A content identifier (CIDv0 `Qm…` or CIDv1, printed in base32 `bafy…`).
#[derive(Clone)]
pub struct Cid(Repr);

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        buf: [u8; CID_INLINE_MAX_BYTES],
    },
    Heap(Box<[u8]>),
}

fn clip(input: &str) -> String {
    const SHOWN_MAX_CHARS: usize = 100;
    input.chars().take(SHOWN_MAX_CHARS).collect()
}

impl Cid {
    /// Parses the usual text form (CIDv0 base58 or multibase-prefixed CIDv1).
    pub fn parse(text: &str) -> Result<Self, CidError> {
        let parsed = CrateCid::try_from(text).map_err(|e| CidError::BadText {
            input: clip(text),
            reason: e.to_string(),
        })?;
        Ok(Self::from_valid_bytes(&parsed.to_bytes()))
    }

    /// Parses the binary form (as stored in the IPFS Cluster datastore).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CidError> {
        let bad = |reason: String| CidError::BadBytes {
            len: bytes.len(),
            reason,
        };
        if bytes.len() > CID_MAX_BYTES {
            return Err(bad("too long".into()));
        }
        if is_common_shape(bytes) {
            return Ok(Self::from_valid_bytes(bytes));
        }
        let parsed = CrateCid::try_from(bytes).map_err(|e| bad(e.to_string()))?;
        // Trailing bytes, or a varint written in more bytes than it needs
        // (or past 64 bits, which the crate truncates), would make two
        // different byte strings name one CID: only the canonical form is
        // accepted.
        if parsed.encoded_len() != bytes.len() {
            return Err(bad("trailing bytes".into()));
        }
        if parsed.to_bytes() != bytes {
            return Err(bad("not in canonical form (a varint is not minimal)".into()));
        }
        Ok(Self::from_valid_bytes(bytes))
    }

    fn from_valid_bytes(bytes: &[u8]) -> Self {
        if bytes.len() <= CID_INLINE_MAX_BYTES {
            let mut buf = [0u8; CID_INLINE_MAX_BYTES];
            buf[..bytes.len()].copy_from_slice(bytes);
            Cid(Repr::Inline {
                len: bytes.len() as u8,
                buf,
            })
        } else {
            Cid(Repr::Heap(bytes.into()))
        }
    }

    /// The binary form.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, buf } => &buf[..*len as usize],
            Repr::Heap(b) => b,
        }
    }

    /// True for CIDv0 (`Qm…`).
    pub fn is_v0(&self) -> bool {
        // A CIDv1 starts with the version varint 1; a v0 is a bare sha2-256 multihash.
        self.as_bytes().first() == Some(&0x12)
    }

    /// The text form (what `Display` prints) without allocating: CIDv0 in
    /// base58btc, CIDv1 in multibase base32 lower (`b…`), as the `cid`
    /// crate prints them.
    pub fn text(&self) -> CidText {
        if self.is_v0() {
            cid_text::base58btc(self.as_bytes())
        } else {
            cid_text::multibase_base32(self.as_bytes())
        }
    }
}

/// Recognises, without the general parser, the shapes nearly every CID has:
/// a CIDv0 (sha2-256 multihash) or a CIDv1 whose version, codec and multihash
/// code and length are single-byte varints. Anything else goes through the
/// `cid` crate, so this only ever accepts what the crate accepts (snapshots
/// decode millions of CIDs; see BENCHMARKS.md).
fn is_common_shape(bytes: &[u8]) -> bool {
    const V0_BYTES: usize = 34;
    const ONE_BYTE_VARINT_MAX: u8 = 0x7f;
    match bytes {
        [0x12, 0x20, ..] => bytes.len() == V0_BYTES,
        [0x01, codec, code, len, digest @ ..] => {
            *codec <= ONE_BYTE_VARINT_MAX
                && *code <= ONE_BYTE_VARINT_MAX
                && *len <= 64
                && digest.len() == usize::from(*len)
                // A v1 CID must not look like a v0 one to the crate's parser.
                && !(*codec == 0x12 && *code == 0x20)
        }
        _ => false,
    }
}

impl PartialEq for Cid {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for Cid {}
impl PartialOrd for Cid {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cid {
    fn cmp(&self, other: &Self) -> Ordering {
        // The pinset map compares CIDs on every lookup. Inline CIDs compare the
        // first 32 bytes as four big-endian words (same order as bytes) before
        // falling back to the byte slices; zero padding cannot change the order
        // because a binary CID is self-delimiting, never a prefix of another.
        if let (Repr::Inline { buf: a, .. }, Repr::Inline { buf: b, .. }) = (&self.0, &other.0) {
            for i in (0..32).step_by(8) {
                let x = u64::from_be_bytes(a[i..i + 8].try_into().expect("8 bytes"));
                let y = u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
                if x != y {
                    return x.cmp(&y);
                }
            }
        }
        self.as_bytes().cmp(other.as_bytes())
    }
}
impl Hash for Cid {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text().as_str())
    }
}
impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({self})")
    }
}

impl FromStr for Cid {
    type Err = CidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cid::parse(s)
    }
}

impl Serialize for Cid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(self.text().as_str())
        } else {
            s.serialize_bytes(self.as_bytes())
        }
    }
}

impl<'de> Deserialize<'de> for Cid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CidVisitor;
        impl Visitor<'_> for CidVisitor {
            type Value = Cid;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a CID string or CID bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cid, E> {
                Cid::parse(v).map_err(E::custom)
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Cid, E> {
                Cid::from_bytes(v).map_err(E::custom)
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(CidVisitor)
        } else {
            d.deserialize_bytes(CidVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V0: &str = "QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq";
    const V1: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";

    #[test]
    fn round_trips_v0_and_v1_text() {
        for text in [V0, V1] {
            let cid = Cid::parse(text).unwrap();
            assert_eq!(cid.to_string(), text);
            assert_eq!(Cid::from_bytes(cid.as_bytes()).unwrap(), cid);
        }
        assert!(Cid::parse(V0).unwrap().is_v0());
        assert!(!Cid::parse(V1).unwrap().is_v0());
    }

    proptest::proptest! {
        #[test]
        fn text_is_what_the_cid_crate_prints(
            digest in proptest::collection::vec(proptest::num::u8::ANY, 0..=64),
            codec in proptest::num::u8::ANY,
            code in proptest::sample::select(vec![0x00u32, 0x12, 0x13, 0x1b, 0x7f, 0xb220]),
            v0 in proptest::bool::ANY,
        ) {
            let mut bytes = if v0 { vec![0x12, 0x20] } else { vec![0x01, codec & 0x7f] };
            if !v0 {
                // Multi-byte varints too (codes past 0x7f).
                let mut c = code;
                while c > 0x7f { bytes.push((c as u8 & 0x7f) | 0x80); c >>= 7; }
                bytes.push(c as u8);
                bytes.push(digest.len() as u8);
            }
            bytes.extend(if v0 { &digest[..digest.len().min(32)] } else { &digest[..] });
            if let Ok(cid) = Cid::from_bytes(&bytes) {
                let by_crate = CrateCid::try_from(cid.as_bytes()).unwrap().to_string();
                let text = cid.text();
                proptest::prop_assert_eq!(text.as_str(), by_crate.as_str());
                proptest::prop_assert_eq!(cid.to_string(), by_crate);
            }
        }
    }

    #[test]
    fn json_is_the_string_form_and_binary_is_bytes() {
        let cid = Cid::parse(V1).unwrap();
        assert_eq!(serde_json::to_string(&cid).unwrap(), format!("\"{V1}\""));
        let back: Cid = serde_json::from_str(&format!("\"{V1}\"")).unwrap();
        assert_eq!(back, cid);
        let bin = postcard::to_allocvec(&cid).unwrap();
        assert_eq!(postcard::from_bytes::<Cid>(&bin).unwrap(), cid);
    }

    /// Found by `cargo fuzz run cid`: a codec varint of ten bytes whose
    /// last one overflows 64 bits. The crate reads it (truncated), so the
    /// bytes were kept while the text printed from them parsed back to other
    /// bytes: two binary forms of one CID. A non-minimal varint is the same.
    #[test]
    fn binary_cids_with_non_canonical_varints_are_refused() {
        let overflowing = [1, 255, 255, 255, 255, 255, 200, 255, 255, 200, 85, 2, 0];
        let overlong = [1, 0x85, 0x81, 0x00, 0x12, 0x02, 0xab, 0xcd];
        for bytes in [&overflowing[..], &overlong[..]] {
            match Cid::from_bytes(bytes) {
                Err(CidError::BadBytes { .. }) => {}
                Ok(cid) => panic!("accepted {cid} from {bytes:?}"),
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
        // The canonical form of the second is accepted.
        let canonical = [1, 0x85, 0x01, 0x12, 0x02, 0xab, 0xcd];
        let cid = Cid::from_bytes(&canonical).expect("canonical");
        assert_eq!(Cid::parse(&cid.to_string()).expect("text"), cid);
    }

    #[test]
    fn malformed_cid_is_a_typed_error_naming_the_input() {
        let err = Cid::parse("not-a-cid").unwrap_err();
        assert!(err.to_string().contains("not-a-cid"), "{err}");
        assert!(serde_json::from_str::<Cid>("\"Qmnope\"").is_err());
        assert!(Cid::from_bytes(&[0x12, 0x20, 1, 2]).is_err());
        let mut long = Cid::parse(V0).unwrap().as_bytes().to_vec();
        long.push(0);
        assert!(Cid::from_bytes(&long).is_err(), "trailing bytes accepted");
    }

    #[test]
    fn long_digests_go_to_the_heap() {
        // sha2-512 multihash (0x13, 64 bytes) in a raw CIDv1.
        let mut bytes = vec![0x01, 0x55, 0x13, 0x40];
        bytes.extend([7u8; 64]);
        let cid = Cid::from_bytes(&bytes).unwrap();
        assert_eq!(cid.as_bytes(), &bytes[..]);
        assert_eq!(Cid::parse(&cid.to_string()).unwrap(), cid);
    }

    #[test]
    fn order_is_byte_order() {
        let mut cids: Vec<Cid> = Vec::new();
        for n in 0u8..40 {
            let mut v1 = vec![0x01, 0x55, 0x12, 0x20];
            v1.extend([n / 3; 31]);
            v1.push(n);
            cids.push(Cid::from_bytes(&v1).unwrap());
            let mut v0 = vec![0x12, 0x20];
            v0.extend([n % 5; 32]);
            cids.push(Cid::from_bytes(&v0).unwrap());
        }
        let mut long = vec![0x01, 0x55, 0x13, 0x40];
        long.extend([3u8; 64]);
        cids.push(Cid::from_bytes(&long).unwrap());
        for a in &cids {
            for b in &cids {
                assert_eq!(a.cmp(b), a.as_bytes().cmp(b.as_bytes()), "{a} vs {b}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn text_and_bytes_round_trip_and_order_is_byte_order(
            a in proptest::collection::vec(proptest::num::u8::ANY, 32..=64),
            b in proptest::collection::vec(proptest::num::u8::ANY, 32..=64),
            codec in proptest::sample::select(vec![0x55u8, 0x70, 0x71]),
            v0 in proptest::bool::ANY,
        ) {
            let make = |digest: &[u8]| {
                let mut bytes = if v0 { vec![0x12, 0x20] } else { vec![0x01, codec, 0x12 + (digest.len() > 32) as u8, digest.len() as u8] };
                bytes.extend(if v0 { &digest[..32] } else { digest });
                Cid::from_bytes(&bytes).unwrap()
            };
            let (x, y) = (make(&a), make(&b));
            proptest::prop_assert_eq!(Cid::parse(&x.to_string()).unwrap(), x.clone());
            proptest::prop_assert_eq!(x.cmp(&y), x.as_bytes().cmp(y.as_bytes()));
            let json = serde_json::to_string(&x).unwrap();
            proptest::prop_assert_eq!(serde_json::from_str::<Cid>(&json).unwrap(), x);
        }
    }

    #[test]
    fn fast_shape_check_never_accepts_what_the_crate_refuses() {
        let mut accepted = 0;
        for codec in [0x00u8, 0x12, 0x55, 0x70, 0x7f] {
            for code in [0x00u8, 0x12, 0x13, 0x20, 0x7f] {
                for len in [0u8, 1, 20, 32, 64] {
                    let mut bytes = vec![0x01, codec, code, len];
                    bytes.extend(std::iter::repeat_n(7u8, len as usize));
                    if is_common_shape(&bytes) {
                        accepted += 1;
                        assert!(CrateCid::try_from(&bytes[..]).is_ok(), "{bytes:?}");
                    }
                }
            }
        }
        assert!(accepted > 50);
        let mut v0 = vec![0x12, 0x20];
        v0.extend([1u8; 32]);
        assert!(is_common_shape(&v0) && CrateCid::try_from(&v0[..]).is_ok());
    }

    /// What the general parser says of `bytes`: a CID, and all of it.
    fn crate_accepts_exactly(bytes: &[u8]) -> bool {
        CrateCid::try_from(bytes).is_ok_and(|c| c.encoded_len() == bytes.len())
    }

    #[test]
    fn binary_form_is_accepted_exactly_when_the_crate_reads_all_of_it() {
        let mut checked = 0;
        for codec in [0x55u8, 0x12, 0x7f, 0x80, 0xff] {
            for code in [0x12u8, 0x20, 0x7f, 0x80] {
                for len in [0u8, 32, 64, 65, 0x80] {
                    for digest_len in [
                        usize::from(len).saturating_sub(1),
                        usize::from(len),
                        usize::from(len) + 1,
                    ] {
                        let mut bytes = vec![0x01, codec, code, len];
                        // Bytes past a varint with its high bit set read as
                        // its continuation: the general parser sees another shape.
                        bytes.extend(std::iter::repeat_n(9u8, digest_len));
                        assert_eq!(
                            Cid::from_bytes(&bytes).is_ok(),
                            crate_accepts_exactly(&bytes),
                            "{bytes:02x?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100);
        for v0_len in [33usize, 34, 35] {
            let mut v0 = vec![0x12, 0x20];
            v0.resize(v0_len, 3);
            assert_eq!(Cid::from_bytes(&v0).is_ok(), v0_len == 34, "{v0_len}");
        }
    }

    #[test]
    fn over_long_binary_input_is_refused_before_parsing() {
        let too_long = |len: usize| {
            let mut bytes = vec![0x01, 0x55, 0x00, 0x7f];
            bytes.resize(len, 0);
            match Cid::from_bytes(&bytes) {
                Err(CidError::BadBytes { reason, .. }) => reason == "too long",
                other => panic!("{len} bytes: {other:?}"),
            }
        };
        assert!(too_long(CID_MAX_BYTES + 1));
        assert!(too_long(CID_MAX_BYTES * 4));
        // At the bound the parser decides (here: a digest cut short).
        assert!(!too_long(CID_MAX_BYTES));
    }

    #[test]
    fn comparisons_hashes_and_debug_agree_with_the_bytes() {
        use std::collections::HashSet;
        let cids: Vec<Cid> = (0u8..50)
            .map(|n| {
                let mut v1 = vec![0x01, 0x55, 0x12, 0x20];
                v1.extend([n; 32]);
                Cid::from_bytes(&v1).unwrap()
            })
            .collect();
        for a in &cids {
            for b in &cids {
                assert_eq!(a.partial_cmp(b), Some(a.cmp(b)));
            }
        }
        let hashed: HashSet<&Cid> = cids.iter().collect();
        assert_eq!(hashed.len(), cids.len());
        let hash = |c: &Cid| {
            use std::hash::{BuildHasher, BuildHasherDefault};
            BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(c)
        };
        assert_ne!(hash(&cids[0]), hash(&cids[1]), "hashes see the bytes");
        assert_eq!(hash(&cids[0]), hash(&cids[0].clone()));
        assert_eq!(
            format!("{:?}", Cid::parse(V1).unwrap()),
            format!("Cid({V1})")
        );
        let err = serde_json::from_str::<Cid>("17").unwrap_err().to_string();
        assert!(err.contains("CID"), "{err}");
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<Cid>() <= 40);
    }
}

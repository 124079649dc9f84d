//! The text forms of binary CIDs (base58btc for CIDv0, multibase base32
//! lower for CIDv1) written into a fixed buffer: listings print a CID per
//! line, and going through the `cid` crate cost a parse, three allocations
//! and a byte-at-a-time base58 loop each time (see BENCHMARKS.md).

use std::fmt;

use crate::cid::CID_MAX_BYTES;

/// Longest text form: `b` and the base32 digits of the longest binary CID.
pub const CID_TEXT_MAX_BYTES: usize = 1 + (CID_MAX_BYTES * 8).div_ceil(5);

/// A CID's text form, held inline.
#[derive(Clone, Copy)]
pub struct CidText {
    len: u8,
    buf: [u8; CID_TEXT_MAX_BYTES],
}

impl CidText {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits of the two alphabets and `b` are ever written.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The text as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    fn new() -> CidText {
        CidText {
            len: 0,
            buf: [0; CID_TEXT_MAX_BYTES],
        }
    }

    fn push(&mut self, b: u8) {
        self.buf[usize::from(self.len)] = b;
        self.len += 1;
    }
}

impl fmt::Display for CidText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CidText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

const BASE58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Five base58 digits per limb: 58^5 < 2^32, so a limb times 2^32 plus a
/// carry fits in a u64.
const LIMB: u64 = 58 * 58 * 58 * 58 * 58;
const LIMB_DIGITS: usize = 5;
/// Limbs for the longest input: log(256)/log(58^5) ≈ 0.273 limbs per byte.
const LIMBS_MAX: usize = CID_MAX_BYTES * 273 / 1000 + 2;

/// Base58btc (bitcoin alphabet, a `1` per leading zero byte) of `bytes`
/// (at most [`CID_MAX_BYTES`]).
pub(crate) fn base58btc(bytes: &[u8]) -> CidText {
    let mut out = CidText::new();
    let bytes = &bytes[..bytes.len().min(CID_MAX_BYTES)];
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    let rest = &bytes[zeros..];
    // The number, least significant limb first, in base 58^5; the input is
    // taken four bytes at a time (the first group holds the odd ones).
    let mut limbs = [0u32; LIMBS_MAX];
    let mut used = 0;
    let head = rest.len() % 4;
    let groups = rest[..head]
        .chunks(4)
        .map(|c| (c, 8 * c.len() as u32))
        .chain(rest[head..].chunks_exact(4).map(|c| (c, 32)));
    for (group, bits) in groups {
        let mut carry = group.iter().fold(0u64, |n, b| n << 8 | u64::from(*b));
        for limb in &mut limbs[..used] {
            let n = u64::from(*limb) << bits | carry;
            *limb = (n % LIMB) as u32;
            carry = n / LIMB;
        }
        while carry > 0 {
            limbs[used] = (carry % LIMB) as u32;
            carry /= LIMB;
            used += 1;
        }
    }
    for _ in 0..zeros {
        out.push(b'1');
    }
    // Most significant limb first; its leading zero digits are not printed.
    let mut started = false;
    for limb in limbs[..used].iter().rev() {
        let mut digits = [0u8; LIMB_DIGITS];
        let mut n = *limb;
        for d in digits.iter_mut().rev() {
            *d = BASE58[(n % 58) as usize];
            n /= 58;
        }
        for d in digits {
            if started || d != BASE58[0] {
                started = true;
                out.push(d);
            }
        }
    }
    out
}

/// `b` and the RFC 4648 base32 (lower case, no padding) of `bytes` (at
/// most [`CID_MAX_BYTES`]): multibase's base32 form.
pub(crate) fn multibase_base32(bytes: &[u8]) -> CidText {
    let mut out = CidText::new();
    out.push(b'b');
    for group in bytes[..bytes.len().min(CID_MAX_BYTES)].chunks(5) {
        let mut word = [0u8; 8];
        word[3..3 + group.len()].copy_from_slice(group);
        let n = u64::from_be_bytes(word);
        let digits = (group.len() * 8).div_ceil(5);
        for i in 0..digits {
            out.push(BASE32[(n >> (35 - 5 * i) & 31) as usize]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Base58 the slow way: the whole number divided by 58 digit by digit.
    fn base58_reference(bytes: &[u8]) -> String {
        let zeros = bytes.iter().take_while(|b| **b == 0).count();
        let mut n: Vec<u8> = bytes[zeros..].to_vec();
        let mut digits = Vec::new();
        while n.iter().any(|b| *b != 0) {
            let mut rem = 0u32;
            for b in &mut n {
                let cur = rem << 8 | u32::from(*b);
                *b = (cur / 58) as u8;
                rem = cur % 58;
            }
            digits.push(BASE58[rem as usize]);
        }
        let mut text = "1".repeat(zeros);
        text.extend(digits.iter().rev().map(|d| char::from(*d)));
        text
    }

    /// Base32 the slow way: bit by bit.
    fn base32_reference(bytes: &[u8]) -> String {
        let bits: Vec<u8> = bytes
            .iter()
            .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1))
            .collect();
        let mut text = String::from("b");
        for chunk in bits.chunks(5) {
            let v = chunk
                .iter()
                .chain(std::iter::repeat(&0))
                .take(5)
                .fold(0, |n, b| n << 1 | b);
            text.push(char::from(BASE32[usize::from(v)]));
        }
        text
    }

    #[test]
    fn display_and_debug_print_the_text() {
        let text = base58btc(&[0, 0, 1, 2, 3]);
        assert_eq!(text.as_str(), "11Ldp");
        assert_eq!(format!("{text}"), "11Ldp");
        assert_eq!(format!("{text:?}"), "\"11Ldp\"");
    }

    #[test]
    fn base58_and_base32_match_the_slow_forms_at_every_length() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        };
        for len in 0..=CID_MAX_BYTES {
            for zeros in [0, 1, 3] {
                let mut bytes: Vec<u8> = (0..len).map(|_| next()).collect();
                for b in bytes.iter_mut().take(zeros) {
                    *b = 0;
                }
                assert_eq!(base58btc(&bytes).as_str(), base58_reference(&bytes));
                assert_eq!(multibase_base32(&bytes).as_str(), base32_reference(&bytes));
            }
        }
        let max = [0xffu8; CID_MAX_BYTES];
        assert_eq!(base58btc(&max).as_str(), base58_reference(&max));
        assert_eq!(multibase_base32(&max).as_str(), base32_reference(&max));
    }
}

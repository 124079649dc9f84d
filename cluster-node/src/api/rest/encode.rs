//! JSON written straight into a listing's page buffer, byte for byte what
//! serde_json writes for the API's owned types (their tests compare the
//! two): a listing encodes a million entries, and building owned values
//! only to encode them was most of its cost (BENCHMARKS.md, "Streaming
//! 1,000,000 pins").

use std::collections::BTreeMap;

use cluster_core::{Cid, Millis, PeerId, Pin, PinMode, PinType, TrackerStatus};

use crate::api::time::{write_millis, ZERO_TIME};

/// `s` as a JSON string, escaped as serde_json escapes it.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if needs_escape(bytes) {
        escape_into(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

const ONES: u64 = u64::from_ne_bytes([1; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// True when some byte of `w` is below `n` (n ≤ 128): the classic
/// word-at-a-time test, exact as a whole-word answer.
fn has_less(w: u64, n: u8) -> bool {
    w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS != 0
}

fn has_byte(w: u64, b: u8) -> bool {
    has_less(w ^ (ONES * u64::from(b)), 1)
}

/// Whether `bytes` hold a control character, a quote or a backslash,
/// eight bytes at a time (names and errors are usually clean).
fn needs_escape(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_ne_bytes(w);
        if has_less(w, 0x20) || has_byte(w, b'"') || has_byte(w, b'\\') {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|b| *b < 0x20 || *b == b'"' || *b == b'\\')
}

fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(b"00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// An unsigned integer.
pub fn uint(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// A signed integer.
pub fn int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    uint(out, n.unsigned_abs());
}

/// A CID as its quoted text.
pub fn cid(out: &mut Vec<u8>, cid: &Cid) {
    out.push(b'"');
    out.extend_from_slice(cid.text().as_bytes());
    out.push(b'"');
}

/// A CID or `null`.
pub fn opt_cid(out: &mut Vec<u8>, c: Option<&Cid>) {
    match c {
        Some(c) => cid(out, c),
        None => out.extend_from_slice(b"null"),
    }
}

/// A wire time (Go's zero time for `None`), quoted.
pub fn time(out: &mut Vec<u8>, at: Option<Millis>) {
    out.push(b'"');
    match at {
        Some(ms) => write_millis(out, ms),
        None => out.extend_from_slice(ZERO_TIME.as_bytes()),
    }
    out.push(b'"');
}

/// The last time written by [`write`](Self::write), kept as its quoted
/// text: the pins of a page often share their time (they were added
/// together), and a listing prints one or two per line.
#[derive(Debug, Default)]
pub struct TimeText {
    last: Option<Millis>,
    text: Vec<u8>,
}

impl TimeText {
    /// Appends `at` quoted, as [`time`] does.
    pub fn write(&mut self, out: &mut Vec<u8>, at: Millis) {
        if self.last != Some(at) {
            self.text.clear();
            time(&mut self.text, Some(at));
            self.last = Some(at);
        }
        out.extend_from_slice(&self.text);
    }
}

/// A list of strings (`[]` when empty).
pub fn strings<S: AsRef<str>>(out: &mut Vec<u8>, items: &[S]) {
    out.push(b'[');
    for (n, s) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        string(out, s.as_ref());
    }
    out.push(b']');
}

/// A list of peer ids (`[]` when empty).
pub fn peer_ids(out: &mut Vec<u8>, peers: &[PeerId]) {
    out.push(b'[');
    for (n, p) in peers.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        string(out, p.as_str());
    }
    out.push(b']');
}

/// Metadata: `null` when `None`, else the object in key order.
pub fn metadata(out: &mut Vec<u8>, map: Option<&BTreeMap<String, String>>) {
    let Some(map) = map else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'{');
    for (n, (k, v)) in map.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        string(out, v);
    }
    out.push(b'}');
}

/// A boolean.
pub fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// The wire name of a pin mode (its serde name).
pub fn mode_str(mode: PinMode) -> &'static str {
    match mode {
        PinMode::Recursive => "recursive",
        PinMode::Direct => "direct",
    }
}

/// The wire name of a pin type (its serde name).
pub fn type_str(pin_type: PinType) -> &'static str {
    match pin_type {
        PinType::Data => "pin",
        PinType::Meta => "meta-pin",
        PinType::ClusterDag => "clusterdag-pin",
        PinType::Shard => "shard-pin",
    }
}

/// A tracker status, quoted.
pub fn status(out: &mut Vec<u8>, status: TrackerStatus) {
    out.push(b'"');
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b'"');
}

/// `pin` as read back from the state: what serde_json writes for
/// [`ApiPin::stored`](crate::api::types::ApiPin::stored).
pub fn stored_pin(out: &mut Vec<u8>, pin: &Pin, times: &mut TimeText) {
    let o = &pin.options;
    out.extend_from_slice(b"{\"replication_factor_min\":");
    int(out, o.replication_factor_min.into());
    out.extend_from_slice(b",\"replication_factor_max\":");
    int(out, o.replication_factor_max.into());
    out.extend_from_slice(b",\"name\":");
    string(out, &o.name);
    out.extend_from_slice(b",\"mode\":\"");
    out.extend_from_slice(mode_str(pin.mode()).as_bytes());
    out.extend_from_slice(b"\",\"shard_size\":");
    uint(out, o.shard_size);
    out.extend_from_slice(b",\"user_allocations\":null,\"expire_at\":");
    time(out, o.expire_at);
    out.extend_from_slice(b",\"metadata\":");
    metadata(out, Some(&o.metadata).filter(|m| !m.is_empty()));
    out.extend_from_slice(b",\"pin_update\":");
    opt_cid(out, o.pin_update.as_ref());
    out.extend_from_slice(b",\"origins\":");
    strings(out, &o.origins);
    out.extend_from_slice(b",\"cid\":");
    cid(out, &pin.cid);
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(type_str(pin.pin_type).as_bytes());
    out.extend_from_slice(b"\",\"allocations\":");
    peer_ids(out, &pin.allocations);
    out.extend_from_slice(b",\"max_depth\":");
    int(out, pin.max_depth.into());
    out.extend_from_slice(b",\"reference\":");
    opt_cid(out, pin.reference.as_ref());
    out.extend_from_slice(b",\"timestamp\":");
    times.write(out, pin.timestamp);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use cluster_core::PinOptions;

    use super::*;
    use crate::api::types::ApiPin;

    fn json_of(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut samples: Vec<String> = vec![
            String::new(),
            "plain name".into(),
            "exactly8".into(),
            "quote \" and back\\slash".into(),
            "tab\tnew\nline\r\u{8}\u{c}\u{0}\u{1f}\u{7f}".into(),
            "ünïcödé ✓ 🚀 and a \"quote\" after them".into(),
            "connection refused (os error 111): tcp connect to 127.0.0.1:40123".into(),
        ];
        // Every byte value at every offset within a word.
        for b in 0u8..0x80 {
            for at in 0..9 {
                let mut s = "a".repeat(at);
                s.push(char::from(b));
                s.push_str("tail");
                samples.push(s);
            }
        }
        for s in &samples {
            assert_eq!(
                json_of(|o| string(o, s)),
                serde_json::to_string(s).expect("json"),
                "{s:?}"
            );
        }
    }

    #[test]
    fn integers_print_as_serde_json_prints_them() {
        for n in [0, 1, -1, 9, 10, 99, 100, i64::MAX, i64::MIN, -1_000_000] {
            assert_eq!(json_of(|o| int(o, n)), n.to_string());
        }
        for n in [0, 7, 10, 104_857_600, u64::MAX] {
            assert_eq!(json_of(|o| uint(o, n)), n.to_string());
        }
    }

    fn pins() -> Vec<Pin> {
        let v0 = Cid::parse("QmP63DkAFEnDYNjDYBpyNDfttu1fvUw99x1brscPzpqmmq").expect("cid");
        let v1 =
            Cid::parse("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi").expect("cid");
        let peer =
            PeerId::parse("12D3KooWG1aenKP6tEXto3pN2z7PRNNaiR2BuJKpATfQssXTLLLr").expect("peer");
        let full = PinOptions {
            replication_factor_min: 1,
            replication_factor_max: 2,
            name: "a \"name\"\n".into(),
            mode: PinMode::Direct,
            shard_size: 104_857_600,
            expire_at: Some(Millis(2_000_000_000_123)),
            metadata: BTreeMap::from([("k".into(), "v".into()), ("a\\".into(), "".into())]),
            pin_update: Some(v0.clone()),
            origins: vec!["/ip4/127.0.0.1/tcp/4001".into(), "/dns4/x".into()],
            ..PinOptions::default()
        };
        let mut out = Vec::new();
        for (n, options) in [PinOptions::default(), full].into_iter().enumerate() {
            for pin_type in [
                PinType::Data,
                PinType::Meta,
                PinType::ClusterDag,
                PinType::Shard,
            ] {
                for max_depth in [-1, 0, 1, 7] {
                    let cid = if n == 0 { v0.clone() } else { v1.clone() };
                    let mut pin = Pin::new(cid, options.clone(), Millis(1_700_000_000_000));
                    pin.pin_type = pin_type;
                    pin.max_depth = max_depth;
                    pin.timestamp =
                        Millis(1_700_000_000_000 + (max_depth + 1).unsigned_abs() as u64 * 7);
                    if n == 1 {
                        pin.allocations = vec![peer.clone(), peer.clone()];
                        pin.reference = Some(v1.clone());
                    }
                    out.push(pin);
                }
            }
        }
        out
    }

    #[test]
    fn a_stored_pin_is_byte_for_byte_what_serde_json_writes() {
        let mut times = TimeText::default();
        for pin in pins() {
            assert_eq!(
                json_of(|o| stored_pin(o, &pin, &mut times)),
                serde_json::to_string(&ApiPin::stored(&pin)).expect("json"),
            );
        }
    }

    #[test]
    fn enum_names_are_the_serde_names() {
        for mode in [PinMode::Recursive, PinMode::Direct] {
            assert_eq!(
                serde_json::to_string(&mode).expect("json"),
                format!("\"{}\"", mode_str(mode))
            );
        }
        for t in [
            PinType::Data,
            PinType::Meta,
            PinType::ClusterDag,
            PinType::Shard,
        ] {
            assert_eq!(
                serde_json::to_string(&t).expect("json"),
                format!("\"{}\"", type_str(t))
            );
        }
        for s in TrackerStatus::ALL {
            assert_eq!(
                serde_json::to_string(&s).expect("json"),
                json_of(|o| status(o, s))
            );
        }
    }
}

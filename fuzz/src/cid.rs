//! CIDs from text and from bytes, as every outside input carries them
//! (REST paths, Kubo answers, stored snapshots, wire messages).

use cluster_core::Cid;

/// Multibase prefixes and CID headers worth splicing into inputs.
pub const DICTIONARY: &[&[u8]] = &[
    b"Qm",
    b"bafy",
    b"bafk",
    b"z",
    b"f01",
    b"m",
    b"u",
    b"k51",
    b"\x01\x55\x12\x20",
    b"\x01\x70\x12\x20",
    b"\x12\x20",
    b"\x01\x55\x13\x40",
];

/// Parses `data` as text (when it is UTF-8) and as binary, and checks what
/// is accepted round-trips and orders as its bytes.
pub fn run(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cid) = Cid::parse(text) {
            check(&cid);
        }
        // The JSON form is the text form.
        let json = serde_json::to_string(text).expect("a string encodes");
        if let Ok(cid) = serde_json::from_str::<Cid>(&json) {
            check(&cid);
        }
    }
    if let Ok(cid) = Cid::from_bytes(data) {
        assert_eq!(cid.as_bytes(), data, "binary form kept as given");
        check(&cid);
    }
    // Postcard (snapshots, wire messages) reads a length and the bytes.
    if let Ok(cid) = postcard::from_bytes::<Cid>(data) {
        check(&cid);
    }
    // Two halves: the order of CIDs is the order of their bytes.
    let (a, b) = data.split_at(data.len() / 2);
    if let (Ok(a), Ok(b)) = (Cid::from_bytes(a), Cid::from_bytes(b)) {
        assert_eq!(a.cmp(&b), a.as_bytes().cmp(b.as_bytes()), "{a} vs {b}");
        assert_eq!(a == b, a.as_bytes() == b.as_bytes());
    }
}

/// Every form of an accepted CID reads back as the same CID.
fn check(cid: &Cid) {
    let text = cid.to_string();
    let again = Cid::parse(&text).unwrap_or_else(|e| panic!("{text} does not parse back: {e}"));
    assert_eq!(&again, cid, "text round trip of {text}");
    assert_eq!(again.to_string(), text, "printing is canonical");
    let from_bytes = Cid::from_bytes(cid.as_bytes())
        .unwrap_or_else(|e| panic!("bytes of {text} do not parse back: {e}"));
    assert_eq!(&from_bytes, cid);
    let bin = postcard::to_allocvec(cid).expect("a CID encodes");
    assert_eq!(&postcard::from_bytes::<Cid>(&bin).expect("decodes"), cid);
    let json = serde_json::to_string(cid).expect("a CID encodes");
    assert_eq!(&serde_json::from_str::<Cid>(&json).expect("decodes"), cid);
    assert_eq!(cid.is_v0(), text.starts_with("Qm"), "{text}");
}

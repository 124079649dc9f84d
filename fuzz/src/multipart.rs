//! `multipart`: bytes as an upload body for the streaming multipart splitter
//! (`cluster_node::ipfs::multipart`), which reads every `add`, `block/put`
//! and `dag/put` body the REST API, the proxy and the embedded node take.
//!
//! The first byte picks the chunk size the body is fed in. Checks: nothing
//! panics; the events are well-formed (content only inside a part, every
//! part ended before the next starts); the same body fed whole and in
//! chunks gives the same parts, or the same refusal.

use cluster_node::ipfs::multipart::{parts, Event, Splitter, MAX_PART_HEADERS};

/// The content type every input is read under.
pub const CONTENT_TYPE: &str = "multipart/form-data; boundary=XyZ";

/// Tokens worth splicing in.
pub const DICTIONARY: &[&[u8]] = &[
    b"--XyZ\r\n",
    b"\r\n--XyZ--\r\n",
    b"\r\n--XyZ",
    b"Content-Disposition: form-data; name=\"file\"; filename=\"a%2Fb\"\r\n",
    b"Content-Type: application/x-directory\r\n",
    b"\r\n\r\n",
];

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&chunk, body)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let whole = parts(CONTENT_TYPE, body);
    let mut splitter = Splitter::new(CONTENT_TYPE).expect("a multipart content type");
    let mut events = Vec::new();
    let mut fed: Result<(), String> = Ok(());
    for piece in body.chunks(chunk) {
        fed = splitter.push(piece, &mut events);
        if fed.is_err() {
            break;
        }
    }
    let fed = fed.and_then(|()| splitter.finish());
    // Well-formed events, whatever the outcome.
    let mut open = false;
    let mut chunked: Vec<(String, bool, Vec<u8>)> = Vec::new();
    for e in events {
        match e {
            Event::Start { name, is_dir } => {
                assert!(!open, "a part started inside another");
                assert!(name.len() <= MAX_PART_HEADERS + 3 * body.len());
                open = true;
                chunked.push((name, is_dir, Vec::new()));
            }
            Event::Data(d) => {
                assert!(open, "content outside a part");
                chunked.last_mut().expect("a part").2.extend_from_slice(&d);
            }
            Event::End => {
                assert!(open, "an end without a part");
                open = false;
            }
        }
    }
    match (whole, fed) {
        (Ok(whole), Ok(())) => {
            assert!(!open, "a complete body left a part open");
            let whole: Vec<(String, bool, Vec<u8>)> = whole
                .into_iter()
                .map(|p| (p.name, p.is_dir, p.data))
                .collect();
            assert_eq!(whole, chunked, "chunking changed the parts");
        }
        (Err(_), Err(_)) => {}
        (w, f) => panic!("whole and chunked reading disagree: {w:?} vs {f:?}"),
    }
}

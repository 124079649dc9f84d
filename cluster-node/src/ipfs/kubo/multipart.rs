//! `multipart/form-data` bodies for uploads (`add`, `block/put`).
//!
//! The boundary is chosen so it does not occur in the data (checked, not
//! left to chance). Each part carries a `Content-Type`: js-ipfs refuses
//! parts without one.

use bytes::Bytes;

use super::http::{percent_encode, Upload};

const BOUNDARY_PREFIX: &str = "ipfs-cluster-rs-boundary-";

/// One file part named `name` holding `data`.
pub fn one_file(name: &str, data: &[u8]) -> Upload {
    let boundary = boundary_for(data);
    // The file name is percent-encoded, as go-ipfs-files writes it.
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n",
        percent_encode(name)
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let mut body = Vec::with_capacity(head.len() + data.len() + tail.len());
    body.extend_from_slice(head.as_bytes());
    body.extend_from_slice(data);
    body.extend_from_slice(tail.as_bytes());
    Upload {
        content_type: format!("multipart/form-data; boundary={boundary}"),
        bytes: Bytes::from(body),
    }
}

fn boundary_for(data: &[u8]) -> String {
    (0u64..)
        .map(|n| format!("{BOUNDARY_PREFIX}{n:016x}"))
        .find(|b| !contains(data, b.as_bytes()))
        .unwrap_or_default() // Unreachable: data cannot hold every counter value.
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_is_framed_by_a_boundary_absent_from_the_data() {
        let up = one_file("a b.txt", b"hello");
        let body = String::from_utf8(up.bytes.to_vec()).expect("utf8");
        let boundary = up
            .content_type
            .strip_prefix("multipart/form-data; boundary=")
            .expect("boundary");
        assert!(body.starts_with(&format!("--{boundary}\r\n")));
        assert!(body.contains("filename=\"a%20b.txt\""));
        assert!(body.contains("Content-Type: application/octet-stream\r\n\r\nhello\r\n"));
        assert!(body.ends_with(&format!("\r\n--{boundary}--\r\n")));

        let tricky = format!("x{BOUNDARY_PREFIX}{:016x}y", 0);
        let up = one_file("f", tricky.as_bytes());
        assert!(up
            .content_type
            .ends_with(&format!("{BOUNDARY_PREFIX}{:016x}", 1)));
    }
}

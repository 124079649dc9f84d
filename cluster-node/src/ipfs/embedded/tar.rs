//! The few tar headers `get` needs (POSIX ustar, with GNU long names for
//! paths over 100 bytes, as Kubo's `get` writes them).

/// Size of a tar block.
pub const BLOCK: usize = 512;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file of this many bytes.
    File(u64),
    /// A directory.
    Dir,
}

fn octal(field: &mut [u8], value: u64) {
    // Zero-padded octal, NUL-terminated, as wide as the field allows.
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    let bytes = text.as_bytes();
    let start = bytes.len().saturating_sub(width);
    field[..width].copy_from_slice(&bytes[start..]);
    field[width] = 0;
}

fn header(name: &[u8], kind: Kind, typeflag: u8) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    let (mode, size) = match kind {
        Kind::File(size) => (0o644, size),
        Kind::Dir => (0o755, 0),
    };
    octal(&mut h[100..108], mode);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 0);
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    h
}

/// Zero bytes that pad `len` bytes of content to a whole block.
pub fn padding(len: u64) -> usize {
    let rem = (len % BLOCK as u64) as usize;
    if rem == 0 {
        0
    } else {
        BLOCK - rem
    }
}

/// The header block(s) of an entry at `path` (a GNU long-name entry first
/// when the path does not fit in 100 bytes).
pub fn entry_header(path: &str, kind: Kind) -> Vec<u8> {
    let mut name = path.as_bytes().to_vec();
    if kind == Kind::Dir && !name.ends_with(b"/") {
        name.push(b'/');
    }
    let mut out = Vec::with_capacity(BLOCK * 3);
    let flag = match kind {
        Kind::File(_) => b'0',
        Kind::Dir => b'5',
    };
    if name.len() > 100 {
        let long = (name.len() + 1) as u64;
        out.extend_from_slice(&header(b"././@LongLink", Kind::File(long), b'L'));
        out.extend_from_slice(&name);
        out.push(0);
        out.resize(out.len() + padding(long), 0);
    }
    out.extend_from_slice(&header(&name, kind, flag));
    out
}

/// The end of an archive: two zero blocks.
pub fn end() -> Vec<u8> {
    vec![0u8; 2 * BLOCK]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(h: &[u8], range: std::ops::Range<usize>) -> String {
        String::from_utf8_lossy(&h[range])
            .trim_end_matches('\0')
            .to_string()
    }

    #[test]
    fn a_file_header_has_its_size_and_a_valid_checksum() {
        let h = entry_header("dir/a.txt", Kind::File(1234));
        assert_eq!(h.len(), BLOCK);
        assert_eq!(field(&h, 0..100), "dir/a.txt");
        assert_eq!(
            u64::from_str_radix(&field(&h, 124..135), 8).ok(),
            Some(1234)
        );
        assert_eq!(h[156], b'0');
        let mut copy = h.clone();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u64 = copy.iter().map(|b| u64::from(*b)).sum();
        let stored = u64::from_str_radix(field(&h, 148..155).trim(), 8).ok();
        assert_eq!(stored, Some(sum));
        assert_eq!(padding(1234), 512 - 1234 % 512);
        assert_eq!(padding(1024), 0);
    }

    #[test]
    fn long_names_get_a_gnu_long_link_entry() {
        let long = "d/".repeat(80) + "file";
        let h = entry_header(&long, Kind::Dir);
        assert_eq!(h.len() % BLOCK, 0);
        assert_eq!(h[156], b'L');
        assert!(h[BLOCK..].starts_with(long.as_bytes()));
        assert_eq!(h[h.len() - BLOCK + 156], b'5');
    }
}

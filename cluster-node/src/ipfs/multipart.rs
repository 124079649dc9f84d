//! A streaming splitter of `multipart/form-data` bodies in Kubo's `add`
//! encoding: chunks go in as the connection delivers them, part starts,
//! content and part ends come out, and no more than one delimiter's worth
//! of bytes (plus a part's headers) is ever held back. Used by the embedded
//! node's imports, where an upload may be far larger than memory, and by
//! the in-memory add of the fakes.

/// Longest header block of one part; more is a malformed body, not an
/// upload to buffer.
pub const MAX_PART_HEADERS: usize = 16 * 1024;

/// What the splitter found in the bytes pushed so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new part: its file name (percent-decoded, a path within the
    /// upload) and whether it is a directory (`application/x-directory`).
    Start {
        /// The part's path within the upload.
        name: String,
        /// True for a directory part.
        is_dir: bool,
    },
    /// Content of the current part.
    Data(Vec<u8>),
    /// The current part is complete.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// Right after a delimiter: `--` (the end) or a line break follows.
    AfterDelimiter,
    /// Reading a part's headers.
    Headers,
    /// Reading a part's content.
    Body,
    /// After the closing delimiter; the rest is epilogue.
    Done,
}

/// The splitter of one body.
#[derive(Debug)]
pub struct Splitter {
    /// `\r\n--<boundary>`: what ends a part's content.
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    state: State,
}

/// The boundary named by a `multipart/…; boundary=…` content type.
pub fn boundary(content_type: &str) -> Option<&str> {
    let (kind, params) = content_type.split_once(';')?;
    let kind = kind.trim().to_ascii_lowercase();
    if kind != "multipart/form-data" && kind != "multipart/mixed" {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"'))
            .filter(|b| !b.is_empty())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file name and directory flag of a part's header block.
fn part_start(head: &str) -> Result<Event, String> {
    let mut name = None;
    let mut is_dir = false;
    for line in head.split("\r\n") {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        if key == "content-type" {
            is_dir = value.trim().eq_ignore_ascii_case("application/x-directory");
        } else if key == "content-disposition" {
            name = value.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k.trim() == "filename").then(|| percent_decode(v.trim().trim_matches('"')))
            });
        }
    }
    Ok(Event::Start {
        name: name.ok_or("part without a file name")?,
        is_dir,
    })
}

impl Splitter {
    /// The splitter of a body of `content_type` (which names the boundary).
    pub fn new(content_type: &str) -> Result<Splitter, String> {
        let boundary = boundary(content_type).ok_or("not a multipart content type")?;
        Ok(Splitter {
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            // The first delimiter may open the body without a line break.
            buf: b"\r\n".to_vec(),
            state: State::Preamble,
        })
    }

    /// Feeds the next `chunk` of the body, appending what it completes.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), String> {
        if self.state == State::Done {
            return Ok(());
        }
        self.buf.extend_from_slice(chunk);
        loop {
            match self.state {
                State::Preamble => match find(&self.buf, &self.delimiter) {
                    Some(at) => {
                        self.buf.drain(..at + self.delimiter.len());
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        let keep = self.delimiter.len().min(self.buf.len());
                        self.buf.drain(..self.buf.len() - keep);
                        return Ok(());
                    }
                },
                State::AfterDelimiter => {
                    if self.buf.len() < 2 {
                        return Ok(());
                    }
                    if self.buf.starts_with(b"--") {
                        self.buf.clear();
                        self.state = State::Done;
                        return Ok(());
                    }
                    // Transport padding (spaces, tabs) may precede the line break.
                    let Some(eol) = find(&self.buf, b"\r\n") else {
                        if self.buf.len() > MAX_PART_HEADERS {
                            return Err("malformed part delimiter".into());
                        }
                        return Ok(());
                    };
                    if self.buf[..eol].iter().any(|b| *b != b' ' && *b != b'\t') {
                        return Err("malformed part delimiter".into());
                    }
                    self.buf.drain(..eol + 2);
                    self.state = State::Headers;
                }
                // A part without headers has its blank line right away
                // (whatever a later blank line would seem to close).
                State::Headers if self.buf.starts_with(b"\r\n") => {
                    return Err("part without a file name".into());
                }
                State::Headers if self.buf.len() < 2 => return Ok(()),
                State::Headers => match find(&self.buf, b"\r\n\r\n") {
                    Some(end) => {
                        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                        out.push(part_start(&head)?);
                        self.buf.drain(..end + 4);
                        self.state = State::Body;
                    }
                    None if self.buf.len() > MAX_PART_HEADERS => {
                        return Err("part headers too long".into());
                    }
                    None => return Ok(()),
                },
                State::Body => match find(&self.buf, &self.delimiter) {
                    Some(at) => {
                        if at > 0 {
                            out.push(Event::Data(self.buf[..at].to_vec()));
                        }
                        out.push(Event::End);
                        self.buf.drain(..at + self.delimiter.len());
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        // Everything but what could be a delimiter's start.
                        let safe = self.buf.len().saturating_sub(self.delimiter.len() - 1);
                        if safe > 0 {
                            out.push(Event::Data(self.buf.drain(..safe).collect()));
                        }
                        return Ok(());
                    }
                },
                State::Done => return Ok(()),
            }
        }
    }

    /// Checks the body ended with its closing delimiter.
    pub fn finish(&self) -> Result<(), String> {
        match self.state {
            State::Done => Ok(()),
            State::Preamble => Err("no multipart boundary in the body".into()),
            State::Body => Err("part without closing boundary".into()),
            State::AfterDelimiter | State::Headers => Err("body ends inside a part".into()),
        }
    }
}

/// One whole part of a body (see [`parts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Its file name, percent-decoded (a path within the upload).
    pub name: String,
    /// True for an `application/x-directory` part.
    pub is_dir: bool,
    /// Its content.
    pub data: Vec<u8>,
}

/// Splits a whole multipart body into its parts.
pub fn parts(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let mut splitter = Splitter::new(content_type)?;
    let mut events = Vec::new();
    splitter.push(body, &mut events)?;
    splitter.finish()?;
    let mut out: Vec<Part> = Vec::new();
    for event in events {
        match event {
            Event::Start { name, is_dir } => out.push(Part {
                name,
                is_dir,
                data: Vec::new(),
            }),
            Event::Data(bytes) => {
                if let Some(p) = out.last_mut() {
                    p.data.extend_from_slice(&bytes);
                }
            }
            Event::End => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body(boundary: &str, parts: &[(&str, bool, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, dir, data) in parts {
            let kind = if *dir {
                "application/x-directory"
            } else {
                "application/octet-stream"
            };
            out.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
                     filename=\"{name}\"\r\nContent-Type: {kind}\r\n\r\n"
                )
                .as_bytes(),
            );
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        out
    }

    #[test]
    fn parts_are_split_and_names_decoded() {
        let ct = "multipart/form-data; boundary=\"XyZ\"";
        let b = body(
            "XyZ",
            &[("d", true, b""), ("d%2Fa%20b", false, b"hello\r\n")],
        );
        let got = parts(ct, &b).expect("parts");
        assert_eq!(got.len(), 2);
        assert!(got[0].is_dir);
        assert_eq!(got[1].name, "d/a b");
        assert_eq!(got[1].data, b"hello\r\n");
        assert!(parts("text/plain", &b).is_err());
        assert!(parts(ct, b"--XyZ\r\nno end").is_err());
        assert!(parts(ct, b"no boundary at all").is_err());
        let cut = &b[..b.len() - 12];
        assert!(parts(ct, cut).is_err(), "a body cut short is refused");
    }

    /// Found by the `multipart` fuzz target: fed whole, an empty header
    /// block was read up to a later blank line (a part named by the next
    /// part's headers); fed in chunks, it was refused.
    #[test]
    fn an_empty_header_block_is_refused_however_the_body_is_cut() {
        let body = b"\r\n--XyZ\r\n\r\n--XyZ--\r\nContent-Disposition: form-data; \
                     filename=\"x\"\r\n\r\n\r\n--XyZ--";
        let ct = "multipart/form-data; boundary=XyZ";
        assert!(parts(ct, body).is_err(), "read whole");
        let mut splitter = Splitter::new(ct).expect("splitter");
        let mut events = Vec::new();
        let fed = body
            .iter()
            .try_for_each(|b| splitter.push(std::slice::from_ref(b), &mut events));
        assert!(fed.is_err(), "read a byte at a time");
    }

    #[test]
    fn a_part_without_a_file_name_is_refused() {
        let b = b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n";
        let err = parts("multipart/form-data; boundary=B", b).expect_err("refused");
        assert!(err.contains("file name"), "{err}");
    }

    proptest! {
        /// Any cut of the body into chunks gives the parts of the whole.
        #[test]
        fn chunking_does_not_change_the_parts(
            contents in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..4),
            cuts in proptest::collection::vec(1usize..97, 0..20),
        ) {
            let names: Vec<String> = (0..contents.len()).map(|i| format!("f{i}")).collect();
            let spec: Vec<(&str, bool, &[u8])> = names
                .iter()
                .zip(&contents)
                .map(|(n, c)| (n.as_str(), false, c.as_slice()))
                .collect();
            let ct = "multipart/form-data; boundary=--b0und";
            let whole = body("--b0und", &spec);
            let mut splitter = Splitter::new(ct).expect("splitter");
            let mut events = Vec::new();
            let mut rest = whole.as_slice();
            for cut in cuts {
                let at = cut.min(rest.len());
                splitter.push(&rest[..at], &mut events).expect("push");
                rest = &rest[at..];
            }
            splitter.push(rest, &mut events).expect("push");
            splitter.finish().expect("complete");
            let mut got: Vec<Vec<u8>> = Vec::new();
            for e in events {
                match e {
                    Event::Start { .. } => got.push(Vec::new()),
                    Event::Data(d) => got.last_mut().expect("a part").extend_from_slice(&d),
                    Event::End => {}
                }
            }
            prop_assert_eq!(got, contents);
        }
    }
}

//! A streaming `multipart/form-data` reader for `POST /add` (boxo/files semantics): parts
//! are read as they arrive, with bounded buffering, so large uploads never sit in memory.

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Largest header block of one part.
const MAX_PART_HEADERS: usize = 16 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartHeaders {
    /// `filename` of Content-Disposition, raw (still query-escaped).
    pub filename: Option<String>,
    /// Content-Type, lower-cased, without parameters ("" when absent).
    pub content_type: String,
}

#[derive(Debug)]
pub enum Event {
    Part(PartHeaders),
    Data(Bytes),
    PartEnd,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Looking for the first delimiter.
    Preamble,
    /// Just after a delimiter: `--` ends the body, CRLF starts a part.
    AfterDelimiter,
    Headers,
    Data,
    /// Data before the delimiter was emitted; the next event is PartEnd.
    DataEnded,
    End,
}

pub struct Multipart {
    body: Incoming,
    delimiter: Vec<u8>,
    buf: BytesMut,
    state: State,
    eof: bool,
}

/// The boundary of a multipart request, or upstream's (Go's) error text.
pub fn boundary(content_type: Option<&str>) -> Result<String, String> {
    let ct = content_type.unwrap_or("");
    let mut parts = ct.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    if mime != "multipart/form-data" && mime != "multipart/mixed" {
        return Err("request Content-Type isn't multipart/form-data".into());
    }
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case("boundary") {
                let b = v.trim().trim_matches('"');
                if !b.is_empty() && b.len() <= 70 {
                    return Ok(b.to_string());
                }
            }
        }
    }
    Err("no multipart boundary param in Content-Type".into())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses `form-data; name="file"; filename="a%2Fb"` parameters.
fn disposition_param(value: &str, key: &str) -> Option<String> {
    for p in value.split(';').skip(1) {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case(key) {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v);
            return Some(v.replace("\\\"", "\"").replace("\\\\", "\\"));
        }
    }
    None
}

fn parse_headers(block: &[u8]) -> Result<PartHeaders, String> {
    let text = std::str::from_utf8(block)
        .map_err(|_| "multipart part headers are not UTF-8".to_string())?;
    let mut h = PartHeaders::default();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let Some((k, v)) = line.split_once(':') else {
            return Err(format!("malformed multipart part header line {line:?}"));
        };
        let v = v.trim();
        if k.trim().eq_ignore_ascii_case("content-disposition") {
            h.filename = disposition_param(v, "filename");
        } else if k.trim().eq_ignore_ascii_case("content-type") {
            h.content_type = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
        }
    }
    Ok(h)
}

impl Multipart {
    pub fn new(body: Incoming, boundary: &str) -> Self {
        let mut buf = BytesMut::new();
        // A leading CRLF lets the first delimiter be found like every other one.
        buf.extend_from_slice(b"\r\n");
        Self {
            body,
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            buf,
            state: State::Preamble,
            eof: false,
        }
    }

    /// Reads more of the body; false at its end.
    async fn fill(&mut self) -> Result<bool, String> {
        while !self.eof {
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        if !d.is_empty() {
                            self.buf.extend_from_slice(&d);
                            return Ok(true);
                        }
                    }
                }
                Some(Err(e)) => return Err(format!("error reading the request body: {e}")),
                None => self.eof = true,
            }
        }
        Ok(false)
    }

    async fn need(&mut self, n: usize) -> Result<bool, String> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub async fn next(&mut self) -> Result<Option<Event>, String> {
        loop {
            match self.state {
                State::End => return Ok(None),
                State::Preamble => match find(&self.buf, &self.delimiter) {
                    Some(i) => {
                        self.buf.advance(i + self.delimiter.len());
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        let keep = self.delimiter.len();
                        if self.buf.len() > keep {
                            let drop = self.buf.len() - keep;
                            self.buf.advance(drop);
                        }
                        if !self.fill().await? {
                            return Err("multipart: NextPart: EOF".into());
                        }
                    }
                },
                State::AfterDelimiter => {
                    if !self.need(2).await? {
                        return Err("multipart: unexpected end of the body after a boundary".into());
                    }
                    if &self.buf[..2] == b"--" {
                        self.state = State::End;
                        return Ok(None);
                    }
                    // Go tolerates transport padding (spaces/tabs) before the CRLF.
                    while !self.buf.is_empty() && (self.buf[0] == b' ' || self.buf[0] == b'\t') {
                        self.buf.advance(1);
                        self.need(2).await?;
                    }
                    if self.buf.len() < 2 || &self.buf[..2] != b"\r\n" {
                        return Err("multipart: expected a line break after the boundary".into());
                    }
                    self.buf.advance(2);
                    self.state = State::Headers;
                }
                State::Headers => {
                    if self.need(2).await? && &self.buf[..2] == b"\r\n" {
                        self.buf.advance(2);
                        self.state = State::Data;
                        return Ok(Some(Event::Part(PartHeaders::default())));
                    }
                    loop {
                        if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                            let h = parse_headers(&self.buf[..i])?;
                            self.buf.advance(i + 4);
                            self.state = State::Data;
                            return Ok(Some(Event::Part(h)));
                        }
                        if self.buf.len() > MAX_PART_HEADERS {
                            return Err(format!(
                                "multipart part headers are larger than {MAX_PART_HEADERS} bytes"
                            ));
                        }
                        if !self.fill().await? {
                            return Err(
                                "multipart: unexpected end of the body in part headers".into()
                            );
                        }
                    }
                }
                State::Data => {
                    if let Some(i) = find(&self.buf, &self.delimiter) {
                        let data = self.buf.split_to(i).freeze();
                        self.buf.advance(self.delimiter.len());
                        self.state = State::DataEnded;
                        if !data.is_empty() {
                            return Ok(Some(Event::Data(data)));
                        }
                        continue;
                    }
                    let keep = self.delimiter.len() - 1;
                    if self.buf.len() > keep {
                        let n = self.buf.len() - keep;
                        return Ok(Some(Event::Data(self.buf.split_to(n).freeze())));
                    }
                    if !self.fill().await? {
                        return Err("multipart: unexpected end of the body inside a part".into());
                    }
                }
                State::DataEnded => {
                    self.state = State::AfterDelimiter;
                    return Ok(Some(Event::PartEnd));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            boundary(Some("multipart/form-data; boundary=abc")).unwrap(),
            "abc"
        );
        assert_eq!(
            boundary(Some("multipart/mixed; boundary=\"x y\"")).unwrap(),
            "x y"
        );
        assert_eq!(
            boundary(Some("application/json")).unwrap_err(),
            "request Content-Type isn't multipart/form-data"
        );
        assert_eq!(
            boundary(None).unwrap_err(),
            "request Content-Type isn't multipart/form-data"
        );
        assert_eq!(
            boundary(Some("multipart/form-data")).unwrap_err(),
            "no multipart boundary param in Content-Type"
        );
    }

    #[test]
    fn headers() {
        let h = parse_headers(b"Content-Disposition: form-data; name=\"file\"; filename=\"a%2Fb.txt\"\r\nContent-Type: Application/Octet-Stream").unwrap();
        assert_eq!(h.filename.as_deref(), Some("a%2Fb.txt"));
        assert_eq!(h.content_type, "application/octet-stream");
    }
}

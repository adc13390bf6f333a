//! A streaming `multipart/form-data` reader for `POST /add` (boxo/files semantics): parts
//! are read as they arrive, with bounded buffering, so large uploads never sit in memory.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use ipfs_cluster_runtime::{ErrorCode, ServiceError};

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

/// How much of a request body `POST /add` reads, and for how long (docs/security.md, hole 7):
/// `api.restapi.max_add_bytes` and upstream's `read_timeout` (zero = no deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    pub max_bytes: u64,
    pub read_timeout: Duration,
}

impl BodyLimits {
    /// What an add of at most `max_bytes` may spool to the temp folder: its blocks hold
    /// the data plus UnixFS framing and directory nodes, well under an eighth more.
    pub fn spool_max(&self) -> u64 {
        self.max_bytes
            .saturating_add(self.max_bytes / 8)
            .saturating_add(1 << 20)
    }

    /// The 413 error when the body is (or declares to be) larger than allowed.
    pub fn too_large(&self) -> AddError {
        AddError::TooLarge {
            max_bytes: self.max_bytes,
        }
    }
}

/// Why an add failed. The kind, never the text, decides the HTTP status of a buffered
/// add's answer (its [`ErrorCode`]); a streamed add ends with the text in its
/// `X-Stream-Error` trailer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    /// Past `max_add_bytes`: 413.
    #[error("request body too large: this API accepts at most {max_bytes} bytes per request (api.restapi.max_add_bytes); add less at once or raise the limit")]
    TooLarge { max_bytes: u64 },
    /// Past `read_timeout` (its Go duration text): 408.
    #[error("request body not read in time: the body was not received within read_timeout ({read_timeout})")]
    TooSlow { read_timeout: String },
    /// A body that is not the multipart form it says: 500.
    #[error(transparent)]
    Multipart(#[from] MultipartError),
    /// DAG parameters that cannot be used, or a directory that cannot be built: 500.
    #[error(transparent)]
    Dag(#[from] crate::add::dag::DagError),
    /// A CAR upload that cannot be read: 500.
    #[error(transparent)]
    Car(#[from] crate::add::car::CarError),
    /// Anything else (a block that cannot be stored, a failed pin): 500.
    #[error("{0}")]
    Failed(String),
}

/// A request body that is not a multipart form, in Go's `mime/multipart` words where
/// upstream answers with them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("request Content-Type isn't multipart/form-data")]
    NotMultipart,
    #[error("no multipart boundary param in Content-Type")]
    NoBoundary,
    #[error("error reading the request body: {0}")]
    Read(String),
    #[error("multipart part headers are not UTF-8")]
    HeadersNotUtf8,
    #[error("malformed multipart part header line {0:?}")]
    HeaderLine(String),
    #[error("multipart part headers are larger than {max} bytes", max = MAX_PART_HEADERS)]
    HeadersTooLarge,
    #[error("multipart: NextPart: EOF")]
    NoPart,
    #[error("multipart: unexpected end of the body after a boundary")]
    EndAfterBoundary,
    #[error("multipart: expected a line break after the boundary")]
    NoLineBreak,
    #[error("multipart: unexpected end of the body in part headers")]
    EndInHeaders,
    #[error("multipart: unexpected end of the body inside a part")]
    EndInPart,
}

impl ServiceError for AddError {
    fn error_code(&self) -> ErrorCode {
        match self {
            AddError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            AddError::TooSlow { .. } => ErrorCode::RequestTimeout,
            AddError::Multipart(_) | AddError::Dag(_) | AddError::Car(_) | AddError::Failed(_) => {
                ErrorCode::Internal
            }
        }
    }
}

impl From<String> for AddError {
    fn from(e: String) -> Self {
        AddError::Failed(e)
    }
}

impl From<&str> for AddError {
    fn from(e: &str) -> Self {
        AddError::Failed(e.to_string())
    }
}

/// A request body read under [`BodyLimits`]: refused up front when its Content-Length is
/// too large, cut off as soon as more bytes arrive than allowed, and given up on when the
/// whole body is not in by `read_timeout` after the request started.
pub struct LimitedBody<B = Incoming> {
    body: B,
    limits: BodyLimits,
    read: u64,
    deadline: Option<tokio::time::Instant>,
}

impl<B> LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    /// `Err` (the 413 error) when the body declares more than `limits.max_bytes`.
    pub fn new(body: B, limits: BodyLimits) -> Result<Self, AddError> {
        if body.size_hint().lower() > limits.max_bytes {
            return Err(limits.too_large());
        }
        let deadline = (!limits.read_timeout.is_zero())
            .then(|| tokio::time::Instant::now() + limits.read_timeout);
        Ok(Self {
            body,
            limits,
            read: 0,
            deadline,
        })
    }

    pub fn limits(&self) -> BodyLimits {
        self.limits
    }

    /// The next data chunk, `None` at the end.
    pub async fn data(&mut self) -> Result<Option<Bytes>, AddError> {
        loop {
            let next = self.body.frame();
            let frame = match self.deadline {
                None => next.await,
                Some(d) => {
                    tokio::time::timeout_at(d, next)
                        .await
                        .map_err(|_| AddError::TooSlow {
                            read_timeout: ipfs_cluster_config::GoDuration::from(
                                self.limits.read_timeout,
                            )
                            .to_string(),
                        })?
                }
            };
            match frame {
                None => return Ok(None),
                Some(Err(e)) => return Err(MultipartError::Read(e.to_string()).into()),
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.read += d.len() as u64;
                        if self.read > self.limits.max_bytes {
                            return Err(self.limits.too_large());
                        }
                        return Ok(Some(d));
                    }
                }
            }
        }
    }
}

pub struct Multipart {
    body: LimitedBody,
    delimiter: Vec<u8>,
    buf: BytesMut,
    state: State,
    eof: bool,
}

/// The boundary of a multipart request, or upstream's (Go's) error text.
pub fn boundary(content_type: Option<&str>) -> Result<String, MultipartError> {
    let ct = content_type.unwrap_or("");
    let mut parts = ct.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    if mime != "multipart/form-data" && mime != "multipart/mixed" {
        return Err(MultipartError::NotMultipart);
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
    Err(MultipartError::NoBoundary)
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

fn parse_headers(block: &[u8]) -> Result<PartHeaders, MultipartError> {
    let text = std::str::from_utf8(block).map_err(|_| MultipartError::HeadersNotUtf8)?;
    let mut h = PartHeaders::default();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let Some((k, v)) = line.split_once(':') else {
            return Err(MultipartError::HeaderLine(line.to_string()));
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
    pub fn new(body: LimitedBody, boundary: &str) -> Self {
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
    async fn fill(&mut self) -> Result<bool, AddError> {
        while !self.eof {
            match self.body.data().await? {
                Some(d) => {
                    if !d.is_empty() {
                        self.buf.extend_from_slice(&d);
                        return Ok(true);
                    }
                }
                None => self.eof = true,
            }
        }
        Ok(false)
    }

    async fn need(&mut self, n: usize) -> Result<bool, AddError> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub async fn next(&mut self) -> Result<Option<Event>, AddError> {
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
                            return Err(MultipartError::NoPart.into());
                        }
                    }
                },
                State::AfterDelimiter => {
                    if !self.need(2).await? {
                        return Err(MultipartError::EndAfterBoundary.into());
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
                        return Err(MultipartError::NoLineBreak.into());
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
                            return Err(MultipartError::HeadersTooLarge.into());
                        }
                        if !self.fill().await? {
                            return Err(MultipartError::EndInHeaders.into());
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
                        return Err(MultipartError::EndInPart.into());
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
    use http::StatusCode;

    fn limits(max_bytes: u64, read_timeout: Duration) -> BodyLimits {
        BodyLimits {
            max_bytes,
            read_timeout,
        }
    }

    /// A body that yields `chunks`, then waits forever (a client that stops sending).
    fn stalling(
        chunks: Vec<&'static [u8]>,
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        use futures::StreamExt;
        let s = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok(hyper::body::Frame::data(Bytes::from_static(c)))),
        )
        .chain(futures::stream::pending());
        http_body_util::StreamBody::new(s)
    }

    #[tokio::test]
    async fn bodies_are_bounded_in_size_and_time() {
        // A declared length over the limit is refused before reading anything.
        let full = http_body_util::Full::new(Bytes::from_static(b"0123456789"));
        let e = LimitedBody::new(full, limits(9, Duration::ZERO))
            .err()
            .expect("refused up front");
        assert_eq!(e.error_code().http_status(), StatusCode::PAYLOAD_TOO_LARGE);
        let text = e.to_string();
        assert!(
            text.starts_with("request body too large: ")
                && text.contains("max_add_bytes")
                && text.contains("at most 9 bytes"),
            "{e}"
        );
        // Exactly the limit is fine.
        let full = http_body_util::Full::new(Bytes::from_static(b"0123456789"));
        let mut b = LimitedBody::new(full, limits(10, Duration::ZERO)).unwrap();
        assert_eq!(b.data().await.unwrap().unwrap().len(), 10);
        assert_eq!(b.data().await.unwrap(), None);
        // A body without a length is cut off when it goes past the limit.
        let mut b = LimitedBody::new(
            stalling(vec![b"01234", b"56789"]),
            limits(8, Duration::ZERO),
        )
        .unwrap();
        assert!(b.data().await.unwrap().is_some());
        let e = b.data().await.unwrap_err();
        assert_eq!(
            e.error_code().http_status(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "{e}"
        );
        // A client that stops sending is given up on at read_timeout.
        let mut b = LimitedBody::new(
            stalling(vec![b"0"]),
            limits(100, Duration::from_millis(200)),
        )
        .unwrap();
        assert!(b.data().await.unwrap().is_some());
        let t = std::time::Instant::now();
        let e = b.data().await.unwrap_err();
        assert_eq!(
            e.error_code().http_status(),
            StatusCode::REQUEST_TIMEOUT,
            "{e}"
        );
        assert!(
            e.to_string().starts_with("request body not read in time: ")
                && e.to_string().contains("read_timeout (200ms)"),
            "{e}"
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(
            AddError::from("other").error_code().http_status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            limits(1 << 30, Duration::ZERO).spool_max(),
            (1 << 30) + (1 << 27) + (1 << 20)
        );
    }

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
            boundary(Some("application/json")).unwrap_err().to_string(),
            "request Content-Type isn't multipart/form-data"
        );
        assert_eq!(
            boundary(None).unwrap_err().to_string(),
            "request Content-Type isn't multipart/form-data"
        );
        assert_eq!(
            boundary(Some("multipart/form-data"))
                .unwrap_err()
                .to_string(),
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

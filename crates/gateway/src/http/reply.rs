//! Building responses as upstream's `SendResponse` / `StreamResponse` do: compact JSON plus
//! one newline, `{"code","message"}` errors, and NDJSON streams that decide between 200,
//! 204 and 500 from the first item and report later failures in the `X-Stream-Error`
//! trailer. Responses built here are marked so the server adds the configured headers.

use std::convert::Infallible;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{FutureExt, Stream, StreamExt};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use serde::Serialize;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Marker extension: this response was written by the API helpers, so it gets the
/// configured `headers` (405, redirects and CORS preflights do not).
#[derive(Clone, Copy, Debug)]
pub struct ApiResponse;

pub const STREAM_ERROR: &str = "x-stream-error";

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new().boxed_unsync()
}

pub use ipfs_cluster_runtime::api_error::{ApiError, NOT_IN_PINSET};
use ipfs_cluster_runtime::ErrorCode;

/// The REST body of a failure to encode a response (never expected: these are plain data
/// types).
fn encode_failure(e: serde_json::Error) -> Vec<u8> {
    ApiError::new(ErrorCode::Internal, format!("cannot encode response: {e}")).rest_body()
}

/// Compact JSON plus `\n`.
pub fn json_line<T: Serialize + ?Sized>(v: &T) -> Bytes {
    match serde_json::to_vec(v) {
        Ok(mut out) => {
            out.push(b'\n');
            Bytes::from(out)
        }
        // Serializing our own plain data types cannot fail; make it visible if it ever does.
        Err(e) => Bytes::from(encode_failure(e)),
    }
}

fn api_response(status: StatusCode, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.extensions_mut().insert(ApiResponse);
    r
}

pub fn ok_json<T: Serialize + ?Sized>(v: &T) -> Response<Body> {
    api_response(StatusCode::OK, full(json_line(v)))
}

pub fn status_json<T: Serialize + ?Sized>(status: StatusCode, v: &T) -> Response<Body> {
    api_response(status, full(json_line(v)))
}

pub fn no_content() -> Response<Body> {
    api_response(StatusCode::NO_CONTENT, empty())
}

/// A REST error: `{"code":<status>,"message":...}`.
pub fn error(e: &ApiError) -> Response<Body> {
    api_response(e.status(), full(e.rest_body()))
}

/// Pinning Services API error body: `{"error":{"reason":...}}`.
pub fn pinsvc_error(e: &ApiError) -> Response<Body> {
    api_response(e.status(), full(e.pinsvc_body()))
}

/// The router's 405: empty body, no configured headers.
pub fn method_not_allowed() -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

/// A redirect to a path on this server. A location starting with `//` or `/\\` would be
/// read by browsers as another host (`GET //evil.example/` answered `Location:
/// //evil.example`, an open redirect: hole 7 of docs/security.md), so every run of slashes and
/// backslashes at its start becomes one `/`.
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    let rest = location.trim_start_matches(['/', '\\']);
    let location = if rest.len() + 1 < location.len() {
        format!("/{rest}")
    } else {
        location.to_string()
    };
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// One event of a streamed answer: an item or a backend error that does not stop the
/// stream (it becomes an extra `X-Stream-Error` trailer value).
pub enum Event<T> {
    Item(T),
    Error(String),
}

/// The event of streams whose items are already encoded lines.
pub type StreamEvent = Event<Bytes>;

/// An item of an NDJSON stream: appends its line (JSON + `\n`) to the frame being built.
pub trait NdjsonItem {
    fn write_line(&self, out: &mut BytesMut);
}

/// Already encoded (by `json_line`).
impl NdjsonItem for Bytes {
    fn write_line(&self, out: &mut BytesMut) {
        out.extend_from_slice(self);
    }
}

/// Serialized straight into the frame buffer: no per-item allocation.
pub struct Json<T>(pub T);

impl<T: Serialize> NdjsonItem for Json<T> {
    fn write_line(&self, out: &mut BytesMut) {
        let mark = out.len();
        if let Err(e) = serde_json::to_writer(out.writer(), &self.0) {
            // Serializing our own plain data types cannot fail; make it visible if it ever does.
            out.truncate(mark);
            out.extend_from_slice(&encode_failure(e));
            return;
        }
        out.put_u8(b'\n');
    }
}

/// How many body frames may wait for a slow client before the producer pauses.
const STREAM_QUEUE: usize = 8;
/// Items that are ready together are written into one body frame of about this size
/// (one write syscall and one HTTP chunk instead of one per line); a frame is sent as soon
/// as the source has nothing ready, so a slow source still streams item by item.
const FRAME_TARGET: usize = 64 * 1024;

/// Upstream's `StreamResponse`.
pub async fn ndjson<S, T>(events: S) -> Response<Body>
where
    S: Stream<Item = Event<T>> + Send + 'static,
    T: NdjsonItem + Send + 'static,
{
    let mut events = Box::pin(events);
    let mut errors = Vec::new();
    let first = loop {
        match events.next().await {
            Some(Event::Item(b)) => break Some(b),
            Some(Event::Error(e)) => errors.push(e),
            None => break None,
        }
    };
    let Some(first) = first else {
        let mut r = match errors.first() {
            Some(e) => error(&ApiError::new(ErrorCode::Internal, e.clone())),
            None => no_content(),
        };
        r.headers_mut()
            .insert(header::TRAILER, HeaderValue::from_static("X-Stream-Error"));
        return r;
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(STREAM_QUEUE);
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(FRAME_TARGET + FRAME_TARGET / 4);
        first.write_line(&mut buf);
        drop(first);
        loop {
            // Wait only when nothing is buffered; otherwise take what is ready right now.
            let ev = if buf.is_empty() {
                events.next().await
            } else {
                match events.next().now_or_never() {
                    Some(ev) => ev,
                    None => {
                        if !send_frame(&tx, &mut buf).await {
                            return; // client went away
                        }
                        continue;
                    }
                }
            };
            match ev {
                Some(Event::Item(item)) => {
                    item.write_line(&mut buf);
                    if buf.len() >= FRAME_TARGET && !send_frame(&tx, &mut buf).await {
                        return;
                    }
                }
                Some(Event::Error(e)) => errors.push(e),
                None => break,
            }
        }
        if !buf.is_empty() && !send_frame(&tx, &mut buf).await {
            return;
        }
        let mut trailers = HeaderMap::new();
        trailers.append(STREAM_ERROR, HeaderValue::from_static(""));
        for e in errors {
            let v = HeaderValue::from_str(&e.replace(['\r', '\n'], " "))
                .unwrap_or(HeaderValue::from_static("stream error"));
            trailers.append(STREAM_ERROR, v);
        }
        let _ = tx.send(Ok(Frame::trailers(trailers))).await;
    });
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed_unsync();
    let mut r = api_response(StatusCode::OK, body);
    r.headers_mut()
        .insert(header::TRAILER, HeaderValue::from_static("X-Stream-Error"));
    r
}

/// Sends what is buffered as one body frame, keeping a fresh buffer of the same size.
/// False when the client went away.
async fn send_frame(
    tx: &tokio::sync::mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
    buf: &mut BytesMut,
) -> bool {
    let chunk = std::mem::replace(
        buf,
        BytesMut::with_capacity(FRAME_TARGET + FRAME_TARGET / 4),
    );
    tx.send(Ok(Frame::data(chunk.freeze()))).await.is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn redirects_stay_on_this_server() {
        use super::*;
        let loc = |l: &str| {
            redirect(StatusCode::TEMPORARY_REDIRECT, l).headers()[header::LOCATION]
                .to_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(loc("//evil.example"), "/evil.example");
        assert_eq!(loc("/\\evil.example/x?y=1"), "/evil.example/x?y=1");
        assert_eq!(loc("///a"), "/a");
        assert_eq!(loc("/pins?x=1"), "/pins?x=1");
        assert_eq!(loc("/"), "/");
    }

    use super::*;

    async fn collect(r: Response<Body>) -> (StatusCode, Bytes, Option<HeaderMap>) {
        let status = r.status();
        let c = r.into_body().collect().await.unwrap();
        let trailers = c.trailers().cloned();
        (status, c.to_bytes(), trailers)
    }

    #[tokio::test]
    async fn stream_rules() {
        let (s, b, _) = collect(ndjson(futures::stream::empty::<StreamEvent>()).await).await;
        assert_eq!((s, b.as_ref()), (StatusCode::NO_CONTENT, &b""[..]));

        let evs = vec![StreamEvent::Error("boom".into())];
        let (s, b, _) = collect(ndjson(futures::stream::iter(evs)).await).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(b.as_ref(), b"{\"code\":500,\"message\":\"boom\"}\n");

        let evs = vec![
            StreamEvent::Item(json_line(&1)),
            StreamEvent::Error("peer x down".into()),
            StreamEvent::Item(json_line(&2)),
        ];
        let (s, b, t) = collect(ndjson(futures::stream::iter(evs)).await).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b.as_ref(), b"1\n2\n");
        let t = t.unwrap();
        let vals: Vec<_> = t
            .get_all(STREAM_ERROR)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(vals, vec!["".to_string(), "peer x down".to_string()]);
    }

    /// Items that are ready together share body frames (not one frame per line), the
    /// bytes are exactly the lines in order, and a late error still reaches the trailer.
    #[tokio::test]
    async fn ready_items_are_coalesced() {
        let n = 20_000usize;
        let mut evs: Vec<Event<Json<serde_json::Value>>> = (0..n)
            .map(|i| Event::Item(Json(serde_json::json!({ "i": i, "s": "a\"b" }))))
            .collect();
        evs.push(Event::Error("late\nerror".into()));
        let r = ndjson(futures::stream::iter(evs)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let mut body = r.into_body();
        let (mut data, mut frames, mut trailers) = (Vec::new(), 0usize, None);
        while let Some(f) = body.frame().await {
            let f = f.unwrap();
            if f.is_data() {
                frames += 1;
                data.extend_from_slice(&f.into_data().unwrap());
            } else {
                trailers = f.into_trailers().ok();
            }
        }
        let want: String = (0..n)
            .map(|i| format!("{{\"i\":{i},\"s\":\"a\\\"b\"}}\n"))
            .collect();
        assert_eq!(String::from_utf8(data).unwrap(), want);
        assert!(
            frames * 100 < n,
            "{frames} body frames for {n} ready items: not coalesced"
        );
        let t = trailers.expect("trailers");
        let vals: Vec<_> = t.get_all(STREAM_ERROR).iter().collect();
        assert_eq!(vals, vec!["", "late error"]);
    }

    /// A source that is slow between items still gets each item out on its own (nothing
    /// waits in the buffer for more items).
    #[tokio::test]
    async fn slow_source_is_not_held_back() {
        let (tx, rx) = tokio::sync::mpsc::channel::<StreamEvent>(1);
        tx.send(Event::Item(json_line(&1))).await.unwrap();
        let r = ndjson(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
        let mut body = r.into_body();
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap().as_ref(), b"1\n");
        tx.send(Event::Item(json_line(&2))).await.unwrap();
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap().as_ref(), b"2\n");
        drop(tx);
        assert!(body.frame().await.unwrap().unwrap().is_trailers());
    }
}

//! Trailers for clients that do not ask for them: the first request of each HTTP/1
//! connection is read as if it carried `TE: trailers`.
//!
//! Upstream's `/add` and streaming routes report an error that happens after the 200 in
//! the `X-Stream-Error` trailer, and Go's HTTP server sends declared trailers to every
//! HTTP/1.1 client. hyper 1.x sends them only when the request head says `TE: trailers`
//! (it decides while parsing the head, before our service runs, and has no option for it),
//! and Go's client never says so: upstream's `ipfs-cluster-ctl add` of a bad CAR file then
//! saw an empty successful add against us where upstream's API prints the error. Every
//! HTTP/1.1 recipient must be able to parse a chunked body's trailer section (RFC 9112
//! §7.1), so announcing acceptance on the client's behalf is safe.
//!
//! Only the first request head is touched: finding later heads would mean following each
//! body's framing. That covers the clients that matter (each `ipfs-cluster-ctl` run opens
//! its own connection, and `/add` answers with `Connection: close`); later requests on a
//! kept-alive connection get trailers when they ask, as before. An HTTP/2 connection
//! (its preface starts with `PRI`) is passed through untouched: HTTP/2 always has trailers.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, ReadBuf};

/// The header line added after the first request line.
const TE_TRAILERS: &[u8] = b"te: trailers\r\n";
/// A first line longer than this is not an HTTP/1 request line we rewrite (hyper refuses
/// heads over its buffer size anyway).
const MAX_LINE: usize = 16 * 1024;

enum State {
    /// Reading the first request line.
    Head(Vec<u8>),
    /// Handing out bytes already read (the rewritten head).
    Drain(Vec<u8>, usize),
    /// Everything else: a plain pass-through.
    Pass,
}

/// Wraps a connection; see the module comment.
pub struct TrailersAsked<I> {
    inner: I,
    state: State,
}

impl<I> TrailersAsked<I> {
    pub fn new(inner: I) -> Self {
        TrailersAsked {
            inner,
            state: State::Head(Vec::new()),
        }
    }
}

/// What to do with the bytes read so far: `None` while the first line is incomplete.
fn rewrite(seen: &[u8]) -> Option<Vec<u8>> {
    const PREFACE: &[u8] = b"PRI ";
    let n = seen.len().min(PREFACE.len());
    if seen[..n] == PREFACE[..n] {
        // HTTP/2 (or too little to tell yet).
        return (seen.len() >= PREFACE.len()).then(|| seen.to_vec());
    }
    match seen.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let mut out = Vec::with_capacity(seen.len() + TE_TRAILERS.len());
            out.extend_from_slice(&seen[..=i]);
            out.extend_from_slice(TE_TRAILERS);
            out.extend_from_slice(&seen[i + 1..]);
            Some(out)
        }
        None if seen.len() > MAX_LINE => Some(seen.to_vec()),
        None => None,
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for TrailersAsked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Pass => return Pin::new(&mut this.inner).poll_read(cx, buf),
                State::Drain(bytes, pos) => {
                    let n = (bytes.len() - *pos).min(buf.remaining());
                    buf.put_slice(&bytes[*pos..*pos + n]);
                    *pos += n;
                    if *pos == bytes.len() {
                        this.state = State::Pass;
                    }
                    return Poll::Ready(Ok(()));
                }
                State::Head(seen) => {
                    let mut chunk = [0u8; 4096];
                    let mut rb = ReadBuf::new(&mut chunk);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) => {}
                    }
                    let got = rb.filled();
                    if got.is_empty() {
                        // End of stream before a full line: hand over what there is.
                        let rest = std::mem::take(seen);
                        if rest.is_empty() {
                            this.state = State::Pass;
                            return Poll::Ready(Ok(()));
                        }
                        this.state = State::Drain(rest, 0);
                        continue;
                    }
                    seen.extend_from_slice(got);
                    if let Some(out) = rewrite(seen) {
                        this.state = State::Drain(out, 0);
                    }
                }
            }
        }
    }
}

super::write_through!(TrailersAsked);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads everything through the wrapper while the client writes `parts` one by one.
    async fn through(parts: &[&[u8]]) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64);
        let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for p in parts {
                client.write_all(&p).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut out = Vec::new();
        TrailersAsked::new(server)
            .read_to_end(&mut out)
            .await
            .unwrap();
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn the_first_request_line_gets_te_trailers_even_when_split() {
        let out = through(&[
            b"POST /a",
            b"dd HTTP/1.1\r\nHost: x\r\n\r\nbody GET / HTTP/1.1\r\n",
        ])
        .await;
        assert_eq!(
            out,
            b"POST /add HTTP/1.1\r\nte: trailers\r\nHost: x\r\n\r\nbody GET / HTTP/1.1\r\n"
        );
    }

    #[tokio::test]
    async fn http2_and_short_streams_pass_untouched() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(through(&[b"PR", &preface[2..]]).await, preface);
        assert_eq!(through(&[b"GET /"]).await, b"GET /");
        assert_eq!(through(&[]).await, b"");
    }

    /// hyper, serving through the wrapper, sends the trailer to a request without `TE`.
    #[tokio::test]
    async fn hyper_sends_trailers_to_a_client_that_did_not_ask() {
        use bytes::Bytes;
        use http_body_util::StreamBody;
        use hyper::body::Frame;

        let (mut client, server) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req| async {
                let mut trailers = hyper::HeaderMap::new();
                trailers.insert("x-stream-error", "unexpected EOF".parse().unwrap());
                let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
                    Ok(Frame::data(Bytes::from_static(b"{}\n"))),
                    Ok(Frame::trailers(trailers)),
                ];
                let body = StreamBody::new(futures::stream::iter(frames));
                Ok::<_, std::convert::Infallible>(
                    hyper::Response::builder()
                        .header("trailer", "X-Stream-Error")
                        .header("connection", "close")
                        .body(body)
                        .unwrap(),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(
                    hyper_util::rt::TokioIo::new(TrailersAsked::new(server)),
                    svc,
                )
                .await;
        });
        client
            .write_all(b"POST /add HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).to_lowercase();
        assert!(
            text.contains("transfer-encoding: chunked")
                && text.contains("\r\n0\r\nx-stream-error: unexpected eof\r\n"),
            "{text}"
        );
    }
}

//! Failing a connection from a wrong secret, no secret, or a non-libp2p client AT ONCE
//! instead of at the handshake timeout.
//!
//! pnet has no authentication of its own: with a different key both sides just see
//! garbage, and multistream-select may wait for the rest of a "frame" whose garbage length
//! never arrives, so the dial only fails at the connection timeout. But the first bytes
//! either side receives after pnet (or raw TCP without a secret) are always the
//! multistream-select header `\x13/multistream/1.0.0\n` (the dialer opens with it, the
//! listener answers with it). This wrapper checks those 20 bytes as they arrive and fails
//! the read on the first byte that differs. Nothing on the wire changes.

use std::{
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use futures::{AsyncRead, AsyncWrite};

/// The uvi-length-prefixed multistream-select 1.0 header line.
pub const MULTISTREAM_HEADER: &[u8] = b"\x13/multistream/1.0.0\n";

/// A socket whose first received bytes must be [`MULTISTREAM_HEADER`].
#[derive(Debug)]
pub struct FirstBytesCheck<S> {
    inner: S,
    seen: usize,
}

impl<S> FirstBytesCheck<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, seen: 0 }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstBytesCheck<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.seen < MULTISTREAM_HEADER.len() {
            let take = n.min(MULTISTREAM_HEADER.len() - this.seen);
            if buf[..take] != MULTISTREAM_HEADER[this.seen..this.seen + take] {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the remote did not start with the libp2p multistream header after the private-network handshake: a different or missing cluster secret (or not a libp2p peer)",
                )));
            }
            this.seen += take;
        }
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstBytesCheck<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{io::Cursor, AsyncReadExt};

    async fn read_all(data: Vec<u8>, chunk: usize) -> io::Result<Vec<u8>> {
        let mut s = FirstBytesCheck::new(Cursor::new(data));
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn header_passes_garbage_fails_on_first_wrong_byte() {
        let mut good = MULTISTREAM_HEADER.to_vec();
        good.extend_from_slice(b"\x07/noise\nmore");
        for chunk in [1, 3, 64] {
            assert_eq!(read_all(good.clone(), chunk).await.unwrap(), good);
        }
        let mut bad = MULTISTREAM_HEADER.to_vec();
        bad[5] ^= 1;
        let e = read_all(bad, 1).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("cluster secret"), "{e}");
        // a short prefix that matches so far is not an error (EOF is reported as such)
        assert_eq!(
            read_all(b"\x13/multi".to_vec(), 4).await.unwrap(),
            b"\x13/multi"
        );
    }
}

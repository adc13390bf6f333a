//! A deadline on a connection's first byte, for streams that cannot be peeked.
//!
//! hyper's automatic HTTP/1-or-2 detection reads the first bytes without any time limit,
//! and hyper's header timeout only starts once it has chosen HTTP/1. On plain TCP the
//! server peeks with a deadline before hyper sees the socket; a TLS stream has no peek, so
//! a client that completes the handshake and then sends nothing would hold a connection
//! slot forever. `FirstByteDeadline` fails the first read with `TimedOut` when nothing
//! arrives in time; after the first byte it is a plain pass-through.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::io::{AsyncRead, ReadBuf};

/// Wraps `inner`: the first read must bring a byte within `deadline`.
pub struct FirstByteDeadline<I> {
    inner: I,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    deadline: Duration,
}

impl<I> FirstByteDeadline<I> {
    pub fn new(inner: I, deadline: Duration) -> Self {
        FirstByteDeadline {
            inner,
            sleep: Some(Box::pin(tokio::time::sleep(deadline))),
            deadline,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FirstByteDeadline<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.sleep = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let deadline = self.deadline;
                if let Some(s) = self.sleep.as_mut() {
                    if s.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no request within {deadline:?} of the connection"),
                        )));
                    }
                }
                Poll::Pending
            }
        }
    }
}

super::write_through!(FirstByteDeadline);

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn silence_times_out_and_a_first_byte_lifts_the_deadline() {
        // Nothing sent: the first read fails with TimedOut after the deadline.
        let (_client, server) = tokio::io::duplex(64);
        let mut s = FirstByteDeadline::new(server, Duration::from_millis(100));
        let mut b = [0u8; 4];
        let t = std::time::Instant::now();
        let e = s.read(&mut b).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(100));

        // A first byte in time: later reads may wait as long as they like.
        let (mut client, server) = tokio::io::duplex(64);
        let mut s = FirstByteDeadline::new(server, Duration::from_millis(100));
        client.write_all(b"G").await.unwrap();
        assert_eq!(s.read(&mut b).await.unwrap(), 1);
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            client.write_all(b"ET").await.unwrap();
            client
        });
        assert_eq!(s.read(&mut b).await.unwrap(), 2);
        assert_eq!(&b[..2], b"ET");
        drop(later.await.unwrap());
        // Writes pass through.
        let (mut client, server) = tokio::io::duplex(64);
        let mut s = FirstByteDeadline::new(server, Duration::from_secs(5));
        s.write_all(b"hi").await.unwrap();
        client.read_exact(&mut b[..2]).await.unwrap();
        assert_eq!(&b[..2], b"hi");
    }
}

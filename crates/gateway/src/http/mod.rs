//! HTTP plumbing shared by the REST API and the Pinning Services API, knowing no route:
//! `auth` (Basic and JWT), `cors`, `request_guard` (Host and Origin checks), `tls`,
//! `first_byte` and `trailers_asked` (connection wrappers), `router` (upstream's route
//! table and matching), `reply` (upstream's JSON, error and stream shapes).

/// Implements `AsyncWrite` for a connection wrapper `$wrapper<I>` by handing every call
/// to its `inner` field: the wrappers here change how a connection is read, never how it
/// is written.
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<I> {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }
        }
    };
}
use write_through;

pub mod auth;
pub mod cors;
pub mod first_byte;
pub mod reply;
pub mod request_guard;
pub mod router;
pub mod tls;
pub mod trailers_asked;

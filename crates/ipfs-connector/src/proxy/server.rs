//! How the IPFS proxy listens, the way upstream's Go
//! `http.Server` does: every `listen_multiaddress`, `read_timeout` (whole request),
//! `read_header_timeout`, `write_timeout` (handler + answer), `idle_timeout` (keep-alive
//! connections with nothing in flight) and `max_header_bytes`, plus the access log around
//! each request. The routes themselves live in `proxy/mod.rs`.

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpListener,
    time::{Instant, Sleep},
};
use tokio_util::sync::CancellationToken;

use ipfs_cluster_runtime::access_log::AccessLog;

use super::{Body, BoxError, Proxy, ReqBody};
use crate::kubo::NodeAddr;

/// `api.ipfsproxy` as the proxy uses it (upstream defaults in `new`).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Every `listen_multiaddress`.
    pub listen: Vec<SocketAddr>,
    /// `node_multiaddress`: the daemon requests are forwarded to.
    pub node: NodeAddr,
    /// `node_https`: talk to the daemon over https (system trust roots).
    pub node_https: bool,
    /// `log_file` (absolute); None = access log to tracing target `ipfsproxylog`.
    pub log_file: Option<PathBuf>,
    /// 0 = none, as Go.
    pub read_timeout: Duration,
    /// 0 = `read_timeout`, as Go.
    pub read_header_timeout: Duration,
    pub write_timeout: Duration,
    /// 0 = `read_timeout`, as Go.
    pub idle_timeout: Duration,
    /// At least 4096; like Go, 4096 bytes of slack are allowed on top.
    pub max_header_bytes: usize,
    pub extract_headers_extra: Vec<String>,
    pub extract_headers_path: String,
    /// 0 = extract once and keep forever.
    pub extract_headers_ttl: Duration,
    /// `cluster.follower_mode`: the writing routes (add, block/put, dag/put, pin add,
    /// rm, update) are refused before anything reaches the daemon.
    pub follower_mode: bool,
}

/// The loud warning for a proxy bound beyond loopback: it has no authentication of its
/// own (as upstream), so whoever reaches it controls the cluster's pinset and the IPFS
/// daemon behind it.
pub fn exposure_warnings(listen: &[SocketAddr]) -> Vec<String> {
    listen
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(|a| {
            format!(
                "SECURITY: the IPFS proxy listens on {a} (not loopback) and has no authentication: anyone who can reach it can pin, unpin, add and garbage-collect through the cluster and use the IPFS daemon's whole API; bind ipfsproxy.listen_multiaddress to 127.0.0.1 or firewall it"
            )
        })
        .collect()
}

impl ProxyConfig {
    pub fn new(listen: Vec<SocketAddr>, node: NodeAddr) -> Self {
        Self {
            listen,
            node,
            node_https: false,
            log_file: None,
            read_timeout: Duration::ZERO,
            read_header_timeout: Duration::from_secs(5),
            write_timeout: Duration::ZERO,
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 4096,
            extract_headers_extra: Vec::new(),
            extract_headers_path: "/api/v0/version".into(),
            extract_headers_ttl: Duration::from_secs(300),
            follower_mode: false,
        }
    }

    fn nonzero(d: Duration) -> Option<Duration> {
        (!d.is_zero()).then_some(d)
    }

    fn header_timeout(&self) -> Option<Duration> {
        Self::nonzero(self.read_header_timeout).or(Self::nonzero(self.read_timeout))
    }

    fn idle(&self) -> Option<Duration> {
        Self::nonzero(self.idle_timeout).or(Self::nonzero(self.read_timeout))
    }

    /// hyper's read buffer limit: Go allows `MaxHeaderBytes` + 4096 bytes of headers;
    /// hyper refuses less than 8192.
    fn max_buf(&self) -> usize {
        (self.max_header_bytes.max(4096) + 4096).max(8192)
    }
}

/// Binds every address, naming the one that fails.
pub async fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, std::io::Error> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        out.push(super::bind(*a).await?);
    }
    Ok(out)
}

/// Serves the proxy on every listener until `shutdown`.
pub async fn serve_all(
    listeners: Vec<TcpListener>,
    proxy: Arc<Proxy>,
    log: AccessLog,
    shutdown: CancellationToken,
) {
    let mut tasks = Vec::new();
    for l in listeners {
        tasks.push(tokio::spawn(accept_loop(
            l,
            proxy.clone(),
            log.clone(),
            shutdown.clone(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    log: AccessLog,
    shutdown: CancellationToken,
) {
    loop {
        let (sock, remote) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("ipfs proxy accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = sock.set_nodelay(true);
        let proxy = proxy.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let cfg = proxy.cfg.clone();
            let inflight = Arc::new(AtomicUsize::new(0));
            let io = IdleIo::new(sock, cfg.idle(), inflight.clone());
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let proxy = proxy.clone();
                let log = log.clone();
                let inflight = inflight.clone();
                async move { handle(proxy, log, inflight, remote, req).await }
            });
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(cfg.header_timeout())
                .max_buf_size(cfg.max_buf())
                .keep_alive(true);
            if let Err(e) = b.serve_connection(TokioIo::new(io), svc).await {
                tracing::debug!("ipfs proxy connection from {remote}: {e}");
            }
        });
    }
}

/// One request: deadlines on the request body (`read_timeout`) and on the handler plus
/// the answer (`write_timeout`), access log line when the answer is done.
async fn handle(
    proxy: Arc<Proxy>,
    log: AccessLog,
    inflight: Arc<AtomicUsize>,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let start = Instant::now();
    let cfg = &proxy.cfg;
    let read_deadline = ProxyConfig::nonzero(cfg.read_timeout).map(|d| start + d);
    let write_deadline = ProxyConfig::nonzero(cfg.write_timeout).map(|d| start + d);
    let entry = LogEntry {
        log,
        remote,
        method: req.method().clone(),
        uri: req.uri().clone(),
        version: req.version(),
        status: 0,
        bytes: 0,
        inflight,
    };
    entry.inflight.fetch_add(1, Ordering::SeqCst);
    let mut req: Request<ReqBody> = req.map(|b| {
        Deadline::new(
            b.map_err(|e| -> BoxError { Box::new(e) }).boxed(),
            read_deadline,
            "read_timeout",
        )
        .boxed()
    });
    req.extensions_mut().insert(remote);
    let fut = proxy.handle(req);
    let resp = match write_deadline {
        None => fut.await,
        Some(d) => match tokio::time::timeout_at(d, fut).await {
            Ok(r) => r,
            Err(_) => {
                // Go: the write fails and the client sees the connection close.
                drop(entry);
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "api.ipfsproxy.write_timeout ({:?}) expired before the answer was ready",
                        d - start
                    ),
                ));
            }
        },
    };
    let (parts, body) = resp.into_parts();
    let mut entry = entry;
    entry.status = parts.status.as_u16();
    let body = Logged {
        inner: Deadline::new(body, write_deadline, "write_timeout").boxed(),
        entry,
    };
    Ok(Response::from_parts(parts, body.boxed()))
}

/// Access log data for one request; logged (and the in-flight count dropped) when the
/// answer body is finished or dropped.
struct LogEntry {
    log: AccessLog,
    remote: SocketAddr,
    method: Method,
    uri: Uri,
    version: Version,
    status: u16,
    bytes: u64,
    inflight: Arc<AtomicUsize>,
}

impl Drop for LogEntry {
    fn drop(&mut self) {
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        if self.status != 0 {
            self.log.log(
                &self.remote.ip().to_string(),
                None,
                &self.method,
                &self.uri,
                self.version,
                self.status,
                Some(self.bytes),
            );
        }
    }
}

/// Counts the answer's bytes for the access log.
struct Logged {
    inner: Body,
    entry: LogEntry,
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                self.entry.bytes += d.len() as u64;
            }
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body that fails once `deadline` has passed (Go's read/write deadlines).
pub(crate) struct Deadline {
    inner: Body,
    sleep: Option<Pin<Box<Sleep>>>,
    what: &'static str,
}

impl Deadline {
    pub(crate) fn new(inner: Body, deadline: Option<Instant>, what: &'static str) -> Self {
        Self {
            inner,
            sleep: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            what,
        }
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(s) = self.sleep.as_mut() {
            if s.as_mut().poll(cx).is_ready() {
                let what = self.what;
                return Poll::Ready(Some(Err(format!(
                    "api.ipfsproxy.{what} expired; raise it in service.json"
                )
                .into())));
            }
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection that reads as closed (hyper then closes it) once it has been idle for
/// `idle` with no request in flight: Go's `IdleTimeout` for keep-alive connections.
struct IdleIo<T> {
    inner: T,
    idle: Option<Duration>,
    sleep: Pin<Box<Sleep>>,
    inflight: Arc<AtomicUsize>,
}

impl<T> IdleIo<T> {
    fn new(inner: T, idle: Option<Duration>, inflight: Arc<AtomicUsize>) -> Self {
        let first = idle.unwrap_or(Duration::from_secs(3600));
        Self {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(first)),
            inflight,
        }
    }

    fn touch(&mut self) {
        if let Some(d) = self.idle {
            self.sleep.as_mut().reset(Instant::now() + d);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let Some(d) = self.idle else {
                    return Poll::Pending;
                };
                while self.sleep.as_mut().poll(cx).is_ready() {
                    if self.inflight.load(Ordering::SeqCst) == 0 {
                        return Poll::Ready(Ok(())); // EOF: hyper closes the connection
                    }
                    self.sleep.as_mut().reset(Instant::now() + d);
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_fallbacks_and_limits() {
        let mut c = ProxyConfig::new(vec![], NodeAddr::Tcp("127.0.0.1:5001".into()));
        assert_eq!(c.header_timeout(), Some(Duration::from_secs(5)));
        assert_eq!(c.idle(), Some(Duration::from_secs(60)));
        assert_eq!(c.max_buf(), 8192);
        c.read_header_timeout = Duration::ZERO;
        c.idle_timeout = Duration::ZERO;
        assert_eq!(c.header_timeout(), None);
        assert_eq!(c.idle(), None);
        c.read_timeout = Duration::from_secs(7);
        assert_eq!(c.header_timeout(), Some(Duration::from_secs(7)));
        assert_eq!(c.idle(), Some(Duration::from_secs(7)));
        c.max_header_bytes = 65536;
        assert_eq!(c.max_buf(), 65536 + 4096);
    }

    #[tokio::test]
    async fn deadline_body_fails_after_the_deadline() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let inner =
            http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx))
                .boxed();
        let mut b = Deadline::new(
            inner,
            Some(Instant::now() + Duration::from_millis(200)),
            "read_timeout",
        );
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        assert!(b.frame().await.unwrap().is_ok());
        let e = b.frame().await.unwrap().unwrap_err().to_string();
        assert!(e.contains("api.ipfsproxy.read_timeout"), "{e}");
        drop(tx);
    }
}

#[cfg(test)]
mod exposure_tests {
    use super::exposure_warnings;

    #[test]
    fn a_proxy_beyond_loopback_is_reported() {
        assert!(exposure_warnings(&["127.0.0.1:9095".parse().unwrap()]).is_empty());
        let w = exposure_warnings(&[
            "127.0.0.1:9095".parse().unwrap(),
            "0.0.0.0:9095".parse().unwrap(),
        ]);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("0.0.0.0:9095") && w[0].contains("no authentication"));
    }
}

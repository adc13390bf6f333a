//! The HTTP server shared by the REST API and the Pinning Services API: hyper 1.x over TCP
//! or rustls, with upstream's middleware order (access log → auth → CORS → trailing-slash
//! redirect → router) and limits (header size → 431, header read timeout).

use crate::http::trailers_asked::TrailersAsked;
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use ipfs_cluster_runtime::ErrorCode;
use tokio::{net::TcpListener, sync::watch};
use tokio_rustls::TlsAcceptor;

use crate::{
    backend::Backends,
    http::auth::{AuthFailure, Credentials, Principal, Scope},
    http::cors::Cors,
    http::reply::{self, ApiError, ApiResponse, Body},
    http::router::{self, Match},
    options::HttpApiOptions,
    rest::handlers::{self, Ctx},
    rest::query::Query,
};

pub use crate::options::ApiKind;

/// Who is at the other end of a request: its TCP address (the throttle keys on its IP),
/// and for requests that came over `/libp2p-http`, the libp2p peer id (the access log
/// names it instead of an address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    pub addr: SocketAddr,
    pub peer: Option<String>,
}

impl From<SocketAddr> for Remote {
    fn from(addr: SocketAddr) -> Self {
        Remote { addr, peer: None }
    }
}

impl Remote {
    /// A libp2p peer (no IP address: the throttle and the access log key on its peer id).
    pub fn libp2p(peer: impl ToString) -> Self {
        Remote {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            peer: Some(peer.to_string()),
        }
    }

    /// What the access log shows.
    pub fn client(&self) -> String {
        match &self.peer {
            Some(p) => p.clone(),
            None => self.addr.ip().to_string(),
        }
    }
}

pub struct App {
    pub kind: ApiKind,
    pub opts: HttpApiOptions,
    pub cors: Cors,
    pub credentials: Option<Credentials>,
    pub backends: Backends,
    pub access_log: ipfs_cluster_runtime::access_log::AccessLog,
    pub served: Arc<AtomicU64>,
    pub throttle: crate::http::auth::AuthThrottle,
    /// The request families (`None` when metrics are off).
    pub http_metrics: Option<Arc<crate::prometheus::HttpMetrics>>,
}

impl App {
    pub fn new(
        kind: ApiKind,
        opts: HttpApiOptions,
        backends: Backends,
        access_log: ipfs_cluster_runtime::access_log::AccessLog,
        served: Arc<AtomicU64>,
        http_metrics: Option<Arc<crate::prometheus::HttpMetrics>>,
    ) -> Self {
        Self {
            kind,
            cors: Cors::new(&opts.cors),
            credentials: opts
                .basic_auth_credentials
                .clone()
                .map(|users| Credentials::with_read_only(users, opts.read_only_users.clone())),
            opts,
            backends,
            access_log,
            served,
            throttle: Default::default(),
            http_metrics,
        }
    }

    fn err(&self, e: &ApiError) -> Response<Body> {
        match self.kind {
            ApiKind::Rest => reply::error(e),
            ApiKind::PinSvc => reply::pinsvc_error(e),
        }
    }

    /// The whole middleware chain for one request, counted in the Prometheus families
    /// and, with tracing on, run in the request's trace (crate::prometheus).
    pub async fn call(&self, req: Request<Incoming>, remote: Remote) -> Response<Body> {
        use tracing::Instrument;
        let obs = crate::prometheus::Observed::start(
            self.kind,
            req.method(),
            req.uri().path(),
            req.headers(),
        );
        let span = obs.span();
        let mut resp = match obs.trace {
            Some(ctx) => {
                ipfs_cluster_observability::in_trace(ctx, self.call_untraced(req, remote))
                    .instrument(span.clone())
                    .await
            }
            None => self.call_untraced(req, remote).await,
        };
        obs.finish(&mut resp, &span, self.http_metrics.as_deref());
        resp
    }

    async fn call_untraced(&self, req: Request<Incoming>, remote: Remote) -> Response<Body> {
        self.served.fetch_add(1, Ordering::Relaxed);
        let method = req.method().clone();
        let uri = req.uri().clone();
        let version = req.version();

        // write_timeout bounds how long the answer may take to start (Go closes the
        // connection; we answer 503 so the client learns why).
        let wt = self.opts.write_timeout;
        let (user, mut resp) = if wt.is_zero() {
            self.inner(req, &remote).await
        } else {
            match tokio::time::timeout(wt, self.inner(req, &remote)).await {
                Ok(x) => x,
                Err(_) => (
                    None,
                    self.err(&ApiError::new(
                        ErrorCode::Unavailable,
                        format!("the answer took longer than write_timeout ({wt:?})"),
                    )),
                ),
            }
        };
        if resp.extensions().get::<ApiResponse>().is_some() {
            for (k, vals) in &self.opts.headers {
                let Ok(name) = header::HeaderName::from_bytes(k.as_bytes()) else {
                    continue;
                };
                for v in vals {
                    if let Ok(v) = HeaderValue::from_str(v) {
                        resp.headers_mut().append(name.clone(), v);
                    }
                }
            }
        }
        self.access_log.log(
            &remote.client(),
            user.as_ref().map(|p| p.user.as_str()),
            &method,
            &uri,
            version,
            resp.status().as_u16(),
            hyper::body::Body::size_hint(resp.body()).exact(),
        );
        resp
    }

    async fn inner(
        &self,
        req: Request<Incoming>,
        remote: &Remote,
    ) -> (Option<Principal>, Response<Body>) {
        // 0. Web pages: DNS rebinding and cross-origin writes (request_guard.rs).
        let loopback_only = self.opts.listen.iter().all(|a| a.ip().is_loopback());
        let checked =
            crate::http::request_guard::check_host(req.headers(), req.uri(), loopback_only)
                .and_then(|()| {
                    crate::http::request_guard::check_origin(
                        req.method(),
                        req.headers(),
                        &self.cors,
                    )
                });
        if let Err(e) = checked {
            return (None, self.err(&ApiError::from_service(&e)));
        }
        // 1. Authentication (before CORS: a 401 carries no CORS headers).
        let mut user = None;
        if let Some(creds) = &self.credentials {
            let exempt = req.method() == Method::OPTIONS
                || (req.method() == Method::GET && req.uri().path() == "/health");
            if !exempt {
                // TCP clients are throttled per IP address, libp2p clients per peer id
                // (one libp2p guesser must not lock out the other libp2p users).
                let ip = remote.client();
                if let Some(wait) = self.throttle.blocked(&ip) {
                    let secs = wait.as_secs().max(1);
                    let mut r = self.err(&ApiError::new(
                        ErrorCode::TooManyRequests,
                        format!("too many failed logins from {ip}; try again in {secs} s"),
                    ));
                    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                        r.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                    return (None, r);
                }
                match creds.check(
                    req.headers()
                        .get(header::AUTHORIZATION)
                        .map(|v| v.as_bytes()),
                ) {
                    Ok(p) => {
                        self.throttle.succeeded(&ip);
                        if let Some(msg) = read_only_refusal(&p, req.method(), req.uri().path()) {
                            return (Some(p), self.err(&ApiError::new(ErrorCode::Forbidden, msg)));
                        }
                        user = Some(p)
                    }
                    Err(f) => {
                        if f != AuthFailure::NoAuth {
                            self.throttle.failed(&ip);
                        }
                        return (None, self.unauthorized(f));
                    }
                }
            }
        }
        // 2. CORS preflight.
        if Cors::is_preflight(req.method(), req.headers()) {
            let mut r = Response::new(reply::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            *r.headers_mut() = self.cors.preflight(req.headers());
            return (user, r);
        }
        let method = req.method().clone();
        let req_headers = req.headers().clone();
        let mut resp = self.route(req, user.clone()).await;
        self.cors
            .decorate(&method, &req_headers, resp.headers_mut());
        (user, resp)
    }

    fn unauthorized(&self, f: AuthFailure) -> Response<Body> {
        let mut r = self.err(&ApiError::new(ErrorCode::Unauthenticated, f.message()));
        for c in f.challenges() {
            if let Ok(v) = HeaderValue::from_str(&c) {
                r.headers_mut().append(header::WWW_AUTHENTICATE, v);
            }
        }
        r
    }

    async fn route(&self, req: Request<Incoming>, user: Option<Principal>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let raw_query = req.uri().query().map(str::to_string);
        // 3. Trailing-slash redirect (307 keeps the method). "/" is a 404 (the [REC]).
        if path.len() > 1 && path.ends_with('/') {
            let mut loc = path[..path.len() - 1].to_string();
            if let Some(q) = &raw_query {
                loc = format!("{loc}?{q}");
            }
            return reply::redirect(StatusCode::TEMPORARY_REDIRECT, &loc);
        }
        // 4. Router: path cleaning, then matching in registration order.
        if let Some(clean) = router::clean_path(&path) {
            let loc = match &raw_query {
                Some(q) => format!("{clean}?{q}"),
                None => clean,
            };
            return reply::redirect(StatusCode::MOVED_PERMANENTLY, &loc);
        }
        let decoded = percent_encoding::percent_decode_str(&path)
            .decode_utf8_lossy()
            .to_string();
        let query = Query::parse(raw_query.as_deref());
        let ctx = Ctx {
            backends: self.backends.clone(),
            user,
            credentials: self.credentials.clone(),
            read_timeout: self.opts.read_timeout,
            max_add_bytes: self.opts.max_add_bytes,
            content_type: req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        match self.kind {
            ApiKind::Rest => match router::match_rest(req.method(), &decoded) {
                Match::Found(route) => {
                    let body = Some(req.into_body());
                    handlers::handle(&ctx, route, &query, body).await
                }
                Match::MethodNotAllowed => reply::method_not_allowed(),
                Match::NotFound => self.err(&ApiError::new(ErrorCode::NotFound, "not found")),
            },
            ApiKind::PinSvc => crate::rest::pinsvc::handle(&ctx, req, &decoded, &query).await,
        }
    }
}

/// Read-scoped credentials (`read_only_users`, or a `scope=read` token) may GET and HEAD,
/// and ask `POST /token` for another read-scoped token; anything else is refused here,
/// before any handler runs. `None` = allowed.
fn read_only_refusal(p: &Principal, method: &Method, path: &str) -> Option<String> {
    let reads = method == Method::GET || method == Method::HEAD || method == Method::OPTIONS;
    let token = method == Method::POST && path.trim_end_matches('/') == "/token";
    (p.scope == Scope::Read && !reads && !token).then(|| {
        format!(
            "forbidden: user {:?} has read-only access (read_only_users or a scope=read token): only GET and HEAD are allowed, not {method}",
            p.user
        )
    })
}

/// Builds the hyper connection builder with the configured limits.
fn conn_builder(opts: &HttpApiOptions) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // Go allows max_header_bytes plus about 4 KiB of slack; hyper needs at least 8 KiB.
    let max_buf = (opts.max_header_bytes.max(4096) + 4096).max(8192);
    // hyper's header timer also runs while a keep-alive connection waits for its next
    // request, so it doubles as the idle timeout; fall back to idle_timeout when the
    // header timeout is off.
    let hrt = [opts.read_header_timeout, opts.idle_timeout]
        .into_iter()
        .find(|d| !d.is_zero());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(hrt)
        .max_buf_size(max_buf)
        .keep_alive(true);
    // HTTP/2: a bounded number of streams per connection, and pings that close a
    // connection whose peer stopped answering.
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(max_buf as u32)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .keep_alive_interval(Some(H2_PING_EVERY))
        .keep_alive_timeout(H2_PING_TIMEOUT);
    b
}

/// Streams one HTTP/2 connection may have open at once.
const H2_MAX_STREAMS: u32 = 256;
const H2_PING_EVERY: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a new plain connection may stay silent before its first byte: the header
/// timeout (or the idle timeout when that is off), 5 s when both are off.
fn first_byte_deadline(opts: &HttpApiOptions) -> Duration {
    [opts.read_header_timeout, opts.idle_timeout]
        .into_iter()
        .find(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(5))
}

/// Serves one listener until `shutdown` flips to true. In-flight connections are allowed to
/// finish their current request.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    // At most max_connections served at once: a flood of idle or slow connections is
    // closed at accept instead of exhausting file descriptors and memory.
    let slots = Arc::new(tokio::sync::Semaphore::new(app.opts.max_connections.max(1)));
    let mut refused_since_log = 0u64;
    let first_byte = first_byte_deadline(&app.opts);
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused_since_log += 1;
            if refused_since_log == 1 || refused_since_log.is_multiple_of(1000) {
                tracing::warn!(
                    %remote,
                    max_connections = app.opts.max_connections,
                    refused = refused_since_log,
                    "too many open connections: closing new ones (raise max_connections if these are real clients)"
                );
            }
            drop(tcp);
            continue;
        };
        refused_since_log = 0;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let app_for_io = app.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // A connection that sends nothing is closed after the header timeout, before
            // hyper (which waits without limit to tell HTTP/1 from HTTP/2) sees it.
            if acceptor.is_none() {
                let mut b = [0u8; 1];
                match tokio::time::timeout(first_byte, tcp.peek(&mut b)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => {
                        tracing::debug!(%remote, "connection closed: no request within {first_byte:?}");
                        return;
                    }
                }
            }
            let builder = conn_builder(&app.opts);
            let svc = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, std::convert::Infallible>(app.call(req, remote.into()).await) }
            });
            let res = match acceptor {
                Some(acc) => {
                    match tokio::time::timeout(Duration::from_secs(10), acc.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            // No peek on TLS: the first read itself has the deadline.
                            let tls =
                                crate::http::first_byte::FirstByteDeadline::new(tls, first_byte);
                            let conn = builder
                                .serve_connection(TokioIo::new(TrailersAsked::new(tls)), svc);
                            tokio::pin!(conn);
                            tokio::select! {
                                r = conn.as_mut() => r,
                                _ = conn_shutdown.changed() => { conn.as_mut().graceful_shutdown(); conn.await }
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => {
                    serve_io(tcp, remote, app_for_io, conn_shutdown).await;
                    return;
                }
            };
            if let Err(e) = res {
                tracing::debug!(%remote, error = %e, "HTTP connection ended with an error");
            }
        });
    }
}

/// Serves one unix socket listener until `shutdown` flips to true: plain HTTP, the same
/// connection cap and first-byte deadline as TCP. Callers are local processes; the
/// access log shows them as 127.0.0.1.
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(app.opts.max_connections.max(1)));
    let first_byte = first_byte_deadline(&app.opts);
    let remote: SocketAddr = ([127, 0, 0, 1], 0).into();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection on the unix socket failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                max_connections = app.opts.max_connections,
                "too many open connections on the unix socket: closing a new one"
            );
            continue;
        };
        let app = app.clone();
        let conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let io = crate::http::first_byte::FirstByteDeadline::new(stream, first_byte);
            serve_io(io, remote, app, conn_shutdown).await;
        });
    }
}

/// Serves one plain (already accepted) connection with `app` until it ends or `shutdown`
/// flips (then the current request finishes).
pub async fn serve_io<I>(
    io: I,
    remote: SocketAddr,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let builder = conn_builder(&app.opts);
    let svc = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, std::convert::Infallible>(app.call(req, remote.into()).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(TrailersAsked::new(io)), svc);
    tokio::pin!(conn);
    let res = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.changed() => { conn.as_mut().graceful_shutdown(); conn.await }
    };
    if let Err(e) = res {
        tracing::debug!(%remote, error = %e, "HTTP connection ended with an error");
    }
}

/// Serves one `/libp2p-http` stream from libp2p peer `peer` (HTTP/1.1 only, as
/// go-libp2p-http): the access log names the peer. Deadlines: the first request's head
/// must arrive within `read_header_timeout` (or `idle_timeout`, else 5 s), and so must
/// each next one (so an idle stream is closed), bodies within `read_timeout`.
pub async fn serve_libp2p<I>(
    io: I,
    peer: String,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut b = hyper::server::conn::http1::Builder::new();
    let max_buf = (app.opts.max_header_bytes.max(4096) + 4096).max(8192);
    b.timer(TokioTimer::new())
        .header_read_timeout(first_byte_deadline(&app.opts))
        .max_buf_size(max_buf)
        .keep_alive(true);
    let remote = Remote::libp2p(&peer);
    let svc = service_fn(move |req| {
        let app = app.clone();
        let remote = remote.clone();
        async move { Ok::<_, std::convert::Infallible>(app.call(req, remote).await) }
    });
    let conn = b.serve_connection(TokioIo::new(TrailersAsked::new(io)), svc);
    tokio::pin!(conn);
    let res = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.changed() => { conn.as_mut().graceful_shutdown(); conn.await }
    };
    if let Err(e) = res {
        tracing::debug!(%peer, error = %e, "/libp2p-http stream ended with an error");
    }
}

#[cfg(test)]
mod scope_tests {
    use super::*;

    #[test]
    fn read_scope_allows_reads_and_a_token_only() {
        let reader = Principal {
            user: "bob".into(),
            scope: Scope::Read,
        };
        let writer = Principal {
            user: "alice".into(),
            scope: Scope::Write,
        };
        for (m, path) in [
            (Method::GET, "/pins"),
            (Method::HEAD, "/id"),
            (Method::OPTIONS, "/pins/x"),
            (Method::POST, "/token"),
        ] {
            assert_eq!(read_only_refusal(&reader, &m, path), None, "{m} {path}");
        }
        for (m, path) in [
            (Method::POST, "/pins/x"),
            (Method::DELETE, "/pins/x"),
            (Method::POST, "/add"),
            (Method::PUT, "/token"),
            (Method::POST, "/tokens"),
        ] {
            let msg = read_only_refusal(&reader, &m, path).expect("refused");
            assert!(
                msg.contains("\"bob\"") && msg.contains("read-only"),
                "{msg}"
            );
            assert_eq!(read_only_refusal(&writer, &m, path), None);
        }
    }
}

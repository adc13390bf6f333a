//! Serving an internal gRPC endpoint: loopback-only binding, the bearer-token check on
//! every call (health excepted), gRPC health and reflection v1 + v1alpha. Every served
//! call is also reported to the server's [`GrpcObserver`] (the service's Prometheus
//! registry, handed to the server in [`ServeOptions`]) and, with tracing on, runs inside
//! a span carrying the caller's W3C `trace_id`.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::net::TcpListener;
use tonic::{body::Body, server::NamedService, transport::Server, Status};
use tower::{Layer, Service};

use tracing::Instrument;

use ipfs_cluster_proto::{
    client::{in_trace, tracing_enabled, TraceContext, TRACEPARENT},
    InternalToken,
};

/// Told about every served gRPC call (health checks excepted) by the server it was given
/// to ([`ServeOptions::observer`]).
pub trait GrpcObserver: Send + Sync + 'static {
    /// `method` is `Service/Method` (package dropped), `code` the gRPC status name.
    fn observe(&self, method: &str, code: &str, elapsed: Duration);
}

/// Served calls counted in the service's Prometheus registry.
impl GrpcObserver for ipfs_cluster_observability::Metrics {
    fn observe(&self, method: &str, code: &str, elapsed: Duration) {
        self.observe_grpc(method, code, elapsed);
    }
}

/// `/ipfscluster.consensus.v1.Consensus/Pin` → `Consensus/Pin`.
pub fn short_method(path: &str) -> &str {
    let path = path.trim_start_matches('/');
    match path.split_once('/') {
        Some((svc, _)) => {
            let short_svc = svc.rsplit('.').next().unwrap_or(svc);
            &path[svc.len() - short_svc.len()..]
        }
        None => path,
    }
}

/// The gRPC status name from a response's headers (a trailers-only error answer carries
/// it there; a normal answer's status comes in trailers and is OK for our unary calls).
fn status_name(h: &http::HeaderMap) -> &'static str {
    let code = h
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("internal gRPC address {addr} is not a loopback address; internal endpoints listen on 127.0.0.0/8 or ::1 only (set internal.allow_remote_internal to true to override, and protect the network yourself)")]
    NotLoopback { addr: SocketAddr },
    #[error("cannot listen on {addr}: address already in use (another process holds the port; stop it or change the address in service.json)")]
    AddrInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC reflection setup: {0}")]
    Reflection(String),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Binds an internal endpoint, refusing non-loopback addresses unless `allow_remote`.
pub async fn bind_internal(
    addr: SocketAddr,
    allow_remote: bool,
) -> Result<TcpListener, ServeError> {
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(ServeError::NotLoopback { addr });
    }
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "internal gRPC endpoint listens on a non-loopback address (allow_remote_internal is on)");
    }
    TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            ServeError::AddrInUse { addr }
        } else {
            ServeError::Bind { addr, source }
        }
    })
}

/// Serves one service (plus health and reflection) until `shutdown` resolves.
/// Every call except `grpc.health.v1.Health/*` must carry the token.
pub async fn serve<S>(
    listener: TcpListener,
    token: InternalToken,
    svc: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    serve_with(listener, token, svc, shutdown, ServeOptions::default()).await
}

/// What a served endpoint reports to, beyond its answers: the health state its caller
/// keeps and the recorder of served calls.
#[derive(Clone, Default)]
pub struct ServeOptions {
    pub health: HealthHandle,
    /// `None` when metrics are off.
    pub observer: Option<Arc<dyn GrpcObserver>>,
}

impl ServeOptions {
    /// Served calls recorded in `metrics` (the service's registry, when metrics are on).
    pub fn observed_by(metrics: Option<Arc<ipfs_cluster_observability::Metrics>>) -> Self {
        Self {
            health: HealthHandle::new(),
            observer: metrics.map(|m| m as Arc<dyn GrpcObserver>),
        }
    }

    pub fn with_health(mut self, health: HealthHandle) -> Self {
        self.health = health;
        self
    }
}

/// The gRPC health state a service reports, kept by the caller so it can turn the
/// service NOT_SERVING (e.g. consensus whose raft core stopped on a storage error) while
/// the process keeps answering with the reason.
#[derive(Clone)]
pub struct HealthHandle {
    reporter: tonic_health::server::HealthReporter,
    /// Whether `serve_with` reports SERVING as it starts (else the service says
    /// so itself with `set(true)` once it is ready).
    serving_at_start: bool,
}

impl HealthHandle {
    pub fn new() -> Self {
        let (reporter, _) = tonic_health::server::health_reporter();
        Self {
            reporter,
            serving_at_start: true,
        }
    }

    /// A health state that starts NOT_SERVING while the server already answers calls: for a
    /// service that needs its endpoint up to become ready (a joining consensus receives
    /// the leader's raft calls through it) and turns SERVING with `set(true)`.
    pub async fn not_serving_at_start<S: NamedService>() -> Self {
        let h = Self {
            serving_at_start: false,
            ..Self::new()
        };
        h.set::<S>(false).await;
        h
    }

    /// Reports service `S` (and the server as a whole, the empty name) as serving or not.
    pub async fn set<S: NamedService>(&self, serving: bool) {
        let status = if serving {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        self.reporter.set_service_status(S::NAME, status).await;
        self.reporter.set_service_status("", status).await;
    }
}

impl Default for HealthHandle {
    fn default() -> Self {
        Self::new()
    }
}

/// `serve` with a health state the caller keeps (see [`HealthHandle`]) and the recorder
/// of served calls.
pub async fn serve_with<S>(
    listener: TcpListener,
    token: InternalToken,
    svc: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
    opts: ServeOptions,
) -> Result<(), ServeError>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ipfs_cluster_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ipfs_cluster_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let ServeOptions { health, observer } = opts;
    if health.serving_at_start {
        health.set::<S>(true).await;
    }
    let health = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(health.reporter.clone()),
    );

    // A graceful stop lets calls in flight finish, but not forever: a stream whose client
    // vanished without closing its connection (a peer whose launcher was SIGKILLed) would
    // hold the stop, and the process, indefinitely.
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };
    let server = Server::builder()
        .layer(AuthLayer { token, observer })
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(svc)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        );
    tokio::select! {
        r = server => r?,
        _ = async {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(STOP_GRACE).await;
        } => tracing::debug!("calls still in flight after {STOP_GRACE:?}; stopping anyway"),
    }
    Ok(())
}

/// How long a stopping server waits for calls in flight.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Tower layer that refuses calls without the internal token (UNAUTHENTICATED) and
/// reports every call to its observer.
#[derive(Clone)]
pub struct AuthLayer {
    pub token: InternalToken,
    pub observer: Option<Arc<dyn GrpcObserver>>,
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            token: self.token.clone(),
            observer: self.observer.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    token: InternalToken,
    observer: Option<Arc<dyn GrpcObserver>>,
}

const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let health = req.uri().path().starts_with(HEALTH_PREFIX);
        if health {
            return Box::pin(self.inner.call(req));
        }
        let method = short_method(req.uri().path()).to_string();
        let started = Instant::now();
        let allowed = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .is_some_and(|v| self.token.matches_header(v.as_bytes()));
        if allowed {
            let trace = tracing_enabled().then(|| {
                req.headers()
                    .get(TRACEPARENT)
                    .and_then(|v| v.to_str().ok())
                    .and_then(TraceContext::parse)
                    .map(|c| c.child())
                    .unwrap_or_else(TraceContext::new_root)
            });
            let fut = self.inner.call(req);
            let observer = self.observer.clone();
            Box::pin(async move {
                let res = match trace {
                    None => fut.await,
                    Some(ctx) => {
                        let trace_id = ctx.trace_id_hex();
                        let span =
                            tracing::info_span!("grpc", trace_id = %trace_id, method = %method);
                        let res = in_trace(ctx, fut).instrument(span.clone()).await;
                        let code = res
                            .as_ref()
                            .map(|r| status_name(r.headers()))
                            .unwrap_or("INTERNAL");
                        span.in_scope(|| {
                            tracing::info!(
                                code,
                                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                                "grpc call served"
                            )
                        });
                        res
                    }
                };
                if let Some(o) = observer {
                    let code = res
                        .as_ref()
                        .map(|r| status_name(r.headers()))
                        .unwrap_or("INTERNAL");
                    o.observe(&method, code, started.elapsed());
                }
                res
            })
        } else {
            if let Some(o) = &self.observer {
                o.observe(&method, "UNAUTHENTICATED", started.elapsed());
            }
            tracing::warn!(
                path = req.uri().path(),
                "internal gRPC call refused: missing or wrong internal token"
            );
            let status = Status::unauthenticated(
                "missing or wrong internal token: send `authorization: Bearer <token>` with the token from the peer's internal.token file",
            );
            Box::pin(async move { Ok(status.into_http()) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_and_status_names() {
        assert_eq!(
            short_method("/ipfscluster.consensus.v1.Consensus/Pin"),
            "Consensus/Pin"
        );
        assert_eq!(short_method("/Plain/Call"), "Plain/Call");
        assert_eq!(short_method("nothing"), "nothing");
        let mut h = http::HeaderMap::new();
        assert_eq!(status_name(&h), "OK");
        h.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(status_name(&h), "UNAVAILABLE");
    }

    #[tokio::test]
    async fn health_handle_turns_a_service_not_serving() {
        use tonic_health::pb::{
            health_check_response::ServingStatus, health_server::Health, HealthCheckRequest,
        };
        struct Named;
        impl NamedService for Named {
            const NAME: &'static str = "x.v1.X";
        }
        let h = HealthHandle::new();
        let svc = tonic_health::server::HealthService::from_health_reporter(h.reporter.clone());
        let check = |name: &str| {
            let req = tonic::Request::new(HealthCheckRequest {
                service: name.to_string(),
            });
            let svc = &svc;
            async move { svc.check(req).await.unwrap().into_inner().status }
        };
        h.set::<Named>(true).await;
        assert_eq!(check("x.v1.X").await, ServingStatus::Serving as i32);
        h.set::<Named>(false).await;
        assert_eq!(check("x.v1.X").await, ServingStatus::NotServing as i32);
        assert_eq!(check("").await, ServingStatus::NotServing as i32);
    }
}

//! Serving an internal gRPC endpoint: loopback-only binding, the bearer-token check on
//! every call (health excepted), gRPC health and reflection v1 + v1alpha.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::net::TcpListener;
use tonic::{body::Body, server::NamedService, transport::Server, Status};
use tower::{Layer, Service};

use crate::auth::InternalToken;

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
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<S>().await;

    Server::builder()
        .layer(AuthLayer { token })
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(svc)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    Ok(())
}

/// Tower layer that refuses calls without the internal token (UNAUTHENTICATED).
#[derive(Clone)]
pub struct AuthLayer {
    pub token: InternalToken,
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            token: self.token.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    token: InternalToken,
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
        let allowed = req.uri().path().starts_with(HEALTH_PREFIX)
            || req
                .headers()
                .get(http::header::AUTHORIZATION)
                .is_some_and(|v| self.token.matches_header(v.as_bytes()));
        if allowed {
            Box::pin(self.inner.call(req))
        } else {
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

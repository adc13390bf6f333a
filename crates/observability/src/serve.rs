//! The `/metrics` HTTP endpoint: plain HTTP/1.1 on a loopback port (no token, read-only,
//! as upstream's), refusing non-loopback addresses unless `allow_remote_internal`.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::Metrics;

/// Content type of the OpenMetrics text format the encoder writes (Prometheus reads it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("metrics endpoint {addr} is not a loopback address; metrics listen on 127.0.0.0/8 or ::1 only (set internal.allow_remote_internal to true to override, and protect the network yourself)")]
    NotLoopback { addr: SocketAddr },
    #[error("cannot listen for metrics on {addr}: address already in use (another process or another peer's service holds the port; change observations.metrics.prometheus_endpoint or internal.<service>_metrics_multiaddress)")]
    AddrInUse { addr: SocketAddr },
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub async fn bind(addr: SocketAddr, allow_remote: bool) -> Result<TcpListener, ServeError> {
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(ServeError::NotLoopback { addr });
    }
    TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            ServeError::AddrInUse { addr }
        } else {
            ServeError::Bind { addr, source }
        }
    })
}

/// Serves until the process ends; a connection error only ends that connection.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let m = m.clone();
                async move { Ok::<_, Infallible>(answer(&m, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn answer(m: &Metrics, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, ctype: &str, body: String| {
        Response::builder()
            .status(code)
            .header(header::CONTENT_TYPE, ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("static headers are valid")
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: metrics are served at GET /metrics\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed: use GET /metrics\n".into(),
        );
    }
    reply(StatusCode::OK, CONTENT_TYPE, m.render().await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, req: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_refuses_the_rest() {
        let e = bind("10.1.2.3:8888".parse().unwrap(), false)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a loopback") && e.contains("allow_remote_internal"),
            "{e}"
        );
        let l = bind("127.0.0.1:0".parse().unwrap(), false).await.unwrap();
        let addr = l.local_addr().unwrap();
        let taken = bind(addr, false).await.unwrap_err().to_string();
        assert!(taken.contains("already in use"), "{taken}");
        let m = Metrics::new("transport", "p1");
        tokio::spawn(serve(l, m));
        let ok = get(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("application/openmetrics-text"), "{ok}");
        assert!(ok.contains("ipfscluster_build_info"), "{ok}");
        let nf = get(
            addr,
            "GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(nf.starts_with("HTTP/1.1 404"), "{nf}");
        let na = get(
            addr,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(na.starts_with("HTTP/1.1 405"), "{na}");
    }
}

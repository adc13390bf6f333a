//! Gateway service: upstream's REST API (and the IPFS Pinning Services API) over hyper +
//! rustls. It holds no cluster state: every answer comes from the local consensus,
//! transport and ipfs connector services through their internal gRPC contracts.

//!
//! Layers, lowest first (a module uses only those before it): `options`; `http/` (HTTP
//! plumbing that knows no route: auth, CORS, request guard, TLS, connection deadlines,
//! route matching, upstream's reply shapes); `backend/` (gRPC clients of the other services,
//! the peer metrics followed from the broadcast, gRPC answers to API types); `add/` (the
//! `/add` pipeline: multipart, chunkers, UnixFS DAG, HAMT, CAR, block spool); `rest/` (one
//! function per route: REST handlers, Pinning Services API, health, query parsing);
//! `server` + `libp2p_http` (listeners and the app that ties them to the routes),
//! `prometheus`, `grpc` (its own gRPC service); `config`, `daemon` and this file (start-up).

pub mod add;
pub mod backend;
pub mod config;
pub mod daemon;
pub mod grpc;
pub mod http;
pub mod libp2p_http;
pub mod options;
pub mod prometheus;
pub mod rest;
pub mod server;

use std::{
    future::Future,
    net::SocketAddr,
    sync::{atomic::AtomicU64, Arc},
};

use ipfs_cluster_proto::{gateway::v1::gateway_server::GatewayServer, InternalToken};
use ipfs_cluster_runtime::access_log;
use tokio::{net::TcpListener, sync::watch};

pub use options::{GatewayOptions, HttpApiOptions};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr} for the {api}: address already in use (stop the other process or change {key})")]
    AddrInUse {
        api: &'static str,
        key: &'static str,
        addr: SocketAddr,
    },
    #[error("cannot listen on the unix socket {path} for the {api}: {source}")]
    BindUnix {
        api: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} for the {api}: {source}")]
    Bind {
        api: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(#[from] http::tls::TlsError),
    #[error("{0}")]
    Internal(#[from] ipfs_cluster_runtime::ServeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the {0} has no listen address; set http_listen_multiaddress")]
    NoListener(&'static str),
    #[error("{0}")]
    Libp2p(#[from] libp2p_http::Libp2pError),
}

/// A bound HTTP API, ready to serve.
pub struct BoundApi {
    pub listeners: Vec<TcpListener>,
    pub unix_listeners: Vec<tokio::net::UnixListener>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub app: Arc<server::App>,
}

impl BoundApi {
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }
}

/// Binds one HTTP API (REST or Pinning Services) with its TLS and access log, and logs
/// loudly when it is exposed beyond loopback without TLS or without authentication.
pub async fn bind_api(
    kind: server::ApiKind,
    opts: HttpApiOptions,
    backends: backend::Backends,
    served: Arc<AtomicU64>,
    http_metrics: Option<Arc<prometheus::HttpMetrics>>,
) -> Result<BoundApi, GatewayError> {
    let (api, key, log_target) = match kind {
        server::ApiKind::Rest => (
            "REST API",
            "api.restapi.http_listen_multiaddress",
            access_log::Endpoint::RestApi,
        ),
        server::ApiKind::PinSvc => (
            "Pinning Services API",
            "api.pinsvcapi.http_listen_multiaddress",
            access_log::Endpoint::PinSvcApi,
        ),
    };
    if opts.listen.is_empty() && opts.unix.is_empty() && opts.libp2p.is_none() {
        return Err(GatewayError::NoListener(api));
    }
    let tls = match (&opts.ssl_cert_file, &opts.ssl_key_file) {
        (Some(c), Some(k)) => Some(Arc::new(http::tls::server_config_from_files(c, k)?)),
        _ => None,
    };
    let access_log = match &opts.http_log_file {
        Some(p) => access_log::AccessLog::file(log_target, p).await?,
        None => access_log::AccessLog::tracing(log_target),
    };
    let mut listeners = Vec::new();
    for addr in &opts.listen {
        let l = TcpListener::bind(addr).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                GatewayError::AddrInUse {
                    api,
                    key,
                    addr: *addr,
                }
            } else {
                GatewayError::Bind {
                    api,
                    addr: *addr,
                    source,
                }
            }
        })?;
        let bound = l.local_addr()?;
        for w in exposure_warnings(
            api,
            bound,
            tls.is_some(),
            opts.basic_auth_credentials.is_some(),
        ) {
            tracing::warn!("{w}");
        }
        tracing::info!(
            "{} ({}): {}{}",
            if kind == server::ApiKind::Rest {
                "RESTAPI"
            } else {
                "PINSVCAPI"
            },
            if tls.is_some() { "HTTPS" } else { "HTTP" },
            options::socket_to_multiaddr(bound),
            if opts.basic_auth_credentials.is_some() {
                " - authenticated"
            } else {
                ""
            }
        );
        listeners.push(l);
    }
    let mut unix_listeners = Vec::new();
    for path in &opts.unix {
        unix_listeners.push(bind_unix(api, path)?);
        tracing::info!(
            "{} (HTTP): /unix{}",
            if kind == server::ApiKind::Rest {
                "RESTAPI"
            } else {
                "PINSVCAPI"
            },
            path.display()
        );
    }
    let app = Arc::new(server::App::new(
        kind,
        opts,
        backends,
        access_log,
        served,
        http_metrics,
    ));
    Ok(BoundApi {
        unix_listeners,
        listeners,
        tls,
        app,
    })
}

/// The loud warnings for an API listening beyond loopback without TLS or without auth.
pub fn exposure_warnings(api: &str, bound: SocketAddr, tls: bool, auth: bool) -> Vec<String> {
    let mut out = Vec::new();
    if bound.ip().is_loopback() {
        return out;
    }
    if !tls {
        out.push(format!("SECURITY: the {api} listens on {bound} (not loopback) WITHOUT TLS: credentials and data cross the network in clear text; set ssl_cert_file and ssl_key_file"));
    }
    if !auth {
        out.push(format!("SECURITY: the {api} listens on {bound} (not loopback) WITHOUT AUTHENTICATION: anyone who can reach it can pin, unpin and remove peers; set basic_auth_credentials"));
    }
    out
}

/// Binds a unix socket listener, replacing a stale socket file left by a previous run (a
/// path that is not a socket is refused).
fn bind_unix(
    api: &'static str,
    path: &std::path::Path,
) -> Result<tokio::net::UnixListener, GatewayError> {
    use std::os::unix::fs::FileTypeExt;
    let fail = |source: std::io::Error| GatewayError::BindUnix {
        api,
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path).map_err(fail)?,
        Ok(_) => {
            return Err(fail(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            )))
        }
        Err(_) => {}
    }
    tokio::net::UnixListener::bind(path).map_err(fail)
}

/// Serves a bound API until `shutdown` flips to true.
pub async fn serve_api(api: BoundApi, shutdown: watch::Receiver<bool>) {
    let mut tasks = Vec::new();
    for l in api.unix_listeners {
        tasks.push(tokio::spawn(server::serve_unix(
            l,
            api.app.clone(),
            shutdown.clone(),
        )));
    }
    for l in api.listeners {
        tasks.push(tokio::spawn(server::serve(
            l,
            api.tls.clone(),
            api.app.clone(),
            shutdown.clone(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Runs the whole gateway (REST, Pinning Services when configured, internal gRPC) until
/// `shutdown` resolves. With `metrics` (the service's registry) the APIs record their
/// requests and the gRPC server its calls.
pub async fn run(
    opts: GatewayOptions,
    token: InternalToken,
    metrics: Option<Arc<ipfs_cluster_observability::Metrics>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let http_metrics = metrics.as_deref().map(prometheus::register);
    let grpc = ipfs_cluster_runtime::ServeOptions::observed_by(metrics);
    let backends = backend::Backends::connect(&opts, &token);
    backend::peer_metrics::spawn(
        backends.peer_metrics.clone(),
        backends.transport.clone(),
        opts.alert_check_interval,
    );
    let served = Arc::new(AtomicU64::new(0));
    let grpc_listener =
        ipfs_cluster_runtime::bind_internal(opts.gateway_addr, opts.allow_remote_internal).await?;
    let rest = bind_api(
        server::ApiKind::Rest,
        opts.rest.clone(),
        backends.clone(),
        served.clone(),
        http_metrics.clone(),
    )
    .await?;
    let pinsvc = match &opts.pinsvc {
        Some(p) => Some(
            bind_api(
                server::ApiKind::PinSvc,
                p.clone(),
                backends.clone(),
                served.clone(),
                http_metrics.clone(),
            )
            .await?,
        ),
        None => None,
    };
    // The transport tunnels /libp2p-http streams (cluster host) through Gateway.Libp2pHttp:
    // served here by the REST app in plain HTTP/1.1, with no listener of their own.
    let rest_app = rest.app.clone();
    let (tx, rx) = watch::channel(false);
    let tunnel = libp2p_http::Tunnel {
        app: rest_app.clone(),
        shutdown: rx.clone(),
    };
    let own_host = match opts.rest.libp2p.clone() {
        Some(l) => Some(libp2p_http::start(l, rest_app.clone(), rx.clone()).await?.1),
        None => None,
    };
    let svc = grpc::GatewayService {
        rest_auth_required: opts.rest.basic_auth_credentials.is_some(),
        libp2p_http_target: String::new(),
        tunnel: Some(tunnel),
        backends,
        rest_listen: rest
            .local_addrs()
            .into_iter()
            .map(options::socket_to_multiaddr)
            .collect(),
        pinsvc_listen: pinsvc
            .as_ref()
            .map(|p| {
                p.local_addrs()
                    .into_iter()
                    .map(options::socket_to_multiaddr)
                    .collect()
            })
            .unwrap_or_default(),
        served,
    };
    let mut http_tasks = vec![tokio::spawn(serve_api(rest, rx.clone()))];
    http_tasks.extend(own_host);
    if let Some(p) = pinsvc {
        http_tasks.push(tokio::spawn(serve_api(p, rx.clone())));
    }
    let mut grpc_rx = rx.clone();
    let grpc_shutdown = async move {
        let _ = grpc_rx.wait_for(|v| *v).await;
    };
    let grpc = tokio::spawn(ipfs_cluster_runtime::serve_with(
        grpc_listener,
        token,
        GatewayServer::new(svc),
        grpc_shutdown,
        grpc,
    ));
    shutdown.await;
    tracing::info!("gateway shutting down");
    let _ = tx.send(true);
    for t in http_tasks {
        let _ = t.await;
    }
    match grpc.await {
        Ok(r) => r?,
        Err(e) => tracing::warn!(error = %e, "gateway gRPC task failed"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loud_warnings_beyond_loopback() {
        let lo: SocketAddr = "127.0.0.1:9094".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9094".parse().unwrap();
        assert!(exposure_warnings("REST API", lo, false, false).is_empty());
        let w = exposure_warnings("REST API", any, false, false);
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("WITHOUT TLS") && w[1].contains("WITHOUT AUTHENTICATION"));
        assert!(exposure_warnings("REST API", any, true, true).is_empty());
        assert_eq!(exposure_warnings("REST API", any, true, false).len(), 1);
    }
}

//! Observability shared by the four services: each one serves Prometheus `GET /metrics`
//! on its own loopback port (`--stats` / `observations.metrics.enable_stats`) and, with
//! `--tracing` / `observations.tracing.enable_tracing`, carries a W3C trace id through
//! every internal gRPC call so one REST request's log lines share a `trace_id`.
//!
//! A service calls [`start`] once at startup, then registers its own families on the
//! returned [`Metrics`], which it hands to the components that record (no global).

pub mod metrics;
pub mod serve;

use std::{net::SocketAddr, sync::Arc};

pub use ipfs_cluster_config::ServiceKind;
pub use ipfs_cluster_proto::client::{
    current_trace, in_trace, set_tracing, tracing_enabled, TraceContext, TRACEPARENT,
};
pub use metrics::{latency_histogram, HistogramFamily, Labels, Metrics};
pub use prometheus_client;
pub use serve::ServeError;

/// What a service turns on at startup.
#[derive(Debug, Clone)]
pub struct Options {
    pub service: ServiceKind,
    pub peer_id: String,
    /// `Some(addr)`: serve `/metrics` there.
    pub metrics_addr: Option<SocketAddr>,
    pub allow_remote: bool,
    pub tracing: bool,
}

impl Options {
    /// From a loaded peer configuration plus the binary's `--stats` / `--tracing` flags
    /// (either the flag or the config key turns a feature on).
    pub fn from_config(
        service: ServiceKind,
        peer_id: impl Into<String>,
        cfg: &ipfs_cluster_config::ServiceConfig,
        stats_flag: bool,
        tracing_flag: bool,
    ) -> Result<Self, ipfs_cluster_config::ConfigError> {
        let stats = stats_flag || cfg.observations.metrics.enable_stats;
        Ok(Options {
            service,
            peer_id: peer_id.into(),
            metrics_addr: if stats {
                Some(cfg.metrics_addr(service)?)
            } else {
                None
            },
            allow_remote: cfg.internal.allow_remote_internal,
            tracing: tracing_flag || cfg.observations.tracing.enable_tracing,
        })
    }
}

/// Turns tracing on if asked, and with metrics on: builds the registry (build info, gRPC
/// request families), binds the endpoint and serves it in the background. `Ok(None)` when
/// metrics are off. The service's internal gRPC server feeds its served calls to
/// [`Metrics::observe_grpc`].
pub async fn start(opts: Options) -> Result<Option<Arc<Metrics>>, ServeError> {
    set_tracing(opts.tracing);
    if opts.tracing {
        tracing::info!(
            service = opts.service.name(),
            "tracing on: internal gRPC calls carry a W3C traceparent; grep trace_id=<id> in the logs"
        );
    }
    let Some(addr) = opts.metrics_addr else {
        return Ok(None);
    };
    let listener = serve::bind(addr, opts.allow_remote).await?;
    let m = Metrics::new(opts.service.name(), &opts.peer_id);
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %bound, service = opts.service.name(), "Prometheus metrics endpoint listening on /metrics");
    tokio::spawn(serve::serve(listener, m.clone()));
    Ok(Some(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipfs_cluster_config::{ClusterSecret, ServiceConfig};

    #[test]
    fn flags_or_config_turn_features_on() {
        let mut cfg = ServiceConfig::default_for_init("p", ClusterSecret::generate());
        let o = Options::from_config(ServiceKind::IpfsConnector, "p1", &cfg, false, false).unwrap();
        assert_eq!((o.metrics_addr, o.tracing), (None, false));
        let o = Options::from_config(ServiceKind::IpfsConnector, "p1", &cfg, true, true).unwrap();
        assert_eq!(o.metrics_addr.unwrap().port(), 8890);
        assert!(o.tracing);
        cfg.observations.metrics.enable_stats = true;
        cfg.observations.tracing.enable_tracing = true;
        let o = Options::from_config(ServiceKind::Gateway, "p1", &cfg, false, false).unwrap();
        assert_eq!(o.metrics_addr.unwrap().port(), 8891);
        assert!(o.tracing);
        // --stats with a non-loopback endpoint: the error names the key.
        cfg.observations.metrics.enable_stats = false;
        cfg.observations.metrics.prometheus_endpoint = "/ip4/10.0.0.9/tcp/8888".parse().unwrap();
        let e = Options::from_config(ServiceKind::Transport, "p1", &cfg, true, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("observations.metrics.prometheus_endpoint"),
            "{e}"
        );
    }
}

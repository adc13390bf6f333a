//! The transport's Prometheus families (docs/operations.md, Observability): connected cluster peers
//! (read through our own `Transport.Peers` at scrape time) and outgoing peer calls with
//! their latency ([`PeerCalls`], owned and recorded by the `TransportService` that makes
//! them).

use std::{net::SocketAddr, sync::Arc, time::Instant};

use ipfs_cluster_observability::{
    latency_histogram,
    prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge},
    HistogramFamily, Labels, Metrics,
};
use ipfs_cluster_proto::{client, transport::v1::PeersRequest, InternalToken};
use tonic::Status;

/// The peer call families, recorded by the service that makes the calls.
pub struct PeerCalls {
    total: Family<Labels, Counter>,
    duration: HistogramFamily,
}

/// Registers the transport's families; `grpc_addr`/`token` reach our own gRPC endpoint.
/// Returns the peer call recorder for the service (`TransportOptions::peer_calls`).
pub fn register(m: &Metrics, grpc_addr: SocketAddr, token: &InternalToken) -> Arc<PeerCalls> {
    let peers: Gauge = Gauge::default();
    m.register(
        "peers",
        "Connected cluster peers (upstream cluster_peers)",
        peers.clone(),
    );
    let total: Family<Labels, Counter> = Family::default();
    m.register(
        "peer_calls",
        "Peer calls made through this transport, by callee service, method, local/remote and result (ok or the gRPC code)",
        total.clone(),
    );
    let duration: HistogramFamily = Family::new_with_constructor(latency_histogram as fn() -> _);
    m.register(
        "peer_call_duration_seconds",
        "Latency of peer calls made through this transport",
        duration.clone(),
    );
    let c = client::transport(grpc_addr, token);
    m.on_scrape(move || {
        let (mut c, peers) = (c.clone(), peers.clone());
        Box::pin(async move {
            match c.peers(PeersRequest {}).await {
                Ok(r) => {
                    peers.set(r.into_inner().peers.len() as i64);
                }
                Err(e) => tracing::debug!(error = %e, "metrics: Transport.Peers failed"),
            }
        })
    });
    Arc::new(PeerCalls { total, duration })
}

/// `ipfscluster.consensus.v1.Consensus` → `Consensus`.
fn short(service: &str) -> &str {
    service.rsplit('.').next().unwrap_or(service)
}

impl PeerCalls {
    /// Records one peer call.
    pub fn record<T>(
        &self,
        service: &str,
        method: &str,
        remote: bool,
        res: &Result<T, Status>,
        started: Instant,
    ) {
        let result = match res {
            Ok(_) => "ok".to_string(),
            Err(s) => format!("{:?}", s.code()),
        };
        let target = if remote { "remote" } else { "local" };
        self.total
            .get_or_create(&vec![
                ("service".into(), short(service).into()),
                ("method".into(), method.into()),
                ("target".into(), target.into()),
                ("result".into(), result),
            ])
            .inc();
        self.duration
            .get_or_create(&vec![
                ("service".into(), short(service).into()),
                ("method".into(), method.into()),
            ])
            .observe(started.elapsed().as_secs_f64());
    }
}

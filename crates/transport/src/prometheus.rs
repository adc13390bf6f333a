//! The transport's Prometheus families (docs/operations.md, Observability): connected cluster peers
//! (read through our own `Transport.Peers` at scrape time) and outgoing peer calls with
//! their latency (recorded by `TransportService::call_one`).

use std::{net::SocketAddr, sync::OnceLock, time::Instant};

use ipfs_cluster_observability::{
    latency_histogram,
    prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge},
    HistogramFamily, Labels, Metrics,
};
use ipfs_cluster_proto::{client, transport::v1::PeersRequest, InternalToken};
use tonic::Status;

struct PeerCalls {
    total: Family<Labels, Counter>,
    duration: HistogramFamily,
}

static PEER_CALLS: OnceLock<PeerCalls> = OnceLock::new();

/// Registers the transport's families; `grpc_addr`/`token` reach our own gRPC endpoint.
pub fn register(m: &Metrics, grpc_addr: SocketAddr, token: &InternalToken) {
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
    let _ = PEER_CALLS.set(PeerCalls { total, duration });
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
}

/// `ipfscluster.consensus.v1.Consensus` → `Consensus`.
fn short(service: &str) -> &str {
    service.rsplit('.').next().unwrap_or(service)
}

/// Records one peer call (no-op when metrics are off).
pub fn peer_call<T>(
    service: &str,
    method: &str,
    remote: bool,
    res: &Result<T, Status>,
    started: Instant,
) {
    let Some(pc) = PEER_CALLS.get() else {
        return;
    };
    let result = match res {
        Ok(_) => "ok".to_string(),
        Err(s) => format!("{:?}", s.code()),
    };
    let target = if remote { "remote" } else { "local" };
    pc.total
        .get_or_create(&vec![
            ("service".into(), short(service).into()),
            ("method".into(), method.into()),
            ("target".into(), target.into()),
            ("result".into(), result),
        ])
        .inc();
    pc.duration
        .get_or_create(&vec![
            ("service".into(), short(service).into()),
            ("method".into(), method.into()),
        ])
        .observe(started.elapsed().as_secs_f64());
}

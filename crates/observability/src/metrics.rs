//! The per-process registry: every family gets the `ipfscluster_` prefix and a constant
//! `peer` label; `build_info` and the internal gRPC request families are registered for
//! every service. Values that live elsewhere (raft state, queue sizes) are read by
//! callbacks run just before each scrape.

use std::{
    borrow::Cow,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::{Metric, Registry},
};

/// Label pairs of a family member.
pub type Labels = Vec<(String, String)>;
/// A histogram family with the shared latency buckets.
pub type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Latency buckets: 0.5 ms doubling to ~16 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

type Refresh = Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

pub struct Metrics {
    service: String,
    registry: Mutex<Registry>,
    refresh: Mutex<Vec<Arc<Refresh>>>,
    grpc_requests: Family<Labels, Counter>,
    grpc_duration: HistogramFamily,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry for `service` on peer `peer_id`, with `build_info` and the gRPC families.
    pub fn new(service: &str, peer_id: &str) -> Arc<Self> {
        let mut registry = Registry::with_prefix_and_labels(
            "ipfscluster",
            [(Cow::Borrowed("peer"), Cow::Owned(peer_id.to_string()))].into_iter(),
        );
        let build: Family<Labels, Gauge> = Family::default();
        build
            .get_or_create(&vec![
                ("service".into(), service.into()),
                ("version".into(), ipfs_cluster_proto::VERSION.into()),
            ])
            .set(1);
        registry.register(
            "build_info",
            "Which service binary and version answers (always 1)",
            build,
        );
        let grpc_requests: Family<Labels, Counter> = Family::default();
        registry.register(
            "grpc_requests",
            "Internal gRPC calls served, by method and status code",
            grpc_requests.clone(),
        );
        let grpc_duration: HistogramFamily =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "grpc_request_duration_seconds",
            "Latency of internal gRPC calls served (until the answer starts)",
            grpc_duration.clone(),
        );
        Arc::new(Metrics {
            service: service.to_string(),
            registry: Mutex::new(registry),
            refresh: Mutex::new(Vec::new()),
            grpc_requests,
            grpc_duration,
        })
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// Registers one family (name without the `ipfscluster_` prefix; counters get
    /// `_total` appended by the encoder).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry
            .lock()
            .unwrap()
            .register(name.to_string(), help.to_string(), metric);
    }

    /// Registers a callback run before every scrape (keep it cheap; it is bounded by a
    /// 5 s timeout so a stuck source never hangs the scrape).
    pub fn on_scrape<F>(&self, f: F)
    where
        F: Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static,
    {
        self.refresh.lock().unwrap().push(Arc::new(Box::new(f)));
    }

    /// Records one served gRPC call.
    pub fn observe_grpc(&self, method: &str, code: &str, elapsed: Duration) {
        self.grpc_requests
            .get_or_create(&vec![
                ("method".into(), method.into()),
                ("code".into(), code.into()),
            ])
            .inc();
        self.grpc_duration
            .get_or_create(&vec![("method".into(), method.into())])
            .observe(elapsed.as_secs_f64());
    }

    /// Runs the scrape callbacks, then encodes every family (OpenMetrics text).
    pub async fn render(&self) -> String {
        let callbacks: Vec<Arc<Refresh>> = self.refresh.lock().unwrap().clone();
        let all = futures::future::join_all(callbacks.iter().map(|f| f()));
        if tokio::time::timeout(Duration::from_secs(5), all)
            .await
            .is_err()
        {
            tracing::warn!(
                "metrics scrape: a value source took longer than 5 s; serving the previous values"
            );
        }
        let mut out = String::new();
        encode(&mut out, &self.registry.lock().unwrap()).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    #[tokio::test]
    async fn families_prefix_peer_label_and_scrape_callbacks() {
        let m = Metrics::new("consensus", "12D3KooWtest");
        m.observe_grpc("Consensus/Pin", "OK", Duration::from_millis(3));
        m.observe_grpc("Consensus/Pin", "OK", Duration::from_millis(5));
        m.observe_grpc("Consensus/Pin", "UNAVAILABLE", Duration::from_millis(1));
        let g: Gauge = Gauge::default();
        m.register("raft_term", "Current raft term", g.clone());
        let src = Arc::new(AtomicI64::new(7));
        let s2 = src.clone();
        m.on_scrape(move || {
            let g = g.clone();
            let v = s2.load(Ordering::Relaxed);
            Box::pin(async move {
                g.set(v);
            })
        });
        let text = m.render().await;
        assert!(text.contains("ipfscluster_build_info{peer=\"12D3KooWtest\",service=\"consensus\",version=\"1.1.6\"} 1"), "{text}");
        assert!(
            text.contains("ipfscluster_grpc_requests_total{peer=\"12D3KooWtest\",method=\"Consensus/Pin\",code=\"OK\"} 2"),
            "{text}"
        );
        assert!(text.contains("ipfscluster_grpc_request_duration_seconds_count{peer=\"12D3KooWtest\",method=\"Consensus/Pin\"} 3"), "{text}");
        assert!(
            text.contains("ipfscluster_raft_term{peer=\"12D3KooWtest\"} 7"),
            "{text}"
        );
        src.store(8, Ordering::Relaxed);
        assert!(m
            .render()
            .await
            .contains("ipfscluster_raft_term{peer=\"12D3KooWtest\"} 8"));
        assert!(text.ends_with("# EOF\n"));
    }
}

//! The Kubo client's own Prometheus families: RPC requests by endpoint and result, and
//! their latency until the answer's headers. Recorded by [`super::Kubo::post`] once the
//! service registered them ([`super::Kubo::record_metrics`]); nothing when metrics are off.

use std::time::Instant;

use ipfs_cluster_observability::{
    latency_histogram,
    prometheus_client::metrics::{counter::Counter, family::Family},
    HistogramFamily, Labels, Metrics,
};

pub struct RequestMetrics {
    total: Family<Labels, Counter>,
    duration: HistogramFamily,
}

impl RequestMetrics {
    /// Registers the families on `m`.
    pub fn register(m: &Metrics) -> Self {
        let total: Family<Labels, Counter> = Family::default();
        m.register(
            "ipfs_requests",
            "Kubo RPC requests, by endpoint and result (ok, or the error kind)",
            total.clone(),
        );
        let duration: HistogramFamily =
            Family::new_with_constructor(latency_histogram as fn() -> _);
        m.register(
            "ipfs_request_duration_seconds",
            "Kubo RPC latency until the answer's headers",
            duration.clone(),
        );
        RequestMetrics { total, duration }
    }

    /// Records one Kubo RPC request.
    pub fn record<T, E: std::fmt::Debug>(
        &self,
        endpoint: &str,
        res: &Result<T, E>,
        started: Instant,
    ) {
        let result = match res {
            Ok(_) => "ok".to_string(),
            Err(e) => {
                // The variant name only (`Unreachable`, `Ipfs`, `Timeout`…): bounded label values.
                let d = format!("{e:?}");
                d.split(|c: char| !c.is_alphanumeric())
                    .next()
                    .unwrap_or("error")
                    .to_string()
            }
        };
        self.total
            .get_or_create(&vec![
                ("endpoint".into(), endpoint.into()),
                ("result".into(), result),
            ])
            .inc();
        self.duration
            .get_or_create(&vec![("endpoint".into(), endpoint.into())])
            .observe(started.elapsed().as_secs_f64());
    }
}

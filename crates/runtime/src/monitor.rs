//! The peer monitor's plumbing, shared by every service that watches the cluster's peer
//! metrics (consensus for allocation, the gateway for `/monitor/metrics` and
//! `/health/alerts`): following the transport's `monitor.metrics` broadcast (upstream's
//! pubsub monitor), resubscribing after failures, and the alert checker's period, taken
//! from `monitor.pubsubmon.check_interval` in every user.

use std::time::Duration;

use ipfs_cluster_config::ServiceConfig;
use ipfs_cluster_proto::{
    client::TransportClient, transport::v1::SubscribeRequest, types::v1::Metric, METRICS_TOPIC,
};
use prost::Message;
use tokio_stream::StreamExt;

/// Upstream's default `monitor.pubsubmon.check_interval`.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(15);

/// How long to wait before subscribing again after the subscription failed or ended.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// How often expired peer metrics are checked for (alerts, re-allocation):
/// `monitor.pubsubmon.check_interval`, or upstream's 15 s when it is zero.
pub fn check_interval(cfg: &ServiceConfig) -> Duration {
    let d = cfg.monitor.pubsubmon.check_interval;
    if d.is_zero() {
        DEFAULT_CHECK_INTERVAL
    } else {
        d.as_duration()
    }
}

/// Follows the transport's `monitor.metrics` topic for as long as the process runs,
/// handing every decodable peer metric to `on_metric` and subscribing again one second
/// after the subscription failed or ended (the transport restarted, or is not up yet).
pub fn follow_peer_metrics<F>(mut transport: TransportClient, on_metric: F)
where
    F: Fn(Metric) + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let req = SubscribeRequest {
                topic: METRICS_TOPIC.to_string(),
            };
            match transport.subscribe(req).await {
                Ok(s) => {
                    let mut s = s.into_inner();
                    while let Some(msg) = s.next().await {
                        match msg {
                            Ok(m) => match Metric::decode(m.data.as_slice()) {
                                Ok(metric) => on_metric(metric),
                                Err(e) => {
                                    tracing::debug!(from = %m.from, error = %e, "undecodable metric")
                                }
                            },
                            Err(e) => {
                                tracing::debug!(error = %e.message(), "metrics subscription ended");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e.message(), "cannot subscribe to metrics yet"),
            }
            tokio::time::sleep(RESUBSCRIBE_AFTER).await;
        }
    });
}

/// Runs `check` every `interval` (the first run at once) for as long as the process runs.
pub fn spawn_checker<F>(interval: Duration, check: F)
where
    F: Fn() + Send + 'static,
{
    tokio::spawn(async move {
        let mut t = tokio::time::interval(interval);
        loop {
            t.tick().await;
            check();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_interval_follows_the_configuration() {
        let mut cfg =
            ServiceConfig::default_for_init("p", ipfs_cluster_config::ClusterSecret::generate());
        assert_eq!(check_interval(&cfg), DEFAULT_CHECK_INTERVAL);
        cfg.monitor.pubsubmon.check_interval = ipfs_cluster_config::GoDuration::from_secs(3);
        assert_eq!(check_interval(&cfg), Duration::from_secs(3));
        cfg.monitor.pubsubmon.check_interval = ipfs_cluster_config::GoDuration::from_secs(0);
        assert_eq!(check_interval(&cfg), DEFAULT_CHECK_INTERVAL);
    }
}

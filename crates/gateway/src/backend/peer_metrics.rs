//! The gateway's view of the cluster's peer metrics (informer metrics, not Prometheus,
//! which is prometheus.rs): it follows the transport's `monitor.metrics` broadcast
//! (prost-encoded `Metric`) through the runtime's peer monitor into the runtime's peer
//! metric store (the latest metric per (name, peer), bounded, the same store consensus
//! allocates on), and raises an alert once when a peer's latest valid metric expires
//! (upstream's pubsubmon checker). Serves `/monitor/metrics*` and `/health/alerts`,
//! and the cached ping metric gives names of peers that cannot be asked directly.

use std::{collections::BTreeSet, sync::Mutex, time::Duration};

use ipfs_cluster_api as api;
use ipfs_cluster_proto::{client::TransportClient, types::v1 as pb};
use ipfs_cluster_runtime::peer_metrics::{now_nanos, PeerMetricStore as Store};

/// Upstream clears the alert list when it grows beyond this.
const MAX_ALERTS: usize = 1000;

#[derive(Default)]
struct Alerts {
    /// (name, peer) of expired metrics already alerted on.
    alerted: BTreeSet<(String, String)>,
    /// Oldest first; served newest first.
    list: Vec<api::Alert>,
}

/// The runtime's peer metric store (bounded to
/// [`ipfs_cluster_runtime::peer_metrics::MAX_METRICS`]) plus the alert checker's state.
#[derive(Default)]
pub struct PeerMetricStore {
    store: Store,
    alerts: Mutex<Alerts>,
}

impl PeerMetricStore {
    /// Records a received metric (receipt time = now); a fresh valid metric clears the
    /// (name, peer) alert so a later expiry alerts again.
    pub fn add(&self, m: pb::Metric) {
        let key = (m.name.clone(), m.peer.clone());
        let valid = m.valid;
        if self.store.try_add(m) && valid {
            self.lock_alerts().alerted.remove(&key);
        }
    }

    fn lock_alerts(&self) -> std::sync::MutexGuard<'_, Alerts> {
        self.alerts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Names of every metric seen.
    pub fn names(&self) -> Vec<String> {
        self.store.names()
    }

    /// Latest valid, unexpired metric of `name` for each of `peers`, sorted by peer.
    pub fn latest(&self, name: &str, peers: &[String]) -> Vec<api::Metric> {
        let mut out: Vec<api::Metric> = self
            .store
            .latest(name, peers, now_nanos())
            .into_values()
            .map(api::Metric::from)
            .collect();
        out.sort_by(|a, b| a.peer.as_bytes().cmp(b.peer.as_bytes()));
        out
    }

    /// The peer name and IPFS identity a peer announced in its last ping metric.
    pub fn ping_info(&self, peer: &str) -> Option<api::PingValue> {
        let m = self.store.get("ping", peer)?;
        serde_json::from_str(&m.value).ok()
    }

    /// One checker pass: alerts for latest valid metrics that have expired.
    pub fn check(&self, now: i64) {
        let expired = self.store.valid_expired(now);
        let mut a = self.lock_alerts();
        for m in expired {
            let key = (m.name.clone(), m.peer.clone());
            if a.alerted.contains(&key) {
                continue;
            }
            tracing::info!(peer = %m.peer, metric = %m.name, "metric expired: alert");
            a.alerted.insert(key);
            if a.list.len() >= MAX_ALERTS {
                a.list.clear();
            }
            a.list.push(api::Alert {
                metric: api::Metric::from(m),
                triggered_at: api::Time::now(),
            });
        }
    }

    /// Alerts, newest first.
    pub fn alerts(&self) -> Vec<api::Alert> {
        self.lock_alerts().list.iter().rev().cloned().collect()
    }
}

/// Follows the metrics topic (the runtime's peer monitor) and runs the alert checker
/// every `check_interval` (`monitor.pubsubmon.check_interval`).
pub fn spawn(
    store: std::sync::Arc<PeerMetricStore>,
    transport: TransportClient,
    check_interval: Duration,
) {
    let checker = store.clone();
    ipfs_cluster_runtime::monitor::spawn_checker(check_interval, move || {
        checker.check(now_nanos())
    });
    ipfs_cluster_runtime::monitor::follow_peer_metrics(transport, move |m| store.add(m));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: &str, peer: &str, expire: i64) -> pb::Metric {
        pb::Metric {
            name: name.into(),
            peer: peer.into(),
            value: "1".into(),
            expire,
            valid: true,
            ..Default::default()
        }
    }

    #[test]
    fn latest_and_alerts() {
        let s = PeerMetricStore::default();
        let future = now_nanos() + 60_000_000_000;
        s.add(metric("freespace", "b", future));
        s.add(metric("freespace", "a", future));
        s.add(metric("ping", "a", 1));
        assert_eq!(s.names(), vec!["freespace".to_string(), "ping".to_string()]);
        let l = s.latest("freespace", &["a".into(), "b".into()]);
        assert_eq!(
            l.iter().map(|m| m.peer.as_str()).collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        assert!(
            s.latest("freespace", &["a".into()]).len() == 1,
            "only current peers"
        );
        assert!(
            s.latest("ping", &["a".into()]).is_empty(),
            "expired metrics are not served"
        );
        s.check(now_nanos());
        s.check(now_nanos());
        let alerts = s.alerts();
        assert_eq!(alerts.len(), 1, "one alert per expiry");
        assert_eq!(
            (
                alerts[0].metric.name.as_str(),
                alerts[0].metric.peer.as_str()
            ),
            ("ping", "a")
        );
        s.add(metric("ping", "a", 2));
        s.check(now_nanos());
        assert_eq!(s.alerts().len(), 2, "a fresh metric re-arms the alert");
    }
}

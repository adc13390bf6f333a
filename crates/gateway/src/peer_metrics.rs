//! The gateway's view of the cluster's peer metrics (informer metrics, not Prometheus,
//! which is prometheus.rs): it follows the transport's `monitor.metrics` broadcast
//! (prost-encoded `Metric`) through the runtime's peer monitor, keeps the latest metric
//! per (name, peer), and raises an alert once when a peer's latest valid metric expires
//! (upstream's pubsubmon checker). Serves `/monitor/metrics*` and `/health/alerts`,
//! and the cached ping metric gives names of peers that cannot be asked directly.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Mutex,
    time::Duration,
};

use ipfs_cluster_api as api;
use ipfs_cluster_proto::{client::TransportClient, types::v1 as pb};

/// At most this many (name, peer) metrics are kept: names come from other peers' gossip,
/// and a member sending ever new names must not grow every gateway without bound (found
/// while writing tests/fuzz `gossip_metric`; the allocator's store has the same cap).
pub const MAX_METRICS: usize = 16_384;
/// Upstream clears the alert list when it grows beyond this.
const MAX_ALERTS: usize = 1000;

#[derive(Default)]
struct State {
    latest: BTreeMap<(String, String), api::Metric>,
    alerted: BTreeSet<(String, String)>,
    /// Oldest first; served newest first.
    alerts: Vec<api::Alert>,
}

#[derive(Default)]
pub struct PeerMetricStore {
    state: Mutex<State>,
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl PeerMetricStore {
    /// Records a received metric (receipt time = now); a fresh valid metric clears the
    /// (name, peer) alert so a later expiry alerts again.
    pub fn add(&self, m: pb::Metric) {
        let mut m = api::Metric::from(m);
        if m.name.is_empty() || m.peer.is_empty() {
            return;
        }
        m.received_at = now_ns();
        let key = (m.name.clone(), m.peer.clone());
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.latest.len() >= MAX_METRICS && !s.latest.contains_key(&key) {
            // Make room by forgetting expired metrics; when none is expired, drop the new one.
            let now = m.received_at;
            s.latest.retain(|_, old| !old.expired(now));
            if s.latest.len() >= MAX_METRICS {
                tracing::warn!(
                    limit = MAX_METRICS,
                    peer = %m.peer,
                    "the gateway's metric store is full of unexpired metrics; dropping a new one"
                );
                return;
            }
        }
        if m.valid {
            s.alerted.remove(&key);
        }
        s.latest.insert(key, m);
    }

    /// Names of every metric seen.
    pub fn names(&self) -> Vec<String> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let names: BTreeSet<&String> = s.latest.keys().map(|(n, _)| n).collect();
        names.into_iter().cloned().collect()
    }

    /// Latest valid, unexpired metric of `name` for each of `peers`, sorted by peer.
    pub fn latest(&self, name: &str, peers: &[String]) -> Vec<api::Metric> {
        let now = now_ns();
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<api::Metric> = s
            .latest
            .iter()
            .filter(|((n, p), m)| n == name && peers.contains(p) && m.usable(now))
            .map(|(_, m)| m.clone())
            .collect();
        out.sort_by(|a, b| {
            a.peer
                .as_bytes()
                .cmp(b.peer.as_bytes())
                .then(a.expire.cmp(&b.expire))
        });
        out
    }

    /// The peer name and IPFS identity a peer announced in its last ping metric.
    pub fn ping_info(&self, peer: &str) -> Option<api::PingValue> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let m = s.latest.get(&("ping".to_string(), peer.to_string()))?;
        serde_json::from_str(&m.value).ok()
    }

    /// One checker pass: alerts for latest valid metrics that have expired.
    pub fn check(&self, now: i64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let expired: Vec<((String, String), api::Metric)> = s
            .latest
            .iter()
            .filter(|(k, m)| m.valid && m.expired(now) && !s.alerted.contains(*k))
            .map(|(k, m)| (k.clone(), m.clone()))
            .collect();
        for (k, m) in expired {
            tracing::info!(peer = %m.peer, metric = %m.name, "metric expired: alert");
            s.alerted.insert(k);
            if s.alerts.len() >= MAX_ALERTS {
                s.alerts.clear();
            }
            s.alerts.push(api::Alert {
                metric: m,
                triggered_at: api::Time::now(),
            });
        }
    }

    /// Alerts, newest first.
    pub fn alerts(&self) -> Vec<api::Alert> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.alerts.iter().rev().cloned().collect()
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
    ipfs_cluster_runtime::monitor::spawn_checker(check_interval, move || checker.check(now_ns()));
    ipfs_cluster_runtime::monitor::follow_metrics(transport, move |m| store.add(m));
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
    fn the_store_is_bounded() {
        let s = PeerMetricStore::default();
        let future = now_ns() + 3_600_000_000_000;
        // Full of expired metrics: they make room for a new one.
        for i in 0..MAX_METRICS {
            s.add(metric(&format!("old{i}"), "p", 1));
        }
        s.add(metric("fresh", "p", future));
        assert_eq!(s.latest("fresh", &["p".into()]).len(), 1);
        assert!(s.names().len() <= MAX_METRICS);
        // Full of unexpired ones: a new name is dropped, a known one is still updated.
        for i in 1..MAX_METRICS {
            s.add(metric(&format!("new{i}"), "p", future));
        }
        s.add(metric("one-too-many", "p", future));
        assert!(s.latest("one-too-many", &["p".into()]).is_empty());
        assert_eq!(s.names().len(), MAX_METRICS);
        s.add(metric("fresh", "p", future + 1));
        assert_eq!(s.latest("fresh", &["p".into()])[0].expire, future + 1);
    }

    #[test]
    fn latest_and_alerts() {
        let s = PeerMetricStore::default();
        let future = now_ns() + 60_000_000_000;
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
        s.check(now_ns());
        s.check(now_ns());
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
        s.check(now_ns());
        assert_eq!(s.alerts().len(), 2, "a fresh metric re-arms the alert");
    }
}

//! The peer metric store: the latest informer metric per (name, peer) that the peer
//! monitor ([`crate::monitor::follow_peer_metrics`]) received from the cluster's
//! `monitor.metrics` broadcast (upstream's pubsub monitor). Peer metrics, not Prometheus.
//! One store for every user: consensus allocates and finds dead peers on it, the gateway
//! serves `/monitor/metrics*` and raises `/health/alerts` from it.
//!
//! Bounded, because names and values come from other peers' gossip: the transport admits
//! only small metrics about their own sender (docs/security.md, hole 6), and this store
//! still refuses oversized ones and keeps at most [`MAX_METRICS`] entries (a member
//! sending ever new names must not grow every peer without bound).

use std::{
    collections::{BTreeSet, HashMap},
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use ipfs_cluster_proto::types::v1::Metric;

/// Most (name, peer) entries kept: enough for every informer of hundreds of peers.
pub const MAX_METRICS: usize = 16_384;
/// Longest metric name kept.
pub const MAX_METRIC_NAME: usize = 256;
/// Longest metric value kept.
pub const MAX_METRIC_VALUE: usize = 2048;

/// Now, in nanoseconds since the Unix epoch (the unit of `expire` and `received_at`).
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Valid and not expired at `now`.
fn usable(m: &Metric, now: i64) -> bool {
    m.valid && m.expire > now
}

/// The latest metric per (name, peer).
#[derive(Default)]
pub struct PeerMetricStore {
    latest: RwLock<HashMap<(String, String), Metric>>,
}

impl PeerMetricStore {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<(String, String), Metric>> {
        self.latest.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<(String, String), Metric>> {
        self.latest.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `m` as the latest of its (name, peer), unless refused (see [`Self::try_add`]).
    pub fn add(&self, m: Metric) {
        self.try_add(m);
    }

    /// Keeps `m` as the latest of its (name, peer), stamped with its receipt time
    /// (`received_at` = now, as upstream's monitor). False when it is refused: no name or
    /// peer, too large, or the store is full of unexpired metrics (expired ones are
    /// forgotten first to make room; a known (name, peer) is always updated).
    pub fn try_add(&self, mut m: Metric) -> bool {
        if m.name.is_empty() || m.peer.is_empty() {
            return false;
        }
        if m.name.len() > MAX_METRIC_NAME || m.value.len() > MAX_METRIC_VALUE {
            tracing::debug!(peer = %m.peer, "refused an oversized metric");
            return false;
        }
        let now = now_nanos();
        m.received_at = now;
        let key = (m.name.clone(), m.peer.clone());
        let mut g = self.write();
        if g.len() >= MAX_METRICS && !g.contains_key(&key) {
            g.retain(|_, old| old.expire > now);
            if g.len() >= MAX_METRICS {
                tracing::warn!(
                    limit = MAX_METRICS,
                    peer = %m.peer,
                    "the peer metric store is full of unexpired metrics; dropping a new one"
                );
                return false;
            }
        }
        g.insert(key, m);
        true
    }

    /// Names of every metric kept, sorted.
    pub fn names(&self) -> Vec<String> {
        let g = self.read();
        let names: BTreeSet<&String> = g.keys().map(|(n, _)| n).collect();
        names.into_iter().cloned().collect()
    }

    /// The latest `name` metric of `peer`, usable or not.
    pub fn get(&self, name: &str, peer: &str) -> Option<Metric> {
        self.read()
            .get(&(name.to_string(), peer.to_string()))
            .cloned()
    }

    /// Valid, unexpired metrics of `name` for the given peers, by peer.
    pub fn latest(&self, name: &str, peers: &[String], now: i64) -> HashMap<String, Metric> {
        let g = self.read();
        peers
            .iter()
            .filter_map(|p| g.get(&(name.to_string(), p.clone())))
            .filter(|m| usable(m, now))
            .map(|m| (m.peer.clone(), m.clone()))
            .collect()
    }

    /// Peers (among `peers`) whose latest `name` metric is expired or invalid. Peers that
    /// never sent one are not listed (upstream alerts only on a metric it has seen).
    pub fn expired(&self, name: &str, peers: &[String], now: i64) -> Vec<String> {
        let g = self.read();
        peers
            .iter()
            .filter(|p| {
                g.get(&(name.to_string(), (*p).clone()))
                    .is_some_and(|m| !usable(m, now))
            })
            .cloned()
            .collect()
    }

    /// Every latest metric that was valid and has expired at `now`, sorted by (name,
    /// peer): what the alert checker alerts on.
    pub fn valid_expired(&self, now: i64) -> Vec<Metric> {
        let g = self.read();
        let mut out: Vec<(&(String, String), &Metric)> = g
            .iter()
            .filter(|(_, m)| m.valid && m.expire <= now)
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out.into_iter().map(|(_, m)| m.clone()).collect()
    }

    /// Every peer whose latest `name` metric is valid and unexpired, sorted (crdt mode's
    /// peerset).
    pub fn live_peers(&self, name: &str, now: i64) -> Vec<String> {
        let g = self.read();
        let mut out: Vec<String> = g
            .iter()
            .filter(|((n, _), m)| n == name && usable(m, now))
            .map(|((_, p), _)| p.clone())
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk(name: &str, peer: &str, value: &str, expire: i64) -> Metric {
        Metric {
            name: name.into(),
            peer: peer.into(),
            value: value.into(),
            expire,
            valid: true,
            ..Default::default()
        }
    }

    #[test]
    fn the_store_is_bounded() {
        let s = PeerMetricStore::default();
        let far = now_nanos() + 3_600_000_000_000;
        assert!(!s.try_add(mk("big", "p", &"x".repeat(MAX_METRIC_VALUE + 1), far)));
        assert!(!s.try_add(mk(&"n".repeat(MAX_METRIC_NAME + 1), "p", "1", far)));
        // Full of expired metrics: they make room.
        for i in 0..MAX_METRICS {
            assert!(s.try_add(mk(&format!("old{i}"), "p", "1", 1)));
        }
        assert!(s.try_add(mk("fresh", "p", "1", far)));
        assert!(s.names().len() <= MAX_METRICS);
        // Full of unexpired ones: a new name is refused, an existing one is updated.
        for i in 1..MAX_METRICS {
            assert!(s.try_add(mk(&format!("new{i}"), "p", "1", far)));
        }
        assert!(!s.try_add(mk("one-too-many", "p", "1", far)));
        assert_eq!(s.names().len(), MAX_METRICS);
        assert!(s.try_add(mk("fresh", "p", "2", far)));
        assert_eq!(s.latest("fresh", &["p".into()], 0)["p"].value, "2");
    }

    #[test]
    fn no_name_or_peer_is_refused_and_receipt_is_stamped() {
        let s = PeerMetricStore::default();
        assert!(!s.try_add(mk("", "p", "1", i64::MAX)));
        assert!(!s.try_add(mk("ping", "", "1", i64::MAX)));
        let before = now_nanos();
        let mut m = mk("ping", "p", "1", i64::MAX);
        m.received_at = 1;
        assert!(s.try_add(m));
        assert!(s.get("ping", "p").unwrap().received_at >= before);
    }

    #[test]
    fn latest_expired_live_and_alertable() {
        let s = PeerMetricStore::default();
        let now = now_nanos();
        s.add(mk("ping", "a", "", now + 60_000_000_000));
        s.add(mk("ping", "b", "", 1));
        let mut invalid = mk("ping", "c", "", now + 60_000_000_000);
        invalid.valid = false;
        s.add(invalid);
        let peers: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        assert_eq!(
            s.latest("ping", &peers, now)
                .into_keys()
                .collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(s.expired("ping", &peers, now), ["b", "c"]);
        assert_eq!(s.live_peers("ping", now), ["a"]);
        let alertable: Vec<String> = s.valid_expired(now).into_iter().map(|m| m.peer).collect();
        assert_eq!(alertable, ["b"], "invalid metrics do not alert");
    }
}

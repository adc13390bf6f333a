//! Informers: measure this peer and publish the
//! metrics on the transport's `monitor.metrics` broadcast (prost-encoded `Metric`), each
//! every half of its TTL, with upstream's names. Invalid metrics are never published.

use std::time::Duration;

use ipfs_cluster_proto::{
    client::TransportClient, transport::v1::PublishRequest, types::v1::Metric, METRICS_TOPIC,
};
use prost::Message;

use crate::tracker::{now_ns, Tracker};

/// A metric ready to publish, or None when the measurement failed (logged).
fn metric(
    t: &Tracker,
    name: &str,
    value: String,
    weight: i64,
    ttl: Duration,
    partitionable: bool,
) -> Metric {
    Metric {
        name: name.to_string(),
        peer: t.opts().peer_id.clone(),
        value,
        expire: now_ns() + ttl.as_nanos() as i64,
        valid: true,
        weight,
        partitionable,
        received_at: 0,
    }
}

/// Measures one informer now.
pub async fn measure(t: &Tracker, which: &str) -> Vec<Metric> {
    let o = t.opts();
    match which {
        "freespace" => {
            let Some(ttl) = o.freespace_ttl else {
                return vec![];
            };
            match t.kubo().repo_stat().await {
                Ok(s) if s.repo_size < s.storage_max => {
                    let free = s.storage_max - s.repo_size;
                    vec![metric(
                        t,
                        "freespace",
                        free.to_string(),
                        free.min(i64::MAX as u64) as i64,
                        ttl,
                        false,
                    )]
                }
                Ok(s) => {
                    tracing::debug!(
                        repo_size = s.repo_size,
                        storage_max = s.storage_max,
                        "freespace metric invalid: repo is full"
                    );
                    vec![]
                }
                Err(e) => {
                    tracing::debug!("freespace metric invalid: {e}");
                    vec![]
                }
            }
        }
        "numpin" => {
            let Some(ttl) = o.numpin_ttl else {
                return vec![];
            };
            match t.kubo().pin_ls_all().await {
                Ok(m) => vec![metric(t, "numpin", m.len().to_string(), 0, ttl, false)],
                Err(e) => {
                    tracing::debug!("numpin metric invalid: {e}");
                    vec![]
                }
            }
        }
        "pinqueue" => {
            let Some(ttl) = o.pinqueue_ttl else {
                return vec![];
            };
            let n = t.pin_queue_size();
            let w = -((n / o.pinqueue_weight_bucket_size.max(1)) as i64);
            vec![metric(t, "pinqueue", n.to_string(), w, ttl, false)]
        }
        "tags" => {
            let Some((ttl, tags)) = &o.tags else {
                return vec![];
            };
            tags.iter()
                .map(|(k, v)| metric(t, &format!("tag:{k}"), v.clone(), 0, *ttl, true))
                .collect()
        }
        "ping" => {
            let ttl = o.monitor_ping_interval * 2;
            let id = t.inner.ipfs_id.read().unwrap().clone();
            let value = ping_value(
                &o.peername,
                id.as_ref().map(|i| i.id.as_str()).unwrap_or_default(),
                id.as_ref()
                    .map(|i| i.public_addresses())
                    .unwrap_or_default(),
            );
            vec![metric(t, "ping", value, 0, ttl, false)]
        }
        _ => vec![],
    }
}

/// The ping metric's value as upstream writes it: empty fields are omitted.
fn ping_value(peer_name: &str, ipfs_id: &str, ipfs_addresses: Vec<String>) -> String {
    serde_json::to_string(&ipfs_cluster_api::PingValue {
        peer_name: peer_name.to_string(),
        ipfs_id: ipfs_id.to_string(),
        ipfs_addresses,
    })
    .expect("PingValue serializes")
}

fn period(t: &Tracker, which: &str) -> Option<Duration> {
    let o = t.opts();
    let ttl = match which {
        "freespace" => o.freespace_ttl?,
        "numpin" => o.numpin_ttl?,
        "pinqueue" => o.pinqueue_ttl?,
        "tags" => o.tags.as_ref()?.0,
        "ping" => return Some(o.monitor_ping_interval.max(Duration::from_millis(100))),
        _ => return None,
    };
    Some((ttl / 2).max(Duration::from_millis(100)))
}

/// Right after start, metrics are published again after 250 ms, 500 ms, 1 s, 2 s ... until
/// the informer's own period: the first ones go out while the peer is still joining the
/// metrics topic's gossip mesh and reach nobody, and without a metric of each peer the
/// allocator refuses pins ("not enough peers to allocate") for a whole period (15 s for
/// freespace by default) after a peer that starts quickly is already listed by `peers ls`.
const EARLY_FIRST: Duration = Duration::from_millis(250);

/// Starts one publishing loop per enabled informer.
pub fn start(t: Tracker, client: TransportClient) {
    for which in ["freespace", "numpin", "pinqueue", "tags", "ping"] {
        let Some(every) = period(&t, which) else {
            continue;
        };
        let t = t.clone();
        let mut client = client.clone();
        tokio::spawn(async move {
            let mut warned = false;
            let mut early = EARLY_FIRST;
            loop {
                for m in measure(&t, which).await {
                    let req = PublishRequest {
                        topic: METRICS_TOPIC.to_string(),
                        data: m.encode_to_vec(),
                    };
                    let r =
                        tokio::time::timeout(Duration::from_secs(10), client.publish(req)).await;
                    match r {
                        Ok(Ok(_)) => warned = false,
                        Ok(Err(e)) if !warned => {
                            warned = true;
                            tracing::warn!(
                                metric = m.name,
                                "cannot publish metric through the transport: {}",
                                e.message()
                            );
                        }
                        Err(_) if !warned => {
                            warned = true;
                            tracing::warn!(
                                metric = m.name,
                                "publishing metric through the transport timed out"
                            );
                        }
                        _ => {}
                    }
                }
                let pause = if early < every {
                    early *= 2;
                    early / 2
                } else {
                    every
                };
                tokio::select! {
                    _ = t.inner.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_value_omits_empty_fields() {
        assert_eq!(ping_value("", "", vec![]), "{}");
        assert_eq!(
            ping_value("p1", "", vec![]),
            r#"{"peer_name":"p1"}"#,
            "no \"ipfs_id\":\"\" nor \"ipfs_addresses\":[] while the daemon is unknown"
        );
        let v = ping_value("p1", "12D3KooWx", vec!["/ip4/127.0.0.1/tcp/4001".into()]);
        assert_eq!(
            v,
            r#"{"peer_name":"p1","ipfs_id":"12D3KooWx","ipfs_addresses":["/ip4/127.0.0.1/tcp/4001"]}"#
        );
        let back: ipfs_cluster_api::PingValue = serde_json::from_str(&v).unwrap();
        assert_eq!(back.ipfs_id, "12D3KooWx");
    }
}

//! The IPFS connector's Prometheus families (docs/operations.md, Observability): the pin tracker's
//! queues (the tracker's counters, at scrape time), items in error and the pins this peer
//! holds (status passes, cached for `PASS_CACHE`); and the Kubo client's requests with
//! their latency (`crate::kubo::prometheus`, recorded by the client). Registered only
//! when metrics are on (`Settings::metrics`).

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use ipfs_cluster_observability::{
    prometheus_client::metrics::{family::Family, gauge::Gauge},
    Labels, Metrics,
};
use ipfs_cluster_proto::types::v1::TrackerStatus;
use tokio::sync::mpsc;

use super::Tracker;

/// The errors and pinned counts need passes over the stored operations and the pinset
/// (plus an IPFS `pin/ls`): at most this often.
pub const PASS_CACHE: Duration = Duration::from_secs(5);

/// Registers the connector's families on the service's registry.
pub fn register(t: &Tracker, m: &Metrics) {
    t.kubo().record_metrics(m);

    let queued: Family<Labels, Gauge> = Family::default();
    m.register(
        "pintracker_queued",
        "Pin tracker operations waiting, by queue (pin, unpin, priority)",
        queued.clone(),
    );
    let in_progress: Gauge = Gauge::default();
    m.register(
        "pintracker_in_progress",
        "Pin tracker operations running (pinning or unpinning)",
        in_progress.clone(),
    );
    let errors: Gauge = Gauge::default();
    m.register(
        "pintracker_errors",
        "Items in pin_error or unpin_error on this peer (refreshed at most every 5 s)",
        errors.clone(),
    );
    let pinned: Gauge = Gauge::default();
    m.register(
        "pintracker_pinned",
        "Pins this peer holds on IPFS (refreshed at most every 5 s)",
        pinned.clone(),
    );
    let last_pass: std::sync::Arc<Mutex<Option<Instant>>> = Default::default();
    let t = t.clone();
    m.on_scrape(move || {
        let (t, queued, in_progress, errors, pinned, last_pass) = (
            t.clone(),
            queued.clone(),
            in_progress.clone(),
            errors.clone(),
            pinned.clone(),
            last_pass.clone(),
        );
        Box::pin(async move {
            // Queue sizes come from counters kept at each commit (cheap at any size).
            let c = t.queue_counts();
            for (q, n) in [("pin", c.pin), ("unpin", c.unpin), ("priority", c.priority)] {
                queued
                    .get_or_create(&vec![("queue".into(), q.into())])
                    .set(n as i64);
            }
            in_progress.set(c.in_progress as i64);
            // Errors and pinned need passes over the operations / the pinset: cached.
            let due = last_pass
                .lock()
                .unwrap()
                .is_none_or(|at| at.elapsed() >= PASS_CACHE);
            if !due {
                return;
            }
            let err_filter = TrackerStatus::PinError as u32 | TrackerStatus::UnpinError as u32;
            let failed = collect(&t, err_filter)
                .await
                .iter()
                .filter(|i| i.status & err_filter as i32 != 0)
                .count();
            errors.set(failed as i64);
            if t.is_synced() {
                let n = collect(&t, TrackerStatus::Pinned as u32)
                    .await
                    .iter()
                    .filter(|i| i.status == TrackerStatus::Pinned as i32)
                    .count();
                pinned.set(n as i64);
            }
            *last_pass.lock().unwrap() = Some(Instant::now());
        })
    });
}

async fn collect(t: &Tracker, filter: u32) -> Vec<ipfs_cluster_proto::types::v1::PinInfo> {
    let (tx, mut rx) = mpsc::channel(1024);
    let t2 = t.clone();
    let producer = tokio::spawn(async move { t2.status_all(filter, &tx).await });
    let mut out = Vec::new();
    while let Some(i) = rx.recv().await {
        out.push(i);
    }
    if let Ok(Err(e)) = producer.await {
        tracing::debug!(error = %e, "metrics: tracker status failed");
    }
    out
}

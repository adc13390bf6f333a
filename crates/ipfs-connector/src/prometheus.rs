//! The IPFS connector's Prometheus families (docs/operations.md §3): the pin tracker's
//! operations by phase (read from the tracker's in-memory operations at scrape time),
//! the pins this peer holds (a full status pass, cached for `PINNED_CACHE`), and Kubo RPC
//! requests with their latency (recorded by `Kubo::post`). All no-ops when metrics are off.

use std::{
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use ipfs_cluster_observability::{
    latency_histogram,
    prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge},
    HistogramFamily, Labels,
};
use ipfs_cluster_proto::types::v1::TrackerStatus;
use tokio::sync::mpsc;

use crate::tracker::Tracker;

/// The pinned count needs an IPFS `pin/ls` and a pass over the store: at most this often.
pub const PINNED_CACHE: Duration = Duration::from_secs(5);

struct Ipfs {
    total: Family<Labels, Counter>,
    duration: HistogramFamily,
}

static IPFS: OnceLock<Ipfs> = OnceLock::new();

/// Registers the connector's families on the process registry (if metrics are on).
pub fn register(t: &Tracker) {
    let Some(m) = ipfs_cluster_observability::global() else {
        return;
    };
    let total: Family<Labels, Counter> = Family::default();
    m.register(
        "ipfs_requests",
        "Kubo RPC requests, by endpoint and result (ok, or the error kind)",
        total.clone(),
    );
    let duration: HistogramFamily = Family::new_with_constructor(latency_histogram as fn() -> _);
    m.register(
        "ipfs_request_duration_seconds",
        "Kubo RPC latency until the answer's headers",
        duration.clone(),
    );
    let _ = IPFS.set(Ipfs { total, duration });

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
        "Items in pin_error or unpin_error on this peer",
        errors.clone(),
    );
    let pinned: Gauge = Gauge::default();
    m.register(
        "pintracker_pinned",
        "Pins this peer holds on IPFS (refreshed at most every 5 s)",
        pinned.clone(),
    );
    let last_pinned: std::sync::Arc<Mutex<Option<Instant>>> = Default::default();
    let t = t.clone();
    m.on_scrape(move || {
        let (t, queued, in_progress, errors, pinned, last_pinned) = (
            t.clone(),
            queued.clone(),
            in_progress.clone(),
            errors.clone(),
            pinned.clone(),
            last_pinned.clone(),
        );
        Box::pin(async move {
            let ops_filter = [
                TrackerStatus::PinQueued,
                TrackerStatus::UnpinQueued,
                TrackerStatus::Pinning,
                TrackerStatus::Unpinning,
                TrackerStatus::PinError,
                TrackerStatus::UnpinError,
            ]
            .iter()
            .fold(0u32, |f, s| f | *s as u32);
            let infos = collect(&t, ops_filter).await;
            let (mut pin_q, mut unpin_q, mut prio_q, mut running, mut failed) = (0, 0, 0, 0, 0);
            for i in &infos {
                match TrackerStatus::try_from(i.status).unwrap_or(TrackerStatus::Undefined) {
                    TrackerStatus::PinQueued if i.priority_pin => prio_q += 1,
                    TrackerStatus::PinQueued => pin_q += 1,
                    TrackerStatus::UnpinQueued => unpin_q += 1,
                    TrackerStatus::Pinning | TrackerStatus::Unpinning => running += 1,
                    TrackerStatus::PinError | TrackerStatus::UnpinError => failed += 1,
                    _ => {}
                }
            }
            for (q, n) in [("pin", pin_q), ("unpin", unpin_q), ("priority", prio_q)] {
                queued
                    .get_or_create(&vec![("queue".into(), q.into())])
                    .set(n);
            }
            in_progress.set(running);
            errors.set(failed);
            let due = last_pinned
                .lock()
                .unwrap()
                .is_none_or(|at| at.elapsed() >= PINNED_CACHE);
            if due && t.is_synced() {
                let infos = collect(&t, TrackerStatus::Pinned as u32).await;
                let n = infos
                    .iter()
                    .filter(|i| i.status == TrackerStatus::Pinned as i32)
                    .count();
                pinned.set(n as i64);
                *last_pinned.lock().unwrap() = Some(Instant::now());
            }
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

/// Records one Kubo RPC request (no-op when metrics are off).
pub fn ipfs_request<T, E: std::fmt::Debug>(endpoint: &str, res: &Result<T, E>, started: Instant) {
    let Some(m) = IPFS.get() else {
        return;
    };
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
    m.total
        .get_or_create(&vec![
            ("endpoint".into(), endpoint.into()),
            ("result".into(), result),
        ])
        .inc();
    m.duration
        .get_or_create(&vec![("endpoint".into(), endpoint.into())])
        .observe(started.elapsed().as_secs_f64());
}

//! Follows `Consensus.Watch` from the tracker's last applied index and feeds every change
//! to the tracker; reconnects with capped exponential backoff when consensus is down or
//! restarts. A sync interrupted by a broken stream is dropped and taken again.

use std::time::Duration;

use ipfs_cluster_proto::{
    client::ConsensusClient,
    consensus::v1::{state_change::Kind, StateChange, WatchRequest},
};

use crate::tracker::Tracker;

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Applies one change. Unknown kinds are logged and skipped.
pub fn apply(tracker: &Tracker, change: StateChange) {
    match Kind::try_from(change.kind) {
        Ok(Kind::Pin) => match change.pin {
            Some(p) => tracker.apply_pin(change.index, p),
            None => tracing::warn!(
                index = change.index,
                "PIN change without a pin on the watch stream; ignored"
            ),
        },
        Ok(Kind::Unpin) => match change.pin {
            Some(p) => tracker.apply_unpin(change.index, p),
            None => tracing::warn!(
                index = change.index,
                "UNPIN change without a pin on the watch stream; ignored"
            ),
        },
        Ok(Kind::SyncBegin) => tracker.begin_sync(),
        Ok(Kind::SyncEnd) => tracker.end_sync(change.index),
        _ => tracing::warn!(
            kind = change.kind,
            "unknown change kind on the watch stream; ignored"
        ),
    }
}

/// Runs until the tracker shuts down.
pub async fn follow(tracker: Tracker, mut client: ConsensusClient) {
    let shutdown = tracker.inner.shutdown.clone();
    let mut backoff = MIN_BACKOFF;
    let mut failures = 0u32;
    loop {
        let from = tracker.last_index();
        let res = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = client.watch(WatchRequest { from_index: from }) => r,
        };
        match res {
            Ok(resp) => {
                let mut stream = resp.into_inner();
                if failures > 0 {
                    tracing::info!(from, "following the consensus watch stream again");
                }
                loop {
                    let msg = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        m = stream.message() => m,
                    };
                    match msg {
                        Ok(Some(change)) => {
                            backoff = MIN_BACKOFF;
                            failures = 0;
                            apply(&tracker, change);
                        }
                        Ok(None) => {
                            tracing::warn!("consensus watch stream ended; reconnecting");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(
                                "consensus watch stream broke: {}; reconnecting",
                                e.message()
                            );
                            break;
                        }
                    }
                }
                tracker.abort_sync();
            }
            Err(e) => {
                failures += 1;
                if failures % 10 == 1 {
                    tracing::warn!(
                        "cannot follow the consensus watch stream (try {failures}): {} ({:?}); is ipfs-cluster-consensus running?",
                        e.message(),
                        e.code()
                    );
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

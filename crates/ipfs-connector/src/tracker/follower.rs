//! Follows `Consensus.Watch` from the tracker's last applied index and feeds every change
//! to the tracker; reconnects with capped exponential backoff when consensus is down or
//! restarts. A sync interrupted by a broken stream is dropped and taken again. Changes
//! already received are applied in batches (up to `MAX_BATCH`, one store transaction per
//! run of pin changes), so a big import or a full sync is not one fsync per pin.

use std::time::Duration;

use ipfs_cluster_proto::{
    client::ConsensusClient,
    consensus::v1::{state_change::Kind, StateChange, WatchRequest},
};

use futures::FutureExt;

use super::{store::Change, StateEvent, Tracker};

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Most changes applied in one batch.
pub const MAX_BATCH: usize = 4096;

/// Converts one change of the stream. Unknown kinds and malformed changes are logged and
/// skipped.
pub fn event(change: StateChange) -> Option<StateEvent> {
    match Kind::try_from(change.kind) {
        Ok(Kind::Pin) => match change.pin {
            Some(p) => Some(StateEvent::Change(Change::Pin(change.index, p))),
            None => {
                tracing::warn!(
                    index = change.index,
                    "PIN change without a pin on the watch stream; ignored"
                );
                None
            }
        },
        Ok(Kind::Unpin) => match change.pin {
            Some(p) => Some(StateEvent::Change(Change::Unpin(change.index, p))),
            None => {
                tracing::warn!(
                    index = change.index,
                    "UNPIN change without a pin on the watch stream; ignored"
                );
                None
            }
        },
        Ok(Kind::SyncBegin) => Some(StateEvent::SyncBegin),
        Ok(Kind::SyncEnd) => Some(StateEvent::SyncEnd(change.index)),
        _ => {
            tracing::warn!(
                kind = change.kind,
                "unknown change kind on the watch stream; ignored"
            );
            None
        }
    }
}

/// The `from_index` to resume the watch from, given the last index the tracker stored.
///
/// One raft entry can carry many changes with the same index (a group commit, an import),
/// and a batch may end in the middle of one. Consensus delivers changes *after*
/// `from_index`, so resuming from the stored index would skip the rest of that entry;
/// resuming one index earlier replays the last entry whole. Re-applying a change is
/// harmless (the store keeps changes with an index equal to the stored one; pinning a
/// pinned CID and unpinning an unpinned one both succeed).
pub fn resume_from(last_index: u64) -> u64 {
    last_index.saturating_sub(1)
}

/// Runs until the tracker shuts down.
pub async fn follow(tracker: Tracker, mut client: ConsensusClient) {
    let shutdown = tracker.inner.shutdown.clone();
    let mut backoff = MIN_BACKOFF;
    let mut failures = 0u32;
    loop {
        let from = resume_from(tracker.last_index());
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
                'stream: loop {
                    let msg = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        m = stream.message() => m,
                    };
                    let mut batch = Vec::new();
                    let mut next = Some(msg);
                    // Take what has already arrived (message() is cancel-safe).
                    while let Some(msg) = next.take() {
                        match msg {
                            Ok(Some(change)) => {
                                backoff = MIN_BACKOFF;
                                failures = 0;
                                batch.extend(event(change));
                                if batch.len() < MAX_BATCH {
                                    next = stream.message().now_or_never();
                                }
                            }
                            Ok(None) => {
                                tracing::warn!("consensus watch stream ended; reconnecting");
                                tracker.apply_changes(batch).await;
                                break 'stream;
                            }
                            Err(e) => {
                                tracing::warn!(
                                    "consensus watch stream broke: {}; reconnecting",
                                    e.message()
                                );
                                tracker.apply_changes(batch).await;
                                break 'stream;
                            }
                        }
                    }
                    tracker.apply_changes(batch).await;
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

#[cfg(test)]
mod tests {
    use super::resume_from;

    #[test]
    fn resumes_one_entry_early_so_a_split_entry_is_replayed_whole() {
        assert_eq!(resume_from(0), 0);
        assert_eq!(resume_from(1), 0);
        assert_eq!(resume_from(1148), 1147);
    }
}

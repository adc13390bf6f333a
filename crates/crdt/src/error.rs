//! Errors of the crdt store. Each message names the thing that failed and what to do.

use std::time::Duration;

/// Everything the crdt store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CrdtError {
    /// The embedded database (redb) failed.
    #[error("crdt store database {op} failed: {detail} (check the disk and the permissions of the crdt store file; if it is corrupt, restore a `state export` into a fresh store)")]
    Db { op: &'static str, detail: String },

    /// A key does not have the datastore-key shape go-ds-crdt stores.
    #[error("invalid crdt key {key:?}: {reason} (keys are datastore keys such as \"/CIQ...\"; use `pin_key` for pins)")]
    InvalidKey { key: String, reason: String },

    /// A block is not a valid go-ds-crdt delta node.
    #[error("crdt node {cid} is invalid: {reason} (the peer that served it is buggy or hostile; it is ignored)")]
    BadNode { cid: String, reason: String },

    /// A broadcast payload could not be decoded.
    #[error("crdt broadcast could not be decoded: {0} (the sender does not speak go-ds-crdt's CRDTBroadcast; check that it runs a compatible version)")]
    BadBroadcast(String),

    /// A missing node could not be fetched from peers.
    #[error("could not fetch crdt node {cid} after {attempts} attempt(s) (timeout {timeout:?} each): {last} (the peers that have it may be offline; it is retried on the next broadcast or repair)")]
    Fetch {
        cid: String,
        attempts: u32,
        timeout: Duration,
        last: String,
    },

    /// The batching queue is full.
    #[error("crdt batching max_queue_size ({max_queue_size}) reached: too many operations are waiting to be batched (raise consensus.crdt.batching.max_queue_size, or lower max_batch_age so batches commit sooner)")]
    QueueFull { max_queue_size: usize },

    /// The store or its batcher is shutting down.
    #[error("the crdt store is shutting down: the operation was not applied (retry on the restarted service)")]
    ShuttingDown,

    /// A node reachable from the heads is not in the local store.
    #[error("crdt node {cid} is not in the local store (it is fetched from peers while the peer runs; start the peer, or run `state crdt mark-dirty` so the next start repairs the DAG)")]
    MissingNode { cid: String },

    /// Writing out (e.g. a DOT file) failed.
    #[error("writing the crdt output failed: {0} (check the output file's folder and free space)")]
    Io(String),

    /// A configuration value is out of range.
    #[error("invalid crdt configuration: {0}")]
    Config(String),

    /// A test-only simulated crash in the middle of applying a branch.
    #[cfg(test)]
    #[error("simulated crash while applying a branch")]
    SimulatedCrash,
}

/// Maps any redb error into [`CrdtError::Db`] for the given operation.
pub(crate) fn dberr<E: std::fmt::Display>(op: &'static str) -> impl Fn(E) -> CrdtError {
    move |e: E| CrdtError::Db {
        op,
        detail: e.to_string(),
    }
}

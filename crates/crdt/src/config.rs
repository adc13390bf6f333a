//! Configuration, with upstream's defaults (IPFS Cluster v1.1.6 `consensus.crdt`, and the
//! go-ds-crdt options cluster sets).

use std::time::Duration;

use crate::error::CrdtError;
use crate::trust::TrustedPeers;

/// Upstream's `consensus.crdt.batching`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchingConfig {
    /// Commit a batch when it holds this many operations (`max_batch_size`; 0 disables).
    pub max_batch_size: usize,
    /// Commit a batch when its oldest operation is this old (`max_batch_age`; 0 disables).
    pub max_batch_age: Duration,
    /// Operations that may wait to be batched before `submit` refuses (`max_queue_size`).
    pub max_queue_size: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 0,
            max_batch_age: Duration::ZERO,
            max_queue_size: 50_000,
        }
    }
}

impl BatchingConfig {
    /// Batching is on only when both the size and the age are set, as upstream.
    pub fn enabled(&self) -> bool {
        self.max_batch_size > 0 && !self.max_batch_age.is_zero()
    }
}

/// Options of a [`crate::CrdtStore`].
#[derive(Debug, Clone)]
pub struct CrdtConfig {
    /// `cluster_name`: names the gossip topic (see [`crate::topic_name`]).
    pub cluster_name: String,
    /// Whose broadcasts are applied (`trusted_peers`; default `"*"`, all).
    pub trusted_peers: TrustedPeers,
    /// How often the caller should call [`crate::CrdtStore::rebroadcast_tick`]
    /// (`rebroadcast_interval`, default 1 min; the caller adds ±30 % jitter with
    /// [`crate::CrdtStore::next_rebroadcast_delay`]).
    pub rebroadcast_interval: Duration,
    /// How often the caller should call [`crate::CrdtStore::repair`] when the store is dirty
    /// (`repair_interval`, default 1 h; 0 disables periodic repair).
    pub repair_interval: Duration,
    /// Timeout of one fetch of a missing node (go-ds-crdt's `DAGSyncerTimeout`, which cluster
    /// sets to 2 min).
    pub fetch_timeout: Duration,
    /// Attempts per missing node before the branch is given up until the next broadcast.
    pub fetch_attempts: u32,
    /// A batch whose encoded delta grows past this many bytes is committed at once
    /// (go-ds-crdt's `MaxBatchDeltaSize`, 1 MiB).
    pub max_batch_delta_size: usize,
    /// Upstream's `batching` section.
    pub batching: BatchingConfig,
    /// Capacity of the change-event channel ([`crate::CrdtStore::subscribe`]).
    pub event_capacity: usize,
}

impl Default for CrdtConfig {
    fn default() -> Self {
        Self {
            cluster_name: "ipfs-cluster".into(),
            trusted_peers: TrustedPeers::all(),
            rebroadcast_interval: Duration::from_secs(60),
            repair_interval: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(120),
            fetch_attempts: 3,
            max_batch_delta_size: 1024 * 1024,
            batching: BatchingConfig::default(),
            event_capacity: 4096,
        }
    }
}

impl CrdtConfig {
    /// Checks the values that would make the store misbehave.
    pub fn validate(&self) -> Result<(), CrdtError> {
        if self.rebroadcast_interval.is_zero() {
            return Err(CrdtError::Config(
                "rebroadcast_interval must be above zero (upstream's default is 1m0s)".into(),
            ));
        }
        if self.fetch_timeout.is_zero() || self.fetch_attempts == 0 {
            return Err(CrdtError::Config(
                "fetch_timeout and fetch_attempts must be above zero".into(),
            ));
        }
        if self.max_batch_delta_size == 0 || self.event_capacity == 0 {
            return Err(CrdtError::Config(
                "max_batch_delta_size and event_capacity must be above zero".into(),
            ));
        }
        if self.batching.max_queue_size == 0 {
            return Err(CrdtError::Config(
                "batching.max_queue_size must be above zero (upstream's default is 50000)".into(),
            ));
        }
        Ok(())
    }
}

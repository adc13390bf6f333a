//! Fetching missing delta nodes from peers.

use std::future::Future;

use cid::Cid;

/// Why a fetch failed (the transport's own words).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

/// Fetches the raw bytes of a delta node that this replica does not have. The consensus
/// service implements it over the peer transport (ask the broadcaster first, then other
/// peers). The store puts its own timeout and retries around each call
/// ([`crate::CrdtConfig::fetch_timeout`], [`crate::CrdtConfig::fetch_attempts`]) and checks
/// that the bytes hash to the CID, so an implementation may return anything a peer sent.
pub trait NodeFetcher: Send + Sync {
    /// Returns the block named by `cid`.
    fn fetch(&self, cid: Cid) -> impl Future<Output = Result<Vec<u8>, FetchError>> + Send;
}

/// A fetcher that never finds anything: for a replica that only applies its own updates,
/// or for a repair that must not touch the network.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFetch;

impl NodeFetcher for NoFetch {
    async fn fetch(&self, cid: Cid) -> Result<Vec<u8>, FetchError> {
        Err(FetchError(format!(
            "{cid} is not stored locally and fetching is disabled"
        )))
    }
}

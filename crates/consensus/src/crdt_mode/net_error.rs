//! Why the crdt mode's traffic with other peers failed: a broadcast that did not go out, a
//! block or heads fetch that got no usable answer. A module of its own, below both the
//! node (which publishes through a `Broadcaster`) and `net` (which implements publishing
//! and fetching on the transport), so neither has to reach into the other for it.

/// Why a crdt broadcast did not go out or a block or heads fetch failed. Logged, or
/// joined into the `FetchError` the crdt store retries on.
#[derive(Debug, thiserror::Error)]
pub enum CrdtNetError {
    /// The local transport refused or did not answer `Publish`.
    #[error("transport Publish: {0}")]
    Publish(String),
    /// The peer call failed or the peer answered an error (the transport's words).
    #[error("peer {peer}: {message}")]
    Call { peer: String, message: String },
    #[error("peer {peer}: undecodable {method} answer: {error}")]
    Undecodable {
        peer: String,
        method: &'static str,
        #[source]
        error: prost::DecodeError,
    },
    #[error("peer {peer}: CrdtHeads named {head:?}, not a CID: {error}")]
    BadHead {
        peer: String,
        head: String,
        #[source]
        error: cid::Error,
    },
    /// The transport's `BitswapGet` found no connected peer with the block.
    #[error("bitswap: {0}")]
    Bitswap(String),
}

//! Who made a call that a service receives on its internal gRPC endpoint.
//!
//! The transport is the only door from other peers into a peer's services. When it
//! forwards an inbound peer call to a local service it sets `x-ipfs-cluster-peer` to the
//! caller's libp2p peer id, as verified by the noise handshake of that connection (the
//! remote cannot choose it: it is the id of the key that signed the handshake). The
//! transport builds every forwarded request from scratch, so nothing a caller sends
//! travels into this header, and local dispatch (`Transport.Call` for our own id) never
//! sets it.
//!
//! A call without the header comes from a local process holding the internal token, i.e.
//! the operator or another service of this peer: it is trusted as such. A token holder can
//! set the header itself, but that only makes its call be judged as a remote peer's
//! (it already controls this peer through the token), so the header gives nobody more than
//! they already have. Services decide on [`Caller`]: consensus accepts raft traffic and
//! forwarded writes only from members, `Join` only for the caller's own id, and so on.

use tonic::metadata::MetadataMap;

/// The metadata key the transport sets on every inbound peer call it forwards.
pub const PEER_HEADER: &str = "x-ipfs-cluster-peer";

/// The origin of a call on a service's internal endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A local process with the internal token (another service of this peer, the
    /// launcher, the operator with grpcurl).
    Local,
    /// Another peer, through the transport: its verified libp2p peer id.
    Peer(String),
}

impl Caller {
    /// Reads the caller from a request's metadata. A header that is present but not
    /// valid ASCII or empty is treated as a remote caller with no usable id (refused by
    /// any identity check), never as a local one.
    pub fn from_metadata(md: &MetadataMap) -> Self {
        match md.get(PEER_HEADER) {
            None => Caller::Local,
            Some(v) => Caller::Peer(v.to_str().unwrap_or_default().to_string()),
        }
    }

    /// The remote peer id, or `None` for a local caller.
    pub fn peer(&self) -> Option<&str> {
        match self {
            Caller::Local => None,
            Caller::Peer(p) => Some(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_decides() {
        let mut md = MetadataMap::new();
        assert_eq!(Caller::from_metadata(&md), Caller::Local);
        md.insert(PEER_HEADER, "12D3KooWabc".parse().unwrap());
        assert_eq!(Caller::from_metadata(&md).peer(), Some("12D3KooWabc"));
        let mut bad = MetadataMap::new();
        bad.insert(PEER_HEADER, "".parse().unwrap());
        assert_eq!(Caller::from_metadata(&bad), Caller::Peer(String::new()));
    }
}

//! Raft node ids are u64 while cluster peers are libp2p peer ids. The mapping must be the
//! same on every peer and across versions, so it is a fixed hash (FNV-1a 64 of the peer id
//! string), never std's `DefaultHasher`. The peer id itself travels in the raft `Node`, so
//! members are always listed by peer id.

use serde::{Deserialize, Serialize};

pub type NodeId = u64;

/// What raft keeps about a member: its libp2p peer id and known addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    pub peer_id: String,
    #[serde(default)]
    pub addresses: Vec<String>,
}

impl std::fmt::Display for PeerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.peer_id)
    }
}

/// The raft node id of a peer id (FNV-1a 64 over the UTF-8 bytes of the peer id string).
pub fn node_id(peer_id: &str) -> NodeId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in peer_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_distinct() {
        // Fixed value: changing the hash would split existing clusters.
        assert_eq!(node_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(node_id("a"), 0xaf63_dc4c_8601_ec8c);
        let a = node_id("12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo");
        let b = node_id("12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xp");
        assert_ne!(a, b);
        assert_eq!(
            a,
            node_id("12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo")
        );
    }
}

//! Trusted peers: whose broadcasts are applied.

use std::collections::HashSet;

/// The set of peers whose broadcasts this store applies (upstream's `trusted_peers`).
/// `"*"` in the list trusts every peer (upstream's `TrustAll`, the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedPeers {
    all: bool,
    peers: HashSet<String>,
}

impl TrustedPeers {
    /// Trusts every peer.
    pub fn all() -> Self {
        Self {
            all: true,
            peers: HashSet::new(),
        }
    }

    /// Builds the set from upstream's `trusted_peers` list (peer ids as strings; `"*"` trusts
    /// all). An empty list trusts nobody but the local peer (which never needs trust: its own
    /// updates are applied when written).
    pub fn from_list<I, S>(list: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut t = Self::default();
        for p in list {
            let p = p.as_ref().trim();
            if p == "*" {
                t.all = true;
            } else if !p.is_empty() {
                t.peers.insert(p.to_string());
            }
        }
        t
    }

    /// Whether every peer is trusted.
    pub fn trusts_all(&self) -> bool {
        self.all
    }

    /// Whether broadcasts from `peer` are applied.
    pub fn is_trusted(&self, peer: &str) -> bool {
        self.all || self.peers.contains(peer)
    }

    /// Adds a peer (upstream's `Trust`).
    pub fn trust(&mut self, peer: &str) {
        self.peers.insert(peer.to_string());
    }

    /// Removes a peer (upstream's `Distrust`); has no effect on `"*"`.
    pub fn distrust(&mut self, peer: &str) {
        self.peers.remove(peer);
    }
}

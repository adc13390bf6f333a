//! The allow-list for peer calls that arrive from OTHER peers (upstream rpc_policy.go,
//! adapted to our services). One table; a method missing from it is denied. Calls from
//! the local services never pass through here (they carry the internal token instead).

use ipfs_cluster_proto::names::{CONSENSUS, GATEWAY, IPFS_CONNECTOR, TRANSPORT};

/// Who may call a method from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any peer that could connect, i.e. holds the cluster secret.
    Open,
    /// Only current consensus members (see `trust.rs`).
    Trusted,
    /// Never from another peer.
    Closed,
}

use Access::{Closed, Open, Trusted};

/// (service, method, access). Keep in the order of the proto files; the test below
/// checks that every rpc of every service appears here exactly once.
pub const POLICY: &[(&str, &str, Access)] = &[
    // Transport: peer management and calls are local-only; Id/Peers help remote diagnostics.
    (TRANSPORT, "Id", Open),
    (TRANSPORT, "Peers", Trusted),
    (TRANSPORT, "Dial", Closed),
    (TRANSPORT, "Disconnect", Closed),
    (TRANSPORT, "Call", Closed),
    (TRANSPORT, "CallMany", Closed),
    (TRANSPORT, "CallStream", Closed),
    (TRANSPORT, "Publish", Closed),
    (TRANSPORT, "Subscribe", Closed),
    (TRANSPORT, "Bandwidth", Closed),
    (TRANSPORT, "BitswapGet", Closed),
    // Consensus: followers forward writes and membership changes to the leader; Raft
    // traffic flows between members; Join comes from a peer that is not a member yet.
    (CONSENSUS, "Pin", Trusted),
    (CONSENSUS, "Unpin", Trusted),
    (CONSENSUS, "Get", Closed),
    (CONSENSUS, "List", Closed),
    (CONSENSUS, "Watch", Closed),
    (CONSENSUS, "Members", Trusted),
    // Open: a joiner asks its bootstrap peer who leads before it joins, and then takes
    // PrepareAdd from that leader only. It reveals one member's peer id, which any peer
    // connected to the cluster sees anyway.
    (CONSENSUS, "Leader", Open),
    (CONSENSUS, "Join", Open),
    (CONSENSUS, "RemovePeer", Trusted),
    (CONSENSUS, "Export", Closed),
    (CONSENSUS, "Import", Closed),
    (CONSENSUS, "Raft", Trusted),
    (CONSENSUS, "Stats", Closed),
    // Open, as upstream serves delta nodes with bitswap to any peer on the private network:
    // a crdt peer fetches the nodes a broadcast names from its sender, which may not be a
    // member yet in the fetcher's view (membership is the live `ping` metric, and a new
    // peer's first metric can arrive after its first broadcast), and followers (never
    // members) must fetch too. Read-only, content-addressed (the fetcher checks the hash),
    // and the same data every peer on the gossip topic receives anyway.
    (CONSENSUS, "CrdtBlock", Open),
    // Open for the same reasons: followers pull the heads the gossip topic carries.
    (CONSENSUS, "CrdtHeads", Open),
    // IPFS connector: the fan-outs of status/recover/gc/repo stat/swarm peers, and the
    // allocated peers' block and pin work.
    (IPFS_CONNECTOR, "Status", Trusted),
    (IPFS_CONNECTOR, "StatusAll", Trusted),
    (IPFS_CONNECTOR, "Recover", Trusted),
    (IPFS_CONNECTOR, "RecoverAll", Trusted),
    (IPFS_CONNECTOR, "IpfsId", Trusted),
    (IPFS_CONNECTOR, "SwarmPeers", Trusted),
    (IPFS_CONNECTOR, "RepoStat", Trusted),
    (IPFS_CONNECTOR, "RepoGc", Trusted),
    (IPFS_CONNECTOR, "BlockPut", Trusted),
    (IPFS_CONNECTOR, "BlockPutMany", Trusted),
    (IPFS_CONNECTOR, "Resolve", Closed),
    (IPFS_CONNECTOR, "PinNow", Trusted),
    (IPFS_CONNECTOR, "UnpinNow", Trusted),
    // Gateway: operator info is local; the upstream-style ID is for other peers' GET /peers.
    (GATEWAY, "Info", Closed),
    (GATEWAY, "Id", Open),
    // /libp2p-http streams reach it through the transport's own tunnel, never as a call.
    (GATEWAY, "Libp2pHttp", Closed),
];

/// The access level of a method; unknown methods are `Closed`.
pub fn access(service: &str, method: &str) -> Access {
    POLICY
        .iter()
        .find(|(s, m, _)| *s == service && *m == method)
        .map(|(_, _, a)| *a)
        .unwrap_or(Closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const PROTOS: &[&str] = &[
        include_str!("../../../proto/ipfscluster/transport/v1/transport.proto"),
        include_str!("../../../proto/ipfscluster/consensus/v1/consensus.proto"),
        include_str!("../../../proto/ipfscluster/ipfsconnector/v1/ipfsconnector.proto"),
        include_str!("../../../proto/ipfscluster/gateway/v1/gateway.proto"),
    ];

    /// (package.Service, Method) of every rpc in a proto file.
    fn rpcs(proto: &str) -> Vec<(String, String)> {
        let mut package = String::new();
        let mut service = String::new();
        let mut out = Vec::new();
        for line in proto.lines().map(str::trim) {
            if let Some(p) = line.strip_prefix("package ") {
                package = p.trim_end_matches(';').trim().to_string();
            } else if let Some(s) = line.strip_prefix("service ") {
                service = s.split_whitespace().next().unwrap().to_string();
            } else if let Some(r) = line.strip_prefix("rpc ") {
                let name = r.split('(').next().unwrap().trim().to_string();
                out.push((format!("{package}.{service}"), name));
            }
        }
        out
    }

    #[test]
    fn every_rpc_of_every_service_is_in_the_table_exactly_once() {
        let all: Vec<_> = PROTOS.iter().flat_map(|p| rpcs(p)).collect();
        assert!(
            all.len() > 30,
            "proto parsing found only {} rpcs",
            all.len()
        );
        for (s, m) in &all {
            let n = POLICY
                .iter()
                .filter(|(ps, pm, _)| ps == s && pm == m)
                .count();
            assert_eq!(n, 1, "{s}/{m} appears {n} times in POLICY");
        }
        let known: HashSet<_> = all.iter().map(|(s, m)| (s.as_str(), m.as_str())).collect();
        for (s, m, _) in POLICY {
            assert!(
                known.contains(&(*s, *m)),
                "POLICY lists {s}/{m}, which no proto defines"
            );
        }
    }

    #[test]
    fn required_reachability() {
        assert_eq!(access(CONSENSUS, "Join"), Open);
        for m in ["Raft", "Pin", "Unpin"] {
            assert_eq!(access(CONSENSUS, m), Trusted);
        }
        for m in [
            "Status",
            "StatusAll",
            "Recover",
            "RecoverAll",
            "IpfsId",
            "RepoGc",
            "RepoStat",
            "SwarmPeers",
            "BlockPut",
            "BlockPutMany",
            "PinNow",
            "UnpinNow",
        ] {
            assert_eq!(access(IPFS_CONNECTOR, m), Trusted, "{m}");
        }
        assert_ne!(access(TRANSPORT, "Id"), Closed);
        assert_ne!(access(TRANSPORT, "Peers"), Closed);
        assert_eq!(access(TRANSPORT, "Call"), Closed);
        assert_eq!(access("x.Y", "Z"), Closed);
    }
}

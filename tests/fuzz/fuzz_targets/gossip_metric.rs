//! Gossip metric messages from other peers: each message on the metrics topic goes
//! through the transport's real admission check (`service::admit_metric`: size limit,
//! protobuf `Metric`, the metric must name its publisher, the publisher must be this peer
//! or a member), then, when admitted, into the consensus allocator's metric store and the
//! gateway's (`/monitor/metrics`), and finally the balanced allocator runs on what was
//! stored; the gateway's `ping` metric JSON and expiry alerts are read back. Admitted
//! metrics always name their sender; allocations are distinct members.
//!
//! Input: a sequence of messages `[sender: u8][len: u8][len bytes]`, then 2 bytes of
//! replication factors. Sender bit 0x80 rewrites a decodable metric's `peer` to the
//! sender (so the fuzzer reaches the admitted path); the low bits pick the publisher:
//! this peer, a member, or a stranger.
#![no_main]

use std::{collections::HashSet, str::FromStr, sync::Arc, time::Duration};

use futures::executor::block_on;
use ipfs_cluster_consensus::{
    allocate::{allocate, AllocInput, PeerMetricStore as AllocMetrics},
    pinning::check_replication,
};
use ipfs_cluster_gateway::backend::peer_metrics::PeerMetricStore as GatewayMetrics;
use ipfs_cluster_proto::{transport::v1::BroadcastMessage, types::v1::Metric, METRICS_TOPIC};
use ipfs_cluster_transport::{
    service::{admit_metric, MAX_METRIC_BYTES},
    trust::{Members, Trust},
};
use libfuzzer_sys::fuzz_target;
use libp2p::PeerId;
use prost::Message;

const PEERS: [&str; 3] = [
    "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA", // this peer
    "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK", // a member
    "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",       // a stranger
];

fuzz_target!(|data: &[u8]| {
    let local = PeerId::from_str(PEERS[0]).unwrap();
    let member = PeerId::from_str(PEERS[1]).unwrap();
    let trust = Trust::new(
        Members::Fixed(Arc::new(HashSet::from([local, member]))),
        local,
        Duration::from_secs(1),
    );
    let alloc_store = AllocMetrics::default();
    let gw_store = GatewayMetrics::default();
    let members: Vec<String> = PEERS[..2].iter().map(|s| s.to_string()).collect();

    let mut rest = data;
    while rest.len() >= 2 {
        let (sel, len) = (rest[0], rest[1] as usize * 32);
        let body = &rest[2..];
        let take = len.min(body.len());
        let (mut bytes, tail) = (body[..take].to_vec(), &body[take..]);
        rest = tail;
        let from = PEERS[(sel & 0x7f) as usize % PEERS.len()].to_string();
        if sel & 0x80 != 0 {
            if let Ok(mut m) = Metric::decode(bytes.as_slice()) {
                m.peer = from.clone();
                bytes = m.encode_to_vec();
            }
        }
        let msg = BroadcastMessage {
            topic: METRICS_TOPIC.to_string(),
            from: from.clone(),
            data: bytes,
        };
        match block_on(admit_metric(&trust, &local, &msg)) {
            Ok(()) => {
                assert!(msg.data.len() <= MAX_METRIC_BYTES);
                assert_ne!(from, PEERS[2], "a stranger's metric was admitted");
                let m = Metric::decode(msg.data.as_slice()).expect("admitted metrics decode");
                assert_eq!(m.peer, from, "an admitted metric names its sender");
                alloc_store.add(m.clone());
                gw_store.add(m);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }

    // What the gateway and the leader read back from the stored metrics: the peer name
    // and IPFS identity of `ping` metrics (JSON in the value), expiry alerts.
    for p in PEERS {
        let _ = gw_store.ping_info(p);
    }
    gw_store.check(i64::MAX);
    let _ = gw_store.alerts();
    for name in gw_store.names() {
        let _ = alloc_store.expired(&name, &members, i64::MAX);
    }

    // Allocation over what the gossip left, as the leader does for a new pin.
    let (rmin, rmax) = match rest {
        // 0x7f stands for i32::MAX (a pin may ask for that many copies).
        [a, b] => {
            let f = |x: u8| {
                if x == 0x7f {
                    i32::MAX
                } else {
                    i32::from(x as i8)
                }
            };
            (f(*a), f(*b))
        }
        _ => (1, 2),
    };
    if check_replication(rmin, rmax).is_err() {
        return;
    }
    let names = gw_store.names();
    for by in [names.clone(), names.iter().rev().cloned().collect()] {
        let input = AllocInput {
            existing: None,
            rmin,
            rmax,
            blacklist: &[],
            priority: &[],
            members: &members,
            allocate_by: &by,
        };
        if let Ok(peers) = allocate(&input, &alloc_store, 0) {
            let distinct: HashSet<&String> = peers.iter().collect();
            assert_eq!(
                distinct.len(),
                peers.len(),
                "an allocation lists a peer twice"
            );
            assert!(
                peers.iter().all(|p| members.contains(p)),
                "allocated to a non-member"
            );
        }
        let _ = gw_store.latest(by.first().map(String::as_str).unwrap_or(""), &members);
    }
});

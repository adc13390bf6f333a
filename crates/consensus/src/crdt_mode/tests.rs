//! crdt mode in one process: two nodes whose broadcasts go through channels and whose
//! block fetches read the other node's store.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tonic::Request;

use ipfs_cluster_crdt::{ApplyOutcome, CrdtStore};
use ipfs_cluster_proto::{
    consensus::v1::{
        consensus_server::Consensus, state_change::Kind, CrdtBlockRequest, LeaderRequest,
        ListRequest, MembersRequest, PinRequest, UnpinRequest, WatchRequest,
    },
    types::v1::{Metric, Pin, PinOptions},
};
use tokio_stream::StreamExt;

use super::{
    net::{BlockSource, CrdtNetError, PeerFetcher},
    node::{Broadcaster, CrdtNode, CrdtOptions},
    service::CrdtConsensusService,
};
use crate::pinning::PinDefaults;

struct ChanBroadcaster(mpsc::UnboundedSender<Vec<u8>>);

impl Broadcaster for ChanBroadcaster {
    fn publish(&self, data: Vec<u8>) -> BoxFuture<'static, Result<(), CrdtNetError>> {
        let _ = self.0.send(data);
        Box::pin(async { Ok(()) })
    }
}

/// Serves blocks from the stores of the named peers.
#[derive(Default, Clone)]
struct Stores(Arc<Mutex<HashMap<String, CrdtStore>>>);

impl BlockSource for Stores {
    fn block(&self, peer: &str, cid: &str) -> BoxFuture<'static, Result<Vec<u8>, CrdtNetError>> {
        let s = self.0.lock().unwrap().get(peer).cloned();
        let cid: cid::Cid = cid.parse().unwrap();
        let fail = failure(peer);
        Box::pin(async move {
            s.ok_or_else(|| fail("unknown peer"))?
                .get_block(&cid)
                .map_err(|e| fail(&e.to_string()))?
                .ok_or_else(|| fail("not found"))
        })
    }

    fn heads(&self, peer: &str) -> BoxFuture<'static, Result<Vec<cid::Cid>, CrdtNetError>> {
        let s = self.0.lock().unwrap().get(peer).cloned();
        let fail = failure(peer);
        Box::pin(async move {
            Ok(s.ok_or_else(|| fail("unknown peer"))?
                .heads()
                .map_err(|e| fail(&e.to_string()))?
                .into_iter()
                .map(|(c, _)| c)
                .collect())
        })
    }
}

/// What the transport's peer call would answer when `peer` cannot serve a block.
fn failure(peer: &str) -> impl Fn(&str) -> CrdtNetError {
    let peer = peer.to_string();
    move |message| CrdtNetError::Call {
        peer: peer.clone(),
        message: message.to_string(),
    }
}

fn cid_n(i: u32) -> String {
    let mut d = [0u8; 32];
    d[..4].copy_from_slice(&i.to_be_bytes());
    let mh = cid::multihash::Multihash::<64>::wrap(0x12, &d).unwrap();
    cid::Cid::new_v1(0x55, mh).to_string()
}

fn metric(peer: &str, name: &str, value: &str) -> Metric {
    Metric {
        name: name.into(),
        peer: peer.into(),
        value: value.into(),
        weight: value.parse().unwrap_or(0),
        expire: crate::allocate::now_nanos() + 60_000_000_000,
        valid: true,
        ..Default::default()
    }
}

struct TestNode {
    node: Arc<CrdtNode>,
    out: mpsc::UnboundedReceiver<Vec<u8>>,
    _dir: tempfile::TempDir,
}

fn start(id: &str, trusted: Option<Vec<String>>, stores: &Stores) -> TestNode {
    start_with(id, trusted, stores, Default::default())
}

fn start_with(
    id: &str,
    trusted: Option<Vec<String>>,
    stores: &Stores,
    batching: ipfs_cluster_crdt::BatchingConfig,
) -> TestNode {
    start_opts(id, trusted, stores, batching, |_| {})
}

fn start_opts(
    id: &str,
    trusted: Option<Vec<String>>,
    stores: &Stores,
    batching: ipfs_cluster_crdt::BatchingConfig,
    edit: impl FnOnce(&mut CrdtOptions),
) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ipfs_cluster_crdt::CrdtConfig {
        batching,
        trusted_peers: match &trusted {
            None => ipfs_cluster_crdt::TrustedPeers::all(),
            Some(t) => ipfs_cluster_crdt::TrustedPeers::from_list(t),
        },
        fetch_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let store = CrdtStore::open(&dir.path().join("crdt.redb"), cfg).unwrap();
    stores.0.lock().unwrap().insert(id.into(), store.clone());
    let (tx, out) = mpsc::unbounded_channel();
    let mut opts = CrdtOptions {
        peer_id: id.into(),
        defaults: PinDefaults {
            replication_min: -1,
            replication_max: -1,
        },
        allocate_by: vec!["freespace".into()],
        peerset_metric: "ping".into(),
        follower_mode: false,
        pin_only_on_trusted_peers: false,
        pin_only_on_untrusted_peers: false,
        trusted_peers: trusted,
        ..Default::default()
    };
    edit(&mut opts);
    let node = CrdtNode::new(opts, store, Arc::new(ChanBroadcaster(tx))).unwrap();
    // These tests drive the nodes by hand: no first sync to wait for.
    node.mark_synced("test");
    TestNode {
        node,
        out,
        _dir: dir,
    }
}

async fn deliver(from: &str, msg: &[u8], to: &TestNode, stores: &Stores) -> ApplyOutcome {
    let fetcher = PeerFetcher {
        source: Arc::new(stores.clone()),
        peers: vec![from.to_string()],
    };
    to.node
        .store
        .apply_broadcast(from, msg, &fetcher)
        .await
        .unwrap()
}

fn with_local_peer(pin: Pin) -> Request<PinRequest> {
    Request::new(PinRequest { pin: Some(pin) })
}

fn from_peer<T>(msg: T, peer: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        ipfs_cluster_proto::caller::PEER_HEADER,
        peer.parse().unwrap(),
    );
    r
}

#[tokio::test]
async fn pin_allocates_replicates_and_unpin_propagates() {
    let stores = Stores::default();
    let mut a = start("A", None, &stores);
    let b = start("B", None, &stores);
    for n in [&a, &b] {
        for (p, free) in [("A", "100"), ("B", "50")] {
            n.node.peer_metrics.add(metric(p, "ping", ""));
            n.node.peer_metrics.add(metric(p, "freespace", free));
        }
    }
    let svc_a = CrdtConsensusService::new(a.node.clone(), None);
    let svc_b = CrdtConsensusService::new(b.node.clone(), None);
    let mut watch = svc_b
        .watch(Request::new(WatchRequest { from_index: 0 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().kind,
        Kind::SyncBegin as i32
    );
    let end = watch.next().await.unwrap().unwrap();
    assert_eq!(end.kind, Kind::SyncEnd as i32);

    let cid = cid_n(1);
    let pin = Pin {
        cid: cid.clone(),
        max_depth: -1,
        options: Some(PinOptions {
            replication_factor_min: 1,
            replication_factor_max: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let got = svc_a.pin(with_local_peer(pin)).await.unwrap().into_inner();
    assert_eq!(got.pin.unwrap().allocations, vec!["A".to_string()]);
    let msg = a.out.recv().await.unwrap();
    assert!(matches!(
        deliver("A", &msg, &b, &stores).await,
        ApplyOutcome::Applied { merged: 1, .. }
    ));
    let on_b = b.node.get(&cid).await.unwrap().unwrap();
    assert_eq!(on_b.allocations, vec!["A".to_string()]);
    let ch = watch.next().await.unwrap().unwrap();
    assert_eq!(ch.kind, Kind::Pin as i32);
    assert!(ch.index > end.index);
    assert_eq!(ch.pin.unwrap().cid, cid);

    svc_a
        .unpin(Request::new(UnpinRequest { cid: cid.clone() }))
        .await
        .unwrap();
    let msg = a.out.recv().await.unwrap();
    deliver("A", &msg, &b, &stores).await;
    assert!(b.node.get(&cid).await.unwrap().is_none());
    let ch = watch.next().await.unwrap().unwrap();
    assert_eq!(ch.kind, Kind::Unpin as i32);
    assert_eq!(ch.pin.unwrap().cid, cid);

    // Unpinning what is absent is NOT_FOUND, as raft mode.
    let e = svc_a
        .unpin(Request::new(UnpinRequest { cid: cid.clone() }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // List and CrdtBlock.
    svc_a
        .pin(with_local_peer(Pin {
            cid: cid_n(2),
            max_depth: -1,
            ..Default::default()
        }))
        .await
        .unwrap();
    let listed: Vec<_> = svc_a
        .list(Request::new(ListRequest { type_filter: 0 }))
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(listed.len(), 1);
    let (head, _) = a.node.store.heads().unwrap()[0];
    let blk = svc_a
        .crdt_block(Request::new(CrdtBlockRequest {
            cid: head.to_string(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(blk.data, a.node.store.get_block(&head).unwrap().unwrap());
    let e = svc_b
        .crdt_block(Request::new(CrdtBlockRequest { cid: cid_n(9) }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // Members: the peers with a live ping metric.
    let m = svc_a
        .members(Request::new(MembersRequest {}))
        .await
        .unwrap()
        .into_inner()
        .members;
    let ids: Vec<_> = m.iter().map(|m| m.peer_id.as_str()).collect();
    assert_eq!(ids, vec!["A", "B"]);
}

#[tokio::test]
async fn untrusted_peers_cannot_write() {
    let stores = Stores::default();
    let mut x = start("X", None, &stores);
    let a = start("A", Some(vec!["B".into()]), &stores);
    let svc_a = CrdtConsensusService::new(a.node.clone(), None);
    // A broadcast from an untrusted peer is ignored.
    let svc_x = CrdtConsensusService::new(x.node.clone(), None);
    svc_x
        .pin(with_local_peer(Pin {
            cid: cid_n(3),
            max_depth: -1,
            ..Default::default()
        }))
        .await
        .unwrap();
    let msg = x.out.recv().await.unwrap();
    assert_eq!(
        deliver("X", &msg, &a, &stores).await,
        ApplyOutcome::Untrusted
    );
    assert!(a.node.get(&cid_n(3)).await.unwrap().is_none());
    // A peer call that writes from an untrusted peer is refused; from a trusted one not.
    let pin = Pin {
        cid: cid_n(4),
        max_depth: -1,
        ..Default::default()
    };
    let e = svc_a
        .pin(from_peer(
            PinRequest {
                pin: Some(pin.clone()),
            },
            "X",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(
        e.message().contains("consensus.crdt.trusted_peers"),
        "{}",
        e.message()
    );
    let e = svc_a
        .unpin(from_peer(UnpinRequest { cid: cid_n(4) }, "X"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    svc_a
        .pin(from_peer(PinRequest { pin: Some(pin) }, "B"))
        .await
        .unwrap();
    // Raft-only calls say so.
    let e = svc_a
        .leader(Request::new(LeaderRequest {}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message()
            .starts_with("not available in crdt mode: Leader"),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn watch_indexes_increase() {
    let stores = Stores::default();
    let a = start("A", None, &stores);
    let i1 = a.node.next_index();
    let i2 = a.node.next_index();
    assert!(i2 > i1 && i1 > 1_600_000_000_000_000);
}

#[tokio::test]
async fn batching_commits_several_pins_as_one_delta() {
    let stores = Stores::default();
    let mut a = start_with(
        "A",
        None,
        &stores,
        ipfs_cluster_crdt::BatchingConfig {
            max_batch_size: 3,
            max_batch_age: Duration::from_millis(300),
            max_queue_size: 100,
        },
    );
    let b = start("B", None, &stores);
    let svc = CrdtConsensusService::new(a.node.clone(), None);
    for i in 10..13 {
        svc.pin(with_local_peer(Pin {
            cid: cid_n(i),
            max_depth: -1,
            ..Default::default()
        }))
        .await
        .unwrap();
    }
    // Size reached: one broadcast for three pins.
    let msg = tokio::time::timeout(Duration::from_secs(5), a.out.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        deliver("A", &msg, &b, &stores).await,
        ApplyOutcome::Applied { merged: 1, .. }
    ));
    for i in 10..13 {
        assert!(b.node.get(&cid_n(i)).await.unwrap().is_some());
    }
    // Age reached: a lone unpin is committed after max_batch_age.
    svc.unpin(Request::new(UnpinRequest { cid: cid_n(10) }))
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), a.out.recv())
        .await
        .unwrap()
        .unwrap();
    deliver("A", &msg, &b, &stores).await;
    assert!(b.node.get(&cid_n(10)).await.unwrap().is_none());
    a.node.shutdown().await;
}

#[tokio::test]
async fn import_replaces_the_pinset() {
    let stores = Stores::default();
    let a = start("A", None, &stores);
    for i in 20..23 {
        a.node
            .pin(Pin {
                cid: cid_n(i),
                max_depth: -1,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let pins: Vec<Pin> = [22u32, 23, 24]
        .iter()
        .map(|i| Pin {
            cid: cid_n(*i),
            max_depth: -1,
            r#type: ipfs_cluster_proto::types::v1::PinType::Data as i32,
            ..Default::default()
        })
        .collect();
    assert_eq!(a.node.replace_all(pins, 2).await.unwrap(), 3);
    let (listed, _) = a.node.page(None, 0).await.unwrap();
    let mut got: Vec<String> = listed.into_iter().map(|p| p.cid).collect();
    got.sort();
    let mut want: Vec<String> = [22u32, 23, 24].iter().map(|i| cid_n(*i)).collect();
    want.sort();
    assert_eq!(got, want);
}

/// Followers (untrusted peers with a live ping) are in the peerset and get allocations;
/// `pin_only_on_trusted_peers` / `pin_only_on_untrusted_peers` keep only one side; Members
/// marks only trusted peers as voters (the transport's trusted-call membership).
#[tokio::test]
async fn followers_are_allocation_candidates_and_pin_only_options_filter_them() {
    let stores = Stores::default();
    let trusted = Some(vec!["A".to_string(), "B".to_string()]);
    let pin_one = |n: u32| Pin {
        cid: cid_n(n),
        max_depth: -1,
        options: Some(PinOptions {
            replication_factor_min: 1,
            replication_factor_max: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut nodes = Vec::new();
    for (k, trusted_only, untrusted_only) in [(0, false, false), (1, true, false), (2, false, true)]
    {
        let n = start_opts(
            &format!("A{k}"),
            trusted.clone().map(|mut t| {
                t.push(format!("A{k}"));
                t
            }),
            &stores,
            Default::default(),
            |o| {
                o.pin_only_on_trusted_peers = trusted_only;
                o.pin_only_on_untrusted_peers = untrusted_only;
            },
        );
        for (p, free) in [
            (format!("A{k}"), "100"),
            ("B".into(), "50"),
            ("F".into(), "900"),
        ] {
            n.node.peer_metrics.add(metric(&p, "ping", ""));
            n.node.peer_metrics.add(metric(&p, "freespace", free));
        }
        nodes.push(n);
    }
    let allocated = |i: usize, n: u32| {
        let svc = CrdtConsensusService::new(nodes[i].node.clone(), None);
        async move {
            svc.pin(with_local_peer(pin_one(n)))
                .await
                .unwrap()
                .into_inner()
                .pin
                .unwrap()
                .allocations
        }
    };
    // The follower F has the most free space: chosen by default.
    assert_eq!(allocated(0, 1).await, vec!["F".to_string()]);
    assert_eq!(allocated(1, 2).await, vec!["A1".to_string()]);
    assert_eq!(allocated(2, 3).await, vec!["F".to_string()]);

    let svc = CrdtConsensusService::new(nodes[0].node.clone(), None);
    let m = svc
        .members(Request::new(MembersRequest {}))
        .await
        .unwrap()
        .into_inner()
        .members;
    let voters: Vec<(&str, bool)> = m.iter().map(|m| (m.peer_id.as_str(), m.voter)).collect();
    assert_eq!(voters, vec![("A0", true), ("B", true), ("F", false)]);
}

/// A new trusted peer (empty store, other trusted peers) holds its writes until its first
/// sync is done, then refuses with UNAVAILABLE; a store with heads, a follower and a
/// peer that trusts only itself have nothing to wait for.
#[tokio::test]
async fn a_new_trusted_peer_writes_only_after_its_first_sync() {
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| {
        CrdtStore::open(
            &dir.path().join(name),
            ipfs_cluster_crdt::CrdtConfig::default(),
        )
        .unwrap()
    };
    let opts = |trusted: Vec<&str>, follower: bool| CrdtOptions {
        peer_id: "A".into(),
        defaults: PinDefaults {
            replication_min: -1,
            replication_max: -1,
        },
        allocate_by: vec!["freespace".into()],
        peerset_metric: "ping".into(),
        follower_mode: follower,
        pin_only_on_trusted_peers: false,
        pin_only_on_untrusted_peers: false,
        trusted_peers: Some(trusted.into_iter().map(String::from).collect()),
        ..Default::default()
    };
    let (tx, _out) = mpsc::unbounded_channel();
    let b: Arc<dyn Broadcaster> = Arc::new(ChanBroadcaster(tx));

    let store = open("new.redb");
    let node = CrdtNode::new(opts(vec!["A", "B"], false), store.clone(), b.clone()).unwrap();
    assert!(!node.is_synced());
    let e = node
        .wait_synced(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(e.message().contains("first sync"), "{}", e.message());
    node.mark_synced("test");
    node.pin(Pin {
        cid: cid_n(1),
        max_depth: -1,
        ..Default::default()
    })
    .await
    .unwrap();
    drop(node);

    // The same store, now with heads: synced at once.
    let again = CrdtNode::new(opts(vec!["A", "B"], false), store, b.clone()).unwrap();
    assert!(again.is_synced());
    let follower = CrdtNode::new(opts(vec!["B"], true), open("f.redb"), b.clone()).unwrap();
    assert!(follower.is_synced());
    let alone = CrdtNode::new(opts(vec!["A"], false), open("a.redb"), b).unwrap();
    assert!(alone.is_synced());
}

/// A follower the gossip never reached (none of A's broadcasts delivered) takes A's whole
/// pinset by pulling A's heads (`Consensus/CrdtHeads`), the pull that runs every
/// rebroadcast interval; a trusted peer that does not answer the call (down, or an
/// upstream peer) is skipped. Without the pull such a follower never converges.
#[tokio::test]
async fn a_follower_the_gossip_missed_converges_by_pulling_heads() {
    let stores = Stores::default();
    let a = start("A", None, &stores);
    let f = start_opts(
        "F",
        Some(vec!["A".into(), "GONE".into()]),
        &stores,
        Default::default(),
        |o| o.follower_mode = true,
    );
    let mut want = Vec::new();
    for i in 0..30 {
        let pin = Pin {
            cid: cid_n(i),
            max_depth: -1,
            ..Default::default()
        };
        a.node.pin(pin).await.unwrap();
        want.push(cid_n(i));
    }
    assert!(f.node.store.is_empty().unwrap(), "nothing was delivered");
    let source: Arc<dyn super::net::BlockSource> = Arc::new(stores.clone());
    let pulled = super::net::pull_heads(&f.node, &source, &["GONE".into(), "A".into()])
        .await
        .unwrap();
    assert_eq!(pulled.asked, 2);
    assert_eq!(pulled.answered, 1, "{pulled:?}");
    assert_eq!(pulled.merged, 30, "{pulled:?}");
    let mut got: Vec<String> = f
        .node
        .store
        .list("", None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, _)| ipfs_cluster_crdt::pin_cid_from_key(&k).unwrap().to_string())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(f.node.store.heads().unwrap(), a.node.store.heads().unwrap());
    // Pulled again: nothing new to take.
    let again = super::net::pull_heads(&f.node, &source, &["A".into()])
        .await
        .unwrap();
    assert_eq!(again.merged, 0);
}

/// upstream's repinFromPeer in crdt mode: when B's ping expires, A re-allocates the pins
/// allocated to B for which A is the closest live trusted peer (C acts for the others),
/// once per failure; with `disable_repinning` nothing moves.
#[tokio::test]
async fn a_dead_peers_pins_are_reallocated_by_the_closest_live_peer() {
    use super::node::is_closest;
    let stores = Stores::default();
    let a = start_opts("A", None, &stores, Default::default(), |o| {
        o.disable_repinning = false;
    });
    for (p, free) in [("A", "100"), ("B", "90"), ("C", "80")] {
        a.node.peer_metrics.add(metric(p, "ping", ""));
        a.node.peer_metrics.add(metric(p, "freespace", free));
    }
    let others = vec!["C".to_string()];
    let closest = |want: bool| {
        (1..200)
            .map(cid_n)
            .find(|c| is_closest(&c.parse().unwrap(), "A", &others) == want)
            .unwrap()
    };
    let (mine, theirs) = (closest(true), closest(false));
    for cid in [&mine, &theirs] {
        a.node
            .pin(Pin {
                cid: cid.clone(),
                max_depth: -1,
                allocations: vec!["A".into(), "B".into()],
                options: Some(PinOptions {
                    replication_factor_min: 2,
                    replication_factor_max: 2,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut alerted = Default::default();
    assert_eq!(a.node.check_dead_peers(&mut alerted).await, 0, "B is alive");

    // B's ping expires.
    a.node.peer_metrics.add(dead_ping("B"));
    assert_eq!(a.node.check_dead_peers(&mut alerted).await, 1);
    let mut got = a.node.get(&mine).await.unwrap().unwrap().allocations;
    got.sort();
    assert_eq!(got, ["A", "C"]);
    let kept = a.node.get(&theirs).await.unwrap().unwrap().allocations;
    assert_eq!(
        kept,
        ["A", "B"],
        "C is closer to this CID: C re-allocates it"
    );
    assert_eq!(
        a.node.check_dead_peers(&mut alerted).await,
        0,
        "one alert per failure"
    );

    // Repinning disabled (the default): nothing moves.
    let off = start("D", None, &stores);
    off.node.peer_metrics.add(dead_ping("B"));
    off.node
        .pin(Pin {
            cid: mine.clone(),
            max_depth: -1,
            allocations: vec!["D".into(), "B".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(off.node.check_dead_peers(&mut Default::default()).await, 0);
}

fn dead_ping(peer: &str) -> Metric {
    let mut m = metric(peer, "ping", "");
    m.expire = crate::allocate::now_nanos() - 1;
    m
}

/// upstream's StateSync in crdt mode: a pin past its `expire_at` is unpinned by the
/// closest live trusted peer; a pin without expiry stays; a follower removes nothing.
#[tokio::test]
async fn expired_pins_are_unpinned_by_the_closest_peer() {
    let stores = Stores::default();
    let a = start("A", None, &stores);
    a.node.peer_metrics.add(metric("A", "ping", ""));
    let soon = crate::allocate::now_nanos() / 1_000_000_000 + 1;
    let (expiring, kept) = (cid_n(1), cid_n(2));
    for (cid, expire_at) in [(&expiring, soon), (&kept, 0)] {
        a.node
            .pin(Pin {
                cid: cid.clone(),
                max_depth: -1,
                options: Some(PinOptions {
                    expire_at,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    assert_eq!(a.node.expire_pins().await.unwrap(), 0, "not expired yet");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let follower = start_opts("F", None, &stores, Default::default(), |o| {
        o.follower_mode = true;
    });
    assert_eq!(follower.node.expire_pins().await.unwrap(), 0);
    assert_eq!(a.node.expire_pins().await.unwrap(), 1);
    assert!(a.node.get(&expiring).await.unwrap().is_none());
    assert!(a.node.get(&kept).await.unwrap().is_some());
}

//! In-process tests: single-node pin flow, durability across reopen, watch semantics, the
//! token check on the gRPC endpoint, and a 3-node cluster over an in-process router that
//! stands in for the transport.

use std::{sync::Arc, time::Duration};

use tokio_stream::StreamExt;

use crate::{
    node::{Node, Options},
    service::ConsensusService,
};
use ipfs_cluster_proto::{
    consensus::v1::{consensus_server::Consensus, state_change::Kind, WatchRequest},
    types::v1::{Pin, PinOptions, PinType},
};

const C1: &str = "QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB";
const C2: &str = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";
const C3: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";

type Router = crate::local_router::LocalRouter;

fn opts(peer: &str, dir: &std::path::Path) -> Options {
    let mut o = Options::new(peer, dir.join(peer));
    o.heartbeat_timeout = Duration::from_millis(200);
    o.election_timeout = Duration::from_millis(300);
    o.wait_for_leader_timeout = Duration::from_secs(5);
    o.network_timeout = Duration::from_secs(2);
    o.commit_retries = 3;
    o.commit_retry_delay = Duration::from_millis(100);
    o.peer_watch_interval = Duration::from_millis(200);
    o
}

fn pin(cid: &str, rmin: i32, rmax: i32) -> Pin {
    Pin {
        cid: cid.into(),
        r#type: PinType::Data as i32,
        max_depth: -1,
        options: Some(PinOptions {
            replication_factor_min: rmin,
            replication_factor_max: rmax,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Each node's calls carry its peer id, as through the transport (so every in-process
/// cluster here also passes the sender checks of `Node::handle_raft`).
async fn start(router: &Router, o: Options) -> Arc<Node> {
    let peer = o.peer_id.clone();
    let n = Node::start(o, Arc::new(router.from_peer(peer.clone())))
        .await
        .unwrap();
    router.insert(peer, n.clone());
    n
}

async fn wait_leader(n: &Node) {
    n.raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some(), "leader")
        .await
        .unwrap();
}

async fn collect_list(n: &Node, filter: u32) -> Vec<String> {
    let mut rx = n.store.list(filter, 4);
    let mut v = vec![];
    while let Some(p) = rx.recv().await {
        v.push(p.unwrap().cid);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_pin_get_list_unpin_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let n = start(&router, opts("peerA", dir.path())).await;
    wait_leader(&n).await;
    assert_eq!(n.leader().as_deref(), Some("peerA"));

    let p = n.pin(pin(C1, 0, 0)).await.unwrap();
    assert!(
        p.allocations.is_empty(),
        "default replication -1 pins everywhere"
    );
    assert!(p.timestamp > 0);
    let p2 = n.pin(pin(C2, 1, 1)).await.unwrap();
    assert_eq!(
        p2.allocations,
        vec!["peerA".to_string()],
        "one-peer cluster allocates itself"
    );
    let e = n.pin(pin(C3, 2, 2)).await.unwrap_err();
    assert!(
        e.message()
            .starts_with("not enough peers to allocate CID. Needed at least: 2."),
        "{}",
        e.message()
    );
    let e = n.pin(pin(C3, 3, 2)).await.unwrap_err();
    assert_eq!(
        e.message(),
        "cluster.replication_factor_min is larger than max"
    );
    let e = n.pin(pin("notacid", 0, 0)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let mut expired = pin(C3, 0, 0);
    expired.options.as_mut().unwrap().expire_at = 1000;
    assert_eq!(
        n.pin(expired).await.unwrap_err().message(),
        "pin.ExpireAt set before current time"
    );

    assert_eq!(n.get(C1).await.unwrap().unwrap().cid, C1);
    let mut all = collect_list(&n, 0).await;
    all.sort();
    assert_eq!(all, vec![C1.to_string(), C2.to_string()]);
    assert_eq!(collect_list(&n, 4).await.len(), 0, "no meta pins");
    assert_eq!(collect_list(&n, 2).await.len(), 2);

    let gone = n.unpin(C1).await.unwrap();
    assert_eq!(gone.cid, C1);
    assert!(n.get(C1).await.unwrap().is_none());
    let e = n.unpin(C1).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message().as_str()),
        (tonic::Code::NotFound, "pin is not part of the pinset")
    );

    // pin update copies from an existing pin; an absent source is NOT_FOUND.
    let mut up = pin(C3, 0, 0);
    up.options.as_mut().unwrap().pin_update = C2.into();
    let got = n.pin(up).await.unwrap();
    assert_eq!(got.allocations, vec!["peerA".to_string()]);
    let mut up = pin(C1, 0, 0);
    up.options.as_mut().unwrap().pin_update = C1.replace('E', "F");
    assert!(n.pin(up).await.is_err());
    n.raft.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let router = Router::default();
        let n = start(&router, opts("peerA", dir.path())).await;
        wait_leader(&n).await;
        n.pin(pin(C1, 0, 0)).await.unwrap();
        n.pin(pin(C2, 0, 0)).await.unwrap();
        n.unpin(C2).await.unwrap();
        n.raft.shutdown().await.unwrap();
        router.clear();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let router = Router::default();
    let n = start(&router, opts("peerA", dir.path())).await;
    // Readable straight from the store, before raft even has a leader.
    assert!(n.get(C1).await.unwrap().is_some());
    assert!(n.get(C2).await.unwrap().is_none());
    wait_leader(&n).await;
    n.pin(pin(C3, 0, 0)).await.unwrap();
    assert_eq!(collect_list(&n, 0).await.len(), 2);
    n.raft.shutdown().await.unwrap();
}

#[tokio::test]
async fn corrupt_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let raft = dir.path().join("raft");
    std::fs::create_dir_all(&raft).unwrap();
    std::fs::write(
        raft.join(crate::raft::store::DB_FILE),
        b"this is not a redb file at all, just garbage bytes",
    )
    .unwrap();
    let e = crate::raft::store::Store::open(&raft)
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        e.contains("cannot be opened") && e.contains("state cleanup"),
        "{e}"
    );
    std::fs::write(raft.join(crate::raft::store::DB_FILE), b"").unwrap();
    let e = crate::raft::store::Store::open(&raft)
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(e.contains("truncated"), "{e}");
}

async fn next(
    s: &mut (impl tokio_stream::Stream<
        Item = Result<ipfs_cluster_proto::consensus::v1::StateChange, tonic::Status>,
    > + Unpin),
) -> ipfs_cluster_proto::consensus::v1::StateChange {
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("watch timed out")
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_syncs_then_follows_and_resumes_from_index() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let n = start(&router, opts("peerA", dir.path())).await;
    wait_leader(&n).await;
    n.pin(pin(C1, 0, 0)).await.unwrap();
    n.pin(pin(C2, 0, 0)).await.unwrap();
    let svc = ConsensusService::new(n.clone());

    let mut s = svc
        .watch(tonic::Request::new(WatchRequest { from_index: 0 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut s).await.kind, Kind::SyncBegin as i32);
    let a = next(&mut s).await;
    let b = next(&mut s).await;
    assert_eq!((a.kind, b.kind), (Kind::Pin as i32, Kind::Pin as i32));
    let end = next(&mut s).await;
    assert_eq!(end.kind, Kind::SyncEnd as i32);
    let idx = end.index;
    assert!(idx >= 3, "blank + membership + 2 pins, got {idx}");

    n.unpin(C1).await.unwrap();
    let u = next(&mut s).await;
    assert_eq!(
        (u.kind, u.pin.unwrap().cid.as_str()),
        (Kind::Unpin as i32, C1)
    );
    assert_eq!(u.index, idx + 1);
    n.pin(pin(C3, 0, 0)).await.unwrap();
    let p = next(&mut s).await;
    assert_eq!((p.kind, p.index), (Kind::Pin as i32, idx + 2));

    // Resume from the SYNC_END index: only the two later changes, no sync.
    let mut r = svc
        .watch(tonic::Request::new(WatchRequest { from_index: idx }))
        .await
        .unwrap()
        .into_inner();
    let x = next(&mut r).await;
    assert_eq!((x.kind, x.index), (Kind::Unpin as i32, idx + 1));
    let y = next(&mut r).await;
    assert_eq!((y.kind, y.index), (Kind::Pin as i32, idx + 2));
    n.pin(pin(C1, 0, 0)).await.unwrap();
    let z = next(&mut r).await;
    assert_eq!((z.kind, z.index), (Kind::Pin as i32, idx + 3));
    // An index from the future (e.g. a wiped store) gets a full sync.
    let mut f = svc
        .watch(tonic::Request::new(WatchRequest { from_index: 10_000 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut f).await.kind, Kind::SyncBegin as i32);
    n.raft.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_endpoint_requires_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let n = start(&router, opts("peerA", dir.path())).await;
    wait_leader(&n).await;
    let token = ipfs_cluster_proto::InternalToken::generate();
    let listener = ipfs_cluster_runtime::bind_internal("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ipfs_cluster_runtime::serve(
        listener,
        token.clone(),
        ConsensusService::new(n.clone()).into_server(),
        async {
            let _ = stop_rx.await;
        },
    ));
    let mut bad =
        ipfs_cluster_proto::client::consensus(addr, &ipfs_cluster_proto::InternalToken::generate());
    let e = bad
        .leader(ipfs_cluster_proto::consensus::v1::LeaderRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let mut good = ipfs_cluster_proto::client::consensus(addr, &token);
    let l = good
        .leader(ipfs_cluster_proto::consensus::v1::LeaderRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(l.peer_id, "peerA");
    let r = good
        .pin(ipfs_cluster_proto::consensus::v1::PinRequest {
            pin: Some(pin(C1, 0, 0)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.pin.unwrap().cid, C1);
    let mut list = good
        .list(ipfs_cluster_proto::consensus::v1::ListRequest { type_filter: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.next().await.unwrap().unwrap().cid, C1);
    assert!(list.next().await.is_none());
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    n.raft.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_join_replicate_forward_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let a = start(&router, opts("peerA", dir.path())).await;
    wait_leader(&a).await;
    let mut ob = opts("peerB", dir.path());
    ob.staging = true;
    let mut oc = opts("peerC", dir.path());
    oc.staging = true;
    let b = start(&router, ob).await;
    let c = start(&router, oc).await;
    b.join_via("peerA").await.unwrap();
    c.join_via("peerB").await.unwrap(); // through a follower: forwarded to the leader
    for n in [&a, &b, &c] {
        n.raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(
                |m| m.membership_config.membership().voter_ids().count() == 3,
                "3 voters",
            )
            .await
            .unwrap();
        n.spawn_background();
    }
    // Writes through a follower are forwarded to the leader.
    let p = c.pin(pin(C1, 0, 0)).await.unwrap();
    assert_eq!(p.cid, C1);
    b.pin(pin(C2, 0, 0)).await.unwrap();
    // The leader may have changed meanwhile: wait for the furthest applied index.
    let idx = [&a, &b, &c]
        .iter()
        .filter_map(|n| n.raft.metrics().borrow().last_applied.map(|l| l.index))
        .max()
        .unwrap();
    for n in [&a, &b, &c] {
        n.raft
            .wait(Some(Duration::from_secs(5)))
            .applied_index_at_least(Some(idx), "applied")
            .await
            .unwrap();
        assert!(n.get(C1).await.unwrap().is_some());
        assert!(n.get(C2).await.unwrap().is_some());
        assert_eq!(n.member_ids(), vec!["peerA", "peerB", "peerC"]);
    }
    // Remove C through B; C notices and signals shutdown.
    let mut removed = c.removed();
    let svc = ConsensusService::new(b.clone());
    svc.remove_peer(tonic::Request::new(
        ipfs_cluster_proto::consensus::v1::RemovePeerRequest {
            peer_id: "peerC".into(),
        },
    ))
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(5), removed.wait_for(|r| *r))
        .await
        .unwrap()
        .unwrap();
    // C may hear of its removal before A learns that the new membership is committed
    // (the next heartbeat tells it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while a.member_ids() != ["peerA", "peerB"] && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.member_ids(), vec!["peerA", "peerB"]);
    b.unpin(C1).await.unwrap();
    for n in [&a, &b, &c] {
        n.raft.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_catches_up_from_a_streamed_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let mut oa = opts("peerA", dir.path());
    oa.snapshot_threshold = 5;
    oa.trailing_logs = 0;
    let a = start(&router, oa).await;
    wait_leader(&a).await;
    let cids: Vec<String> = (0..30u8)
        .map(|i| {
            let mh = cid::multihash::Multihash::<64>::wrap(0x12, &[i; 32]).unwrap();
            cid::Cid::new_v1(0x55, mh).to_string()
        })
        .collect();
    for c in &cids {
        a.pin(pin(c, 0, 0)).await.unwrap();
    }
    // A snapshot covers what is applied when it is triggered: wait until every entry is
    // (an acknowledged pin may still be applying under load), or the snapshot can stop
    // short of index 30 with no later one triggered.
    a.raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.last_applied.map(|l| l.index) >= m.last_log_index && m.last_log_index >= Some(30),
            "everything applied",
        )
        .await
        .unwrap();
    // A trigger while another snapshot is being built (the automatic policy's, here at
    // 29) is dropped, and building takes seconds on a loaded machine: trigger again until
    // one covers index 30 (seen: one trigger and 5 s were not enough).
    let mut covered = false;
    for _ in 0..10 {
        a.raft.trigger().snapshot().await.unwrap();
        covered = a
            .raft
            .wait(Some(Duration::from_secs(3)))
            .metrics(|m| m.snapshot.is_some_and(|s| s.index >= 30), "snapshot")
            .await
            .is_ok();
        if covered {
            break;
        }
    }
    assert!(covered, "no snapshot covering index 30 after 10 triggers");
    a.raft
        .trigger()
        .purge_log(a.raft.metrics().borrow().snapshot.unwrap().index)
        .await
        .unwrap();
    a.raft
        .wait(Some(Duration::from_secs(5)))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= 30), "purged")
        .await
        .unwrap();
    // A watcher resuming from an index that was purged gets a full sync.
    let svc = ConsensusService::new(a.clone());
    let mut w = svc
        .watch(tonic::Request::new(WatchRequest { from_index: 3 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut w).await.kind, Kind::SyncBegin as i32);

    let mut ob = opts("peerB", dir.path());
    ob.staging = true;
    let b = start(&router, ob).await;
    let mut bw = ConsensusService::new(b.clone())
        .watch(tonic::Request::new(WatchRequest { from_index: 0 }))
        .await
        .unwrap()
        .into_inner();
    b.join_via("peerA").await.unwrap();
    let idx = a.raft.metrics().borrow().last_applied.unwrap().index;
    b.raft
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(Some(idx), "applied")
        .await
        .unwrap();
    assert_eq!(collect_list(&b, 0).await.len(), 30);
    assert!(
        b.raft.metrics().borrow().snapshot.is_some(),
        "B was caught up by a snapshot"
    );
    // B's early watcher saw an empty sync, then is told to resync when the snapshot lands.
    assert_eq!(next(&mut bw).await.kind, Kind::SyncBegin as i32);
    assert_eq!(next(&mut bw).await.kind, Kind::SyncEnd as i32);
    let e = tokio::time::timeout(Duration::from_secs(5), bw.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e.unwrap_err().code(),
        tonic::Code::Aborted,
        "the snapshot install ends live watchers"
    );
    b.raft.shutdown().await.unwrap();
    a.raft.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_keeps_acknowledged_pins_and_expiry_runs_on_leader() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let peers = ["peerA", "peerB", "peerC"];
    let mut nodes = vec![];
    for p in peers {
        let mut o = opts(p, dir.path());
        o.init_peerset = peers.iter().map(|s| s.to_string()).collect();
        nodes.push(start(&router, o).await);
    }
    for n in &nodes {
        wait_leader(n).await;
    }
    let leader = nodes[0].leader().unwrap();
    let li = peers.iter().position(|p| *p == leader).unwrap();
    let mut acked = vec![];
    for i in 0..10u8 {
        let mh = cid::multihash::Multihash::<64>::wrap(0x12, &[i; 32]).unwrap();
        let c = cid::Cid::new_v1(0x55, mh).to_string();
        nodes[(li + 1) % 3].pin(pin(&c, 0, 0)).await.unwrap();
        acked.push(c);
    }
    // Stop the leader; the others elect a new one and keep every acknowledged pin.
    nodes[li].raft.shutdown().await.unwrap();
    router.remove(&leader);
    let rest: Vec<_> = (0..3)
        .filter(|i| *i != li)
        .map(|i| nodes[i].clone())
        .collect();
    // A write arriving right after the leader died is retried until the new leader takes it.
    let during = cid_n(999);
    rest[0].pin(pin(&during, 0, 0)).await.unwrap();
    acked.push(during);
    rest[0]
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| {
                m.current_leader
                    .is_some_and(|l| l != crate::raft::ids::node_id(&leader))
            },
            "new leader",
        )
        .await
        .unwrap();
    let mut soon = pin(C1, 0, 0);
    // Whole seconds: +2 leaves at least one second for the forward to the new leader (with
    // +1 a loaded machine saw "ExpireAt set before current time").
    let expire_at = crate::allocate::now_nanos() / 1_000_000_000 + 2;
    soon.options.as_mut().unwrap().expire_at = expire_at;
    rest[1].pin(soon).await.unwrap();
    for n in &rest {
        let mut got = collect_list(n, 0).await;
        got.retain(|c| c != C1);
        got.sort();
        let mut want = acked.clone();
        want.sort();
        assert_eq!(got, want);
    }
    while crate::allocate::now_nanos() / 1_000_000_000 <= expire_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_leader = rest
        .iter()
        .find(|n| n.raft.metrics().borrow().current_leader == Some(n.id))
        .unwrap();
    assert_eq!(new_leader.expire_pins().await.unwrap(), 1);
    assert!(new_leader.get(C1).await.unwrap().is_none());
    for n in &rest {
        n.raft.shutdown().await.unwrap();
    }
}

fn metric(
    name: &str,
    peer: &str,
    weight: i64,
    expire: i64,
) -> ipfs_cluster_proto::types::v1::Metric {
    ipfs_cluster_proto::types::v1::Metric {
        name: name.into(),
        peer: peer.into(),
        value: weight.to_string(),
        expire,
        valid: true,
        weight,
        partitionable: false,
        received_at: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_allocates_by_metrics_and_repins_from_dead_peers() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let peers = ["peerA", "peerB", "peerC"];
    let mut nodes = vec![];
    for p in peers {
        let mut o = opts(p, dir.path());
        o.init_peerset = peers.iter().map(|s| s.to_string()).collect();
        o.allocate_by = vec!["freespace".into()];
        o.disable_repinning = false;
        nodes.push(start(&router, o).await);
    }
    for n in &nodes {
        wait_leader(n).await;
    }
    let far = i64::MAX;
    for n in &nodes {
        for (p, free) in [("peerA", 300), ("peerB", 200), ("peerC", 100)] {
            n.peer_metrics.add(metric("freespace", p, free, far));
            n.peer_metrics.add(metric("ping", p, 0, far));
        }
    }
    let p = nodes[2].pin(pin(C1, 2, 2)).await.unwrap();
    assert_eq!(
        p.allocations,
        vec!["peerA", "peerB"],
        "most free space first"
    );
    let e = nodes[1].pin(pin(C2, 4, 4)).await.unwrap_err();
    assert!(
        e.message()
            .starts_with("not enough peers to allocate CID. Needed at least: 4."),
        "{}",
        e.message()
    );
    // peerA dies (its metrics expire): the leader moves its pins, once.
    let leader = nodes
        .iter()
        .find(|n| n.raft.metrics().borrow().current_leader == Some(n.id))
        .unwrap()
        .clone();
    if leader.opts.peer_id == "peerA" {
        // Keep the leader alive in this test: kill peerB instead.
        leader.peer_metrics.add(metric("ping", "peerB", 0, 1));
        leader
            .peer_metrics
            .add(metric("freespace", "peerB", 200, 1));
        let mut alerted = Default::default();
        assert_eq!(leader.check_dead_peers(&mut alerted).await, 1);
        assert_eq!(
            leader.get(C1).await.unwrap().unwrap().allocations,
            vec!["peerA", "peerC"]
        );
        assert_eq!(
            leader.check_dead_peers(&mut alerted).await,
            0,
            "one alert per failure"
        );
    } else {
        leader.peer_metrics.add(metric("ping", "peerA", 0, 1));
        leader
            .peer_metrics
            .add(metric("freespace", "peerA", 300, 1));
        let mut alerted = Default::default();
        assert_eq!(leader.check_dead_peers(&mut alerted).await, 1);
        assert_eq!(
            leader.get(C1).await.unwrap().unwrap().allocations,
            vec!["peerB", "peerC"]
        );
        assert_eq!(
            leader.check_dead_peers(&mut alerted).await,
            0,
            "one alert per failure"
        );
    }
    for n in &nodes {
        n.raft.shutdown().await.unwrap();
    }
}

fn cid_n(i: u32) -> String {
    let mut d = [0u8; 32];
    d[..4].copy_from_slice(&i.to_be_bytes());
    let mh = cid::multihash::Multihash::<64>::wrap(0x12, &d).unwrap();
    cid::Cid::new_v1(0x55, mh).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_is_cut_off_not_raft() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let mut o = opts("peerA", dir.path());
    o.watch_buffer = 16;
    let n = start(&router, o).await;
    wait_leader(&n).await;
    let svc = ConsensusService::new(n.clone());
    let mut w = svc
        .watch(tonic::Request::new(WatchRequest { from_index: 0 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut w).await.kind, Kind::SyncBegin as i32);
    assert_eq!(next(&mut w).await.kind, Kind::SyncEnd as i32);
    // 600 changes while the watcher reads nothing: raft is not blocked.
    let batch: Vec<_> = (0..600)
        .map(|i| crate::raft::command::PinBytes::encode(&pin(&cid_n(i), -1, -1)))
        .collect();
    tokio::time::timeout(
        Duration::from_secs(5),
        n.commit(crate::node::Forward::Op(
            crate::raft::command::PinOp::PinBatch(batch),
        )),
    )
    .await
    .expect("a slow watcher must not block commits")
    .unwrap();
    let mut got = 0;
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
        {
            Some(Ok(_)) => got += 1,
            Some(Err(e)) => break e,
            None => panic!("stream ended without an error"),
        }
    };
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(got < 600);
    // Stats reflect the state.
    let st = svc
        .stats(tonic::Request::new(Default::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((st.pins, st.leader.as_str()), (600, "peerA"));
    assert!(
        st.applied_index >= 2 && st.commit_index >= st.applied_index,
        "{st:?}"
    );
    n.raft.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_replaces_the_state_and_export_streams_it() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let n = start(&router, opts("peerA", dir.path())).await;
    wait_leader(&n).await;
    n.pin(pin(C1, 0, 0)).await.unwrap();
    let svc = ConsensusService::new(n.clone());
    let mut w = svc
        .watch(tonic::Request::new(WatchRequest { from_index: 0 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut w).await.kind, Kind::SyncBegin as i32);
    assert_eq!(next(&mut w).await.kind, Kind::Pin as i32);
    assert_eq!(next(&mut w).await.kind, Kind::SyncEnd as i32);

    // Import goes through a real gRPC client stream.
    let token = ipfs_cluster_proto::InternalToken::generate();
    let listener = ipfs_cluster_runtime::bind_internal("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ipfs_cluster_runtime::serve(
        listener,
        token.clone(),
        svc.clone().into_server(),
        async {
            let _ = stop_rx.await;
        },
    ));
    let mut client = ipfs_cluster_proto::client::consensus(addr, &token);
    let pins: Vec<Pin> = (0..300)
        .map(|i| Pin {
            cid: cid_n(i),
            max_depth: -1,
            ..Default::default()
        })
        .collect();
    let r = client
        .import(tokio_stream::iter(pins))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.imported, 300);
    assert!(n.get(C1).await.unwrap().is_none(), "import wipes first");
    let got = n.get(&cid_n(7)).await.unwrap().unwrap();
    assert_eq!(
        got.r#type,
        PinType::Data as i32,
        "absent type defaults to pin"
    );
    let e = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e.unwrap_err().code(),
        tonic::Code::Aborted,
        "live watchers resync after an import"
    );
    let mut exp = client
        .export(ipfs_cluster_proto::consensus::v1::ListRequest { type_filter: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut count = 0;
    while let Some(p) = exp.next().await {
        p.unwrap();
        count += 1;
    }
    assert_eq!(count, 300);
    // A bad CID in the stream is a clear error.
    let bad = vec![Pin {
        cid: "nope".into(),
        ..Default::default()
    }];
    let e = client.import(tokio_stream::iter(bad)).await.unwrap_err();
    assert!(e.message().contains("import: pin #1"), "{}", e.message());
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    n.raft.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_removes_itself_and_the_last_peer_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let peers = ["peerA", "peerB", "peerC"];
    let mut nodes = vec![];
    for p in peers {
        let mut o = opts(p, dir.path());
        o.init_peerset = peers.iter().map(|s| s.to_string()).collect();
        nodes.push(start(&router, o).await);
    }
    for n in &nodes {
        wait_leader(n).await;
    }
    let leader = nodes
        .iter()
        .find(|n| n.raft.metrics().borrow().current_leader == Some(n.id))
        .unwrap()
        .clone();
    let mut removed = leader.removed();
    leader.leave().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), removed.wait_for(|r| *r))
        .await
        .unwrap()
        .unwrap();
    let rest: Vec<_> = nodes
        .iter()
        .filter(|n| n.id != leader.id)
        .cloned()
        .collect();
    for n in &rest {
        n.raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(
                |m| {
                    m.membership_config.membership().nodes().count() == 2
                        && m.current_leader.is_some_and(|l| l != leader.id)
                },
                "2 members and a new leader",
            )
            .await
            .unwrap();
    }
    rest[0].pin(pin(C1, 0, 0)).await.unwrap();
    // Joining again as an existing voter is a no-op.
    let svc = ConsensusService::new(rest[1].clone());
    let r = svc
        .join(tonic::Request::new(
            ipfs_cluster_proto::consensus::v1::JoinRequest {
                peer_id: rest[0].opts.peer_id.clone(),
                addresses: vec![],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.members.len(), 2);
    for n in &nodes {
        n.raft.shutdown().await.unwrap();
    }

    // A one-peer cluster cannot remove its last member.
    let solo = start(&router, opts("solo", dir.path())).await;
    wait_leader(&solo).await;
    let e = solo.leave().await.unwrap_err();
    assert_eq!(e.message(), "cannot remove ourselves from a 1-peer cluster");
    solo.raft.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let router = Router::default();
        let n = start(&router, opts("peerA", dir.path())).await;
        wait_leader(&n).await;
        let batch: Vec<_> = (0..2000)
            .map(|i| crate::raft::command::PinBytes::encode(&pin(&cid_n(i), -1, -1)))
            .collect();
        n.commit(crate::node::Forward::Op(
            crate::raft::command::PinOp::PinBatch(batch),
        ))
        .await
        .unwrap();
        n.raft.shutdown().await.unwrap();
        router.clear();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let path = dir.path().join("peerA").join(crate::raft::store::DB_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let r = crate::raft::store::Store::open(&dir.path().join("peerA")).await;
    match r {
        Err(e) => assert!(e.to_string().contains("cannot be opened"), "{e}"),
        Ok(s) => {
            // If redb accepted the file, every pin must still be readable (no silent loss).
            let st = s.applied_state().await;
            let mut rx = s.list(0, 16);
            let mut n = 0;
            let mut err = None;
            while let Some(p) = rx.recv().await {
                match p {
                    Ok(_) => n += 1,
                    Err(e) => err = Some(e),
                }
            }
            panic!("truncated store opened: applied_state {st:?}, listed {n}, error {err:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_allocations_guide_allocation_but_are_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let peers = ["peerA", "peerB", "peerC"];
    let mut nodes = vec![];
    for p in peers {
        let mut o = opts(p, dir.path());
        o.init_peerset = peers.iter().map(|s| s.to_string()).collect();
        o.allocate_by = vec!["freespace".into()];
        nodes.push(start(&router, o).await);
    }
    for n in &nodes {
        wait_leader(n).await;
        for (p, free) in [("peerA", 300), ("peerB", 200), ("peerC", 100)] {
            n.peer_metrics.add(metric("freespace", p, free, i64::MAX));
        }
    }
    let mut p = pin(C1, 1, 1);
    p.options.as_mut().unwrap().user_allocations = vec!["peerC".into()];
    let got = nodes[1].pin(p).await.unwrap();
    assert_eq!(got.allocations, vec!["peerC"], "priority peer first");
    assert_eq!(got.options.unwrap().user_allocations, vec!["peerC"]);
    let leader = nodes
        .iter()
        .find(|n| n.raft.metrics().borrow().current_leader == Some(n.id))
        .unwrap();
    let stored = leader.get(C1).await.unwrap().unwrap();
    assert!(stored.options.unwrap().user_allocations.is_empty());
    for n in &nodes {
        n.raft.shutdown().await.unwrap();
    }
}

/// A leader cut off from both followers (each node has its own router, so the cut is
/// symmetric) refuses a write with a clear UNAVAILABLE instead of hanging, while the other
/// two elect a new leader and keep committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_refuses_writes_and_the_majority_commits() {
    let dir = tempfile::tempdir().unwrap();
    let peers = ["peerA", "peerB", "peerC"];
    let routers: Vec<Router> = peers.iter().map(|_| Router::default()).collect();
    let mut nodes = vec![];
    for (i, p) in peers.iter().enumerate() {
        let mut o = opts(p, dir.path());
        o.init_peerset = peers.iter().map(|s| s.to_string()).collect();
        let n = Node::start(o, Arc::new(routers[i].from_peer(*p)))
            .await
            .unwrap();
        nodes.push(n);
    }
    for r in &routers {
        for (p, n) in peers.iter().zip(&nodes) {
            r.insert(*p, n.clone());
        }
    }
    for n in &nodes {
        wait_leader(n).await;
    }
    // On a busy machine an election may still be under way: wait for a settled leader.
    let mut leader = None;
    for _ in 0..200 {
        leader = nodes[0].leader();
        if leader.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader = leader.expect("a leader within 10 s");
    let li = peers.iter().position(|p| *p == leader).unwrap();
    nodes[li].pin(pin(C1, 0, 0)).await.unwrap();

    // Cut the leader off in both directions.
    routers[li].clear();
    for (i, r) in routers.iter().enumerate() {
        if i != li {
            r.remove(&leader);
        }
    }
    let t0 = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), nodes[li].pin(pin(C2, 0, 0)))
        .await
        .expect("the isolated leader hung on a write")
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("cannot reach a majority"),
        "{}",
        err.message()
    );
    println!(
        "isolated leader refused in {:?}: {}",
        t0.elapsed(),
        err.message()
    );

    // The majority elects a new leader and commits.
    let rest: Vec<_> = (0..3).filter(|i| *i != li).collect();
    nodes[rest[0]].pin(pin(C3, 0, 0)).await.unwrap();
    // Committed by the majority; a follower applies it once it hears the new commit index
    // (the next append or heartbeat), so wait for that rather than expect it at once.
    for &i in &rest {
        let mut seen = false;
        for _ in 0..100 {
            if nodes[i].get(C3).await.unwrap().is_some() {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(seen, "node {i} of the majority never applied the pin");
    }
    assert!(nodes[li].get(C3).await.unwrap().is_none());
    for n in &nodes {
        let _ = n.raft.shutdown().await;
    }
}

/// Group commit: many concurrent pins and unpins through a follower and the leader share
/// raft entries (fewer entries than writes), each caller gets its own answer (an unpin of a
/// CID not in the pinset still fails alone), and every node ends with the same pinset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_group_committed_with_per_op_results() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let peers = ["peerA", "peerB", "peerC"];
    let mut nodes = vec![];
    for p in peers {
        let mut o = opts(p, dir.path());
        o.init_peerset = peers.iter().map(|s| s.to_string()).collect();
        nodes.push(start(&router, o).await);
    }
    for n in &nodes {
        wait_leader(n).await;
    }
    let leader = nodes[0].leader().unwrap();
    let li = peers.iter().position(|p| *p == leader).unwrap();
    let follower = nodes[(li + 1) % 3].clone();
    let before = nodes[li]
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or(0);
    let n_pins = 300u32;
    let mut tasks = vec![];
    for i in 0..n_pins {
        let node = if i % 2 == 0 {
            follower.clone()
        } else {
            nodes[li].clone()
        };
        tasks.push(tokio::spawn(async move {
            node.pin(pin(&cid_n(i), 0, 0)).await.map(|p| p.cid)
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap(), cid_n(i as u32));
    }
    let after = nodes[li]
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or(0);
    println!(
        "{n_pins} concurrent pins took {} raft entries",
        after - before
    );
    assert!(after - before < n_pins as u64, "no grouping happened");

    // Unpins: half of existing CIDs, plus CIDs that were never pinned (each fails alone).
    let mut tasks = vec![];
    for i in 0..100u32 {
        let node = follower.clone();
        let c = if i % 2 == 0 {
            cid_n(i)
        } else {
            cid_n(10_000 + i)
        };
        tasks.push(tokio::spawn(async move { (i, node.unpin(&c).await) }));
    }
    for t in tasks {
        let (i, r) = t.await.unwrap();
        if i % 2 == 0 {
            assert_eq!(r.unwrap().cid, cid_n(i));
        } else {
            assert_eq!(r.unwrap_err().code(), tonic::Code::NotFound);
        }
    }
    let want: Vec<String> = {
        let mut v: Vec<String> = (0..n_pins)
            .filter(|i| !(i < &100 && i % 2 == 0))
            .map(cid_n)
            .collect();
        v.sort();
        v
    };
    for n in &nodes {
        let target = nodes[li].raft.metrics().borrow().last_applied;
        n.raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.last_applied >= target, "caught up")
            .await
            .unwrap();
        let mut got = collect_list(n, 0).await;
        got.sort();
        assert_eq!(got, want);
    }
    for n in &nodes {
        let _ = n.raft.shutdown().await;
    }
}

/// The state machine apply is not fsync'd: a crash can roll the pins and the applied index
/// back together while the log keeps the entries. A watcher (the ipfs connector) resuming
/// from an index it already processed must then wait for raft to re-apply the log, not get
/// a full sync of the older state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_wait_for_a_rolled_back_apply_instead_of_resyncing() {
    let dir = tempfile::tempdir().unwrap();
    let idx;
    {
        let router = Router::default();
        let n = start(&router, opts("peerA", dir.path())).await;
        wait_leader(&n).await;
        n.pin(pin(C1, 0, 0)).await.unwrap();
        n.pin(pin(C2, 0, 0)).await.unwrap();
        idx = n.raft.metrics().borrow().last_applied.unwrap().index;
        n.raft.shutdown().await.unwrap();
        router.clear();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // What a crash after the last apply could leave: pins, applied and committed one entry
    // back, the log intact.
    {
        use crate::raft::store;
        use redb::ReadableTable;
        let s = store::Store::open(&dir.path().join("peerA")).await.unwrap();
        let txn = s.inner.db.begin_write().unwrap();
        {
            let log = txn.open_table(store::LOG).unwrap();
            let prev: crate::raft::command::Entry =
                store::dec("log entry", log.get(idx - 1).unwrap().unwrap().value()).unwrap();
            let mut meta = txn.open_table(store::META).unwrap();
            let prev = store::enc(&Some(prev.log_id));
            meta.insert(store::K_APPLIED, prev.as_slice()).unwrap();
            meta.insert(store::K_COMMITTED, prev.as_slice()).unwrap();
            txn.open_table(store::PINS).unwrap().remove(C2).unwrap();
            // A vote not (yet) committed: openraft restores a committed leader vote as
            // leader at once, and that leader would re-apply the entry before the check
            // below; this way the node waits for an election first.
            let mut vote: openraft::Vote<u64> =
                store::dec("vote", meta.get(store::K_VOTE).unwrap().unwrap().value()).unwrap();
            vote.committed = false;
            let vote = store::enc(&vote);
            meta.insert(store::K_VOTE, vote.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let router = Router::default();
    // A long election timeout, so that the check below surely runs before the election
    // (after which the entry is re-applied) even on a busy machine.
    let mut o = opts("peerA", dir.path());
    o.heartbeat_timeout = Duration::from_millis(1000);
    o.election_timeout = Duration::from_millis(3000);
    let n = start(&router, o).await;
    assert!(
        n.raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index)
            < idx,
        "the rolled-back entry is not applied before an election"
    );
    let svc = ConsensusService::new(n.clone());
    let mut s = svc
        .watch(tonic::Request::new(WatchRequest { from_index: idx }))
        .await
        .unwrap()
        .into_inner();
    wait_leader(&n).await;
    n.pin(pin(C3, 0, 0)).await.unwrap();
    let x = next(&mut s).await;
    assert_eq!(
        (x.kind, x.pin.unwrap().cid.as_str()),
        (Kind::Pin as i32, C3),
        "no full sync, no repeated change"
    );
    assert!(x.index > idx);
    assert!(
        n.get(C2).await.unwrap().is_some(),
        "raft re-applied the entry from the log"
    );
    n.raft.shutdown().await.unwrap();
}

/// Concurrent single-pin reads are served in shared batches: each gets its own answer
/// (present or absent), and a dropped store can be opened again at once (the batching
/// reader holds it only weakly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_gets_answer_each_read_and_release_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let n = start(&router, opts("peerA", dir.path())).await;
    wait_leader(&n).await;
    for i in 0..50 {
        n.pin(pin(&cid_n(i), 0, 0)).await.unwrap();
    }
    let reads = (0..400u32).map(|i| {
        let n = n.clone();
        async move { (i % 100, n.get(&cid_n(i % 100)).await.unwrap()) }
    });
    for (i, got) in futures::future::join_all(reads).await {
        match got {
            Some(p) => {
                assert!(i < 50, "pin {i} was never added");
                assert_eq!(p.cid, cid_n(i));
            }
            None => assert!(i >= 50, "pin {i} is missing"),
        }
    }
    n.raft.shutdown().await.unwrap();
    router.clear();
    drop(n);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = crate::raft::store::Store::open(&dir.path().join("peerA"))
        .await
        .expect("the store opens again once every handle is gone");
    assert_eq!(s.get(&cid_n(7)).await.unwrap().unwrap().cid, cid_n(7));
    assert!(s.get(&cid_n(70)).await.unwrap().is_none());
}

/// Hole 8 of docs/security.md: with `trusted_peers` set (raft mode), only listed peers may join,
/// and a leader started with a shorter list removes the members it no longer lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_peers_decide_who_joins_and_stays() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = |ids: &[&str]| Some(ids.iter().map(|s| s.to_string()).collect());
    let with = |peer: &str, t: &[&str], staging: bool| {
        let mut o = opts(peer, dir.path());
        o.trusted_peers = trusted(t);
        o.staging = staging;
        o
    };
    {
        let router = Router::default();
        let a = start(&router, with("peerA", &["peerA", "peerB", "peerC"], false)).await;
        wait_leader(&a).await;
        let b = start(&router, with("peerB", &["peerA", "peerB", "peerC"], true)).await;
        let c = start(&router, with("peerC", &["peerA", "peerB", "peerC"], true)).await;
        let x = start(&router, with("peerX", &[], true)).await;
        b.join_via("peerA").await.unwrap();
        c.join_via("peerA").await.unwrap();
        let e = x.join_via("peerA").await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
        assert!(
            e.message().contains("peerX") && e.message().contains("trusted_peers"),
            "{e}"
        );
        // The leader itself refuses too (a follower with a stale list forwards to it).
        let e = a
            .commit(crate::node::Forward::Join(crate::raft::ids::PeerNode {
                peer_id: "peerX".into(),
                addresses: vec![],
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
        assert_eq!(a.member_ids(), vec!["peerA", "peerB", "peerC"]);
        for n in [&a, &b, &c, &x] {
            n.raft.shutdown().await.unwrap();
        }
        router.clear();
    }
    // Next start: A and B no longer list C (C's own list is not asked). Whichever of A
    // and B leads removes C; C learns it was removed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let router = Router::default();
    let a = start(&router, with("peerA", &["peerA", "peerB"], false)).await;
    let b = start(&router, with("peerB", &["peerA", "peerB"], false)).await;
    wait_leader(&a).await;
    let c = start(&router, with("peerC", &["peerA", "peerB", "peerC"], false)).await;
    let mut removed = c.removed();
    for n in [&a, &b, &c] {
        n.spawn_background();
    }
    tokio::time::timeout(Duration::from_secs(20), removed.wait_for(|r| *r))
        .await
        .expect("the untrusted member was not removed")
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while a.member_ids() != ["peerA", "peerB"] && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.member_ids(), vec!["peerA", "peerB"]);
    for n in [&a, &b, &c] {
        n.raft.shutdown().await.unwrap();
    }
}

/// A forwarded unpin that the leader committed but whose answer was lost (the leader died or
/// the connection broke after the commit) is repeated by `commit`'s retries; the repeat finds
/// the pin gone. That is the caller's own removal: a success, never a 404 "not part of the
/// pinset" (which told clients an acknowledged pin had vanished; found by the chaos runs).
/// An unpin of a pin that never existed is still a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpin_retried_after_a_lost_answer_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::default();
    let a = start(&router, opts("peerA", dir.path())).await;
    wait_leader(&a).await;
    let mut ob = opts("peerB", dir.path());
    ob.staging = true;
    let b = start(&router, ob).await;
    b.join_via("peerA").await.unwrap();
    for n in [&a, &b] {
        n.raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(
                |m| m.membership_config.membership().voter_ids().count() == 2,
                "2 voters",
            )
            .await
            .unwrap();
    }
    assert_eq!(a.leader().as_deref(), Some("peerA"));
    b.pin(pin(C1, 0, 0)).await.unwrap();
    // B has applied the pin (its answer names it).
    b.raft
        .wait(Some(Duration::from_secs(5)))
        .metrics(
            |m| {
                m.last_applied.map(|l| l.index)
                    >= a.raft.metrics().borrow().last_applied.map(|l| l.index)
            },
            "B caught up",
        )
        .await
        .unwrap();

    router.lose_forward_answers(1);
    let p = b
        .unpin(C1)
        .await
        .expect("the retried unpin is a success, not a 404");
    assert_eq!(p.cid, C1);
    assert!(a.get(C1).await.unwrap().is_none(), "the pin is gone");

    let e = b.unpin(C2).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{}", e.message());
    assert_eq!(e.message(), "pin is not part of the pinset");
}

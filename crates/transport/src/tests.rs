//! Multi-host tests on 127.0.0.1:0: secrets, peer calls through real gRPC endpoints,
//! the policy, broadcast, the token check and the peerstore.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    future::{ready, Future, Ready},
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::StreamExt;
use ipfs_cluster_proto::{
    names::{CONSENSUS, IPFS_CONNECTOR},
    transport::v1::{PeerCallManyRequest, PeerCallRequest, PublishRequest, SubscribeRequest},
    InternalToken,
};
use libp2p::{identity::Keypair, Multiaddr, PeerId};
use tonic::{
    body::Body,
    codegen::Service,
    server::{NamedService, ServerStreamingService, UnaryService},
    Code, Request, Response, Status,
};

use crate::{local::BytesCodec, options::Limits, start, Members, Running, TransportOptions};

const SECRET_A: [u8; 32] = [1; 32];
const SECRET_B: [u8; 32] = [2; 32];

struct UnaryEcho(String);
impl UnaryService<Bytes> for UnaryEcho {
    type Response = Bytes;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Bytes>, Status>> + Send>>;
    fn call(&mut self, r: Request<Bytes>) -> Self::Future {
        let caller = ipfs_cluster_proto::Caller::from_metadata(r.metadata());
        let p = r.into_inner();
        let path = self.0.clone();
        Box::pin(async move {
            if path.ends_with("/CrdtBlock") {
                return crdt_block(&p);
            }
            if &p[..] == b"whoami" {
                let who = caller.peer().unwrap_or("local").to_string();
                return Ok(Response::new(Bytes::from(who)));
            }
            if &p[..] == b"fail" {
                return Err(Status::not_found("nothing here"));
            }
            if &p[..] == b"slow" {
                // Holds the call so concurrent ones overlap (inbound-limit test).
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok(Response::new(Bytes::from(
                [path.as_bytes(), b":", &p].concat(),
            )))
        })
    }
}

/// The one crdt block the echo consensus has (served over bitswap).
const BLOCK: &[u8] = b"a crdt delta node";

fn block_cid() -> cid::Cid {
    use sha2::Digest;
    let mh = multihash::Multihash::<64>::wrap(0x12, &sha2::Sha256::digest(BLOCK)).unwrap();
    cid::Cid::new_v1(0x70, mh)
}

fn crdt_block(p: &[u8]) -> Result<Response<Bytes>, Status> {
    use ipfs_cluster_proto::consensus::v1::{CrdtBlockRequest, CrdtBlockResponse};
    use prost::Message;
    let req = CrdtBlockRequest::decode(p).map_err(|e| Status::invalid_argument(e.to_string()))?;
    if req.cid != block_cid().to_string() {
        return Err(Status::not_found("no such block"));
    }
    Ok(Response::new(Bytes::from(
        CrdtBlockResponse {
            data: BLOCK.to_vec(),
        }
        .encode_to_vec(),
    )))
}

struct StreamEcho;
type Chunks = futures::stream::Iter<std::vec::IntoIter<Result<Bytes, Status>>>;
impl ServerStreamingService<Bytes> for StreamEcho {
    type Response = Bytes;
    type ResponseStream = Chunks;
    type Future = Ready<Result<Response<Chunks>, Status>>;
    fn call(&mut self, _: Request<Bytes>) -> Self::Future {
        let v: Vec<Result<Bytes, Status>> = (0..3).map(|i| Ok(Bytes::from(vec![i]))).collect();
        ready(Ok(Response::new(futures::stream::iter(v))))
    }
}

async fn echo(req: http::Request<Body>) -> Result<http::Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let mut grpc = tonic::server::Grpc::new(BytesCodec);
    Ok(if path.ends_with("All") {
        grpc.server_streaming(StreamEcho, req).await
    } else {
        grpc.unary(UnaryEcho(path), req).await
    })
}

/// A test service answering every method of the named service: unary methods echo
/// "<path>:<payload>" (payload "fail" = NOT_FOUND), methods ending in "All" stream 3 chunks.
macro_rules! echo_service {
    ($t:ident, $name:expr) => {
        #[derive(Clone, Default)]
        struct $t(Arc<AtomicUsize>);
        impl NamedService for $t {
            const NAME: &'static str = $name;
        }
        impl Service<http::Request<Body>> for $t {
            type Response = http::Response<Body>;
            type Error = Infallible;
            type Future =
                Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, req: http::Request<Body>) -> Self::Future {
                self.0.fetch_add(1, Ordering::SeqCst);
                Box::pin(echo(req))
            }
        }
    };
}
echo_service!(EchoConnector, IPFS_CONNECTOR);
echo_service!(EchoConsensus, CONSENSUS);

struct Node {
    running: Option<Running>,
    peer: PeerId,
    addr: Multiaddr,
    grpc: SocketAddr,
    token: InternalToken,
    hits_connector: Arc<AtomicUsize>,
    hits_consensus: Arc<AtomicUsize>,
    stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Node {
    fn client(&self) -> ipfs_cluster_proto::client::TransportClient {
        ipfs_cluster_proto::client::transport(self.grpc, &self.token)
    }
    async fn stop(mut self) {
        for s in self.stop.drain(..) {
            let _ = s.send(());
        }
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

fn limits() -> Limits {
    Limits {
        dial_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

async fn serve<S>(svc: S, token: &InternalToken) -> (SocketAddr, tokio::sync::oneshot::Sender<()>)
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let l = ipfs_cluster_runtime::bind_internal("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ipfs_cluster_runtime::serve(l, token.clone(), svc, async {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// A transport with echo services for the connector and consensus, gRPC served.
async fn node_with(
    limits: Limits,
    secret: Option<[u8; 32]>,
    keypair: Keypair,
    members: Option<Vec<PeerId>>,
    peerstore: Option<std::path::PathBuf>,
    bootstrap: Vec<Multiaddr>,
) -> Node {
    node_tweaked(
        limits,
        secret,
        keypair,
        members,
        peerstore,
        bootstrap,
        |_| {},
    )
    .await
}

/// `node_with`, with a last say on the options (announce addresses, …).
async fn node_tweaked(
    limits: Limits,
    secret: Option<[u8; 32]>,
    keypair: Keypair,
    members: Option<Vec<PeerId>>,
    peerstore: Option<std::path::PathBuf>,
    bootstrap: Vec<Multiaddr>,
    tweak: impl FnOnce(&mut TransportOptions),
) -> Node {
    let token = InternalToken::generate();
    let (ec, ek) = (EchoConnector::default(), EchoConsensus::default());
    let (hits_connector, hits_consensus) = (ec.0.clone(), ek.0.clone());
    let (conn_addr, s1) = serve(ec, &token).await;
    let (cons_addr, s2) = serve(ek, &token).await;
    let mut opts = TransportOptions::new(
        keypair,
        secret,
        vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        token.clone(),
    );
    opts.services = HashMap::from([
        (IPFS_CONNECTOR.to_string(), conn_addr),
        (CONSENSUS.to_string(), cons_addr),
    ]);
    opts.members = members.map(|m| Members::Fixed(Arc::new(m.into_iter().collect::<HashSet<_>>())));
    opts.limits = limits;
    opts.peerstore_file = peerstore;
    opts.bootstrap = bootstrap;
    tweak(&mut opts);
    let running = start(opts).await.unwrap();
    let peer = running.host.local_peer_id;
    let addr = running.host.addresses()[0].clone();
    let (grpc, s3) = serve(running.grpc(), &token).await;
    Node {
        running: Some(running),
        peer,
        addr,
        grpc,
        token,
        hits_connector,
        hits_consensus,
        stop: vec![s1, s2, s3],
    }
}

async fn node(secret: Option<[u8; 32]>, members: Option<Vec<PeerId>>) -> Node {
    node_with(
        limits(),
        secret,
        Keypair::generate_ed25519(),
        members,
        None,
        vec![],
    )
    .await
}

fn call(peer: &PeerId, service: &str, method: &str, payload: &[u8]) -> PeerCallRequest {
    PeerCallRequest {
        peer: peer.to_string(),
        service: service.into(),
        method: method.into(),
        payload: payload.to_vec(),
        timeout_ms: 3000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_secret_round_trip_policy_and_fanout() {
    let keys: Vec<Keypair> = (0..2).map(|_| Keypair::generate_ed25519()).collect();
    let ids: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
    let a = node_with(
        limits(),
        Some(SECRET_A),
        keys[0].clone(),
        Some(ids.clone()),
        None,
        vec![],
    )
    .await;
    let b = node_with(
        limits(),
        Some(SECRET_A),
        keys[1].clone(),
        Some(ids.clone()),
        None,
        vec![],
    )
    .await;
    // c has the secret but is not a member
    let c = node(Some(SECRET_A), Some(vec![])).await;

    let mut ca = a.client();
    let got = ca
        .dial(ipfs_cluster_proto::transport::v1::DialRequest {
            multiaddr: b.addr.to_string(),
        })
        .await
        .unwrap();
    assert_eq!(got.into_inner().peer_id, b.peer.to_string());

    // trusted call from a member reaches b's service and returns its answer
    let r = ca
        .call(call(&b.peer, IPFS_CONNECTOR, "Status", b"hi"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.payload,
        format!("/{IPFS_CONNECTOR}/Status:hi").into_bytes()
    );
    assert_eq!(b.hits_connector.load(Ordering::SeqCst), 1);
    // the service's error status comes back as it is
    let e = ca
        .call(call(&b.peer, IPFS_CONNECTOR, "Status", b"fail"))
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::NotFound, "nothing here"));
    // remote streaming
    let chunks: Vec<_> = ca
        .call_stream(call(&b.peer, IPFS_CONNECTOR, "StatusAll", b""))
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    let chunks: Vec<Vec<u8>> = chunks.into_iter().map(|c| c.unwrap().payload).collect();
    assert_eq!(chunks, vec![vec![0], vec![1], vec![2]]);

    // a closed method never reaches the service, even from a member
    let before = b.hits_consensus.load(Ordering::SeqCst);
    let e = ca
        .call(call(&b.peer, CONSENSUS, "Export", b""))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert_eq!(b.hits_consensus.load(Ordering::SeqCst), before);

    // a secret holder that is not a member: trusted denied, Join (open) allowed
    let mut cc = c.client();
    cc.dial(ipfs_cluster_proto::transport::v1::DialRequest {
        multiaddr: b.addr.to_string(),
    })
    .await
    .unwrap();
    let hits = b.hits_connector.load(Ordering::SeqCst);
    let e = cc
        .call(call(&b.peer, IPFS_CONNECTOR, "Status", b"x"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(b.hits_connector.load(Ordering::SeqCst), hits);
    let r = cc
        .call(call(&b.peer, CONSENSUS, "Join", b"me"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.payload, format!("/{CONSENSUS}/Join:me").into_bytes());

    // fan-out: local (own id and ""), remote, and a bad peer id, one result each
    let many = ca
        .call_many(PeerCallManyRequest {
            peers: vec![
                a.peer.to_string(),
                String::new(),
                b.peer.to_string(),
                "nope".into(),
            ],
            service: IPFS_CONNECTOR.into(),
            method: "Status".into(),
            payload: b"m".to_vec(),
            timeout_ms: 3000,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(many.len(), 4);
    for r in &many[..3] {
        assert_eq!(
            (r.code, r.payload.clone()),
            (0, format!("/{IPFS_CONNECTOR}/Status:m").into_bytes()),
            "{r:?}"
        );
    }
    assert_eq!(many[3].code, Code::InvalidArgument as i32);
    assert_eq!(a.hits_connector.load(Ordering::SeqCst), 2);

    // peers lists the other with a latency
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let peers = ca
            .peers(ipfs_cluster_proto::transport::v1::PeersRequest {})
            .await
            .unwrap()
            .into_inner()
            .peers;
        let e = peers
            .iter()
            .find(|p| p.peer_id == b.peer.to_string())
            .expect("b is listed");
        assert!(!e.addresses.is_empty());
        if e.latency_ns > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no latency for b");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_or_missing_secret_never_connects() {
    let a = node(Some(SECRET_A), None).await;
    let b = node(Some(SECRET_B), None).await;
    let open = node(None, None).await;
    for (from, name) in [(&b, "different secret"), (&open, "no secret")] {
        let t = Instant::now();
        let e = from
            .client()
            .dial(ipfs_cluster_proto::transport::v1::DialRequest {
                multiaddr: a.addr.to_string(),
            })
            .await
            .unwrap_err();
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "{name}: dial took {:?}",
            t.elapsed()
        );
        assert!(
            matches!(e.code(), Code::Unavailable | Code::DeadlineExceeded),
            "{name}: {e:?}"
        );
        let e = from
            .client()
            .call(call(&a.peer, CONSENSUS, "Join", b""))
            .await
            .unwrap_err();
        assert_ne!(e.code(), Code::Ok);
    }
    assert_eq!(a.hits_consensus.load(Ordering::SeqCst), 0);
    for n in [a, b, open] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_network_works_and_gossip_reaches_everyone() {
    let a = node(None, None).await;
    let b = node(None, None).await;
    let mut ca = a.client();
    ca.dial(ipfs_cluster_proto::transport::v1::DialRequest {
        multiaddr: b.addr.to_string(),
    })
    .await
    .unwrap();
    let r = ca
        .call(call(&b.peer, CONSENSUS, "Join", b"j"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.payload, format!("/{CONSENSUS}/Join:j").into_bytes());

    // Any topic but the metrics one (whose messages must be real metrics of members).
    let topic = "test.broadcast".to_string();
    let mut sub_a = ca
        .subscribe(SubscribeRequest {
            topic: topic.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut sub_b = b
        .client()
        .subscribe(SubscribeRequest {
            topic: topic.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    // The mesh forms within a heartbeat or two: publish until b hears one.
    let got_b = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            ca.publish(PublishRequest {
                topic: topic.clone(),
                data: b"metric".to_vec(),
            })
            .await
            .unwrap();
            if let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(500), sub_b.next()).await
            {
                return m.unwrap();
            }
        }
    })
    .await
    .expect("b never received a broadcast");
    assert_eq!(
        (got_b.from, got_b.data),
        (a.peer.to_string(), b"metric".to_vec())
    );
    let own = tokio::time::timeout(Duration::from_secs(1), sub_a.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (own.from, own.data, own.topic),
        (a.peer.to_string(), b"metric".to_vec(), topic)
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_needs_the_token_but_health_does_not() {
    let a = node(Some(SECRET_A), None).await;
    let wrong = ipfs_cluster_proto::client::transport(a.grpc, &InternalToken::generate());
    let e = wrong
        .clone()
        .id(ipfs_cluster_proto::transport::v1::IdRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        ipfs_cluster_proto::client::channel(a.grpc),
    );
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let id = a
        .client()
        .id(ipfs_cluster_proto::transport::v1::IdRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(id.peer_id, a.peer.to_string());
    assert!(id.addresses[0].ends_with(&format!("/p2p/{}", a.peer)));
    assert_eq!(id.psk_fingerprint.len(), 32);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peerstore_survives_restart_and_bootstraps() {
    let dir = tempfile::tempdir().unwrap();
    let ps = dir.path().join("peerstore");
    let b = node(Some(SECRET_A), None).await;
    let key = Keypair::generate_ed25519();
    // b is a member of a's cluster; the stranger only connects (docs/security.md, hole 7).
    let a = node_with(
        limits(),
        Some(SECRET_A),
        key.clone(),
        Some(vec![key.public().to_peer_id(), b.peer]),
        Some(ps.clone()),
        vec![b.addr.clone()],
    )
    .await;
    let stranger = node(Some(SECRET_A), None).await;
    stranger
        .client()
        .dial(ipfs_cluster_proto::transport::v1::DialRequest {
            multiaddr: a.addr.to_string(),
        })
        .await
        .unwrap();
    // bootstrap from peer_addresses
    assert!(
        connected_within(&a, b.peer, Duration::from_secs(5)).await,
        "a did not bootstrap to b"
    );
    assert!(
        connected_within(&a, stranger.peer, Duration::from_secs(5)).await,
        "the stranger did not connect"
    );
    // Identify has told a the stranger's addresses by now; let a periodic save run.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let text = std::fs::read_to_string(&ps).unwrap_or_default();
    assert!(
        !text.contains(&stranger.peer.to_string()),
        "a stranger was written to the peerstore: {text:?}"
    );
    a.stop().await;
    let text = std::fs::read_to_string(&ps).unwrap();
    assert!(
        text.lines().any(|l| l == b.addr.to_string()),
        "peerstore lacks b: {text:?}"
    );
    assert!(
        !text.contains(&stranger.peer.to_string()),
        "a stranger was written to the peerstore: {text:?}"
    );
    stranger.stop().await;
    // restart a with only its peerstore
    let a = node_with(
        limits(),
        Some(SECRET_A),
        key.clone(),
        Some(vec![key.public().to_peer_id(), b.peer]),
        Some(ps.clone()),
        vec![],
    )
    .await;
    assert!(
        connected_within(&a, b.peer, Duration::from_secs(5)).await,
        "a did not reconnect from its peerstore"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_port_does_not_disturb_calls() {
    use tokio::io::AsyncWriteExt;
    let a = node(Some(SECRET_A), None).await;
    let b = node(Some(SECRET_A), None).await;
    let mut cb = b.client();
    cb.dial(ipfs_cluster_proto::transport::v1::DialRequest {
        multiaddr: a.addr.to_string(),
    })
    .await
    .unwrap();
    // a raw TCP client writing junk to a's libp2p port, and one sending a truncated frame
    let port = a.addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Tcp(p) => Some(p),
        _ => None,
    });
    let target = format!("127.0.0.1:{}", port.unwrap());
    let mut junk = tokio::net::TcpStream::connect(&target).await.unwrap();
    let bytes: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _ = junk.write_all(&bytes).await;
    let mut short = tokio::net::TcpStream::connect(&target).await.unwrap();
    let _ = short.write_all(&[0u8; 10]).await;
    for i in 0..5 {
        let r = cb
            .call(call(&a.peer, CONSENSUS, "Join", format!("{i}").as_bytes()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.payload, format!("/{CONSENSUS}/Join:{i}").into_bytes());
    }
    drop((junk, short));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_peer_inbound_limit_and_message_size() {
    let small = Limits {
        max_inbound_calls_per_peer: 1,
        max_message_size: 2048,
        ..limits()
    };
    let a = node_with(
        small,
        Some(SECRET_A),
        Keypair::generate_ed25519(),
        None,
        None,
        vec![],
    )
    .await;
    let b = node(Some(SECRET_A), None).await;
    let cb = b.client();
    cb.clone()
        .dial(ipfs_cluster_proto::transport::v1::DialRequest {
            multiaddr: a.addr.to_string(),
        })
        .await
        .unwrap();

    // three concurrent slow calls from one peer: only one is let through at a time
    let calls = (0..3).map(|_| {
        let mut c = cb.clone();
        let req = call(&a.peer, CONSENSUS, "Join", b"slow");
        async move { c.call(req).await.map(|r| r.into_inner().payload) }
    });
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code() == Code::ResourceExhausted))
        .count();
    // Each call holds the service for 500 ms, so the calls overlap and the limit of one
    // refuses the others; on a very loaded machine a late call may still get through.
    assert!(ok >= 1 && refused >= 1 && ok + refused == 3, "{results:?}");

    // a request larger than a's limit is dropped by a (never reaches the service) ...
    let hits = a.hits_consensus.load(Ordering::SeqCst);
    let e = cb
        .clone()
        .call(call(&a.peer, CONSENSUS, "Join", &[7u8; 8192]))
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Ok);
    assert_eq!(a.hits_consensus.load(Ordering::SeqCst), hits);
    // ... and a keeps serving
    let r = cb
        .clone()
        .call(call(&a.peer, CONSENSUS, "Join", b"ok"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.payload, format!("/{CONSENSUS}/Join:ok").into_bytes());
    a.stop().await;
    b.stop().await;
}

/// Hole 2 of docs/security.md: the service behind the transport learns the caller's verified peer id
/// on inbound peer calls, and sees no caller id on local dispatch, even when the local
/// caller puts one into its own request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_calls_carry_the_verified_caller_and_local_ones_cannot_forge_it() {
    let keys: Vec<Keypair> = (0..2).map(|_| Keypair::generate_ed25519()).collect();
    let ids: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
    let mut nodes = Vec::new();
    for k in &keys {
        nodes.push(
            node_with(
                limits(),
                Some(SECRET_A),
                k.clone(),
                Some(ids.clone()),
                None,
                vec![],
            )
            .await,
        );
    }
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut ca = a.client();
    ca.dial(ipfs_cluster_proto::transport::v1::DialRequest {
        multiaddr: b.addr.to_string(),
    })
    .await
    .unwrap();
    let got = ca
        .call(call(&b.peer, IPFS_CONNECTOR, "Status", b"whoami"))
        .await
        .unwrap()
        .into_inner()
        .payload;
    assert_eq!(String::from_utf8_lossy(&got), a.peer.to_string());
    // A local caller claiming to be b through a's transport: the service sees a local call.
    let mut forged = Request::new(call(&a.peer, IPFS_CONNECTOR, "Status", b"whoami"));
    forged.metadata_mut().insert(
        ipfs_cluster_proto::PEER_HEADER,
        b.peer.to_string().parse().unwrap(),
    );
    let got = ca.call(forged).await.unwrap().into_inner().payload;
    assert_eq!(String::from_utf8_lossy(&got), "local");
    for n in nodes {
        n.stop().await;
    }
}

/// Hole 6 of docs/security.md: only small metrics about their own signed sender, a member, reach the
/// local services.
#[tokio::test]
async fn metrics_are_admitted_only_from_members_about_themselves() {
    use crate::{service::admit_metric, trust::Trust};
    use ipfs_cluster_proto::{transport::v1::BroadcastMessage, types::v1::Metric};
    use prost::Message;
    let (local, member, stranger) = (PeerId::random(), PeerId::random(), PeerId::random());
    let trust = Trust::new(
        Members::Fixed(Arc::new([local, member].into_iter().collect())),
        local,
        Duration::from_secs(1),
    );
    let msg = |from: &PeerId, about: &PeerId, value: usize| BroadcastMessage {
        topic: ipfs_cluster_proto::METRICS_TOPIC.into(),
        from: from.to_string(),
        data: Metric {
            name: "freespace".into(),
            peer: about.to_string(),
            value: "9".repeat(value),
            ..Default::default()
        }
        .encode_to_vec(),
    };
    assert!(admit_metric(&trust, &local, &msg(&member, &member, 10))
        .await
        .is_ok());
    assert!(admit_metric(&trust, &local, &msg(&local, &local, 10))
        .await
        .is_ok());
    let e = admit_metric(&trust, &local, &msg(&member, &local, 10))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("names peer"), "{e}");
    let e = admit_metric(&trust, &local, &msg(&stranger, &stranger, 10))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a cluster member"), "{e}");
    let e = admit_metric(&trust, &local, &msg(&member, &member, 5000))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("exceeds the limit"), "{e}");
    let mut junk = msg(&member, &member, 1);
    junk.data = vec![0xff; 8];
    assert!(admit_metric(&trust, &local, &junk).await.is_err());

    // crdt mode: any secret holder's metric about itself (followers join the peerset by
    // their ping), still about its sender only and bounded.
    let crdt = Trust::new(
        Members::Fixed(Arc::new([local, member].into_iter().collect())),
        local,
        Duration::from_secs(1),
    )
    .with_crdt(true);
    assert!(admit_metric(&crdt, &local, &msg(&stranger, &stranger, 10))
        .await
        .is_ok());
    let e = admit_metric(&crdt, &local, &msg(&stranger, &member, 10))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("names peer"), "{e}");
    let e = admit_metric(&crdt, &local, &msg(&stranger, &stranger, 5000))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("exceeds the limit"), "{e}");
}

/// The TCP port of a `/ip4/…/tcp/<port>/p2p/<id>` address.
fn tcp_port(a: &Multiaddr) -> u16 {
    a.iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a TCP address")
}

/// The addresses `n`'s transport lists for peer `p` (`Peers`), once it is connected.
async fn peer_addresses_of(n: &Node, p: PeerId, until: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut c = n.client();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let peers = c
            .peers(ipfs_cluster_proto::transport::v1::PeersRequest {})
            .await
            .unwrap()
            .into_inner()
            .peers;
        let addrs = peers
            .into_iter()
            .find(|e| e.peer_id == p.to_string())
            .map(|e| e.addresses)
            .unwrap_or_default();
        if until(&addrs) || Instant::now() > deadline {
            return addrs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `Dial` takes /dns4 and /dns names, with `/p2p/<id>` and without it (the peer id is then
/// learned from the connection); a name that does not resolve is a failure worth a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_dns_addresses_with_and_without_peer_id() {
    let b = node(Some(SECRET_A), None).await;
    let port = tcp_port(&b.addr);
    for (i, addr) in [
        format!("/dns4/localhost/tcp/{port}/p2p/{}", b.peer),
        format!("/dns4/localhost/tcp/{port}"),
        format!("/dns/localhost/tcp/{port}"),
    ]
    .into_iter()
    .enumerate()
    {
        // A fresh dialler each time: an existing connection would answer without dialling.
        let a = node(Some(SECRET_A), None).await;
        let got = a
            .client()
            .dial(ipfs_cluster_proto::transport::v1::DialRequest {
                multiaddr: addr.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("dial #{i} {addr}: {e}"))
            .into_inner()
            .peer_id;
        assert_eq!(got, b.peer.to_string(), "dial #{i} {addr}");
        let known = peer_addresses_of(&a, b.peer, |v| !v.is_empty()).await;
        assert!(
            known.contains(&format!("/dns4/localhost/tcp/{port}"))
                || known.contains(&format!("/dns/localhost/tcp/{port}")),
            "the name dialled is remembered for the peer: {known:?}"
        );
        a.stop().await;
    }
    let e = b
        .client()
        .dial(ipfs_cluster_proto::transport::v1::DialRequest {
            multiaddr: "/dns4/no-such-host.invalid/tcp/9096".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::Unavailable,
        "a name that does not resolve (yet) is worth a retry: {e:?}"
    );
    b.stop().await;
}

/// A peerstore line without a peer id (`/dns4/localhost/tcp/<port>`, as an operator or
/// `init --peers` writes it) is dialled at start; once connected the file names the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_dns_peerstore_line_bootstraps_and_learns_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let ps = dir.path().join("peerstore");
    let b = node(Some(SECRET_A), None).await;
    let port = tcp_port(&b.addr);
    std::fs::write(&ps, format!("/dns4/localhost/tcp/{port}\n")).unwrap();
    let a = node_with(
        limits(),
        Some(SECRET_A),
        Keypair::generate_ed25519(),
        Some(vec![b.peer]),
        Some(ps.clone()),
        vec![],
    )
    .await;
    let known = peer_addresses_of(&a, b.peer, |v| !v.is_empty()).await;
    assert!(
        !known.is_empty(),
        "a did not bootstrap from the unnamed line"
    );
    a.stop().await;
    let text = std::fs::read_to_string(&ps).unwrap();
    assert_eq!(
        text,
        format!("/dns4/localhost/tcp/{port}/p2p/{}\n", b.peer),
        "the DNS address is kept (alone, as upstream) and now carries the peer id"
    );
    b.stop().await;
}

/// `announce_multiaddress` replaces what a peer tells others: its ID's addresses, and
/// identify (a peer it connects to learns the announced name, not the listen address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_multiaddress_is_what_others_learn() {
    let b = node(Some(SECRET_A), None).await;
    let announced: Multiaddr = "/dns4/peer-a.example/tcp/4242".parse().unwrap();
    let ann = announced.clone();
    let a = node_tweaked(
        limits(),
        Some(SECRET_A),
        Keypair::generate_ed25519(),
        None,
        None,
        vec![b.addr.clone()],
        move |o| o.announce = vec![ann],
    )
    .await;
    let id = a
        .client()
        .id(ipfs_cluster_proto::transport::v1::IdRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(id.addresses, vec![format!("{announced}/p2p/{}", a.peer)]);
    // a dialled b, so all b knows of a's addresses came through identify.
    let want = announced.to_string();
    let known = peer_addresses_of(&b, a.peer, |v| v.contains(&want)).await;
    assert_eq!(
        known,
        vec![want],
        "b learned other addresses of a: {known:?}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitswap_fetches_the_consensus_blocks_of_connected_peers() {
    use ipfs_cluster_proto::transport::v1::{BitswapGetRequest, DialRequest};
    let a = node(Some(SECRET_A), None).await;
    let b = node(Some(SECRET_A), None).await;
    let mut ca = a.client();
    // No peer connected yet: nothing to ask.
    let none = ca
        .bitswap_get(BitswapGetRequest {
            cid: block_cid().to_string(),
            peers: vec![],
            timeout_ms: 2000,
        })
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::Unavailable, "{none:?}");
    ca.dial(DialRequest {
        multiaddr: b.addr.to_string(),
    })
    .await
    .unwrap();
    let got = ca
        .bitswap_get(BitswapGetRequest {
            cid: block_cid().to_string(),
            peers: vec![],
            timeout_ms: 5000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.data, BLOCK);
    assert_eq!(got.peer, b.peer.to_string());
    // A block nobody has: every peer asked says DONT_HAVE, so it fails before the timeout.
    let t = Instant::now();
    let missing = ca
        .bitswap_get(BitswapGetRequest {
            cid: "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".into(),
            peers: vec![b.peer.to_string()],
            timeout_ms: 20_000,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
    a.stop().await;
    b.stop().await;
}

/// Whether `n` lists `p` among its connected peers within `within`.
async fn connected_within(n: &Node, p: PeerId, within: Duration) -> bool {
    let mut c = n.client();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let peers = c
            .peers(ipfs_cluster_proto::transport::v1::PeersRequest {})
            .await
            .unwrap()
            .into_inner()
            .peers;
        if peers.iter().any(|e| e.peer_id == p.to_string()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A peer listed in `peer_addresses` whose connection closed (it crashed, or its
/// transport restarted) and that comes back without dialling us (it does not list us,
/// or its own dials failed) is dialled again within `rebootstrap_interval`, as upstream's
/// reBootstrap does; the start-up bootstrap alone stops at the first connection, and
/// gossip (metrics, crdt heads) between the two stayed cut until the other side dialled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_peer_that_comes_back_is_dialled_again() {
    let key = Keypair::generate_ed25519();
    let b = node_with(limits(), Some(SECRET_A), key.clone(), None, None, vec![]).await;
    let b_addr = b.addr.clone();
    let a = node_tweaked(
        limits(),
        Some(SECRET_A),
        Keypair::generate_ed25519(),
        None,
        None,
        vec![b_addr.clone()],
        |o| o.rebootstrap_interval = Duration::from_secs(1),
    )
    .await;
    assert!(
        connected_within(&a, b.peer, Duration::from_secs(10)).await,
        "a did not bootstrap to b"
    );
    let port = tcp_port(&b_addr);
    b.stop().await;
    // b back on the same address, dialling nobody.
    let b = node_tweaked(limits(), Some(SECRET_A), key, None, None, vec![], |o| {
        o.listen = vec![format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()]
    })
    .await;
    assert!(
        connected_within(&a, b.peer, Duration::from_secs(20)).await,
        "a never dialled the peer back"
    );
    a.stop().await;
    b.stop().await;
}

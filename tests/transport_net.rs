//! The transport service as a real process on loopback: `ipfs-cluster-transport --config DIR`
//! on folders made by the real `ipfs-cluster-service init`, with in-process stand-ins of
//! our own gRPC contracts at each peer's internal addresses: the test kit's fake consensus
//! (its `Members` drive the trust policy, rewritten between two calls, and its call count
//! proves the transport asks nothing else; a real raft cluster cannot be re-membered at
//! will), and a Gateway double (`Id`/`Info`) as the "local test service" that peer calls
//! reach, which counts the calls that got through. Covers: connect + list, peer calls, secrets, junk on the
//! swarm port, the allow-list, broadcast, and the peerstore across a restart.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use ipfs_cluster_proto::{
    client::{self, TransportClient},
    consensus::v1::Member,
    gateway::v1::{
        gateway_server::{Gateway, GatewayServer},
        IdRequest as GwIdRequest, IdResponse as GwIdResponse, InfoRequest, InfoResponse,
    },
    names,
    transport::v1::{
        DialRequest, IdRequest, PeerCallManyRequest, PeerCallRequest, PeersRequest, PublishRequest,
        SubscribeRequest,
    },
    InternalToken,
};
use ipfs_cluster_tests::{bin, serve_fake, wait_for, FakeConsensus, PeerDir, Proc, Served};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;
use tonic::{Code, Request, Response, Status};

// ---------------------------------------------------------------------------------------
// Test doubles of our own contracts.

/// Gateway double: the "local test service". `Id` (open to secret holders) answers with a
/// marker naming the peer; `Info` is closed to other peers. Both count their calls.
#[derive(Clone)]
struct GatewayDouble {
    marker: String,
    id_calls: Arc<AtomicUsize>,
    info_calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Gateway for GatewayDouble {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        self.info_calls.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(InfoResponse {
            version: self.marker.clone(),
            ..Default::default()
        }))
    }
    async fn id(&self, _: Request<GwIdRequest>) -> Result<Response<GwIdResponse>, Status> {
        self.id_calls.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(GwIdResponse {
            peername: self.marker.clone(),
            ..Default::default()
        }))
    }
    type Libp2pHttpStream = std::pin::Pin<
        Box<
            dyn futures::Stream<Item = Result<ipfs_cluster_proto::gateway::v1::TunnelData, Status>>
                + Send,
        >,
    >;
    async fn libp2p_http(
        &self,
        _: Request<tonic::Streaming<ipfs_cluster_proto::gateway::v1::TunnelData>>,
    ) -> Result<Response<Self::Libp2pHttpStream>, Status> {
        Err(Status::unimplemented(
            "the gateway double serves no REST API",
        ))
    }
}

// ---------------------------------------------------------------------------------------
// One peer: its config folder, its doubles (in this process) and its transport process.

struct Peer {
    name: &'static str,
    pdir: PeerDir,
    token: InternalToken,
    consensus: FakeConsensus,
    gateway: GatewayDouble,
    _doubles: Vec<Served>,
    proc: Option<Proc>,
    id: String,
    /// The swarm address, ending in /p2p/<id>.
    addr: String,
}

fn at(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// A secret (64 hex characters) unique to this test run and `salt`.
fn secret(salt: u8) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let seed = nanos ^ ((std::process::id() as u128) << 64) ^ ((salt as u128) << 120);
    format!("{seed:032x}{:032x}", !seed)
}

/// Deterministic pseudo-random bytes (xorshift), for junk on the swarm port.
fn junk(n: usize, mut s: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

impl Peer {
    /// `ipfs-cluster-service init` with `secret` ("" = open network), the doubles started.
    async fn init(root: &Path, name: &'static str, secret: &str) -> Peer {
        let dir = root.join(name);
        // No IPFS daemon is involved: the connector is not started in these tests.
        let pdir = PeerDir::init(&dir, "/ip4/127.0.0.1/tcp/1", Some(secret)).expect("init");
        let token = InternalToken::load(&dir.join("internal.token")).unwrap();
        let consensus = FakeConsensus::default();
        let gateway = GatewayDouble {
            marker: format!("gateway-double-of-{name}"),
            id_calls: Default::default(),
            info_calls: Default::default(),
        };
        let doubles = vec![
            consensus
                .serve(Some(at(pdir.ports.consensus)), &token)
                .await
                .expect("the fake consensus"),
            serve_fake(
                GatewayServer::new(gateway.clone()),
                Some(at(pdir.ports.gateway)),
                &token,
            )
            .await
            .expect("the gateway double"),
        ];
        Peer {
            name,
            pdir,
            token,
            consensus,
            gateway,
            _doubles: doubles,
            proc: None,
            id: String::new(),
            addr: String::new(),
        }
    }

    fn dir(&self) -> &Path {
        &self.pdir.dir
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("transport.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn client(&self) -> TransportClient {
        client::transport(at(self.pdir.ports.transport), &self.token)
    }

    /// Starts the real transport binary and waits until it answers `Id`.
    async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut proc = Proc::spawn(
            "ipfs-cluster-transport",
            Command::new(bin("ipfs-cluster-transport"))
                .arg("--config")
                .arg(self.dir())
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
        )
        .unwrap();
        let mut c = self.client();
        let id = Arc::new(Mutex::new(None));
        let ok = wait_for(Duration::from_secs(20), || {
            let mut c = c.clone();
            let id = id.clone();
            async move {
                match c.id(IdRequest {}).await {
                    Ok(r) => {
                        *id.lock().unwrap() = Some(r.into_inner());
                        true
                    }
                    Err(_) => false,
                }
            }
        })
        .await;
        if ok.is_err() {
            panic!(
                "transport {} did not answer Id (exit: {:?}); log:\n{}",
                self.name,
                proc.try_wait(),
                self.log()
            );
        }
        let id = id.lock().unwrap().take().unwrap();
        self.id = id.peer_id.clone();
        self.addr = id
            .addresses
            .iter()
            .find(|a| a.starts_with("/ip4/127.0.0.1/"))
            .cloned()
            .unwrap_or_else(|| panic!("{}: no loopback address in {:?}", self.name, id.addresses));
        self.proc = Some(proc);
        let _ = c.peers(PeersRequest {}).await.unwrap();
    }

    /// SIGTERM; the process must exit cleanly (it writes the peerstore on the way out).
    fn stop(&mut self) {
        let mut p = self.proc.take().expect("running");
        let st = p
            .terminate(Duration::from_secs(10))
            .expect("transport stops on SIGTERM");
        assert!(
            st.success(),
            "{}: exit {st}; log:\n{}",
            self.name,
            self.log()
        );
    }

    fn member(&self) -> Member {
        Member {
            peer_id: self.id.clone(),
            addresses: vec![self.addr.clone()],
            voter: true,
        }
    }

    fn set_members(&self, peers: &[&Peer]) {
        self.consensus
            .set_members(peers.iter().map(|p| p.member()).collect());
    }

    async fn connected(&self) -> BTreeSet<String> {
        self.client()
            .peers(PeersRequest {})
            .await
            .unwrap()
            .into_inner()
            .peers
            .into_iter()
            .map(|p| p.peer_id)
            .collect()
    }

    async fn dial(&self, to: &Peer) -> Result<String, Status> {
        self.client()
            .dial(DialRequest {
                multiaddr: to.addr.clone(),
            })
            .await
            .map(|r| r.into_inner().peer_id)
    }

    /// A unary peer call to `to` (the payload of an empty request message is empty).
    async fn call(&self, to: &str, service: &str, method: &str) -> Result<Vec<u8>, Status> {
        self.client()
            .call(PeerCallRequest {
                peer: to.to_string(),
                service: service.into(),
                method: method.into(),
                payload: vec![],
                timeout_ms: 5_000,
            })
            .await
            .map(|r| r.into_inner().payload)
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn fp(p: &Peer) -> String {
    p.client()
        .id(IdRequest {})
        .await
        .unwrap()
        .into_inner()
        .psk_fingerprint
}

async fn wait_connected(p: &Peer, want: &[&Peer]) {
    let want: BTreeSet<String> = want.iter().map(|q| q.id.clone()).collect();
    let res = wait_for(Duration::from_secs(20), || async {
        p.connected().await == want
    })
    .await;
    assert!(
        res.is_ok(),
        "{} lists {:?}, expected {want:?}; log:\n{}",
        p.name,
        p.connected().await,
        p.log()
    );
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_secret_peers_connect_call_and_broadcast() {
    let tmp = tempfile::tempdir().unwrap();
    let s = secret(1);
    let mut a = Peer::init(tmp.path(), "a", &s).await;
    let mut b = Peer::init(tmp.path(), "b", &s).await;
    let mut c = Peer::init(tmp.path(), "c", &s).await;
    for p in [&mut a, &mut b, &mut c] {
        p.start().await;
    }
    for p in [&a, &b, &c] {
        p.set_members(&[&a, &b, &c]);
    }
    assert_eq!(a.dial(&b).await.unwrap(), b.id);
    assert_eq!(a.dial(&c).await.unwrap(), c.id);
    assert_eq!(b.dial(&c).await.unwrap(), c.id);
    wait_connected(&a, &[&b, &c]).await;
    wait_connected(&b, &[&a, &c]).await;
    wait_connected(&c, &[&a, &b]).await;

    // A peer call from A reaches B's local test service and returns its answer.
    let answer = a.call(&b.id, names::GATEWAY, "Id").await.unwrap();
    assert!(contains(&answer, "gateway-double-of-b"), "{answer:?}");
    assert_eq!(b.gateway.id_calls.load(Ordering::SeqCst), 1);
    assert_eq!(a.gateway.id_calls.load(Ordering::SeqCst), 0);

    // Fan-out: one result per peer, in order; our own id is served locally; a bad id is
    // an error for that entry only.
    let many = a
        .client()
        .call_many(PeerCallManyRequest {
            peers: vec![
                b.id.clone(),
                c.id.clone(),
                a.id.clone(),
                "not-a-peer".into(),
            ],
            service: names::GATEWAY.into(),
            method: "Id".into(),
            payload: vec![],
            timeout_ms: 5_000,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(many.len(), 4);
    for (r, who) in many.iter().zip(["b", "c", "a"]) {
        assert_eq!(r.code, 0, "{r:?}");
        assert!(
            contains(&r.payload, &format!("gateway-double-of-{who}")),
            "{r:?}"
        );
    }
    assert_eq!(many[3].code, Code::InvalidArgument as i32, "{:?}", many[3]);

    // Outside the allow-list: refused with PERMISSION_DENIED, never reaches the service.
    let e = a.call(&b.id, names::GATEWAY, "Info").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    let e = a.call(&b.id, names::CONSENSUS, "Export").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    let e = a.call(&b.id, names::TRANSPORT, "Dial").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    let e = a.call(&b.id, "no.such.Service", "Thing").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    assert_eq!(b.gateway.info_calls.load(Ordering::SeqCst), 0);
    assert_eq!(b.consensus.calls_except(&["Members"]), 0);
    assert!(
        b.log().contains("peer call denied by the RPC policy"),
        "{}",
        b.log()
    );
    // The same closed method is fine locally (the caller proved it is local with the token).
    let local = b.call("", names::GATEWAY, "Info").await.unwrap();
    assert!(contains(&local, "gateway-double-of-b"));

    // Trusted methods follow B's consensus members: A removed -> refused; A back -> passes
    // the policy (no connector runs at B, so the call then fails as UNAVAILABLE there).
    b.set_members(&[&b, &c]);
    let e = a
        .call(&b.id, names::IPFS_CONNECTOR, "Status")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    b.set_members(&[&a, &b, &c]);
    let res = wait_for(Duration::from_secs(10), || async {
        match a.call(&b.id, names::IPFS_CONNECTOR, "Status").await {
            Err(e) => e.code() != Code::PermissionDenied,
            Ok(_) => true,
        }
    })
    .await;
    assert!(res.is_ok(), "a member's trusted call is still refused");

    // Broadcast: a message published on A reaches B, C and A's own subscriber.
    let mut subs = Vec::new();
    for p in [&a, &b, &c] {
        let stream = p
            .client()
            .subscribe(SubscribeRequest {
                topic: ipfs_cluster_proto::METRICS_TOPIC.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            let mut stream = stream;
            while let Some(Ok(m)) = stream.next().await {
                if tx.send(m).await.is_err() {
                    break;
                }
            }
        });
        subs.push((p.name, rx));
    }
    // Gossipsub learns the subscriptions over the network: publish until everyone has one.
    let mut got = [false; 3];
    let mut n = 0u32;
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.iter().any(|g| !g) {
        assert!(
            Instant::now() < deadline,
            "broadcast not received by all: {got:?}"
        );
        n += 1;
        // A real metric about its sender: the transport passes only those on this topic.
        let metric = ipfs_cluster_proto::types::v1::Metric {
            name: "test".into(),
            peer: a.id.clone(),
            value: format!("metric-{n}"),
            ..Default::default()
        };
        a.client()
            .publish(PublishRequest {
                topic: ipfs_cluster_proto::METRICS_TOPIC.into(),
                data: prost::Message::encode_to_vec(&metric),
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        for (i, (name, rx)) in subs.iter_mut().enumerate() {
            while let Ok(m) = rx.try_recv() {
                assert_eq!(m.topic, ipfs_cluster_proto::METRICS_TOPIC);
                assert_eq!(m.from, a.id, "{name} got a message from someone else");
                let got_metric: ipfs_cluster_proto::types::v1::Metric =
                    prost::Message::decode(m.data.as_slice()).unwrap();
                assert!(got_metric.value.starts_with("metric-"));
                got[i] = true;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_secret_never_connects_and_junk_does_not_disturb() {
    let tmp = tempfile::tempdir().unwrap();
    let s = secret(2);
    let mut a = Peer::init(tmp.path(), "a", &s).await;
    let mut b = Peer::init(tmp.path(), "b", &s).await;
    let mut x = Peer::init(tmp.path(), "x", &secret(3)).await;
    let mut y = Peer::init(tmp.path(), "y", "").await;
    for p in [&mut a, &mut b, &mut x, &mut y] {
        p.start().await;
    }
    // X and Y believe A is a member, so their calls to A have an address to dial.
    a.set_members(&[&a, &b]);
    b.set_members(&[&a, &b]);
    x.set_members(&[&a, &x]);
    y.set_members(&[&a, &y]);
    assert_ne!(fp(&a).await, "");
    assert_eq!(fp(&a).await, fp(&b).await);
    assert_ne!(fp(&a).await, fp(&x).await);
    assert_eq!(fp(&y).await, "", "y runs an open network");
    assert!(y.log().contains("UNPROTECTED"), "{}", y.log());

    a.dial(&b).await.unwrap();
    wait_connected(&a, &[&b]).await;

    // Different secret and no secret: dials fail fast, in both directions.
    for (from, to) in [(&x, &a), (&y, &a), (&a, &x), (&a, &y)] {
        let t = Instant::now();
        let e = from.dial(to).await.unwrap_err();
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "{} -> {} failed only after {took:?}: {e}",
            from.name,
            to.name
        );
        assert_eq!(
            e.code(),
            Code::Unavailable,
            "{} -> {}: {e}",
            from.name,
            to.name
        );
    }
    // Their calls are never delivered.
    for p in [&x, &y] {
        let e = p.call(&a.id, names::GATEWAY, "Id").await.unwrap_err();
        assert_ne!(e.code(), Code::Ok, "{}: {e}", p.name);
    }

    // Junk on B's swarm port: random bytes, a pnet-nonce-sized prefix then garbage, and an
    // idle connection. B keeps answering A.
    let swarm = b.pdir.ports.swarm;
    let mut held = Vec::new();
    for (i, size) in [(1u64, 65_536usize), (2, 24), (3, 1 << 20), (4, 0)] {
        let mut sock = tokio::net::TcpStream::connect(at(swarm)).await.unwrap();
        // B may close the connection while we write: that is what we expect.
        let _ = sock
            .write_all(&junk(size, i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .await;
        held.push(sock);
    }
    for _ in 0..3 {
        let answer = a.call(&b.id, names::GATEWAY, "Id").await.unwrap();
        assert!(contains(&answer, "gateway-double-of-b"));
    }
    drop(held);
    assert_eq!(b.gateway.id_calls.load(Ordering::SeqCst), 3);

    // Nothing from X or Y ever reached A: no connection, no call.
    let expect: BTreeSet<String> = [b.id.clone()].into();
    assert_eq!(a.connected().await, expect);
    assert_eq!(a.gateway.id_calls.load(Ordering::SeqCst), 0);
    assert_eq!(a.gateway.info_calls.load(Ordering::SeqCst), 0);
    assert_eq!(a.consensus.calls_except(&["Members"]), 0);
    assert!(x.connected().await.is_empty());
    assert!(y.connected().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peerstore_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let s = secret(4);
    let mut a = Peer::init(tmp.path(), "a", &s).await;
    let mut b = Peer::init(tmp.path(), "b", &s).await;
    let mut c = Peer::init(tmp.path(), "c", &s).await;
    for p in [&mut a, &mut b, &mut c] {
        p.start().await;
    }
    for p in [&a, &b, &c] {
        p.set_members(&[&a, &b, &c]);
    }
    // A never dialled C: the call reaches C through the address A's consensus knows.
    let answer = a.call(&c.id, names::GATEWAY, "Id").await.unwrap();
    assert!(contains(&answer, "gateway-double-of-c"));
    wait_connected(&a, &[&c]).await;

    b.dial(&a).await.unwrap();
    b.dial(&c).await.unwrap();
    wait_connected(&b, &[&a, &c]).await;

    b.stop();
    let text = std::fs::read_to_string(b.dir().join("peerstore")).expect("peerstore written");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for p in [&a, &c] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with('/') && l.ends_with(&format!("/p2p/{}", p.id))),
            "peerstore lacks {}: {text}",
            p.name
        );
    }
    assert!(
        !text.contains(&b.id),
        "the peerstore lists only other peers: {text}"
    );
    // A sees B go away.
    wait_connected(&a, &[&c]).await;

    // service.json names no peers: the restarted B reconnects from its peerstore alone.
    let svc = std::fs::read_to_string(b.dir().join("service.json")).unwrap();
    assert!(!svc.contains(&a.id) && !svc.contains(&c.id));
    b.start().await;
    wait_connected(&b, &[&a, &c]).await;
    let answer = b.call(&a.id, names::GATEWAY, "Id").await.unwrap();
    assert!(contains(&answer, "gateway-double-of-a"));
}

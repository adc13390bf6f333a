//! The gateway's real HTTP server and handlers, started in the test's runtime through the
//! crate's public API, in front of stand-ins of our own gRPC contracts: the test kit's
//! fake consensus (one place for it), and transport / ipfs connector doubles made for
//! these tests. They give what a real cluster cannot be driven to on demand: a member that
//! is listed but unreachable (`DOWN_PEER`), fixed peer ids, timestamps and IPFS addresses
//! so answers can be compared byte for byte, and direct reads of the pinset and of the
//! blocks an add stored. Only our contracts are faked here, never IPFS; the same API
//! against real services and Kubo is `tests/gateway_api.rs` and `tests/compat.rs`.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use futures::Stream;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use ipfs_cluster_proto::{
    consensus::v1::consensus_server::ConsensusServer,
    gateway::v1::gateway_server::GatewayServer,
    ipfsconnector::v1 as ipb,
    names,
    transport::v1::{self as tpb, transport_server::TransportServer},
    types::v1 as pb,
    InternalToken,
};
use ipfs_cluster_testkit::FakeConsensus;
use prost::Message;
use tokio::sync::watch;
use tonic::{Request as GReq, Response as GResp, Status};

pub const SELF_PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
pub const DOWN_PEER: &str = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";
/// A peer of an older version: its RPC policy denies IpfsConnector.BlockPutMany.
pub const OLD_PEER: &str = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";
pub const IPFS_PEER: &str = "12D3KooWPVbVt9cxfsWgX8ppcHGQB6NgpTbzkJZYfjJwY8YxeHXn";
pub const CID1: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
pub const CID2: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The shared fake cluster state: the pinset and members live in the fake consensus.
#[derive(Default)]
pub struct World {
    pub consensus: FakeConsensus,
    /// Blocks stored through IpfsConnector.BlockPut (CID string → bytes).
    pub blocks: Mutex<BTreeMap<String, Vec<u8>>>,
    /// BlockPutMany calls OLD_PEER refused.
    pub denied: std::sync::atomic::AtomicUsize,
    /// (blocks, data bytes) of every BlockPutMany served.
    pub batches: Mutex<Vec<(usize, usize)>>,
}

impl World {
    /// What Kubo's block/put does for the connector: hash (sha2-256), store, answer.
    fn block_put(&self, r: ipb::BlockPutRequest) -> ipb::BlockPutResponse {
        let codec = if r.format == "raw" { 0x55 } else { 0x70 };
        let digest = ring::digest::digest(&ring::digest::SHA256, &r.data);
        let mh = cid::multihash::Multihash::<64>::wrap(0x12, digest.as_ref()).unwrap();
        let c = if r.cid_version == 0 {
            cid::Cid::new_v0(mh).unwrap()
        } else {
            cid::Cid::new_v1(codec, mh)
        };
        let size = r.data.len() as u64;
        self.blocks.lock().unwrap().insert(c.to_string(), r.data);
        ipb::BlockPutResponse {
            cid: c.to_string(),
            size,
        }
    }

    /// What the connector double answers for a CID: pinned when in the state.
    fn status(&self, cid: &str) -> pb::PinInfo {
        let (status, opts, created) = match self.consensus.pin(cid) {
            Some(p) => (
                pb::TrackerStatus::Pinned,
                p.options.clone().unwrap_or_default(),
                p.timestamp,
            ),
            None => (
                pb::TrackerStatus::Unpinned,
                pb::PinOptions::default(),
                1_714_558_830,
            ),
        };
        pb::PinInfo {
            cid: cid.to_string(),
            name: opts.name,
            peer: SELF_PEER.to_string(),
            allocations: vec![],
            origins: vec![],
            created,
            metadata: opts.metadata,
            peername: "p1".into(),
            ipfs_peer_id: IPFS_PEER.into(),
            ipfs_peer_addresses: vec![format!("/ip4/127.0.0.1/tcp/4001/p2p/{IPFS_PEER}")],
            status: status as i32,
            timestamp: 1_714_558_860_500_000_000,
            error: String::new(),
            attempt_count: 0,
            priority_pin: false,
        }
    }

    fn status_all(&self) -> Vec<pb::PinInfo> {
        let cids: Vec<String> = self.consensus.pins().into_keys().collect();
        cids.iter().map(|c| self.status(c)).collect()
    }
}

pub struct FakeConnector(pub Arc<World>);

#[tonic::async_trait]
impl ipb::ipfs_connector_server::IpfsConnector for FakeConnector {
    async fn status(&self, r: GReq<ipb::StatusRequest>) -> Result<GResp<pb::PinInfo>, Status> {
        Ok(GResp::new(self.0.status(&r.into_inner().cid)))
    }
    type StatusAllStream = BoxStream<pb::PinInfo>;
    async fn status_all(
        &self,
        _r: GReq<ipb::StatusAllRequest>,
    ) -> Result<GResp<Self::StatusAllStream>, Status> {
        let items: Vec<_> = self.0.status_all().into_iter().map(Ok).collect();
        Ok(GResp::new(Box::pin(futures::stream::iter(items))))
    }
    async fn recover(&self, r: GReq<ipb::StatusRequest>) -> Result<GResp<pb::PinInfo>, Status> {
        Ok(GResp::new(self.0.status(&r.into_inner().cid)))
    }
    type RecoverAllStream = BoxStream<pb::PinInfo>;
    async fn recover_all(
        &self,
        _r: GReq<ipb::StatusAllRequest>,
    ) -> Result<GResp<Self::RecoverAllStream>, Status> {
        Ok(GResp::new(Box::pin(futures::stream::empty())))
    }
    async fn ipfs_id(&self, _r: GReq<pb::Empty>) -> Result<GResp<ipb::IpfsIdResponse>, Status> {
        Ok(GResp::new(ipb::IpfsIdResponse {
            id: IPFS_PEER.into(),
            addresses: vec![format!("/ip4/127.0.0.1/tcp/4001/p2p/{IPFS_PEER}")],
            error: String::new(),
        }))
    }
    async fn swarm_peers(
        &self,
        _r: GReq<pb::Empty>,
    ) -> Result<GResp<ipb::SwarmPeersResponse>, Status> {
        Err(Status::unimplemented("not in this double"))
    }
    async fn repo_stat(&self, _r: GReq<pb::Empty>) -> Result<GResp<ipb::RepoStatResponse>, Status> {
        Err(Status::unimplemented("not in this double"))
    }
    async fn repo_gc(&self, _r: GReq<pb::Empty>) -> Result<GResp<ipb::RepoGcResponse>, Status> {
        Ok(GResp::new(gc_answer()))
    }
    async fn block_put(
        &self,
        _r: GReq<ipb::BlockPutRequest>,
    ) -> Result<GResp<ipb::BlockPutResponse>, Status> {
        Err(Status::unimplemented("not in this double"))
    }
    async fn block_put_many(
        &self,
        _r: GReq<ipb::BlockPutManyRequest>,
    ) -> Result<GResp<ipb::BlockPutManyResponse>, Status> {
        Err(Status::unimplemented("not in this double"))
    }
    async fn resolve(
        &self,
        r: GReq<ipb::ResolveRequest>,
    ) -> Result<GResp<ipb::ResolveResponse>, Status> {
        let path = r.into_inner().path;
        if path.starts_with("/ipns/") {
            Ok(GResp::new(ipb::ResolveResponse {
                cid: format!("/ipfs/{CID2}"),
            }))
        } else {
            Err(Status::not_found(format!("no link named in {path}")))
        }
    }
    async fn pin_now(&self, _r: GReq<ipb::PinNowRequest>) -> Result<GResp<pb::Empty>, Status> {
        Err(Status::unimplemented("not in this double"))
    }
    async fn unpin_now(&self, _r: GReq<ipb::PinNowRequest>) -> Result<GResp<pb::Empty>, Status> {
        Err(Status::unimplemented("not in this double"))
    }
}

fn gc_answer() -> ipb::RepoGcResponse {
    ipb::RepoGcResponse {
        keys: vec![ipb::RepoGcKey {
            key: CID1.into(),
            error: String::new(),
        }],
        error: String::new(),
    }
}

/// Dispatches peer calls: SELF_PEER to the local doubles (and the real gateway service
/// for Gateway.Id), DOWN_PEER fails as an unreachable peer would.
pub struct FakeTransport {
    pub world: Arc<World>,
    pub gateway: Mutex<Option<ipfs_cluster_proto::client::GatewayClient>>,
}

impl FakeTransport {
    async fn dispatch(
        &self,
        peer: &str,
        service: &str,
        method: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, Status> {
        if peer == DOWN_PEER {
            return Err(Status::unavailable(format!(
                "failed to dial {DOWN_PEER}: no addresses"
            )));
        }
        if peer == OLD_PEER && method == "BlockPutMany" {
            self.world
                .denied
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(Status::permission_denied(format!(
                "{service}/{method} is not in the RPC policy"
            )));
        }
        match (service, method) {
            (names::IPFS_CONNECTOR, "Status") | (names::IPFS_CONNECTOR, "Recover") => {
                let r = ipb::StatusRequest::decode(payload)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                Ok(self.world.status(&r.cid).encode_to_vec())
            }
            (names::IPFS_CONNECTOR, "BlockPut") => {
                let r = ipb::BlockPutRequest::decode(payload)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                Ok(self.world.block_put(r).encode_to_vec())
            }
            (names::IPFS_CONNECTOR, "BlockPutMany") => {
                let r = ipb::BlockPutManyRequest::decode(payload)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                self.world
                    .batches
                    .lock()
                    .unwrap()
                    .push((r.blocks.len(), r.blocks.iter().map(|b| b.data.len()).sum()));
                Ok(ipb::BlockPutManyResponse {
                    blocks: r
                        .blocks
                        .into_iter()
                        .map(|b| self.world.block_put(b))
                        .collect(),
                }
                .encode_to_vec())
            }
            (names::IPFS_CONNECTOR, "RepoGc") => Ok(gc_answer().encode_to_vec()),
            (names::IPFS_CONNECTOR, "SwarmPeers") => Ok(ipb::SwarmPeersResponse {
                peers: vec![DOWN_PEER.to_string()],
            }
            .encode_to_vec()),
            (names::TRANSPORT, "Peers") => Ok(tpb::PeersResponse {
                peers: vec![tpb::PeerEntry {
                    peer_id: DOWN_PEER.into(),
                    addresses: vec![],
                    latency_ns: 0,
                }],
            }
            .encode_to_vec()),
            (names::GATEWAY, "Id") => {
                let g = self.gateway.lock().unwrap().clone();
                let mut g = g.ok_or_else(|| Status::unavailable("gateway not started"))?;
                Ok(g.id(ipfs_cluster_proto::gateway::v1::IdRequest {})
                    .await?
                    .into_inner()
                    .encode_to_vec())
            }
            _ => Err(Status::unimplemented(format!(
                "{service}/{method} not in this double"
            ))),
        }
    }
}

#[tonic::async_trait]
impl tpb::transport_server::Transport for FakeTransport {
    async fn id(&self, _r: GReq<tpb::IdRequest>) -> Result<GResp<tpb::IdResponse>, Status> {
        Ok(GResp::new(tpb::IdResponse {
            peer_id: SELF_PEER.into(),
            addresses: vec![format!("/ip4/127.0.0.1/tcp/9096/p2p/{SELF_PEER}")],
            psk_fingerprint: String::new(),
        }))
    }
    async fn peers(
        &self,
        _r: GReq<tpb::PeersRequest>,
    ) -> Result<GResp<tpb::PeersResponse>, Status> {
        Err(Status::unimplemented("not in this double"))
    }
    async fn bitswap_get(
        &self,
        _r: GReq<tpb::BitswapGetRequest>,
    ) -> Result<GResp<tpb::BitswapGetResponse>, Status> {
        Err(Status::unimplemented("BitswapGet not in this double"))
    }
    async fn bandwidth(
        &self,
        _r: GReq<tpb::BandwidthRequest>,
    ) -> Result<GResp<tpb::BandwidthResponse>, Status> {
        Ok(GResp::new(tpb::BandwidthResponse {
            protocols: vec![tpb::ProtocolBandwidth {
                protocol: "/ipfs/ping/1.0.0".into(),
                total_in: 96,
                total_out: 64,
                rate_in: 1.5,
                rate_out: 0.0,
            }],
        }))
    }
    async fn dial(&self, _r: GReq<tpb::DialRequest>) -> Result<GResp<tpb::DialResponse>, Status> {
        Err(Status::unimplemented("not in this double"))
    }
    async fn disconnect(
        &self,
        _r: GReq<tpb::DisconnectRequest>,
    ) -> Result<GResp<pb::Empty>, Status> {
        Err(Status::unimplemented("not in this double"))
    }
    async fn call(
        &self,
        r: GReq<tpb::PeerCallRequest>,
    ) -> Result<GResp<tpb::PeerCallResponse>, Status> {
        let r = r.into_inner();
        let payload = self
            .dispatch(&r.peer, &r.service, &r.method, &r.payload)
            .await?;
        Ok(GResp::new(tpb::PeerCallResponse { payload }))
    }
    async fn call_many(
        &self,
        r: GReq<tpb::PeerCallManyRequest>,
    ) -> Result<GResp<tpb::PeerCallManyResponse>, Status> {
        let r = r.into_inner();
        let mut results = Vec::new();
        for p in &r.peers {
            results.push(
                match self.dispatch(p, &r.service, &r.method, &r.payload).await {
                    Ok(payload) => tpb::PeerCallResult {
                        peer: p.clone(),
                        payload,
                        code: 0,
                        error: String::new(),
                    },
                    Err(s) => tpb::PeerCallResult {
                        peer: p.clone(),
                        payload: vec![],
                        code: s.code() as i32,
                        error: s.message().to_string(),
                    },
                },
            );
        }
        Ok(GResp::new(tpb::PeerCallManyResponse { results }))
    }
    type CallStreamStream = BoxStream<tpb::PeerCallResponse>;
    async fn call_stream(
        &self,
        r: GReq<tpb::PeerCallRequest>,
    ) -> Result<GResp<Self::CallStreamStream>, Status> {
        let r = r.into_inner();
        if r.peer == DOWN_PEER {
            return Err(Status::unavailable(format!(
                "failed to dial {DOWN_PEER}: no addresses"
            )));
        }
        match (r.service.as_str(), r.method.as_str()) {
            (names::IPFS_CONNECTOR, "StatusAll") => {
                let items: Vec<_> = self
                    .world
                    .status_all()
                    .into_iter()
                    .map(|i| {
                        Ok(tpb::PeerCallResponse {
                            payload: i.encode_to_vec(),
                        })
                    })
                    .collect();
                Ok(GResp::new(Box::pin(futures::stream::iter(items))))
            }
            (names::IPFS_CONNECTOR, "RecoverAll") => {
                Ok(GResp::new(Box::pin(futures::stream::empty())))
            }
            _ => Err(Status::unimplemented("not in this double")),
        }
    }
    async fn publish(&self, _r: GReq<tpb::PublishRequest>) -> Result<GResp<pb::Empty>, Status> {
        Err(Status::unimplemented("not in this double"))
    }
    type SubscribeStream = BoxStream<tpb::BroadcastMessage>;
    async fn subscribe(
        &self,
        _r: GReq<tpb::SubscribeRequest>,
    ) -> Result<GResp<Self::SubscribeStream>, Status> {
        Err(Status::unimplemented("not in this double"))
    }
}

/// A running gateway (REST listener + Gateway gRPC) in front of the doubles.
pub struct Harness {
    pub world: Arc<World>,
    pub metrics: Arc<ipfs_cluster_gateway::backend::peer_metrics::PeerMetricStore>,
    pub rest: SocketAddr,
    pub pinsvc: SocketAddr,
    pub grpc: SocketAddr,
    pub token: InternalToken,
    shutdown: watch::Sender<bool>,
}

impl Harness {
    /// The pinset as the fake consensus holds it.
    pub fn pins(&self) -> BTreeMap<String, pb::Pin> {
        self.world.consensus.pins()
    }

    /// Makes `peer` a cluster member too (e.g. `DOWN_PEER`, listed but unreachable).
    pub fn add_member(&self, peer: &str) {
        self.world
            .consensus
            .add_member(peer, vec![format!("/ip4/127.0.0.1/tcp/9096/p2p/{peer}")]);
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn local() -> tokio::net::TcpListener {
    ipfs_cluster_testkit::loopback_listener().await.unwrap()
}

/// Starts the doubles and a gateway; `tune` adjusts the REST options (auth, TLS, CORS...).
pub async fn start(tune: impl FnOnce(&mut ipfs_cluster_gateway::HttpApiOptions)) -> Harness {
    let world = Arc::new(World::default());
    let token = InternalToken::generate();
    let (tx, rx) = watch::channel(false);
    let stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };

    let (lc, lt, li, lg) = (local().await, local().await, local().await, local().await);
    let (ac, at, ai, ag) = (
        lc.local_addr().unwrap(),
        lt.local_addr().unwrap(),
        li.local_addr().unwrap(),
        lg.local_addr().unwrap(),
    );
    let transport = Arc::new(FakeTransport {
        world: world.clone(),
        gateway: Mutex::new(None),
    });
    world.consensus.add_member(
        SELF_PEER,
        vec![format!("/ip4/127.0.0.1/tcp/9096/p2p/{SELF_PEER}")],
    );
    tokio::spawn(ipfs_cluster_runtime::serve(
        lc,
        token.clone(),
        ConsensusServer::new(world.consensus.clone()),
        stop(rx.clone()),
    ));
    tokio::spawn(ipfs_cluster_runtime::serve(
        lt,
        token.clone(),
        // The real transport's limit (16 MiB and some): block batches are larger than 4 MiB.
        TransportServer::from_arc(transport.clone()).max_decoding_message_size((16 << 20) + 4096),
        stop(rx.clone()),
    ));
    tokio::spawn(ipfs_cluster_runtime::serve(
        li,
        token.clone(),
        ipb::ipfs_connector_server::IpfsConnectorServer::new(FakeConnector(world.clone())),
        stop(rx.clone()),
    ));

    let mut rest = ipfs_cluster_gateway::HttpApiOptions::with_listen(SocketAddr::from((
        [127, 0, 0, 1],
        ipfs_cluster_testkit::free_port(),
    )));
    tune(&mut rest);
    let opts = ipfs_cluster_gateway::GatewayOptions {
        peername: "p1".into(),
        rest: rest.clone(),
        pinsvc: None,
        transport_addr: at,
        consensus_addr: ac,
        ipfs_connector_addr: ai,
        gateway_addr: ag,
        allow_remote_internal: false,
        replication_factor_min: -1,
        alert_check_interval: ipfs_cluster_runtime::monitor::DEFAULT_CHECK_INTERVAL,
        follower_mode: false,
    };
    let backends = ipfs_cluster_gateway::backend::Backends::connect(&opts, &token);
    let metrics = backends.peer_metrics.clone();
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let api = ipfs_cluster_gateway::bind_api(
        ipfs_cluster_gateway::server::ApiKind::Rest,
        rest,
        backends.clone(),
        served.clone(),
        None,
    )
    .await
    .unwrap();
    let rest_addr = api.local_addrs()[0];
    tokio::spawn(ipfs_cluster_gateway::serve_api(api, rx.clone()));
    let mut ps_opts = ipfs_cluster_gateway::HttpApiOptions::with_listen(SocketAddr::from((
        [127, 0, 0, 1],
        ipfs_cluster_testkit::free_port(),
    )));
    ps_opts.basic_auth_credentials = opts.rest.basic_auth_credentials.clone();
    let ps = ipfs_cluster_gateway::bind_api(
        ipfs_cluster_gateway::server::ApiKind::PinSvc,
        ps_opts,
        backends.clone(),
        served.clone(),
        None,
    )
    .await
    .unwrap();
    let pinsvc = ps.local_addrs()[0];
    tokio::spawn(ipfs_cluster_gateway::serve_api(ps, rx.clone()));
    let svc = ipfs_cluster_gateway::grpc::GatewayService {
        libp2p_http_target: String::new(),
        tunnel: None,
        rest_auth_required: false,
        backends,
        rest_listen: vec![],
        pinsvc_listen: vec![],
        served,
    };
    tokio::spawn(ipfs_cluster_runtime::serve(
        lg,
        token.clone(),
        GatewayServer::new(svc),
        stop(rx.clone()),
    ));
    *transport.gateway.lock().unwrap() = Some(ipfs_cluster_proto::client::gateway(ag, &token));
    Harness {
        world,
        metrics,
        rest: rest_addr,
        pinsvc,
        grpc: ag,
        token,
        shutdown: tx,
    }
}

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request over a fresh connection (plain TCP or any stream).
pub async fn send_on<S>(
    io: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Got
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    Got {
        status,
        headers,
        body: collected.to_bytes(),
        trailers,
    }
}

pub async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    send_on(tcp, method, path, headers, "").await
}

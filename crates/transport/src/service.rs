//! The `Transport` gRPC service the local services use: identity, peers, peer calls
//! (local dispatch for our own id, the libp2p peer-call protocol otherwise), broadcast.

use std::{pin::Pin, str::FromStr, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use ipfs_cluster_proto::{
    transport::v1::{
        transport_server, BandwidthRequest, BandwidthResponse, BitswapGetRequest,
        BitswapGetResponse, BroadcastMessage, DialRequest, DialResponse, DisconnectRequest,
        IdRequest, IdResponse, PeerCallManyRequest, PeerCallManyResponse, PeerCallRequest,
        PeerCallResponse, PeerCallResult, PeersRequest, PeersResponse, PublishRequest,
        SubscribeRequest, WireRequest,
    },
    types::v1::Empty,
};
use ipfs_cluster_runtime::ServiceError;
use libp2p::{Multiaddr, PeerId};
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
use tonic::{Request, Response, Status};

use crate::{host::HostHandle, inbound::deadline, local::LocalServices, wire::into_result};

#[derive(Clone)]
pub struct TransportService {
    pub host: HostHandle,
    pub local: Arc<LocalServices>,
    /// Member addresses from consensus, to reach members we never connected to.
    pub trust: Arc<crate::trust::Trust>,
    /// The peer call families (`None` when metrics are off).
    pub peer_calls: Option<Arc<crate::prometheus::PeerCalls>>,
    /// Bitswap client (`BitswapGet`) on the host.
    pub bitswap: crate::bitswap::Bitswap,
}

/// Where a call goes.
enum Target {
    Local,
    Remote(PeerId),
}

impl TransportService {
    fn target(&self, peer: &str) -> Result<Target, Status> {
        if peer.is_empty() {
            return Ok(Target::Local);
        }
        let p = PeerId::from_str(peer).map_err(|e| {
            Status::invalid_argument(format!("peer {peer:?} is not a valid peer id: {e}"))
        })?;
        Ok(if p == self.host.local_peer_id {
            Target::Local
        } else {
            Target::Remote(p)
        })
    }

    /// Addresses consensus knows for `peer`, asked only when we have no connection to it:
    /// calls to connected peers never wait for the local consensus service.
    async fn dial_hints(&self, peer: &PeerId) -> Vec<Multiaddr> {
        if self.host.is_connected(peer) {
            Vec::new()
        } else {
            self.trust.member_addresses(peer).await
        }
    }

    async fn call_one(
        &self,
        peer: &str,
        service: &str,
        method: &str,
        payload: Bytes,
        timeout_ms: u32,
    ) -> Result<Bytes, Status> {
        let timeout = deadline(timeout_ms, &self.host.limits);
        let started = std::time::Instant::now();
        let target = self.target(peer)?;
        let remote = matches!(target, Target::Remote(_));
        let res = self
            .call_target(target, service, method, payload, timeout)
            .await;
        if let Some(pc) = &self.peer_calls {
            pc.record(service, method, remote, &res, started);
        }
        res
    }

    async fn call_target(
        &self,
        target: Target,
        service: &str,
        method: &str,
        payload: Bytes,
        timeout: std::time::Duration,
    ) -> Result<Bytes, Status> {
        match target {
            Target::Local => self.local.unary(service, method, payload, timeout).await,
            Target::Remote(p) => {
                let req = WireRequest {
                    service: service.into(),
                    method: method.into(),
                    payload: payload.to_vec(),
                    timeout_ms: 0,
                    stream: false,
                    traceparent: ipfs_cluster_proto::client::outgoing_traceparent()
                        .unwrap_or_default(),
                };
                let addrs = self.dial_hints(&p).await;
                let chunks = into_result(self.host.call(p, req, timeout, addrs).await?)?;
                Ok(chunks.into_iter().next().unwrap_or_default())
            }
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The largest gossip metric passed to the local services (the encoded `Metric`). Real
/// metrics (freespace, numpin, ping, tags) are a few dozen bytes.
pub const MAX_METRIC_BYTES: usize = 4096;

/// Whether a message on the metrics topic reaches the local services: a small, decodable
/// `Metric` about its own sender (the gossip source, whose signature gossipsub verified),
/// which is this peer or a current member. Anything else could steer allocation, fake a
/// peer's liveness or fill memory on every peer (docs/security.md, hole 6). In crdt mode
/// any secret holder's metric about itself is taken (followers join the peerset by their
/// `ping`, as with upstream's pubsub monitor; the consensus metric store is bounded).
pub async fn admit_metric(
    trust: &crate::trust::Trust,
    local: &PeerId,
    m: &BroadcastMessage,
) -> Result<(), MetricRefused> {
    use prost::Message;
    if m.data.len() > MAX_METRIC_BYTES {
        return Err(MetricRefused::TooLarge(m.data.len()));
    }
    let metric = ipfs_cluster_proto::types::v1::Metric::decode(m.data.as_slice())
        .map_err(MetricRefused::Undecodable)?;
    if metric.peer != m.from {
        return Err(MetricRefused::NotAboutSender {
            name: metric.name,
            peer: metric.peer,
            from: m.from.clone(),
        });
    }
    let from = PeerId::from_str(&m.from).map_err(MetricRefused::Unsigned)?;
    if from == *local || trust.open_metrics() {
        return Ok(());
    }
    match trust.is_member(&from).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(MetricRefused::NotMember(from)),
        Err(e) => Err(MetricRefused::Trust(e)),
    }
}

/// Why [`admit_metric`] dropped a gossip metric (logged at debug level; the sender is not
/// told).
#[derive(Debug, thiserror::Error)]
pub enum MetricRefused {
    #[error("metric of {0} bytes exceeds the limit of {MAX_METRIC_BYTES} bytes")]
    TooLarge(usize),
    #[error("undecodable metric: {0}")]
    Undecodable(#[source] prost::DecodeError),
    #[error("metric {name:?} names peer {peer:?} but was published by {from}")]
    NotAboutSender {
        name: String,
        peer: String,
        from: String,
    },
    #[error("unsigned metric: {0}")]
    Unsigned(#[source] libp2p::identity::ParseError),
    #[error("peer {0} is not a cluster member")]
    NotMember(PeerId),
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
}

#[tonic::async_trait]
impl transport_server::Transport for TransportService {
    async fn id(&self, _: Request<IdRequest>) -> Result<Response<IdResponse>, Status> {
        Ok(Response::new(IdResponse {
            peer_id: self.host.local_peer_id.to_string(),
            addresses: self
                .host
                .addresses()
                .iter()
                .map(|a| a.to_string())
                .collect(),
            psk_fingerprint: self.host.psk_fingerprint.clone(),
        }))
    }

    async fn bandwidth(
        &self,
        _: Request<BandwidthRequest>,
    ) -> Result<Response<BandwidthResponse>, Status> {
        Ok(Response::new(crate::bandwidth::to_proto(
            self.host.bandwidth.snapshot(),
        )))
    }

    async fn bitswap_get(
        &self,
        req: Request<BitswapGetRequest>,
    ) -> Result<Response<BitswapGetResponse>, Status> {
        let r = req.into_inner();
        let cid = cid::Cid::try_from(r.cid.as_str())
            .map_err(|e| Status::invalid_argument(format!("{:?} is not a CID: {e}", r.cid)))?;
        let peers = if r.peers.is_empty() {
            self.host.connected_peers()
        } else {
            r.peers
                .iter()
                .map(|p| {
                    PeerId::from_str(p).map_err(|e| {
                        Status::invalid_argument(format!("peer {p:?} is not a valid peer id: {e}"))
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let timeout = match r.timeout_ms {
            0 => Duration::from_secs(10),
            ms => Duration::from_millis(u64::from(ms)),
        };
        let (peer, data) = self
            .bitswap
            .get(cid, peers, timeout)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(BitswapGetResponse {
            data,
            peer: peer.to_string(),
        }))
    }

    async fn peers(&self, _: Request<PeersRequest>) -> Result<Response<PeersResponse>, Status> {
        Ok(Response::new(PeersResponse {
            peers: self.host.peers().await?,
        }))
    }

    async fn dial(&self, req: Request<DialRequest>) -> Result<Response<DialResponse>, Status> {
        let s = req.into_inner().multiaddr;
        let addr = Multiaddr::from_str(s.trim()).map_err(|e| {
            Status::invalid_argument(format!(
                "{s:?} is not a multiaddr ({e}); e.g. /ip4/10.0.0.2/tcp/9096/p2p/12D3KooW…"
            ))
        })?;
        let peer = self.host.dial(addr).await?;
        Ok(Response::new(DialResponse {
            peer_id: peer.to_string(),
        }))
    }

    async fn disconnect(&self, req: Request<DisconnectRequest>) -> Result<Response<Empty>, Status> {
        let r = req.into_inner();
        let peer = PeerId::from_str(&r.peer_id).map_err(|e| {
            Status::invalid_argument(format!("peer {:?} is not a valid peer id: {e}", r.peer_id))
        })?;
        self.host.disconnect(peer, r.forget).await?;
        Ok(Response::new(Empty {}))
    }

    async fn call(
        &self,
        req: Request<PeerCallRequest>,
    ) -> Result<Response<PeerCallResponse>, Status> {
        let r = req.into_inner();
        let payload = self
            .call_one(
                &r.peer,
                &r.service,
                &r.method,
                Bytes::from(r.payload),
                r.timeout_ms,
            )
            .await?;
        Ok(Response::new(PeerCallResponse {
            payload: payload.to_vec(),
        }))
    }

    async fn call_many(
        &self,
        req: Request<PeerCallManyRequest>,
    ) -> Result<Response<PeerCallManyResponse>, Status> {
        let r = req.into_inner();
        let payload = Bytes::from(r.payload);
        let calls = r.peers.iter().map(|peer| {
            let payload = payload.clone();
            let (service, method) = (&r.service, &r.method);
            async move {
                match self
                    .call_one(peer, service, method, payload, r.timeout_ms)
                    .await
                {
                    Ok(p) => PeerCallResult {
                        peer: peer.clone(),
                        payload: p.to_vec(),
                        code: 0,
                        error: String::new(),
                    },
                    Err(st) => PeerCallResult {
                        peer: peer.clone(),
                        payload: vec![],
                        code: st.code() as i32,
                        error: st.message().to_string(),
                    },
                }
            }
        });
        let results = futures::future::join_all(calls).await;
        Ok(Response::new(PeerCallManyResponse { results }))
    }

    type CallStreamStream = BoxStream<PeerCallResponse>;

    async fn call_stream(
        &self,
        req: Request<PeerCallRequest>,
    ) -> Result<Response<Self::CallStreamStream>, Status> {
        let r = req.into_inner();
        let timeout = deadline(r.timeout_ms, &self.host.limits);
        let stream: Self::CallStreamStream = match self.target(&r.peer)? {
            Target::Local => {
                let s = self
                    .local
                    .server_streaming(&r.service, &r.method, Bytes::from(r.payload), timeout)
                    .await?;
                Box::pin(s.map(|item| {
                    item.map(|b| PeerCallResponse {
                        payload: b.to_vec(),
                    })
                }))
            }
            Target::Remote(p) => {
                let req = WireRequest {
                    service: r.service,
                    method: r.method,
                    payload: r.payload,
                    timeout_ms: 0,
                    stream: true,
                    traceparent: ipfs_cluster_proto::client::outgoing_traceparent()
                        .unwrap_or_default(),
                };
                let addrs = self.dial_hints(&p).await;
                let chunks = into_result(self.host.call(p, req, timeout, addrs).await?)?;
                Box::pin(futures::stream::iter(chunks.into_iter().map(|b| {
                    Ok(PeerCallResponse {
                        payload: b.to_vec(),
                    })
                })))
            }
        };
        Ok(Response::new(stream))
    }

    async fn publish(&self, req: Request<PublishRequest>) -> Result<Response<Empty>, Status> {
        let r = req.into_inner();
        if r.topic.is_empty() {
            return Err(Status::invalid_argument(
                "publish needs a topic name, e.g. \"monitor.metrics\"",
            ));
        }
        self.host.publish(r.topic, Bytes::from(r.data)).await?;
        Ok(Response::new(Empty {}))
    }

    type SubscribeStream = BoxStream<BroadcastMessage>;

    async fn subscribe(
        &self,
        req: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let topic = req.into_inner().topic;
        let rx = self.host.subscribe(topic.clone()).await?;
        let metrics = topic == ipfs_cluster_proto::METRICS_TOPIC;
        let trust = self.trust.clone();
        let local = self.host.local_peer_id;
        let s = BroadcastStream::new(rx).filter_map(move |m| {
            let topic = topic.clone();
            let trust = trust.clone();
            async move {
                match m {
                    Ok(m) if metrics => match admit_metric(&trust, &local, &m).await {
                        Ok(()) => Some(Ok(m)),
                        Err(why) => {
                            tracing::debug!(from = %m.from, reason = %why, "dropped a gossip metric");
                            None
                        }
                    },
                    Ok(m) => Some(Ok(m)),
                    Err(BroadcastStreamRecvError::Lagged(n)) => {
                        tracing::warn!(
                            topic,
                            skipped = n,
                            "a slow subscriber missed broadcast messages"
                        );
                        None
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(s)))
    }
}

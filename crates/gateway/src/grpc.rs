//! The gateway's own internal gRPC service: Info for operators, Id for other peers'
//! gateways (their GET /peers reaches it through the transport).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use bytes::Bytes;
use futures::StreamExt;
use ipfs_cluster_proto::gateway::v1::{
    gateway_server::Gateway, IdRequest, IdResponse, InfoRequest, InfoResponse, TunnelData,
};
use tonic::{Request, Response, Status, Streaming};

use crate::backend::Backends;

pub struct GatewayService {
    pub backends: Backends,
    pub rest_listen: Vec<String>,
    pub pinsvc_listen: Vec<String>,
    pub served: Arc<AtomicU64>,
    /// The REST API checks credentials (see InfoResponse.rest_auth_required).
    pub rest_auth_required: bool,
    /// Deprecated, always "" (InfoResponse.libp2p_http_target): tunnelled streams come
    /// through `Libp2pHttp`.
    pub libp2p_http_target: String,
    /// The REST app that serves `/libp2p-http` streams tunnelled by the transport
    /// (`None` until the REST API is bound).
    pub tunnel: Option<crate::libp2p_http::Tunnel>,
}

type TunnelStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<TunnelData, Status>> + Send>>;

#[tonic::async_trait]
impl Gateway for GatewayService {
    async fn info(&self, _req: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(InfoResponse {
            version: ipfs_cluster_api::VERSION.to_string(),
            rest_listen: self.rest_listen.clone(),
            pinsvc_listen: self.pinsvc_listen.clone(),
            requests_served: self.served.load(Ordering::Relaxed),
            libp2p_http_target: self.libp2p_http_target.clone(),
            rest_auth_required: self.rest_auth_required,
        }))
    }

    type Libp2pHttpStream = TunnelStream;

    /// One `/libp2p-http` stream from the cluster host, served here in-process.
    async fn libp2p_http(
        &self,
        req: Request<Streaming<TunnelData>>,
    ) -> Result<Response<TunnelStream>, Status> {
        let Some(tunnel) = self.tunnel.as_ref() else {
            return Err(Status::unavailable(
                "the REST API is not serving /libp2p-http streams yet",
            ));
        };
        // The transport names the remote peer; a local caller (the operator) is "local".
        let peer = ipfs_cluster_proto::Caller::from_metadata(req.metadata())
            .peer()
            .unwrap_or("local")
            .to_string();
        let inbound = req.into_inner().map(|m| m.map(|d| Bytes::from(d.data)));
        let out = crate::libp2p_http::serve_tunnel(tunnel, peer, inbound).map(|r| {
            r.map(|data| TunnelData {
                data: data.to_vec(),
            })
            .map_err(|e| Status::aborted(e.to_string()))
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn id(&self, _req: Request<IdRequest>) -> Result<Response<IdResponse>, Status> {
        self.backends
            .id()
            .await
            .map(Response::new)
            .map_err(|e| Status::unavailable(e.message))
    }
}
